//! Test harness: a real etcd (TLS) and the simulated control plane on free 127.0.0.1 ports in
//! a temp dir, PKI made with rcgen, driven by the real kubectl 1.33.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use serde_json::{Value, json};

pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

struct Ca {
    cert_pem: String,
    key: KeyPair,
}

fn ca(dir: &Path, name: &str, cn: &str) -> Ca {
    let key = KeyPair::generate().expect("keygen");
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.self_signed(&key).expect("self-sign");
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write");
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
    Ca {
        cert_pem: cert.pem(),
        key,
    }
}

fn leaf(dir: &Path, name: &str, ca: &Ca, cn: &str, orgs: &[&str], server: bool, client: bool) {
    let key = KeyPair::generate().expect("keygen");
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        p.distinguished_name.push(DnType::OrganizationName, *o);
    }
    if server {
        p.subject_alt_names = vec![
            SanType::IpAddress("127.0.0.1".parse().expect("ip")),
            SanType::DnsName("localhost".try_into().expect("dns")),
        ];
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if client {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca.key).expect("issuer");
    let cert = p.signed_by(&key, &issuer).expect("sign");
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write");
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
}

/// Write the PKI a kubeadm control plane has (ECDSA leaves, RSA service-account key).
fn write_pki(dir: &Path) {
    let k8s = ca(dir, "ca", "kubernetes");
    let etcd = ca(dir, "etcd-ca", "etcd-ca");
    leaf(dir, "etcd-server", &etcd, "localhost", &[], true, true);
    leaf(
        dir,
        "apiserver-etcd-client",
        &etcd,
        "kube-apiserver-etcd-client",
        &[],
        false,
        true,
    );
    leaf(dir, "apiserver", &k8s, "kube-apiserver", &[], true, false);
    leaf(
        dir,
        "admin",
        &k8s,
        "kubernetes-admin",
        &["system:masters"],
        false,
        true,
    );
    leaf(
        dir,
        "plain-user",
        &k8s,
        "jane",
        &["developers"],
        false,
        true,
    );
    let sa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa keygen");
    std::fs::write(dir.join("sa.key"), sa.serialize_pem()).expect("write");
    std::fs::write(dir.join("sa.pub"), sa.public_key_pem()).expect("write");
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    etcd_port: u16,
    peer_port: u16,
    /// Health ports of the controller-manager and scheduler (after start_controllers).
    pub cm_port: u16,
    pub sched_port: u16,
    procs: Vec<(String, Child)>,
}

fn bin(name: &str) -> &'static str {
    match name {
        "kube-apiserver" => env!("CARGO_BIN_EXE_kube-apiserver"),
        "kube-controller-manager" => env!("CARGO_BIN_EXE_kube-controller-manager"),
        _ => env!("CARGO_BIN_EXE_kube-scheduler"),
    }
}

impl Cluster {
    pub fn p(&self, f: &str) -> String {
        self.dir.path().join(f).to_string_lossy().into_owned()
    }

