//! The Addons phase end to end on the lab: Weave Net, Rook-Ceph and Headlamp fetched from the
//! lab's manifests mirror (checked against their pinned sha256), applied server-side and
//! waited for. The simulated kubelet runs the pods as the real one would: Weave's init
//! container writes the CNI configuration through its hostPath mount, which is what turns the
//! nodes Ready; other pods wait for the network and get addresses from their node's podCIDR.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/lab.rs"]
mod lab;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster::{installer, kubectl};
use lab::Lab;
use serde_json::Value;

const POD_SUBNET: &str = "10.244.0.0/16";
const HEADLAMP_SHA256: &str = "9a893b6ce1f14660f76c5d79848e64979944125406e762f76278143cd2b863a2";

/// The lab's inventory with all three addons on (Headlamp with its admin account), a fixed
/// cluster name, and `edit` applied to each host line.
fn write_inventory(lab: &Lab, path: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).expect("lab inventory");
    let mut out = String::new();
    let mut named = false;
    for line in text.lines() {
        let mut line = line.to_string();
        if !named && line.starts_with("  name: ") {
            line = "  name: addons".into();
            named = true;
        }
        if line.trim_start().starts_with("- {name:") {
            line = edit(&line);
        }
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        out.contains(&format!("pods: {POD_SUBNET}")),
        "the lab's pod subnet changed: {out}"
    );
    assert!(out.contains("runtime: docker"), "{out}");
    out.push_str(
        "addons:\n  weave: {enabled: true}\n  rook: {enabled: true}\n  dashboard: {enabled: true, kind: headlamp, admin: true}\n",
    );
    std::fs::write(path, out).unwrap();
    path.to_path_buf()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(kubeconfig: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(kubeconfig, &a)).expect("kubectl JSON")
}

fn condition(o: &Value, kind: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Is `ip` inside `cidr` (IPv4)?
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let (ip, net): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        (ip.parse().unwrap(), net.parse().unwrap());
    let len: u32 = len.parse().unwrap();
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// A read-only HTTP server for DIR on the lab bridge (the hosts reach the machine there), as
/// a user's own manifests mirror would be. Returns its base URL.
fn serve(bind: &str, dir: PathBuf) -> String {
    let listener = TcpListener::bind((bind, 0)).expect("bind the test mirror on the lab bridge");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = dir.join(path.trim_start_matches('/'));
            let mut stream = reader.into_inner();
            let reply = match (path.contains(".."), std::fs::read(&file)) {
                (false, Ok(body)) => {
                    let mut r = format!(
                        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend(body);
                    r
                }
                _ => b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&reply);
        }
    });
    url
}

