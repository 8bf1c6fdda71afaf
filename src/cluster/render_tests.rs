//! Every embedded playbook rendered against the variables the phases really build, for each
//! OS family, and golden files for the configs an operator audits most (kubeadm, haproxy,
//! keepalived). `UPDATE_GOLDEN=1 cargo test --lib golden` rewrites the golden files.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::phases::load_balancer::lb_vars;
use super::phases::preflight::network_vars;
use super::phases::prepare_hosts::prepare_vars;
use super::{Ctx, Options, kubeadm_config};
use crate::facts::{Facts, InterfaceAddress};
use crate::inventory::Host;
use crate::pki::BootstrapToken;
use crate::playbook::{Playbooks, render_all};
use crate::ui::{OutputMode, Redactor, Reporter};

const INVENTORY: &str = "apiVersion: installer/v1
kind: Inventory
cluster:
  name: golden
  kubernetes: 1.36.2
  controlPlane: {vip: 10.0.0.100, port: 8443}
  kubeadm:
    ClusterConfiguration:
      apiServer:
        certSANs: [api.example.com]
ssh: {user: ops, knownHosts: /dev/null}
packages:
  criDockerdSha256:
    cri-dockerd_0.3.21.3-0.debian-bookworm_amd64.deb: 0000000000000000000000000000000000000000000000000000000000000000
hosts:
  - {name: master-1, address: 10.0.0.11, roles: [master]}
  - {name: master-2, address: 10.0.0.12, roles: [master]}
  - {name: master-3, address: 10.0.0.13, roles: [master]}
  - {name: worker-1, address: 10.0.0.21, roles: [worker], labels: {disk: ssd}}
";

fn facts(host: &Host, os_id: &str, codename: &str) -> Facts {
    Facts {
        os_id: os_id.into(),
        os_version: "12".into(),
        os_codename: codename.into(),
        arch: "x86_64".into(),
        hostname: host.name.clone(),
        init: "systemd".into(),
        addresses: vec![InterfaceAddress {
            interface: "eth0".into(),
            address: host.address,
            prefix: 24,
        }],
        ..Facts::default()
    }
}

/// A context for the 3+1 cluster above, every host with facts of `os_id`.
fn cluster(dir: &Path, os_id: &str, codename: &str) -> Ctx {
    cluster_of(dir, INVENTORY, os_id, codename)
}

fn cluster_of(dir: &Path, text: &str, os_id: &str, codename: &str) -> Ctx {
    let path = dir.join("hosts.yaml");
    let inventory = crate::inventory::parse(&path, text)
        .expect("inventory parses")
        .inventory;
    let reporter = Reporter::new(OutputMode::Json, Redactor::new(), false);
    let options = Options {
        forks: 4,
        playbooks: None,
    };
    let mut ctx = Ctx::new(inventory, reporter, &options).expect("context");
    for host in ctx.inventory.hosts.clone() {
        ctx.hosts.get_mut(&host.name).unwrap().facts = Some(facts(&host, os_id, codename));
    }
    ctx.token = Some(BootstrapToken::parse("abcdef.0123456789abcdef").unwrap());
    ctx.discovery_hash = Some(format!("sha256:{}", "0".repeat(64)));
    ctx.init_master = Some("master-1".into());
    ctx
}

