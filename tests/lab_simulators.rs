//! The simulators' flow test on lab hosts (issue 4): with CA files made by openssl,
//! `kubeadm init` on one master, two control-plane joins and two worker joins; the real
//! kubectl lists five nodes, Ready once a CNI config is dropped; `etcdctl member list` shows
//! three members; killing one master keeps the API answering through the others.
//!
//! Runs on the lab (root only; skipped otherwise). `LAB_KEEP=1` keeps the lab for inspection.

#[path = "support/lab.rs"]
mod lab;

use base64::Engine;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LAB: &str = "simflow";
const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const TOKEN: &str = "abcdef.0123456789abcdef";
const CRI: &str = "unix:///var/run/cri-dockerd.sock";
const KEYRING: &str = "/usr/share/keyrings/installer-lab-archive-keyring.gpg";
/// A cri-dockerd release the lab's mirror serves as a GitHub release asset (mirror/versions).
const CRI_DOCKERD: &str = "0.3.21";

/// The lab mirror's base URL, from the inventory the lab writes.
fn mirror_base(lab: &lab::Lab) -> String {
    let inv = std::fs::read_to_string(lab.inventory_path()).expect("lab inventory");
    let line = inv
        .lines()
        .find(|l| l.trim_start().starts_with("kubernetesRepo:"))
        .expect("kubernetesRepo in the lab inventory");
    let url = line.split_once(':').map(|x| x.1.trim()).unwrap_or_default();
    url.split("/kubernetes/")
        .next()
        .expect("mirror URL")
        .to_string()
}

/// Runs `cmd` on `host`, failing the test with its output when it fails.
fn run(lab: &lab::Lab, host: &str, cmd: &str) -> String {
    let start = std::time::Instant::now();
    let (status, out, err) = lab.exec(host, cmd);
    if start.elapsed() > Duration::from_secs(20) {
        eprintln!(
            "{host}: `{}` took {:?}:\n{out}{err}",
            cmd.lines().next().unwrap_or_default(),
            start.elapsed()
        );
    }
    assert_eq!(
        status, 0,
        "{host}: `{cmd}` failed ({status}):\n{out}\n{err}"
    );
    out
}

/// Writes `content` to `path` on `host` as root, mode 0600.
fn put(lab: &lab::Lab, host: &str, path: &str, content: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(content);
    run(
        lab,
        host,
        &format!("echo {b64} | base64 -d | sudo install -D -m 0600 /dev/stdin {path}"),
    );
}

fn prepare_host(lab: &lab::Lab, host: &str, mirror: &str, endpoint_ip: &str) {
    let script = format!(
        r#"set -e
printf 'deb [signed-by={KEYRING}] {mirror}/kubernetes/core:/stable:/v1.36/deb/ /\ndeb [signed-by={KEYRING}] {mirror}/docker/linux/debian bookworm stable\n' | sudo tee /etc/apt/sources.list.d/kubernetes.list >/dev/null
sudo apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
curl -fsSLo /tmp/cri-dockerd.deb {mirror}/github/Mirantis/cri-dockerd/releases/download/v{CRI_DOCKERD}/cri-dockerd_{CRI_DOCKERD}.3-0.debian-bookworm_amd64.deb
# kubeadm's preflight needs iptables (an error) and wants ebtables, ethtool, socat (warnings);
# pkgs.k8s.io's kubelet declares none of them.
sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends docker-ce kubeadm kubelet cri-tools iptables ebtables ethtool socat /tmp/cri-dockerd.deb >/dev/null
sudo sysctl -qw net.ipv4.ip_forward=1
sudo swapoff -a
echo '{endpoint_ip} cluster-endpoint' | sudo tee -a /etc/hosts >/dev/null
for i in $(seq 60); do sudo crictl --runtime-endpoint {CRI} version >/dev/null 2>&1 && exit 0; sudo systemctl restart cri-docker.service || true; sleep 1; done
sudo crictl --runtime-endpoint {CRI} version"#
    );
    run(lab, host, &script);
}

/// CA files as an operator would make them with openssl.
fn openssl_cas(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![];
    for (base, cn) in [
        ("ca", "kubernetes"),
        ("front-proxy-ca", "front-proxy-ca"),
        ("etcd/ca", "etcd-ca"),
    ] {
        let key = dir.join(format!("{}.key", base.replace('/', "-")));
        let crt = dir.join(format!("{}.crt", base.replace('/', "-")));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                &format!("/CN={cn}"),
            ])
            .args([
                "-addext",
                "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .expect("openssl")
            .status
            .success();
        assert!(ok, "openssl req failed for {base}");
        files.push((format!("{base}.crt"), std::fs::read(&crt).expect("crt")));
        files.push((format!("{base}.key"), std::fs::read(&key).expect("key")));
    }
    let sa = dir.join("sa.key");
    assert!(
        Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa)
            .arg("2048")
            .output()
            .expect("openssl")
            .status
            .success()
    );
    let out = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&sa)
        .output()
        .expect("openssl");
    files.push(("sa.key".into(), std::fs::read(&sa).expect("sa.key")));
    files.push(("sa.pub".into(), out.stdout));
    files
}

