//! `installer up` end to end on the lab: real Debian hosts, real apt/dpkg, haproxy,
//! keepalived and etcd; kubeadm, kubelet and the API server are the lab's simulators.
//! One test per runtime, each walking the acceptance list in order.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/lab.rs"]
mod lab;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{installer, kubectl, wait_until};
use lab::{Lab, all_output, write_inventory};

fn up(inv: &Path) -> String {
    let out = installer(&["up", "-i", inv.to_str().unwrap()]);
    let text = all_output(&out);
    assert!(out.status.success(), "installer up failed:\n{text}");
    text
}

fn checks_on_hosts(lab: &Lab, masters: &[&str], workers: &[&str], version: &str) {
    for h in masters.iter().chain(workers) {
        for pkg in ["kubelet", "kubeadm", "kubectl"] {
            let v = lab.exec_ok(h, &format!("dpkg-query -W -f='${{Version}}' {pkg}"));
            assert!(v.starts_with(&format!("{version}-")), "{h}: {pkg} {v}");
        }
        let held = lab.exec_ok(h, "apt-mark showhold");
        for pkg in ["kubelet", "kubeadm", "kubectl"] {
            assert!(
                held.lines().any(|l| l == pkg),
                "{h}: {pkg} not held: {held}"
            );
        }
        assert_eq!(
            lab.exec_ok(h, "awk 'NR > 1' /proc/swaps").trim(),
            "",
            "{h}: swap on"
        );
        assert_eq!(
            lab.exec_ok(h, "cat /proc/sys/net/ipv4/ip_forward").trim(),
            "1",
            "{h}"
        );
        assert_eq!(
            lab.exec_ok(h, "cat /proc/sys/net/bridge/bridge-nf-call-iptables")
                .trim(),
            "1",
            "{h}"
        );
    }
    let shared = "cd /etc/kubernetes/pki && sudo sha256sum ca.crt ca.key sa.key sa.pub front-proxy-ca.crt front-proxy-ca.key etcd/ca.crt etcd/ca.key";
    let first = lab.exec_ok(masters[0], shared);
    for m in masters {
        assert_eq!(lab.exec_ok(m, shared), first, "{m}: shared CA files differ");
        let modes = lab.exec_ok(m, "cd /etc/kubernetes/pki && sudo stat -c '%a %U %G' ca.key sa.key front-proxy-ca.key etcd/ca.key");
        assert!(modes.lines().all(|l| l == "600 root root"), "{m}: {modes}");
    }
    for w in workers {
        let (status, _, _) = lab.exec(
            w,
            "sudo test -e /etc/kubernetes/pki/ca.key -o -e /etc/kubernetes/pki/sa.key",
        );
        assert_ne!(status, 0, "{w}: a worker must not hold CA keys");
    }
    let holders: Vec<&&str> = masters
        .iter()
        .filter(|m| {
            lab.exec_ok(m, "ip -o addr show")
                .contains(&format!(" {}/", lab.vip()))
        })
        .collect();
    assert_eq!(holders.len(), 1, "VIP holders: {holders:?}");
    let members = lab.exec_ok(
        masters[0],
        "sudo curl -sS --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt \
         --key /etc/kubernetes/pki/etcd/healthcheck-client.key -X POST -d '{}' https://127.0.0.1:2379/v3/cluster/member/list",
    );
    let doc: serde_json::Value = serde_json::from_str(&members).expect("member list JSON");
    assert_eq!(
        doc["members"].as_array().map(|a| a.len()),
        Some(masters.len()),
        "{members}"
    );
}

fn checks_through_vip(kubeconfig: &Path, masters: &[&str], workers: &[&str]) {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    assert!(
        text.contains(":8443"),
        "kubeconfig must point at the VIP: {text}"
    );
    let nodes: serde_json::Value =
        serde_json::from_str(&kubectl(kubeconfig, &["get", "nodes", "-o", "json"])).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), masters.len() + workers.len());
    for n in items {
        let name = n["metadata"]["name"].as_str().unwrap();
        let control_plane = n["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .is_some();
        let tainted = n["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter().any(|t| {
                t["key"] == "node-role.kubernetes.io/control-plane" && t["effect"] == "NoSchedule"
            })
        });
        assert_eq!(control_plane, masters.contains(&name), "{name}: role");
        assert_eq!(
            tainted,
            masters.contains(&name),
            "{name}: control-plane taint"
        );
    }
}

