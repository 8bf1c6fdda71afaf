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