fn kubectl(kubeconfig: &Path, server: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--server")
        .arg(server)
        .arg("--request-timeout=10s")
        .args(args)
        .output()
        .expect("kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if start.elapsed() > timeout => panic!("timed out waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

const ETCDCTL: &str = "sudo ETCDCTL_API=3 /usr/libexec/kubernetes-sim/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

/// A control-plane join killed right after etcd accepted its learner (the simulator's crash
/// point) leaves an unstarted learner, and etcd refuses every other learner until it is gone;
/// `kubeadm reset` on that node removes it by its peer URL. Both nodes are reset (and get the
/// shared CA files back) for the real joins that follow.
fn leftover_learner_blocks_the_next_join(
    lab: &lab::Lab,
    masters: &[lab::Host],
    cas: &[(String, Vec<u8>)],
    join: &str,
    hash: &str,
) {
    let (m1, m2, m3) = (&masters[0], &masters[1], &masters[2]);
    run(
        lab,
        &m2.name,
        "echo learner-added | sudo install -D -m 0644 /dev/stdin /run/kubernetes-sim/kubeadm-crash-at",
    );
    let (status, out, err) = lab.exec(
        &m2.name,
        &format!(
            "{join} --control-plane --apiserver-advertise-address {} 2>&1",
            m2.address
        ),
    );
    assert_eq!(status, 137, "kubeadm must die like kill -9:\n{out}{err}");
    assert!(out.contains("dies at \"learner-added\""), "{out}");
    let members = run(lab, &m1.name, &format!("{ETCDCTL} member list -w json"));
    assert!(
        members.contains("\"isLearner\":true")
            && members.contains(&format!("https://{}:2380", m2.address)),
        "{members}"
    );

    let cfg = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: {TOKEN}\n    apiServerEndpoint: cluster-endpoint:6443\n    caCertHashes: [{hash}]\nnodeRegistration:\n  criSocket: {CRI}\n  ignorePreflightErrors: [SystemVerification]\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: {}\ntimeouts:\n  etcdAPICall: 10s\n",
        m3.address
    );
    put(lab, &m3.name, "/root/join.yaml", cfg.as_bytes());
    let (status, out, _) = lab.exec(&m3.name, "sudo kubeadm join --config /root/join.yaml 2>&1");
    assert!(
        status != 0 && out.contains("too many learner members in cluster"),
        "{out}"
    );

    for m in [m2, m3] {
        let out = run(lab, &m.name, "sudo kubeadm reset -f 2>&1");
        if m.name == m2.name {
            assert!(out.contains("(a learner) from the cluster"), "{out}");
        }
        for (file, content) in cas {
            put(
                lab,
                &m.name,
                &format!("/etc/kubernetes/pki/{file}"),
                content,
            );
        }
    }
    let members = run(lab, &m1.name, &format!("{ETCDCTL} member list -w json"));
    assert!(!members.contains("isLearner"), "{members}");
}

#[test]
fn five_simulated_nodes_join_and_the_api_survives_a_master_loss() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("SKIP: {KUBECTL} is missing");
        return;
    }
    let Some(lab) = lab::Lab::up_or_skip(LAB, 3, 2) else {
        return;
    };
    let mirror = mirror_base(&lab);
    let masters: Vec<lab::Host> = lab.masters().cloned().collect();
    let workers: Vec<lab::Host> = lab.workers().cloned().collect();
    let m1 = masters[0].clone();

    std::thread::scope(|s| {
        for h in lab.hosts() {
            let (lab, mirror, ip) = (&lab, &mirror, &m1.address);
            s.spawn(move || prepare_host(lab, &h.name, mirror, ip));
        }
    });

    let tmp = tempfile::tempdir().expect("tempdir");
    let cas = openssl_cas(tmp.path());
    for m in &masters {
        for (file, content) in &cas {
            put(
                &lab,
                &m.name,
                &format!("/etc/kubernetes/pki/{file}"),
                content,
            );
        }
    }

    // Lab hosts are cgroup v1 (hybrid): kubeadm 1.35+ and the kubelet must be told to accept it.
    let init = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: {TOKEN}\nlocalAPIEndpoint:\n  advertiseAddress: {}\nnodeRegistration:\n  criSocket: {CRI}\n  ignorePreflightErrors: [SystemVerification]\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.36.2\ncontrolPlaneEndpoint: cluster-endpoint:6443\nnetworking:\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailCgroupV1: false\n",
        m1.address
    );
    put(&lab, &m1.name, "/root/kubeadm.yaml", init.as_bytes());
    let out = run(
        &lab,
        &m1.name,
        "sudo kubeadm init --config /root/kubeadm.yaml 2>&1",
    );
    assert!(
        out.contains("Your Kubernetes control-plane has initialized successfully!"),
        "{out}"
    );
    let hash = out
        .split("--discovery-token-ca-cert-hash ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("join command in the init output")
        .to_string();
    let ca_after = run(&lab, &m1.name, "sudo cat /etc/kubernetes/pki/ca.crt");
    let ca_before =
        String::from_utf8_lossy(&cas.iter().find(|(f, _)| f == "ca.crt").expect("ca").1)
            .into_owned();
    assert_eq!(
        ca_after, ca_before,
        "kubeadm must use the CA made by openssl"
    );

    let join = format!(
        "sudo kubeadm join cluster-endpoint:6443 --token {TOKEN} --discovery-token-ca-cert-hash {hash} --cri-socket {CRI} --ignore-preflight-errors=SystemVerification"
    );
    leftover_learner_blocks_the_next_join(&lab, &masters, &cas, &join, &hash);
    for m in &masters[1..] {
        let out = run(
            &lab,
            &m.name,
            &format!(
                "{join} --control-plane --apiserver-advertise-address {} 2>&1",
                m.address
            ),
        );
        assert!(
            out.contains("a new control plane instance was created"),
            "{out}"
        );
    }
    std::thread::scope(|s| {
        for w in &workers {
            let (lab, join) = (&lab, &join);
            s.spawn(move || {
                let out = run(lab, &w.name, &format!("{join} 2>&1"));
                assert!(out.contains("This node has joined the cluster"), "{out}");
            });
        }
    });

    let admin = tmp.path().join("admin.conf");
    std::fs::write(
        &admin,
        run(&lab, &m1.name, "sudo cat /etc/kubernetes/admin.conf"),
    )
    .expect("admin.conf");
    let server = |h: &lab::Host| format!("https://{}:6443", h.address);
    let names: Vec<String> = lab.hosts().iter().map(|h| h.name.clone()).collect();
    wait_until(
        "five nodes in kubectl get nodes",
        Duration::from_secs(60),
        || {
            let (ok, out) = kubectl(&admin, &server(&m1), &["get", "nodes", "--no-headers"]);
            let lines = out.lines().filter(|l| !l.trim().is_empty()).count();
            if ok && lines == 5 && names.iter().all(|n| out.contains(n.as_str())) {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let (_, out) = kubectl(&admin, &server(&m1), &["get", "nodes"]);
    assert!(
        out.contains("NotReady"),
        "nodes must be NotReady without a CNI config:\n{out}"
    );

    std::thread::scope(|s| {
        for h in lab.hosts() {
            let lab = &lab;
            s.spawn(move || {
                run(lab, &h.name, r#"sudo mkdir -p /etc/cni/net.d && echo '{"cniVersion":"1.0.0","name":"lab","plugins":[{"type":"bridge"}]}' | sudo tee /etc/cni/net.d/10-lab.conflist >/dev/null"#)
            });
        }
    });
    wait_until("all nodes Ready", Duration::from_secs(60), || {
        let (ok, out) = kubectl(&admin, &server(&m1), &["get", "nodes", "--no-headers"]);
        let ready = out
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ok && ready == 5 { Ok(()) } else { Err(out) }
    });

    let (_, ips) = kubectl(
        &admin,
        &server(&m1),
        &[
            "get",
            "nodes",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}"#,
        ],
    );
    for h in lab.hosts() {
        assert!(
            ips.lines()
                .any(|l| l == format!("{}={}", h.name, h.address)),
            "InternalIP of {} must be its lab address:\n{ips}",
            h.name
        );
    }

    let members = run(&lab, &masters[1].name, &format!("{ETCDCTL} member list"));
    assert_eq!(
        members.lines().filter(|l| l.contains(", started,")).count(),
        3,
        "{members}"
    );
    for m in &masters {
        assert!(
            members.contains(&format!("https://{}:2380", m.address)),
            "{members}"
        );
    }
    // The joins added learners and promoted them: none is left a learner (last column).
    assert!(
        members.lines().all(|l| l.trim_end().ends_with("false")),
        "{members}"
    );

    lab.kill(&m1.name).expect("kill master-1");
    for m in &masters[1..] {
        wait_until(
            &format!("the API through {}", m.name),
            Duration::from_secs(60),
            || {
                let (ok, out) = kubectl(&admin, &server(m), &["get", "nodes", "--no-headers"]);
                if ok && out.lines().count() == 5 {
                    Ok(())
                } else {
                    Err(out)
                }
            },
        );
    }
    let (ok, out) = kubectl(
        &admin,
        &server(&masters[1]),
        &["create", "namespace", "after-master-loss"],
    );
    assert!(
        ok,
        "writes must still work with two of three etcd members:\n{out}"
    );
}