/// Everything any playbook's `vars` may hold, from the functions the phases use.
fn all_vars(ctx: &Ctx, host: &Host) -> Value {
    let mut vars = kubeadm_config::common_vars(ctx).unwrap();
    let prepare = serde_json::to_value(prepare_vars(ctx, host).unwrap()).unwrap();
    for (k, v) in prepare.as_object().unwrap() {
        vars[k] = v.clone();
    }
    let masters: Vec<Host> = ctx.inventory.masters().cloned().collect();
    if let Some(i) = masters.iter().position(|m| m.name == host.name) {
        vars["lb"] = serde_json::to_value(&lb_vars(ctx, &masters).unwrap()[i]).unwrap();
    } else {
        vars["lb"] = serde_json::to_value(&lb_vars(ctx, &masters).unwrap()[0]).unwrap();
    }
    vars["kubeadm_config"] = kubeadm_config::init_config(ctx, host, &vars)
        .unwrap()
        .into();
    vars["join_config"] = kubeadm_config::join_config(ctx, host, &vars, true)
        .unwrap()
        .into();
    let pki: serde_json::Map<String, Value> = crate::pki::SHARED_FILES
        .iter()
        .map(|f| (f.to_string(), json!("-----BEGIN CERTIFICATE-----\n")))
        .collect();
    vars["pki"] = Value::Object(pki);
    vars["shared_files"] = json!(crate::pki::SHARED_FILES);
    vars["args"] = json!(["get", "nodes", "-o", "json"]);
    vars["member_id"] = json!("12345");
    vars["node"] = json!("worker-1");
    vars["drain_timeout"] = json!(300);
    let hosts: Vec<&Host> = ctx.inventory.hosts.iter().collect();
    for (k, v) in network_vars(ctx, &hosts).as_object().unwrap() {
        vars[k] = v.clone();
    }
    vars["purge"] = json!(true);
    vars["path"] = json!("/etc/kubernetes/installer/addons/weave.json");
    vars["content"] = json!("{\"kind\": \"List\"}");
    vars["paths"] = json!(["/etc/kubernetes/installer/addons/weave.json"]);
    vars["rendered"] =
        json!([{"path": "/etc/kubernetes/installer/addons/weave.json", "sha256": "ab".repeat(32)}]);
    vars["namespace"] = json!("installer-smoke-test");
    vars["manifest"] = json!("/etc/kubernetes/installer/smoke-test.yaml");
    vars["replicas"] = json!(2);
    vars["image"] = json!("registry.k8s.io/coredns/coredns:v1.14.2");
    vars["files"] = json!([{"source": "https://example.com/a.yaml", "sha256": "ab", "dest": "/var/cache/installer/addons/ab"}]);
    // etcd restore, static pods
    vars["action"] = json!("stop");
    vars["pods"] = json!([
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler"
    ]);
    vars["aside"] = json!("/etc/kubernetes/installer-stopped-manifests");
    vars["lb_settle_seconds"] = json!(5);
    vars["move_leader"] = json!(true);
    // api-backend
    vars["backend"] = json!({"name": "master-2", "address": "10.0.0.12"});
    vars["backends"] = json!([{"name": "master-1", "address": "10.0.0.11"}, {"name": "master-2", "address": "10.0.0.12"}]);
    vars["remote_dir"] = json!("/var/lib/installer/etcd-restore");
    let members: serde_json::Map<String, Value> = ctx
        .inventory
        .hosts
        .iter()
        .map(|h| {
            let m = json!({"name": h.name, "peer_url": format!("https://{}:2380", h.address), "data_dir": "/var/lib/etcd", "tool": "etcdctl", "tool_version": "3.4.23"});
            (h.name.clone(), m)
        })
        .collect();
    vars["members"] = Value::Object(members);
    vars["initial_cluster"] = json!("m1=https://10.0.0.11:2380");
    vars["snapshot"] = json!("/var/lib/installer/etcd-restore/snapshot-20261205T000000Z.db");
    vars["stamp"] = json!("20261205T000000Z");
    // ca-rotation: what the stage phase really builds (the sign stage carries every variable)
    let old = crate::pki::ClusterCa::generate().unwrap();
    let next = old.with_new_cas().unwrap();
    let fingerprint = next.ca_fingerprint().unwrap();
    let kubelet_client = next.kubelet_client_pem("worker-1").unwrap();
    let rotation = super::ca_rotation::Rotation {
        old,
        next,
        fingerprint,
    };
    let stage = super::ca_rotation::Stage::Sign;
    for (k, v) in rotation.vars(stage, "control-plane").as_object().unwrap() {
        vars[k] = v.clone();
    }
    vars["kubelet_client"] = json!(kubelet_client.as_str());
    vars["workloads"] = json!([{"namespace": "kube-system", "names": ["deployment/coredns"]}]);
    vars
}

#[test]
fn every_playbook_renders_with_the_phases_variables_on_every_os_family() {
    let tmp = tempfile::tempdir().unwrap();
    for (os_id, codename) in [
        ("debian", "bookworm"),
        ("ubuntu", "jammy"),
        ("rocky", "bookworm"),
    ] {
        let ctx = cluster(tmp.path(), os_id, codename);
        let books = Playbooks::Embedded;
        let mut names = books.names();
        names.sort();
        assert!(names.len() > 15, "{names:?}");
        for host in ctx.inventory.hosts.clone() {
            let context = ctx.host_context(&host, &all_vars(&ctx, &host));
            assert!(context["os"].is_object(), "{os_id} has an OS family");
            for name in &names {
                let playbook = books.load(name).unwrap();
                render_all(&playbook, &context, &books)
                    .unwrap_or_else(|e| panic!("{os_id} {}: {e}", host.name));
            }
        }
    }
}

/// remove-node re-renders the load balancer with `reload`: the services reload, `up` restarts.
#[test]
fn load_balancer_reloads_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = cluster(tmp.path(), "debian", "bookworm");
    let host = ctx.inventory.host("master-1").unwrap().clone();
    let books = Playbooks::Embedded;
    let mut vars = all_vars(&ctx, &host);
    for (reload, verb) in [(None, "restart"), (Some(true), "reload-or-restart")] {
        if let Some(r) = reload {
            vars["reload"] = json!(r);
        }
        let context = ctx.host_context(&host, &vars);
        let tasks = render_all(&books.load("load-balancer").unwrap(), &context, &books).unwrap();
        for (task, service) in [
            ("Restart haproxy for its new configuration", "haproxy"),
            ("Restart keepalived for its new configuration", "keepalived"),
        ] {
            let body = &tasks.iter().find(|(t, _)| t == task).unwrap().1;
            assert!(
                body.contains(&format!("systemctl {verb} {service}")),
                "{task}: {body}"
            );
        }
    }
}