    /// etcd + kube-apiserver (flags as kubeadm writes them), admin kubeconfig ready.
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        write_pki(dir.path());
        let mut c = Cluster {
            dir,
            port: free_port(),
            etcd_port: free_port(),
            peer_port: free_port(),
            cm_port: 0,
            sched_port: 0,
            procs: vec![],
        };
        c.start_etcd();
        c.start_apiserver("apiserver", c.port);
        c.write_kubeconfig("admin.conf", c.port, json!({"client-certificate-data": B64.encode(c.read("admin.crt")), "client-key-data": B64.encode(c.read("admin.key"))}));
        c.wait_ready(c.port);
        c
    }

    pub fn read(&self, f: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(f)).expect("read")
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file")
    }

    pub fn start_etcd(&mut self) {
        let data = self.p("etcd-data");
        let child = Command::new("etcd")
            .args([
                "--name",
                "lab",
                "--data-dir",
                &data,
                "--listen-client-urls",
                &format!("https://127.0.0.1:{}", self.etcd_port),
                "--advertise-client-urls",
                &format!("https://127.0.0.1:{}", self.etcd_port),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer_port),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer_port),
                "--initial-cluster",
                &format!("lab=http://127.0.0.1:{}", self.peer_port),
                "--cert-file",
                &self.p("etcd-server.crt"),
                "--key-file",
                &self.p("etcd-server.key"),
                "--trusted-ca-file",
                &self.p("etcd-ca.crt"),
                "--client-cert-auth",
            ])
            .stdout(Stdio::null())
            .stderr(self.log("etcd"))
            .spawn()
            .expect("etcd must be installed (apt-get install etcd-server)");
        self.procs.push(("etcd".into(), child));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.etcd_port)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self, name: &str) {
        if let Some(i) = self.procs.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.procs.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn apiserver_args(&self, port: u16) -> Vec<String> {
        vec![
            "--advertise-address=127.0.0.1".into(),
            "--allow-privileged=true".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--client-ca-file={}", self.p("ca.crt")),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--enable-bootstrap-token-auth=true".into(),
            format!("--etcd-cafile={}", self.p("etcd-ca.crt")),
            format!("--etcd-certfile={}", self.p("apiserver-etcd-client.crt")),
            format!("--etcd-keyfile={}", self.p("apiserver-etcd-client.key")),
            format!("--etcd-servers=https://127.0.0.1:{}", self.etcd_port),
            format!("--kubelet-client-certificate={}", self.p("admin.crt")),
            format!("--kubelet-client-key={}", self.p("admin.key")),
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
            format!("--proxy-client-cert-file={}", self.p("admin.crt")),
            format!("--proxy-client-key-file={}", self.p("admin.key")),
            "--requestheader-allowed-names=front-proxy-client".into(),
            format!("--requestheader-client-ca-file={}", self.p("ca.crt")),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", self.p("sa.pub")),
            format!("--service-account-signing-key-file={}", self.p("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            format!("--tls-cert-file={}", self.p("apiserver.crt")),
            format!("--tls-private-key-file={}", self.p("apiserver.key")),
        ]
    }

    /// Start one more API server replica (same etcd) on `port`.
    pub fn start_apiserver(&mut self, name: &str, port: u16) {
        let child = Command::new(bin("kube-apiserver"))
            .args(self.apiserver_args(port))
            .env("SIM_KUBE_VERSION", "v1.36.2")
            .stdout(Stdio::null())
            .stderr(self.log(name))
            .spawn()
            .expect("start kube-apiserver");
        self.procs.push((name.into(), child));
    }

    pub fn write_kubeconfig(&self, file: &str, port: u16, user: Value) -> String {
        let kc = json!({"apiVersion": "v1", "kind": "Config", "current-context": "lab",
            "clusters": [{"name": "lab", "cluster": {"server": format!("https://127.0.0.1:{port}"), "certificate-authority-data": B64.encode(self.read("ca.crt"))}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "u"}}],
            "users": [{"name": "u", "user": user}]});
        let path = self.p(file);
        std::fs::write(&path, kc.to_string()).expect("write kubeconfig");
        path
    }

    pub fn wait_ready(&self, port: u16) {
        let kc = self.write_kubeconfig(&format!("ready-{port}.conf"), port, json!({"client-certificate-data": B64.encode(self.read("admin.crt")), "client-key-data": B64.encode(self.read("admin.key"))}));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.kubectl_with(&kc, &["get", "--raw", "/readyz"], None);
            if o.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "apiserver on {port} not ready: {}\n{}",
                String::from_utf8_lossy(&o.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// kube-controller-manager and kube-scheduler with kubeadm's flags.
    pub fn start_controllers(&mut self, extra_cm: &[&str]) {
        let kc = self.p("admin.conf");
        let mut cm_args = vec![
            "--allocate-node-cidrs=true".to_owned(),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--bind-address=127.0.0.1".into(),
            format!("--client-ca-file={}", self.p("ca.crt")),
            "--cluster-cidr=10.244.0.0/16".into(),
            "--cluster-name=kubernetes".into(),
            format!("--cluster-signing-cert-file={}", self.p("ca.crt")),
            format!("--cluster-signing-key-file={}", self.p("ca.key")),
            "--controllers=*,bootstrapsigner,tokencleaner".into(),
            format!("--kubeconfig={kc}"),
            "--leader-elect=true".into(),
            format!("--requestheader-client-ca-file={}", self.p("ca.crt")),
            format!("--root-ca-file={}", self.p("ca.crt")),
            format!("--service-account-private-key-file={}", self.p("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            "--use-service-account-credentials=true".into(),
        ];
        self.cm_port = free_port();
        self.sched_port = free_port();
        cm_args.push(format!("--secure-port={}", self.cm_port));
        cm_args.extend(extra_cm.iter().map(|s| s.to_string()));
        let cm = Command::new(bin("kube-controller-manager"))
            .args(&cm_args)
            .stdout(Stdio::null())
            .stderr(self.log("controller-manager"))
            .spawn()
            .expect("start cm");
        self.procs.push(("controller-manager".into(), cm));
        let sched = Command::new(bin("kube-scheduler"))
            .args([
                format!("--authentication-kubeconfig={kc}"),
                format!("--authorization-kubeconfig={kc}"),
                "--bind-address=127.0.0.1".into(),
                format!("--kubeconfig={kc}"),
                "--leader-elect=true".into(),
                format!("--secure-port={}", self.sched_port),
            ])
            .stdout(Stdio::null())
            .stderr(self.log("scheduler"))
            .spawn()
            .expect("start scheduler");
        self.procs.push(("scheduler".into(), sched));
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in ["apiserver", "controller-manager", "scheduler"] {
            if let Ok(s) = std::fs::read_to_string(self.dir.path().join(format!("{n}.log"))) {
                let tail: Vec<&str> = s.lines().rev().take(15).collect();
                out.push_str(&format!(
                    "--- {n}.log (tail)\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        out
    }

    pub fn kubectl_with(&self, kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("kubectl 1.33 must be installed");
        if let Some(s) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&self.p("admin.conf"), args, None)
    }

    /// Run kubectl as admin; panic with its stderr (and the component logs) on failure.
    pub fn k(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn k_stdin(&self, args: &[&str], stdin: &str) -> String {
        let o = self.kubectl_with(&self.p("admin.conf"), args, Some(stdin));
        assert!(
            o.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run kubectl expecting failure; returns stderr.
    pub fn k_err(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            !o.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.k(&a)).expect("kubectl -o json output")
    }

    /// `kubectl get ... -o json`, or None when kubectl fails (e.g. not found yet).
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let o = self.kubectl(&a);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// Poll until `f` holds (or panic after `secs`).
    pub fn eventually(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A Ready node, as a kubelet would register it.
    pub fn add_node(&self, name: &str, labels: Value, taints: Value) {
        let mut l = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"});
        for (k, v) in labels.as_object().cloned().unwrap_or_default() {
            l[k] = v;
        }
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": l}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": sim_apiserver::obj::now()}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "v1.36.2", "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "docker://20.10.24"}}});
        self.k_stdin(&["create", "-f", "-"], &node.to_string());
    }

    /// What the kubelet does for pods bound to its nodes: mark them Running and Ready.
    pub fn run_bound_pods(&self) {
        let pods = self.json(&["get", "pods", "-A"]);
        for p in pods["items"].as_array().into_iter().flatten() {
            let bound = p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            if !bound || p["status"]["phase"] == "Running" {
                continue;
            }
            let statuses: Vec<Value> = p["spec"]["containers"].as_array().into_iter().flatten()
                .map(|c| json!({"name": c["name"], "ready": true, "restartCount": 0, "image": c["image"], "imageID": "", "started": true, "state": {"running": {"startedAt": sim_apiserver::obj::now()}}}))
                .collect();
            let patch = json!({"status": {"phase": "Running", "podIP": "10.244.1.5", "containerStatuses": statuses,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": sim_apiserver::obj::now()},
                    {"type": "ContainersReady", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}});
            let ns = p["metadata"]["namespace"].as_str().unwrap_or("");
            let name = p["metadata"]["name"].as_str().unwrap_or("");
            // The pod may be gone by now (drain, GC); that is fine.
            let _ = self.kubectl(&[
                "patch",
                "pod",
                name,
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch.to_string(),
            ]);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in self.procs.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
