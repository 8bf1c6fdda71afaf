//! The real kubectl 1.33 against the simulated control plane on a real etcd.

mod common;

use common::Cluster;
use serde_json::json;

/// `../shared/upstream` beside the repository (the workspace root is three levels up).
const UPSTREAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/upstream");

#[test]
fn every_upstream_addon_manifest_is_accepted_by_kubectl_apply() {
    let c = Cluster::start();
    let rook = format!("{UPSTREAM}/rook-ceph/v1.20.6");
    // The order an operator would use: CRDs first, then what uses them.
    let files = [
        format!("{rook}/crds.yaml"),
        format!("{rook}/common.yaml"),
        format!("{rook}/csi-operator.yaml"),
        format!("{rook}/operator.yaml"),
        format!("{rook}/cluster.yaml"),
        format!("{rook}/csi/rbd/storageclass.yaml"),
        format!("{UPSTREAM}/weave-net/v2.9.0/weave-daemonset-k8s-1.11.yaml"),
        format!("{UPSTREAM}/headlamp/v0.45.0/kubernetes-headlamp.yaml"),
        format!("{UPSTREAM}/kubernetes-dashboard/v2.7.0/recommended.yaml"),
    ];
    for f in &files {
        c.k(&["apply", "-f", f]);
    }
    // A second apply is a no-op apart from fields kubectl always re-sends.
    let again = c.k(&["apply", "-f", &files[1]]);
    assert!(again.lines().all(|l| l.ends_with("unchanged")), "{again}");
    let crds = c.json(&["get", "crds"]);
    assert!(crds["items"].as_array().unwrap().len() >= 21);
    let cluster = c.json(&["get", "cephcluster", "rook-ceph", "-n", "rook-ceph"]);
    assert_eq!(cluster["spec"]["mon"]["count"], 3);
    // Server-side apply of a missing object creates it, and re-applying works.
    c.k(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{rook}/cluster-test.yaml"),
    ]);
    let out = c.k(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{rook}/cluster-test.yaml"),
    ]);
    assert!(out.contains("serverside-applied"), "{out}");
    let table = c.k(&["get", "cephclusters", "-A"]);
    assert!(
        table.contains("DATADIRHOSTPATH") && table.contains("my-cluster"),
        "{table}"
    );
    let ds = c.k(&["get", "ds", "-n", "kube-system", "weave-net", "-o", "wide"]);
    assert!(ds.contains("weave,weave-npc"), "{ds}");
    // Custom resources are checked against their CRD's schema (kubectl asks for Strict).
    let typo = json!({"apiVersion": "ceph.rook.io/v1", "kind": "CephCluster", "metadata": {"name": "typo", "namespace": "rook-ceph"},
        "spec": {"dataDirHostPath": "/var/lib/rook", "monn": {"count": 3}}});
    let o = c.kubectl_with(
        &c.p("admin.conf"),
        &["apply", "-f", "-"],
        Some(&typo.to_string()),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.monn\""),
        "{err}"
    );
    let bad = json!({"apiVersion": "ceph.rook.io/v1", "kind": "CephCluster", "metadata": {"name": "bad", "namespace": "rook-ceph"},
        "spec": {"dataDirHostPath": "/var/lib/rook", "mon": {"count": "three"}}});
    let o = c.kubectl_with(
        &c.p("admin.conf"),
        &["apply", "-f", "-"],
        Some(&bad.to_string()),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("spec.mon.count: Invalid value: \"three\": spec.mon.count in body must be of type integer"), "{err}");
    // Deleting a CRD removes its resource from discovery and its objects with it.
    c.k(&["delete", "crd", "cephclusters.ceph.rook.io"]);
    let err = c.k_err(&["get", "cephclusters", "-A"]);
    // Fresh discovery says the type is gone; with kubectl's cached discovery the list gets a 404.
    assert!(
        err.contains("doesn't have a resource type \"cephclusters\"")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
}