/// What `up` would change on a host: packages, package sources, Kubernetes files, services.
fn host_state(lab: &Lab, host: &str) -> String {
    lab.exec_ok(
        host,
        "dpkg-query -W -f='${Package} ${Version} ${Status}\\n' | sha256sum; \
         ls -la /etc/apt/sources.list.d /etc/apt/keyrings 2>&1; \
         sudo find /etc/kubernetes /etc/haproxy /etc/keepalived /etc/containerd /etc/docker -type f 2>/dev/null | sort; \
         systemctl is-active kubelet haproxy keepalived docker containerd 2>&1; \
         awk 'NR > 1' /proc/swaps",
    )
}

fn plan(inv: &Path) -> String {
    let out = installer(&["plan", "-i", inv.to_str().unwrap()]);
    let text = all_output(&out);
    assert!(out.status.success(), "installer plan failed:\n{text}");
    text
}

/// The tests of this file each boot a lab of their own; one at a time is enough for two cores.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn ha_cluster_on_docker_comes_up_converges_grows_and_resets() {
    let _serial = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(lab) = Lab::up_or_skip("up-docker", 3, 3) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let masters = ["master-1", "master-2", "master-3"];
    let five = ["master-1", "master-2", "master-3", "worker-1", "worker-2"];
    let inv = write_inventory(&lab, tmp.path(), "docker", &five);
    let kubeconfig = tmp.path().join(".installer/lab/kubeconfig");

    eprintln!("step 0: plan on fresh hosts lists every phase per host and changes nothing");
    let before: Vec<String> = five.iter().map(|h| host_state(&lab, h)).collect();
    let planned = plan(&inv);
    for phase in [
        "Prepare hosts",
        "Cluster PKI",
        "Load balancer and VIP",
        "Init the first master",
        "Join the other masters",
        "Join the workers",
        "Labels and taints",
        "Verify the cluster",
        "Kubeconfig",
    ] {
        assert!(
            planned.lines().any(|l| l == phase),
            "plan lacks {phase}:\n{planned}"
        );
    }
    assert!(
        planned.contains("kubeadm init (the cluster's first control plane"),
        "{planned}"
    );
    assert!(planned.contains("join the control plane"), "{planned}");
    assert!(
        planned.contains("kubeadm join (workers in parallel)"),
        "{planned}"
    );
    assert!(planned.contains("Nothing was changed."), "{planned}");
    let after: Vec<String> = five.iter().map(|h| host_state(&lab, h)).collect();
    assert_eq!(before, after, "plan changed a host");

    eprintln!("step 1: up on 3 masters + 2 workers");
    up(&inv);
    checks_on_hosts(&lab, &masters, &["worker-1", "worker-2"], "1.36.2");
    checks_through_vip(&kubeconfig, &masters, &["worker-1", "worker-2"]);
    assert!(
        lab.exec_ok("worker-1", "systemctl is-active cri-docker.service docker")
            .lines()
            .all(|l| l == "active")
    );

    eprintln!("step 2: a re-run changes nothing and says so");
    let again = up(&inv);
    assert!(again.contains("nothing changed"), "{again}");
    assert!(
        !again.contains("changed  "),
        "a task reported a change:\n{again}"
    );
    let converged = plan(&inv);
    assert!(
        converged.contains("Nothing would change"),
        "plan on a converged cluster:\n{converged}"
    );

    eprintln!("step 2b: another cluster's state directory is refused before any host changes");
    let ca_files = "sudo sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/ca.key";
    let cas_before: Vec<String> = masters.iter().map(|h| lab.exec_ok(h, ca_files)).collect();
    let stale = tempfile::tempdir().unwrap();
    let stale_inv = stale.path().join("hosts.yaml");
    std::fs::copy(&inv, &stale_inv).unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(tmp.path().join(".installer"))
        .arg(stale.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let pki = stale.path().join(".installer/lab/pki");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=kubernetes", "-keyout"])
        .arg(pki.join("ca.key"))
        .arg("-out")
        .arg(pki.join("ca.crt"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", all_output(&made));
    let refused = installer(&["up", "-i", stale_inv.to_str().unwrap()]);
    let text = all_output(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("member of another cluster"), "{text}");
    assert!(text.contains("master-1 ("), "{text}");
    let cas_after: Vec<String> = masters.iter().map(|h| lab.exec_ok(h, ca_files)).collect();
    assert_eq!(
        cas_before, cas_after,
        "a stale state directory replaced a master's CA"
    );

    eprintln!("step 3: a sixth host is joined by a re-run; nothing else is touched");
    let six = write_inventory(
        &lab,
        tmp.path(),
        "docker",
        &[
            "master-1", "master-2", "master-3", "worker-1", "worker-2", "worker-3",
        ],
    );
    let grown = up(&six);
    for line in grown.lines().filter(|l| l.contains("changed  ")) {
        assert!(
            line.trim_start().starts_with("worker-3:"),
            "only worker-3 may change: {line}"
        );
    }
    checks_through_vip(&kubeconfig, &masters, &["worker-1", "worker-2", "worker-3"]);

    eprintln!("step 4: reset, then up again on the same hosts");
    let out = installer(&["reset", "--yes", "-i", six.to_str().unwrap()]);
    assert!(out.status.success(), "{}", all_output(&out));
    for h in five {
        let (status, _, _) = lab.exec(h, "test -e /etc/kubernetes/kubelet.conf");
        assert_ne!(status, 0, "{h}: kubelet.conf survived reset");
    }
    // Right after a reset the first master may still hold a REACHABLE neighbour entry for
    // the VIP from its old holder: that is no answer, and nobody holds the address now.
    let vip = lab.vip().to_string();
    lab.exec_ok(
        "master-1",
        &format!(
            "dev=$(ip -o route get {vip} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'); \
             sudo ip neigh replace {vip} lladdr 02:00:00:00:00:01 dev \"$dev\" nud reachable"
        ),
    );
    up(&six);
    checks_through_vip(&kubeconfig, &masters, &["worker-1", "worker-2", "worker-3"]);
}

/// etcd members on `master` through the gateway, as (first peer URL, isLearner).
/// Runs `up --output json` and SIGKILLs it the moment phase `at` starts (the boundary after
/// the phase before it). False when the run ended before reaching `at`.
fn kill_at_phase_start(inv: &Path, at: &str) -> bool {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_installer"))
        .args(["up", "--output", "json", "-i", inv.to_str().unwrap()])
        .env_remove("SSH_AUTH_SOCK")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reached = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["event"] == "phase_started" && event["phase"] == at {
            child.kill().unwrap();
            reached = true;
            break;
        }
    }
    let _ = child.wait();
    reached
}

/// Kills `up` at the start of each phase in `phases`, one run per boundary: every run redoes
/// (or skips) what the killed ones left and gets one phase further.
fn kill_at_each_boundary(inv: &Path, phases: &[&str]) {
    for phase in phases {
        let started = Instant::now();
        assert!(
            kill_at_phase_start(inv, phase),
            "up never reached \"{phase}\""
        );
        eprintln!(
            "figure: up killed (SIGKILL) as \"{phase}\" started, after {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
}

fn etcd_members(lab: &Lab, master: &str) -> Vec<(String, bool)> {
    let out = lab.exec_ok(
        master,
        "sudo curl -sS --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt \
         --key /etc/kubernetes/pki/etcd/healthcheck-client.key -X POST -d '{}' https://127.0.0.1:2379/v3/cluster/member/list",
    );
    let doc: serde_json::Value = serde_json::from_str(&out).expect("member list JSON");
    doc["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["peerURLs"][0].as_str().unwrap_or("").to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn killed_during_control_plane_joins_then_rerun_converges_on_containerd_on_debian_12_and_13() {
    let _serial = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Debian 13 on master-2 (and the other even-numbered hosts), Debian 12 on the rest.
    let options = lab::Options {
        os: Some("mixed".into()),
        ..Default::default()
    };
    let Some(lab) = Lab::up_or_skip_with("up-containerd", 3, 1, &options) else {
        return;
    };
    assert_eq!(lab.host_codename("master-2"), "trixie");
    let tmp = tempfile::tempdir().unwrap();
    let masters = ["master-1", "master-2", "master-3"];
    let inv = write_inventory(
        &lab,
        tmp.path(),
        "containerd",
        &["master-1", "master-2", "master-3", "worker-1"],
    );
    let kubeconfig = tmp.path().join(".installer/lab/kubeconfig");

    eprintln!("step 0: the installer SIGKILLed at every phase boundary up to the master joins");
    kill_at_each_boundary(
        &inv,
        &[
            "Gather facts",
            "Preflight checks",
            "Prepare hosts",
            "Cluster PKI",
            "Load balancer and VIP",
            "Init the first master",
            "Join the other masters",
        ],
    );

    eprintln!("step 1: kill the installer while the second master joins");
    let mut child = Command::new(env!("CARGO_BIN_EXE_installer"))
        .args(["up", "-v", "-i", inv.to_str().unwrap()])
        .env_remove("SSH_AUTH_SOCK")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "master-2 to start joining",
        Duration::from_secs(900),
        || {
            lab.exec("master-2", "test -e /etc/kubernetes/installer/join.yaml")
                .0
                == 0
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    let _ = child.wait();

    eprintln!("step 2: master-3's kubeadm dies after its etcd learner started, before promotion");
    lab.exec_ok(
        "master-3",
        "sudo mkdir -p /run/kubernetes-sim && echo before-promote | sudo tee /run/kubernetes-sim/kubeadm-crash-at",
    );
    let out = installer(&["up", "-i", inv.to_str().unwrap()]);
    let text = all_output(&out);
    assert!(!out.status.success(), "the join must fail:\n{text}");
    assert!(
        text.contains("master-3"),
        "the failure names master-3:\n{text}"
    );
    // A learner that may not have started yet is known by its peer URL, not its name.
    let learners: Vec<String> = etcd_members(&lab, "master-1")
        .into_iter()
        .filter(|(_, learner)| *learner)
        .map(|(peer, _)| peer)
        .collect();
    let master_3 = lab.host("master-3").address.clone();
    assert_eq!(
        learners,
        vec![format!("https://{master_3}:2380")],
        "master-3's learner is left behind"
    );
    let status = installer(&["status", "-i", inv.to_str().unwrap()]);
    assert!(status.status.success(), "{}", all_output(&status));

    eprintln!(
        "step 3: re-runs killed at each later phase boundary, then one converges: the learner is promoted, no member is duplicated"
    );
    kill_at_each_boundary(
        &inv,
        &[
            "Join the workers",
            "Labels and taints",
            "Addons",
            "Verify the cluster",
            "Smoke test",
            "Kubeconfig",
        ],
    );
    up(&inv);
    let members = etcd_members(&lab, "master-1");
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|(_, learner)| !learner), "{members:?}");
    checks_on_hosts(&lab, &masters, &["worker-1"], "1.36.2");
    checks_through_vip(&kubeconfig, &masters, &["worker-1"]);
    for h in ["master-1", "master-2", "worker-1"] {
        assert_eq!(
            lab.exec_ok(h, "systemctl is-active containerd").trim(),
            "active",
            "{h}"
        );
        let version = lab.exec_ok(h, "containerd --version");
        assert!(
            version.contains(" v2."),
            "{h}: containerd 2.x expected: {version}"
        );
    }
    let plan = plan(&inv);
    assert!(plan.contains("Nothing would change"), "{plan}");
}