#[test]
fn ubuntu_hosts_get_dockers_ubuntu_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = cluster(tmp.path(), "ubuntu", "noble");
    let host = ctx.inventory.host("worker-1").unwrap().clone();
    let context = ctx.host_context(&host, &all_vars(&ctx, &host));
    let books = Playbooks::Embedded;
    let repos = render_all(&books.load("repos").unwrap(), &context, &books).unwrap();
    let docker = repos
        .iter()
        .find(|(t, _)| t == "Docker repository")
        .unwrap();
    assert!(
        docker.1.contains("download.docker.com/linux/ubuntu") && docker.1.contains("noble stable"),
        "{}",
        docker.1
    );
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `text` with tests/golden/`name`, or rewrites it with UPDATE_GOLDEN=1.
fn golden(name: &str, text: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test --lib golden",
            path.display()
        )
    });
    assert_eq!(
        text, want,
        "{name} differs from its golden file; if the change is intended, run UPDATE_GOLDEN=1 cargo test --lib golden and review the diff"
    );
}

fn rendered_file(ctx: &Ctx, host: &str, playbook: &str, task: &str) -> String {
    let host = ctx.inventory.host(host).unwrap().clone();
    let context = ctx.host_context(&host, &all_vars(ctx, &host));
    let books = Playbooks::Embedded;
    render_all(&books.load(playbook).unwrap(), &context, &books)
        .unwrap()
        .into_iter()
        .find(|(t, _)| t == task)
        .unwrap_or_else(|| panic!("{playbook} has no task {task}"))
        .1
}

#[test]
fn golden_kubeadm_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = cluster(tmp.path(), "debian", "bookworm");
    let m1 = ctx.inventory.host("master-1").unwrap().clone();
    let vars = kubeadm_config::common_vars(&ctx).unwrap();
    let init = kubeadm_config::init_config(&ctx, &m1, &vars).unwrap();
    golden("kubeadm-init.yaml", &init);
    let m2 = ctx.inventory.host("master-2").unwrap().clone();
    golden(
        "kubeadm-join-master.yaml",
        &kubeadm_config::join_config(&ctx, &m2, &vars, true).unwrap(),
    );
    let w1 = ctx.inventory.host("worker-1").unwrap().clone();
    golden(
        "kubeadm-join-worker.yaml",
        &kubeadm_config::join_config(&ctx, &w1, &vars, false).unwrap(),
    );
}

#[test]
fn golden_load_balancer_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = cluster(tmp.path(), "debian", "bookworm");
    golden(
        "haproxy.cfg",
        &rendered_file(&ctx, "master-1", "load-balancer", "haproxy configuration"),
    );
    golden(
        "keepalived-master-2.conf",
        &rendered_file(
            &ctx,
            "master-2",
            "load-balancer",
            "keepalived configuration",
        ),
    );
}

#[test]
fn golden_containerd_config() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = cluster(tmp.path(), "debian", "bookworm");
    golden(
        "containerd-config.toml",
        &rendered_file(
            &ctx,
            "worker-1",
            "cri/containerd",
            "containerd configuration",
        ),
    );
}

#[test]
fn single_master_keepalived_has_no_empty_peer_block() {
    let tmp = tempfile::tempdir().unwrap();
    let one: String = INVENTORY
        .lines()
        .filter(|l| !l.contains("master-2") && !l.contains("master-3"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ctx = cluster_of(tmp.path(), &one, "debian", "bookworm");
    let conf = rendered_file(
        &ctx,
        "master-1",
        "load-balancer",
        "keepalived configuration",
    );
    // keepalived refuses `unicast_peer { }` with nothing in it.
    assert!(!conf.contains("unicast_peer"), "{conf}");
    assert!(conf.contains("virtual_ipaddress"), "{conf}");
}

#[test]
fn state_directory_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join(".installer/golden");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inventory = crate::inventory::parse(&tmp.path().join("hosts.yaml"), INVENTORY)
        .unwrap()
        .inventory;
    let reporter = Reporter::new(OutputMode::Json, Redactor::new(), false);
    let options = Options {
        forks: 1,
        playbooks: None,
    };
    let err = Ctx::new(inventory, reporter, &options)
        .err()
        .expect("refused");
    assert!(err.contains("chmod 700") && err.contains("0755"), "{err}");
}

#[test]
fn preflight_probe_renders_with_weave_off_and_on() {
    let tmp = tempfile::tempdir().unwrap();
    let books = Playbooks::Embedded;
    let preflight = books.load("preflight").unwrap();
    for weave in ["false", "true"] {
        let text = format!("{INVENTORY}addons: {{weave: {{enabled: {weave}}}}}\n");
        let ctx = cluster_of(tmp.path(), &text, "debian", "bookworm");
        let host = ctx.inventory.host("worker-1").unwrap().clone();
        let context = ctx.host_context(&host, &all_vars(&ctx, &host));
        let tasks = render_all(&preflight, &context, &books)
            .unwrap_or_else(|e| panic!("weave enabled: {weave}: {e}"));
        let script: String = tasks.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            script.contains("probe_peer master-1 10.0.0.11 2")
                && script.contains("/dev/tcp/$2/6783"),
            weave == "true",
            "Weave's port probed only when Weave is on:\n{script}"
        );
    }
}