#[test]
fn addons_come_up_on_the_lab_and_tampered_manifests_are_refused() {
    let Some(lab) = Lab::up_or_skip("addons", 1, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(&lab, &tmp.path().join("hosts.yaml"), str::to_string);
    let kubeconfig = tmp.path().join(".installer/addons/kubeconfig");
    let hosts = ["master-1", "worker-1", "worker-2"];

    eprintln!("step 1: preflight refuses storage disks that are missing or in use, wiping nothing");
    lab.add_disk("worker-1", "/dev/vdb", 64, "empty");
    let used = lab.add_disk("worker-1", "/dev/vdc", 64, "ext4");
    let bad = write_inventory(&lab, &tmp.path().join("bad-storage.yaml"), |l| {
        if l.contains("name: worker-1,") {
            l.replacen('}', ", storage: [/dev/nonexistent, /dev/vdb, /dev/vdc]}", 1)
        } else {
            l.to_string()
        }
    });
    let out = installer(&["check", "-i", bad.to_str().unwrap()]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let row = report
        .lines()
        .find(|l| l.trim_start().starts_with("worker-1"))
        .unwrap_or_else(|| panic!("no row for worker-1:\n{report}"));
    assert!(
        row.contains("FAIL") && row.contains("/dev/nonexistent does not exist"),
        "{report}"
    );
    assert!(
        report.contains("/dev/vdc is not empty (ext4 signature)"),
        "a disk with a filesystem must be refused:\n{report}"
    );
    assert!(
        !report.contains("/dev/vdb"),
        "the empty disk is fine for Rook:\n{report}"
    );
    let still = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", &used])
        .output()
        .expect("blkid");
    assert_eq!(
        String::from_utf8_lossy(&still.stdout).trim(),
        "ext4",
        "the refused disk must be left as it was"
    );
    for h in ["master-1", "worker-2"] {
        let row = report
            .lines()
            .find(|l| l.trim_start().starts_with(h))
            .unwrap_or_else(|| panic!("no row for {h}:\n{report}"));
        assert!(!row.contains("FAIL"), "{report}");
    }

    eprintln!("step 2: up with Weave Net, Rook-Ceph and Headlamp");
    let out = installer(&["up", "-i", inv.to_str().unwrap()]);
    let log = text(&out);
    assert!(out.status.success(), "installer up failed:\n{log}");
    assert!(
        log.contains("no host lists `storage` disks"),
        "Rook without storage must say so:\n{log}"
    );
    // The smoke test ends a run that changed something: Ready on the workers, not the master.
    let smoke = log
        .lines()
        .find(|l| l.contains("smoke test passed"))
        .unwrap_or_else(|| panic!("up ran no smoke test:\n{log}"));
    assert!(
        smoke.contains("2 pod(s) Ready on worker-1, worker-2 and none on a master"),
        "{smoke}"
    );

    eprintln!("step 3: every node Ready, weave-net Ready on every node, the master included");
    let nodes = json(&kubeconfig, &["get", "nodes"]);
    let nodes = nodes["items"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        assert!(
            condition(n, "Ready"),
            "{} not Ready: {}",
            n["metadata"]["name"],
            n["status"]
        );
    }
    let weave = json(
        &kubeconfig,
        &["-n", "kube-system", "get", "pods", "-l", "name=weave-net"],
    );
    let mut on: BTreeSet<String> = BTreeSet::new();
    for p in weave["items"].as_array().unwrap() {
        assert!(condition(p, "Ready"), "weave pod not Ready: {p}");
        on.insert(p["spec"]["nodeName"].as_str().unwrap().to_string());
    }
    assert_eq!(on, hosts.iter().map(|h| h.to_string()).collect());
    for h in hosts {
        let conf = lab.exec_ok(h, "cat /etc/cni/net.d/10-weave.conflist");
        let conf: Value = serde_json::from_str(&conf).expect("conflist JSON");
        assert_eq!(conf["plugins"][0]["type"], "weave-net", "{h}");
    }
    let ds = json(
        &kubeconfig,
        &["-n", "kube-system", "get", "ds", "weave-net"],
    );
    let s = &ds["status"];
    assert_eq!(s["desiredNumberScheduled"], 3, "{s}");
    assert_eq!(s["numberReady"], 3, "{s}");
    assert_eq!(s["updatedNumberScheduled"], 3, "{s}");
    assert_eq!(s["observedGeneration"], ds["metadata"]["generation"], "{s}");
    let weave_container = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "weave")
        .unwrap()
        .clone();
    let range = weave_container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "IPALLOC_RANGE")
        .unwrap_or_else(|| panic!("no IPALLOC_RANGE: {weave_container}"));
    assert_eq!(range["value"], POD_SUBNET);
    assert_eq!(weave_container["image"], "rajchaudhuri/weave-kube:2.9.0");

    eprintln!("step 4: Rook's CRDs established, the operator available, no CephCluster");
    let crds = json(&kubeconfig, &["get", "crd"]);
    let ceph: Vec<&Value> = crds["items"]
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
    assert_eq!(ceph.len(), 19, "crds.yaml has 19 ceph.rook.io CRDs");
    for c in &ceph {
        assert!(condition(c, "Established"), "{}", c["metadata"]["name"]);
        assert!(condition(c, "NamesAccepted"), "{}", c["metadata"]["name"]);
    }
    let op = json(
        &kubeconfig,
        &["-n", "rook-ceph", "get", "deployment", "rook-ceph-operator"],
    );
    assert!(condition(&op, "Available"), "{}", op["status"]);
    let clusters = json(&kubeconfig, &["get", "cephclusters", "-A"]);
    assert_eq!(clusters["items"].as_array().map(Vec::len), Some(0));

    eprintln!("step 5: Headlamp pinned, running on a worker with a pod-network address");
    let hl = json(
        &kubeconfig,
        &["-n", "kube-system", "get", "deployment", "headlamp"],
    );
    assert!(condition(&hl, "Available"), "{}", hl["status"]);
    assert_eq!(
        hl["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/headlamp-k8s/headlamp:v0.45.0"
    );
    let pods = json(
        &kubeconfig,
        &["-n", "kube-system", "get", "pods", "-l", "k8s-app=headlamp"],
    );
    let pod = &pods["items"][0];
    let node = pod["spec"]["nodeName"].as_str().unwrap();
    assert!(node.starts_with("worker-"), "headlamp runs on {node}");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "ghcr.io/headlamp-k8s/headlamp:v0.45.0"
    );
    let cidr = nodes
        .iter()
        .find(|n| n["metadata"]["name"] == node)
        .and_then(|n| n["spec"]["podCIDR"].as_str())
        .unwrap()
        .to_string();
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(in_cidr(ip, &cidr), "{ip} not in {node}'s {cidr}");
    assert!(in_cidr(ip, POD_SUBNET));

    eprintln!("step 6: installer dashboard prints a working token and the port-forward");
    let out = installer(&["dashboard", "-i", inv.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(shown.contains("port-forward service/headlamp"), "{shown}");
    let token = shown
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("eyJ") && l.split('.').count() == 3)
        .unwrap_or_else(|| panic!("no token in:\n{shown}"));
    // Only the token: an empty kubeconfig, the API through the VIP.
    let server = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .expect("server in the kubeconfig");
    let empty = tmp.path().join("empty.conf");
    std::fs::write(&empty, "").unwrap();
    let who = kubectl(
        &empty,
        &[
            "--server",
            &server,
            "--insecure-skip-tls-verify",
            "--token",
            token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        who,
        "system:serviceaccount:kube-system:installer-dashboard-admin"
    );

    eprintln!("step 7: a re-run of up changes nothing");
    let out = installer(&["up", "-i", inv.to_str().unwrap()]);
    let again = text(&out);
    assert!(out.status.success(), "{again}");
    assert!(again.contains("nothing changed"), "{again}");
    assert!(
        !again.contains("changed  "),
        "a task changed something:\n{again}"
    );

    eprintln!("step 7b: plan on the converged cluster says nothing would change");
    let out = installer(&["plan", "-i", inv.to_str().unwrap()]);
    let planned = text(&out);
    assert!(out.status.success(), "{planned}");
    assert!(
        planned.contains("Nothing would change"),
        "plan on a converged cluster with addons:\n{planned}"
    );
    // Decided per manifest, from what the leader holds and the cluster has.
    assert!(
        planned.contains("\nAddons\n") && planned.contains("weave.json (applied, unchanged)"),
        "the plan lacks the Addons phase:\n{planned}"
    );

    eprintln!("step 8: a tampered manifest is refused, with both hashes shown");
    let mirror_dir = tmp.path().join("mirror");
    let file = "headlamp/v0.45.0/kubernetes-headlamp.yaml";
    let upstream = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/upstream/headlamp/v0.45.0/kubernetes-headlamp.yaml"
    );
    let tampered = std::fs::read_to_string(upstream)
        .unwrap()
        .replace("replicas: 1", "replicas: 3");
    std::fs::create_dir_all(mirror_dir.join("headlamp/v0.45.0")).unwrap();
    std::fs::write(mirror_dir.join(file), &tampered).unwrap();
    let tampered_sha = sha256_hex(tampered.as_bytes());
    let bridge = lab
        .mirror_url()
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let url = serve(&bridge, mirror_dir);
    let evil = write_inventory(&lab, &tmp.path().join("evil.yaml"), str::to_string);
    let inv_text = std::fs::read_to_string(&evil).unwrap();
    let inv_text = inv_text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("manifestsMirror:") {
                format!("  manifestsMirror: {url}/")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&evil, inv_text + "\n").unwrap();
    // The cached copy is verified too: tampering with it makes the installer fetch again.
    let cached = format!("/var/cache/installer/addons/{HEADLAMP_SHA256}");
    lab.exec_ok(
        "master-1",
        &format!("echo '# tampered' | sudo tee -a {cached} >/dev/null"),
    );
    let out = installer(&["addons", "apply", "-i", evil.to_str().unwrap()]);
    let refused = text(&out);
    assert!(
        !out.status.success(),
        "a tampered manifest was accepted:\n{refused}"
    );
    assert!(
        refused.contains(&tampered_sha) && refused.contains(HEADLAMP_SHA256),
        "both hashes must be shown:\n{refused}"
    );
    let hl = json(
        &kubeconfig,
        &["-n", "kube-system", "get", "deployment", "headlamp"],
    );
    assert_eq!(
        hl["spec"]["replicas"], 1,
        "the tampered manifest was applied"
    );
    // The lab's mirror has the real file: the cache is repaired and everything is ready again.
    let out = installer(&["addons", "apply", "-i", inv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let sum = lab.exec_ok("master-1", &format!("sudo sha256sum {cached}"));
    assert!(sum.starts_with(HEADLAMP_SHA256), "{sum}");

    eprintln!("step 9: without Weave's pods new pods get no network; addons apply brings it back");
    kubectl(
        &kubeconfig,
        &[
            "-n",
            "kube-system",
            "delete",
            "daemonset",
            "weave-net",
            "--wait=false",
        ],
    );
    wait_for("weave-net's pods to go", || {
        let pods = json(
            &kubeconfig,
            &["-n", "kube-system", "get", "pods", "-l", "name=weave-net"],
        );
        pods["items"].as_array().is_some_and(Vec::is_empty)
    });
    kubectl(
        &kubeconfig,
        &[
            "run",
            "probe",
            "--image=registry.k8s.io/pause:3.10.1",
            "--restart=Never",
        ],
    );
    wait_for("the probe pod's sandbox to fail", || {
        let events = kubectl(
            &kubeconfig,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=probe",
            ],
        );
        events.contains("FailedCreatePodSandBox") && events.contains("127.0.0.1:6784")
    });
    let probe = json(&kubeconfig, &["get", "pod", "probe"]);
    assert_eq!(probe["status"]["phase"], "Pending", "{}", probe["status"]);
    assert!(probe["status"]["podIP"].is_null(), "{}", probe["status"]);
    // As on a real node, the CNI configuration stays when Weave's pods go: still Ready.
    let nodes = json(&kubeconfig, &["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        assert!(condition(n, "Ready"), "{}", n["metadata"]["name"]);
    }
    let out = installer(&["addons", "apply", "-i", inv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the probe pod to run with an address", || {
        let probe = json(&kubeconfig, &["get", "pod", "probe"]);
        probe["status"]["phase"] == "Running"
            && probe["status"]["podIP"]
                .as_str()
                .is_some_and(|ip| in_cidr(ip, POD_SUBNET))
    });
    kubectl(&kubeconfig, &["delete", "pod", "probe", "--wait=false"]);

    eprintln!("step 10: verify checks the cluster and runs the smoke test, leaving nothing behind");
    let out = installer(&["verify", "-i", inv.to_str().unwrap()]);
    let verified = text(&out);
    assert!(out.status.success(), "{verified}");
    assert!(verified.contains("smoke test passed"), "{verified}");
    let (status, _, _) = lab.exec(
        "master-1",
        "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get namespace installer-smoke-test",
    );
    assert_ne!(status, 0, "the smoke test's namespace is left behind");

    eprintln!("step 11: Rook switched off: kept and reported, removed only with --prune");
    let rook_off = tmp.path().join("rook-off.yaml");
    let without_rook = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("rook: {enabled: true}", "rook: {enabled: false}");
    std::fs::write(&rook_off, without_rook).unwrap();
    let out = installer(&["up", "-i", rook_off.to_str().unwrap()]);
    let kept = text(&out);
    assert!(out.status.success(), "{kept}");
    assert!(
        kept.contains("Rook-Ceph is off in the inventory but installed: left as it is"),
        "{kept}"
    );
    let operator = ["-n", "rook-ceph", "get", "deployment", "rook-ceph-operator"];
    assert!(json(&kubeconfig, &operator)["metadata"]["name"] == "rook-ceph-operator");
    let out = installer(&["plan", "up", "--prune", "-i", rook_off.to_str().unwrap()]);
    let planned = text(&out);
    assert!(out.status.success(), "{planned}");
    assert!(
        planned.contains("Rook-Ceph: off in the inventory, installed: remove it"),
        "{planned}"
    );
    let out = installer(&["up", "--prune", "-i", rook_off.to_str().unwrap()]);
    let pruned = text(&out);
    assert!(out.status.success(), "{pruned}");
    assert!(pruned.contains("Rook-Ceph removed (--prune)"), "{pruned}");
    let crds = kubectl(&kubeconfig, &["get", "crd", "-o", "name"]);
    assert!(
        !crds.contains("ceph.rook.io"),
        "Rook's CRDs survived --prune:\n{crds}"
    );
    let (status, _, _) = lab.exec(
        "master-1",
        "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get namespace rook-ceph",
    );
    assert_ne!(status, 0, "the rook-ceph namespace survived --prune");
    let nodes = json(&kubeconfig, &["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        assert!(condition(n, "Ready"), "{}", n["metadata"]["name"]);
    }
    let out = installer(&["up", "-i", rook_off.to_str().unwrap()]);
    let after = text(&out);
    assert!(
        out.status.success() && !after.contains("Rook-Ceph is off"),
        "{after}"
    );

    eprintln!("step 12: reset leaves no CNI configuration and no Ready node behind");
    let out = installer(&["reset", "--yes", "-i", inv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for h in hosts {
        let (status, _, _) = lab.exec(h, "test -e /etc/cni/net.d/10-weave.conflist");
        assert_ne!(status, 0, "{h}: Weave's CNI configuration survived reset");
        let (status, _, _) = lab.exec(h, "systemctl is-active --quiet kubelet");
        assert_ne!(status, 0, "{h}: the kubelet still runs after reset");
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}