#[test]
fn typed_create_commands_work_with_protobuf_bodies() {
    let c = Cluster::start();
    c.k(&["create", "namespace", "team-a"]);
    c.k(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "team-a",
        "--from-literal=a=b",
    ]);
    c.k(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "team-a",
        "--from-literal=password=hunter2",
    ]);
    c.k(&["create", "serviceaccount", "robot", "-n", "team-a"]);
    c.k(&[
        "create",
        "clusterrolebinding",
        "robot-admin",
        "--clusterrole=cluster-admin",
        "--serviceaccount=team-a:robot",
    ]);
    c.k(&[
        "create",
        "role",
        "reader",
        "-n",
        "team-a",
        "--verb=get,list",
        "--resource=pods",
    ]);
    c.k(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "team-a",
        "--tcp=80:8080",
    ]);
    c.k(&["create", "priorityclass", "low", "--value=10"]);
    let role = c.json(&["get", "role", "reader", "-n", "team-a"]);
    assert_eq!(role["rules"][0]["verbs"], json!(["get", "list"]));
    let svc = c.json(&["get", "service", "web", "-n", "team-a"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.")
    );
    assert_eq!(c.json(&["get", "priorityclass", "low"])["value"], 10);
    let secret = c.json(&["get", "secret", "s", "-n", "team-a"]);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    let crb = c.json(&["get", "clusterrolebinding", "robot-admin"]);
    assert_eq!(crb["subjects"][0]["name"], "robot");
    // `create token` returns a JWT that authenticates as the service account.
    let token = c.k(&["create", "token", "robot", "-n", "team-a"]);
    let kc = c.write_kubeconfig("robot.conf", c.port, json!({"token": token.trim()}));
    let who = c.kubectl_with(
        &kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "system:serviceaccount:team-a:robot"
    );
    // Once the account is deleted, its tokens stop working.
    c.k(&["delete", "serviceaccount", "robot", "-n", "team-a"]);
    let o = c.kubectl_with(&kc, &["get", "ns"], None);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn node_label_taint_cordon_drain_and_delete() {
    let mut c = Cluster::start();
    c.start_controllers(&[]);
    c.add_node("w1", json!({}), json!([]));
    c.add_node("w2", json!({}), json!([]));
    let nodes = c.k(&["get", "nodes"]);
    assert!(
        nodes.contains("NAME")
            && nodes.contains("STATUS")
            && nodes.contains("ROLES")
            && nodes.contains("VERSION"),
        "{nodes}"
    );
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("w1") && l.contains("Ready") && l.contains("v1.36.2")),
        "{nodes}"
    );
    let wide = c.k(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.contains("INTERNAL-IP")
            && wide.contains("10.0.0.1")
            && wide.contains("Debian GNU/Linux 12"),
        "{wide}"
    );

    // nodeipam hands out distinct /24s from --cluster-cidr.
    c.eventually(15, "pod CIDRs", || {
        let cidrs: Vec<String> = ["w1", "w2"]
            .iter()
            .map(|n| {
                c.json(&["get", "node", n])["spec"]["podCIDR"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        cidrs
            .iter()
            .all(|x| x.starts_with("10.244.") && x.ends_with("/24"))
            && cidrs[0] != cidrs[1]
    });
    c.k(&["label", "node", "w1", "disk=ssd"]);
    c.k(&["taint", "node", "w2", "dedicated=db:NoSchedule"]);
    let w2 = c.json(&["get", "node", "w2"]);
    assert_eq!(w2["spec"]["taints"][0]["key"], "dedicated");
    assert_eq!(
        c.json(&["get", "node", "w1"])["metadata"]["labels"]["disk"],
        "ssd"
    );
    c.k(&["taint", "node", "w2", "dedicated-"]);

    c.k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ]);
    c.eventually(30, "web pods bound and running", || {
        c.run_bound_pods();
        c.json(&["get", "deploy", "web"])["status"]["readyReplicas"] == 2
    });
    c.k(&["rollout", "status", "deployment/web", "--timeout=20s"]);
    c.k(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    c.eventually(15, "web endpoints", || {
        let Some(ep) = c.try_json(&["get", "endpoints", "web"]) else {
            return false;
        };
        ep["subsets"][0]["addresses"].as_array().map(|a| a.len()) == Some(2)
            && ep["subsets"][0]["ports"][0]["port"] == 8080
    });
    c.k(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=20s",
    ]);
    let pods = c.k(&["get", "pods", "-o", "wide"]);
    assert!(
        pods.contains("READY")
            && pods.contains("RESTARTS")
            && pods.contains("NODE")
            && pods.contains("1/1"),
        "{pods}"
    );

    c.k(&["cordon", "w1"]);
    assert!(
        c.k(&["get", "node", "w1"])
            .contains("Ready,SchedulingDisabled")
    );
    c.k(&[
        "drain",
        "w1",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=30s",
    ]);
    c.eventually(30, "web pods all on w2", || {
        c.run_bound_pods();
        let p = c.json(&["get", "pods", "-l", "app=web"]);
        let items = p["items"].as_array().cloned().unwrap_or_default();
        items.len() == 2 && items.iter().all(|i| i["spec"]["nodeName"] == "w2")
    });
    let on_w1 = c.json(&["get", "pods", "-A", "--field-selector", "spec.nodeName=w1"]);
    assert!(on_w1["items"].as_array().unwrap().is_empty());
    c.k(&["uncordon", "w1"]);

    c.k(&["scale", "deployment/web", "--replicas=3"]);
    c.eventually(20, "third replica", || {
        c.json(&["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .map(|a| a.len())
            == Some(3)
    });
    c.k(&["delete", "deployment", "web"]);
    c.eventually(30, "web pods garbage-collected", || {
        c.json(&["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    c.k(&["delete", "node", "w1"]);
    let err = c.k_err(&["get", "node", "w1"]);
    assert!(err.contains("nodes \"w1\" not found"), "{err}");
}

#[test]
fn drain_respects_pod_disruption_budgets() {
    let mut c = Cluster::start();
    c.start_controllers(&[]);
    c.add_node("w1", json!({}), json!([]));
    c.k(&[
        "create",
        "deployment",
        "db",
        "--image=postgres:16",
        "--replicas=1",
    ]);
    c.k(&[
        "create",
        "pdb",
        "db",
        "--selector=app=db",
        "--min-available=1",
    ]);
    c.eventually(30, "db running", || {
        c.run_bound_pods();
        c.json(&["get", "deploy", "db"])["status"]["readyReplicas"] == 1
    });
    c.eventually(15, "budget status", || {
        let pdb = c.json(&["get", "pdb", "db"]);
        pdb["status"]["currentHealthy"] == 1 && pdb["status"]["disruptionsAllowed"] == 0
    });
    let err = c.k_err(&["drain", "w1", "--timeout=3s"]);
    assert!(err.contains("disruption budget"), "{err}");
}

#[test]
fn scheduler_honours_taints_selectors_and_daemonsets_cover_eligible_nodes() {
    let mut c = Cluster::start();
    c.start_controllers(&[]);
    c.add_node(
        "m1",
        json!({"node-role.kubernetes.io/control-plane": ""}),
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
    );
    c.add_node("w1", json!({"disk": "ssd"}), json!([]));
    c.add_node("w2", json!({}), json!([]));
    let nodes = c.k(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("m1") && l.contains("control-plane")),
        "{nodes}"
    );
    c.k(&[
        "create",
        "deployment",
        "spread",
        "--image=busybox:1.36",
        "--replicas=4",
    ]);
    let sel = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ssd-only", "namespace": "default"},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "busybox:1.36"}]}});
    c.k_stdin(&["apply", "-f", "-"], &sel.to_string());
    let nowhere = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nowhere", "namespace": "default"},
        "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]}]}}},
            "containers": [{"name": "c", "image": "busybox:1.36"}]}});
    c.k_stdin(&["apply", "-f", "-"], &nowhere.to_string());
    c.k_stdin(&["apply", "-f", "-"], r#"{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"agent","namespace":"kube-system"},
        "spec":{"selector":{"matchLabels":{"app":"agent"}},"template":{"metadata":{"labels":{"app":"agent"}},
        "spec":{"tolerations":[{"operator":"Exists"}],"containers":[{"name":"a","image":"agent:1"}]}}}}"#);
    c.eventually(30, "all schedulable pods bound", || {
        let p = c.json(&["get", "pods", "-A"]);
        let items = p["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .filter(|i| i["spec"]["nodeName"].is_string())
            .count()
            == 4 + 1 + 3
    });
    let p = c.json(&["get", "pods", "-A"]);
    for i in p["items"].as_array().unwrap() {
        let name = i["metadata"]["name"].as_str().unwrap();
        let node = i["spec"]["nodeName"].as_str().unwrap_or("");
        if name.starts_with("spread-") {
            assert_ne!(
                node, "m1",
                "an untolerating pod landed on the tainted master"
            );
        }
        if name == "ssd-only" {
            assert_eq!(node, "w1");
        }
    }
    let ds_nodes: Vec<&str> = p["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("agent-")
        })
        .filter_map(|i| i["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(ds_nodes.len(), 3, "one agent per node: {ds_nodes:?}");
    let pending = c.json(&["get", "pod", "nowhere"]);
    assert_eq!(
        pending["status"]["conditions"][0]["reason"],
        "Unschedulable"
    );
    let msg = pending["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.starts_with("0/3 nodes are available:")
            && msg.contains("didn't match Pod's node affinity/selector"),
        "{msg}"
    );

    let events = c.k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=nowhere",
    ]);
    assert!(events.contains("FailedScheduling"), "{events}");
    let events = c.k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=ssd-only",
    ]);
    assert!(
        events.contains("Successfully assigned default/ssd-only to w1"),
        "{events}"
    );

    // StatefulSets come up in order.
    c.k_stdin(&["apply", "-f", "-"], r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","namespace":"default"},
        "spec":{"replicas":2,"serviceName":"db","selector":{"matchLabels":{"app":"db"}},"template":{"metadata":{"labels":{"app":"db"}},
        "spec":{"containers":[{"name":"db","image":"postgres:16"}]}}}}"#);
    c.eventually(30, "db-0 then db-1", || {
        c.run_bound_pods();
        c.json(&["get", "sts", "db"])["status"]["readyReplicas"] == 2
    });
    c.k(&["get", "pod", "db-0", "db-1"]);
}

#[test]
fn namespace_deletion_removes_its_contents() {
    let mut c = Cluster::start();
    c.start_controllers(&[]);
    c.k(&["create", "namespace", "doomed"]);
    c.k(&["create", "configmap", "x", "-n", "doomed"]);
    c.eventually(15, "default service account", || {
        c.kubectl(&["get", "sa", "default", "-n", "doomed"])
            .status
            .success()
    });
    let ca = c.json(&["get", "configmap", "kube-root-ca.crt", "-n", "doomed"]);
    assert!(
        ca["data"]["ca.crt"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    c.k(&["delete", "namespace", "doomed", "--timeout=30s"]);
    let err = c.k_err(&["get", "namespace", "doomed"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn two_api_servers_share_one_etcd() {
    let mut c = Cluster::start();
    let port2 = common::free_port();
    c.start_apiserver("apiserver-2", port2);
    c.wait_ready(port2);
    c.k(&["create", "configmap", "shared", "--from-literal=k=v"]);
    let kc2 = c.write_kubeconfig("admin-2.conf", port2, json!({"client-certificate-data": base64_of(&c.read("admin.crt")), "client-key-data": base64_of(&c.read("admin.key"))}));
    let o = c.kubectl_with(
        &kc2,
        &["get", "configmap", "shared", "-o", "jsonpath={.data.k}"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "v");
    // Each live replica is listed in the kubernetes Endpoints (both advertise 127.0.0.1 here).
    c.eventually(15, "kubernetes endpoints", || {
        let Some(ep) = c.try_json(&["get", "endpoints", "kubernetes"]) else {
            return false;
        };
        ep["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"
    });
    // Losing one replica leaves the other answering.
    c.stop("apiserver");
    let o = c.kubectl_with(&kc2, &["get", "ns", "default"], None);
    assert!(o.status.success());
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Weave Net's release asset, made from the in-repo template as rajch/weave's release script
/// does (`sed -e "s/:latest/:2.9.0/" -e "/imagePullPolicy: Always/d"`, SOURCES.md).
fn weave_release_asset() -> String {
    let template = std::fs::read_to_string(format!(
        "{UPSTREAM}/weave-net/v2.9.0/weave-daemonset-k8s-1.11.yaml"
    ))
    .expect("weave template");
    template
        .replace(":latest", ":2.9.0")
        .lines()
        .filter(|l| !l.contains("imagePullPolicy: Always"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What the installer's Addons phase does, through the real kubectl: server-side apply with
/// its field manager (guarded by `kubectl get -f`), then the readiness it waits for.
#[test]
fn installer_addons_apply_server_side_and_become_ready() {
    let mut c = Cluster::start();
    // The test's nodes have no kubelet renewing them; this flow takes longer than the default
    // grace period, after which they would (rightly) turn Unknown and unschedulable.
    c.start_controllers(&["--node-monitor-grace-period=3600s"]);
    c.add_node(
        "master-1",
        json!({"node-role.kubernetes.io/control-plane": ""}),
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
    );
    c.add_node("worker-1", json!({}), json!([]));
    c.add_node("worker-2", json!({}), json!([]));
    let apply = |file: &str| {
        c.k(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=installer",
            "-f",
            file,
        ])
    };
    let rook = format!("{UPSTREAM}/rook-ceph/v1.20.6");

    // Weave Net: one pod per node, the tainted master included; status as the controller keeps it.
    let weave = c.p("weave.yaml");
    std::fs::write(&weave, weave_release_asset()).unwrap();
    let err = c.k_err(&["get", "-f", &weave]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    apply(&weave);
    c.k(&["get", "-f", &weave]);
    c.eventually(90, "weave-net pods on every node", || {
        c.run_bound_pods();
        let ds = c.json(&["get", "ds", "weave-net", "-n", "kube-system"]);
        let s = &ds["status"];
        s["desiredNumberScheduled"] == 3
            && s["numberReady"] == 3
            && s["updatedNumberScheduled"] == 3
            && s["currentNumberScheduled"] == 3
            && s["observedGeneration"] == ds["metadata"]["generation"]
    });
    // numberAvailable waits for minReadySeconds (5 in the manifest).
    c.eventually(60, "weave-net pods available after minReadySeconds", || {
        let ds = c.json(&["get", "ds", "weave-net", "-n", "kube-system"]);
        ds["status"]["numberAvailable"] == 3 && ds["status"]["numberUnavailable"] == 0
    });
    let pods = c.json(&["get", "pods", "-n", "kube-system", "-l", "name=weave-net"]);
    let mut nodes: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["master-1", "worker-1", "worker-2"]);
    let generation =
        c.json(&["get", "ds", "weave-net", "-n", "kube-system"])["metadata"]["generation"].clone();
    // Re-applying the same manifest changes nothing.
    apply(&weave);
    assert_eq!(
        c.json(&["get", "ds", "weave-net", "-n", "kube-system"])["metadata"]["generation"],
        generation
    );
    // A changed template rolls the pods over, one node at a time.
    let changed = weave_release_asset().replace(
        "                - name: CHECKPOINT_DISABLE\n",
        "                - name: IPALLOC_RANGE\n                  value: 10.244.0.0/16\n                - name: CHECKPOINT_DISABLE\n",
    );
    std::fs::write(&weave, changed).unwrap();
    apply(&weave);
    c.eventually(180, "the rolling update of weave-net", || {
        c.run_bound_pods();
        let ds = c.json(&["get", "ds", "weave-net", "-n", "kube-system"]);
        let s = &ds["status"];
        s["updatedNumberScheduled"] == 3
            && s["numberReady"] == 3
            && s["observedGeneration"] != generation
    });
    let env = c.json(&["get", "ds", "weave-net", "-n", "kube-system"])["spec"]["template"]["spec"]
        ["containers"][0]["env"]
        .clone();
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "IPALLOC_RANGE"),
        "{env}"
    );

    // Rook: ~1 MB of CRDs through server-side apply, established; the operator lands on a worker.
    for f in [
        "crds.yaml",
        "common.yaml",
        "csi-operator.yaml",
        "operator.yaml",
    ] {
        apply(&format!("{rook}/{f}"));
    }
    let crds = c.json(&["get", "crd"]);
    let ceph: Vec<&serde_json::Value> = crds["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with(".ceph.rook.io")
        })
        .collect();
    // crds.yaml holds 19 CRDs of the ceph.rook.io group (and 2 of objectbucket.io).
    assert_eq!(ceph.len(), 19);
    for crd in &ceph {
        for cond in ["Established", "NamesAccepted"] {
            assert!(
                crd["status"]["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["type"] == cond && k["status"] == "True"),
                "{} lacks {cond}",
                crd["metadata"]["name"]
            );
        }
    }
    c.eventually(90, "the Rook operator available", || {
        c.run_bound_pods();
        let d = c.json(&["get", "deployment", "rook-ceph-operator", "-n", "rook-ceph"]);
        d["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|k| k["type"] == "Available" && k["status"] == "True")
        })
    });
    let op = c.json(&[
        "get",
        "pods",
        "-n",
        "rook-ceph",
        "-l",
        "app=rook-ceph-operator",
    ]);
    assert_ne!(op["items"][0]["spec"]["nodeName"], "master-1");
    // Custom resources of the established CRDs, as the installer renders them.
    let cluster = json!({"apiVersion": "ceph.rook.io/v1", "kind": "CephCluster",
        "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
        "spec": {"cephVersion": {"image": "quay.io/ceph/ceph:v20.2.4"}, "dataDirHostPath": "/var/lib/rook",
            "mon": {"count": 1, "allowMultiplePerNode": false}, "mgr": {"count": 1}, "dashboard": {"enabled": true},
            "storage": {"useAllNodes": false, "useAllDevices": false, "nodes": [{"name": "worker-1", "devices": [{"name": "sdb"}]}]}}});
    let pool = json!({"apiVersion": "ceph.rook.io/v1", "kind": "CephBlockPool",
        "metadata": {"name": "replicapool", "namespace": "rook-ceph"},
        "spec": {"failureDomain": "host", "replicated": {"size": 1}}});
    let rendered = c.p("rook-cluster.json");
    std::fs::write(&rendered, format!("{cluster}\n---\n{pool}\n")).unwrap();
    apply(&rendered);
    let back = c.json(&["get", "cephcluster", "rook-ceph", "-n", "rook-ceph"]);
    assert_eq!(
        back["spec"]["storage"]["nodes"][0]["devices"][0]["name"],
        "sdb"
    );
    let back = c.json(&["get", "cephblockpool", "replicapool", "-n", "rook-ceph"]);
    assert_eq!(back["spec"]["replicated"]["size"], 1);

    // Headlamp (image pinned) on a worker; the admin account's token authenticates.
    let headlamp = std::fs::read_to_string(format!(
        "{UPSTREAM}/headlamp/v0.45.0/kubernetes-headlamp.yaml"
    ))
    .unwrap()
    .replace(
        "ghcr.io/headlamp-k8s/headlamp:latest",
        "ghcr.io/headlamp-k8s/headlamp:v0.45.0",
    );
    let file = c.p("headlamp.yaml");
    std::fs::write(&file, headlamp).unwrap();
    apply(&file);
    let admin = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "installer-dashboard-admin", "namespace": "kube-system"}});
    let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "installer-dashboard-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "installer-dashboard-admin", "namespace": "kube-system"}]});
    let file = c.p("dashboard-admin.json");
    std::fs::write(&file, format!("{admin}\n---\n{crb}\n")).unwrap();
    apply(&file);
    c.eventually(90, "headlamp available", || {
        c.run_bound_pods();
        let d = c.json(&["get", "deployment", "headlamp", "-n", "kube-system"]);
        d["status"]["availableReplicas"] == 1
    });
    let hl = c.json(&["get", "pods", "-n", "kube-system", "-l", "k8s-app=headlamp"]);
    let node = hl["items"][0]["spec"]["nodeName"].as_str().unwrap();
    assert!(node.starts_with("worker-"), "{node}");
    assert_eq!(
        hl["items"][0]["spec"]["containers"][0]["image"],
        "ghcr.io/headlamp-k8s/headlamp:v0.45.0"
    );
    let token = c.k(&[
        "-n",
        "kube-system",
        "create",
        "token",
        "installer-dashboard-admin",
        "--duration",
        "1h",
    ]);
    let claims = token.trim().split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let kc = c.write_kubeconfig("dashboard.conf", c.port, json!({"token": token.trim()}));
    let who = c.kubectl_with(
        &kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "system:serviceaccount:kube-system:installer-dashboard-admin"
    );
    let o = c.kubectl_with(&kc, &["get", "nodes"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
