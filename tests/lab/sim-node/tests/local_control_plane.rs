//! One control plane on this machine, under a relocated root (`SIM_ROOT`): the real etcd, the
//! API-server simulator, the kubelet, cri-dockerd and kubeadm simulators, and the real kubectl.
//! It pins the behaviours the installer relies on and the rejections kubeadm makes.
//!
//! Needs root (kubeadm's preflight), `/usr/bin/etcd`, the sim-apiserver binaries built next to
//! this crate's binaries, free ports 6443/2379/2380/10248/10257/10259, and 127.0.0.2 on lo.
//! Otherwise it says why and skips.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const NODE: &str = "sim-m1";

struct Env {
    dir: tempfile::TempDir,
    bin: PathBuf,
    children: Vec<Child>,
}

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubeadm"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for f in ["/usr/bin/etcd", KUBECTL] {
        if !Path::new(f).exists() {
            return Some(format!("{f} is missing"));
        }
    }
    for b in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        if !bin_dir().join(b).exists() {
            return Some(format!("{b} is not built (cargo build -p sim-apiserver)"));
        }
    }
    for port in [6443, 2379, 2380, 10248, 10257, 10259] {
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
            return Some(format!("port {port} is in use"));
        }
    }
    None
}

/// A stand-in for Docker's API socket: answers /_ping and /version like dockerd.
fn fake_docker(path: &Path) {
    let l = UnixListener::bind(path).expect("bind fake docker socket");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let body = if req.contains("/_ping") {
                "OK".to_string()
            } else {
                r#"{"Version":"20.10.24","ApiVersion":"1.41"}"#.to_string()
            };
            let _ = s.write_all(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Self {
            dir,
            bin: bin_dir(),
            children: vec![],
        };
        let r = env.root();
        for d in [
            "proc/sys/net/ipv4",
            "usr/libexec/kubernetes-sim",
            "usr/share/kubernetes-sim",
            "var/run",
            "etc/kubernetes/pki/etcd",
            "sbin",
            // Not a cgroup2 mount: the simulators see a cgroup v1 host, like the lab's.
            "sys/fs/cgroup",
        ] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::fs::write(r.join("proc/sys/net/ipv4/ip_forward"), "1\n").expect("ip_forward");
        std::fs::write(
            r.join("proc/swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n",
        )
        .expect("swaps");
        for b in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            std::os::unix::fs::symlink(
                env.bin.join(b),
                r.join("usr/libexec/kubernetes-sim").join(b),
            )
            .expect("symlink");
        }
        std::os::unix::fs::symlink("/usr/bin/etcd", r.join("usr/libexec/kubernetes-sim/etcd"))
            .expect("symlink etcd");
        env.set_version("kubeadm", "1.36.2");
        env.set_version("kubelet", "1.36.2");
        // systemctl as the kubelet unit + 10-kubeadm.conf drop-in would run it.
        let script = format!(
            r#"#!/bin/bash
R={root}
stop() {{ [ -f $R/kubelet.pid ] && kill $(cat $R/kubelet.pid) 2>/dev/null; rm -f $R/kubelet.pid; sleep 0.3; }}
case "$1 $2" in
  "restart kubelet"|"start kubelet")
    stop
    [ -f $R/var/lib/kubelet/kubeadm-flags.env ] && . $R/var/lib/kubelet/kubeadm-flags.env
    setsid {kubelet} --bootstrap-kubeconfig=$R/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=$R/etc/kubernetes/kubelet.conf --config=$R/var/lib/kubelet/config.yaml $KUBELET_KUBEADM_ARGS >>$R/kubelet.log 2>&1 </dev/null &
    echo $! > $R/kubelet.pid ;;
  "stop kubelet") stop ;;
  "is-enabled kubelet.service") exit 0 ;;
  *) exit 0 ;;
esac
"#,
            root = r.display(),
            kubelet = env!("CARGO_BIN_EXE_kubelet"),
        );
        let sc = r.join("sbin/systemctl");
        std::fs::write(&sc, script).expect("systemctl");
        std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // kubeadm's preflight looks for these on PATH; stand-ins where this machine lacks one.
        for tool in [
            "ip", "iptables", "mount", "nsenter", "ebtables", "ethtool", "socat", "tc", "touch",
        ] {
            let on_path = std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .any(|d| Path::new(d).join(tool).exists());
            if !on_path {
                let stub = r.join("sbin").join(tool);
                std::fs::write(&stub, "#!/bin/sh\nexit 0\n").expect("stub");
                std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        fake_docker(&r.join("var/run/docker.sock"));
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn set_version(&self, pkg: &str, v: &str) {
        std::fs::write(
            self.root()
                .join(format!("usr/share/kubernetes-sim/{pkg}.version")),
            format!("{v}\n"),
        )
        .expect("version");
    }

    fn cmd(&self, exe: &str) -> Command {
        let mut c = Command::new(exe);
        let path = format!(
            "{}:{}",
            self.root().join("sbin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("SIM_ROOT", self.root())
            .env("PATH", path)
            .env_remove("SIM_KUBE_VERSION");
        c
    }

    fn run(&self, exe: &str, args: &[&str]) -> Output {
        let out = self
            .cmd(exe)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        eprintln!(
            "$ {} {}\n{}{}",
            exe,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn kubeadm(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_kubeadm"), args)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let conf = self.root().join("etc/kubernetes/admin.conf");
        let mut all = vec!["--kubeconfig", conf.to_str().expect("utf8")];
        all.extend_from_slice(args);
        self.run(KUBECTL, &all)
    }

    fn spawn(&mut self, exe: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join(
            format!("{}.log", Path::new(exe).file_name().and_then(|f| f.to_str()).unwrap_or("x")),
        ))
        .expect("log");
        let child = self
            .cmd(exe)
            .args(args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn");
        self.children.push(child);
    }

    fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::write(&p, content).expect("write");
        p
    }

    fn openssl_ca(&self, base: &str, cn: &str) {
        let pki = self.root().join("etc/kubernetes/pki");
        let key = pki.join(format!("{base}.key"));
        let crt = pki.join(format!("{base}.crt"));
        let st = Command::new("openssl")
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
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl req failed");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.kubeadm(&["reset", "-f"]);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("SIM_KEEP").is_some() {
            let kept = self.dir.path().to_path_buf();
            eprintln!("keeping {}", kept.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

const INIT: &str = r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
localAPIEndpoint:
  advertiseAddress: 127.0.0.2
nodeRegistration:
  name: sim-m1
  criSocket: unix:///var/run/cri-dockerd.sock
  kubeletExtraArgs:
  - name: node-ip
    value: 127.0.0.2
  # This machine (like the lab) has cgroup v1: kubeadm 1.35+ must be told to accept it.
  ignorePreflightErrors: [SystemVerification]
timeouts:
  controlPlaneComponentHealthCheck: 2m
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.36.2
controlPlaneEndpoint: 127.0.0.2:6443
networking:
  podSubnet: 10.244.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
failCgroupV1: false
"#;

#[test]
fn control_plane_on_this_machine_behaves_like_kubeadm() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let mut env = Env::new();
    let crictl = env!("CARGO_BIN_EXE_crictl");
    let kubelet = env!("CARGO_BIN_EXE_kubelet");

    // crictl answers only while the runtime socket answers.
    let out = env.run(
        crictl,
        &[
            "--runtime-endpoint",
            "unix:///var/run/cri-dockerd.sock",
            "version",
        ],
    );
    assert!(
        !out.status.success(),
        "crictl must fail before cri-dockerd listens"
    );
    env.spawn(env!("CARGO_BIN_EXE_cri-dockerd"), &[]);
    wait_until("cri-dockerd socket", Duration::from_secs(10), || {
        env.root().join("var/run/cri-dockerd.sock").exists()
    });
    let out = env.run(
        crictl,
        &[
            "--runtime-endpoint",
            "unix:///var/run/cri-dockerd.sock",
            "version",
        ],
    );
    assert!(
        out.status.success() && text(&out).contains("RuntimeVersion:  20.10.24"),
        "{}",
        text(&out)
    );

    // Image pulls need an answering runtime; the lab's images are the simulator binaries.
    let out = env.kubeadm(&[
        "config",
        "images",
        "pull",
        "--cri-socket",
        "unix:///var/run/nothing.sock",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("failed to create new CRI image service"),
        "{}",
        text(&out)
    );
    let out = env.kubeadm(&[
        "config",
        "images",
        "pull",
        "--cri-socket",
        "unix:///var/run/cri-dockerd.sock",
    ]);
    assert!(
        out.status.success()
            && text(&out).contains("Pulled registry.k8s.io/kube-apiserver:v1.36.2"),
        "{}",
        text(&out)
    );

    // The kubelet 1.35+ refuses a cgroup v1 host unless failCgroupV1 is false.
    let strict = env.write("kubelet-strict.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nhealthzPort: 10248\ncontainerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\n");
    let out = env.run(kubelet, &[&format!("--config={}", strict.display())]);
    assert!(
        !out.status.success()
            && text(&out).contains("kubelet is configured to not run on a host using cgroup v1"),
        "{}",
        text(&out)
    );

    // The kubelet refuses to start with swap on, or with a CRI socket that does not answer.
    let cfg = env.write("kubelet-config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nhealthzPort: 10248\ncontainerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\nfailCgroupV1: false\n");
    let cfg_arg = format!("--config={}", cfg.display());
    std::fs::write(
        env.root().join("proc/swaps"),
        "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n",
    )
    .expect("swaps");
    let out = env.run(kubelet, &[&cfg_arg]);
    assert!(
        !out.status.success() && text(&out).contains("running with swap on is not supported"),
        "{}",
        text(&out)
    );
    std::fs::write(
        env.root().join("proc/swaps"),
        "Filename\tType\tSize\tUsed\tPriority\n",
    )
    .expect("swaps");
    let out = env.run(
        kubelet,
        &[
            &cfg_arg,
            "--container-runtime-endpoint=unix:///var/run/nothing.sock",
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("validate CRI v1 runtime API"),
        "{}",
        text(&out)
    );
    let out = env.run(kubelet, &[&cfg_arg, "--no-such-flag=1"]);
    assert!(
        !out.status.success() && text(&out).contains("unknown flag: --no-such-flag"),
        "{}",
        text(&out)
    );

    // Shared CA files made by openssl are used, not replaced.
    env.openssl_ca("ca", "kubernetes");
    env.openssl_ca("front-proxy-ca", "front-proxy-ca");
    env.openssl_ca("etcd/ca", "etcd-ca");
    let ca_before =
        std::fs::read_to_string(env.root().join("etc/kubernetes/pki/ca.crt")).expect("ca");

    // Preflight: ip_forward must be 1, the executables must be on PATH, and cgroup v1 is a
    // SystemVerification error unless ignored.
    let init = env.write("init.yaml", INIT);
    let init_arg = init.to_str().expect("utf8");
    let strict_init = env.write(
        "init-strict.yaml",
        &INIT.replace("  ignorePreflightErrors: [SystemVerification]\n", ""),
    );
    std::fs::write(env.root().join("proc/sys/net/ipv4/ip_forward"), "0\n").expect("ip_forward");
    let out = env
        .cmd(env!("CARGO_BIN_EXE_kubeadm"))
        .env("PATH", env.root().join("nothing"))
        .args(["init", "--config", strict_init.to_str().expect("utf8")])
        .stdin(Stdio::null())
        .output()
        .expect("kubeadm");
    let t = text(&out);
    assert!(!out.status.success());
    for want in [
        "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents are not set to 1",
        "[ERROR FileExisting-iptables]: iptables not found in system path",
        "[WARNING FileExisting-socat]: socat not found in system path",
        "[ERROR SystemVerification]: cgroups v1 support is deprecated",
    ] {
        assert!(t.contains(want), "{want} missing from:\n{t}");
    }
    std::fs::write(env.root().join("proc/sys/net/ipv4/ip_forward"), "1\n").expect("ip_forward");

    // Mixing --config with configuration flags is refused.
    let out = env.kubeadm(&[
        "init",
        "--config",
        init_arg,
        "--pod-network-cidr",
        "10.0.0.0/16",
    ]);
    assert!(
        text(&out).contains("can not mix '--config' with arguments [pod-network-cidr]"),
        "{}",
        text(&out)
    );

    let out = env.kubeadm(&["init", "--config", init_arg]);
    let init_out = text(&out);
    assert!(out.status.success(), "kubeadm init failed:\n{init_out}");
    assert!(init_out.contains("Your Kubernetes control-plane has initialized successfully!"));
    assert!(init_out.contains("kubeadm join 127.0.0.2:6443 --token abcdef.0123456789abcdef \\\n\t--discovery-token-ca-cert-hash sha256:"), "{init_out}");
    assert!(init_out.contains("\t--control-plane"), "{init_out}");
    assert_eq!(
        std::fs::read_to_string(env.root().join("etc/kubernetes/pki/ca.crt")).expect("ca"),
        ca_before,
        "the existing CA must be reused"
    );
    for f in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "manifests/etcd.yaml",
        "manifests/kube-apiserver.yaml",
    ] {
        assert!(
            env.root().join("etc/kubernetes").join(f).exists(),
            "{f} missing"
        );
    }
    let pin = init_out
        .split("--discovery-token-ca-cert-hash ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("hash")
        .to_string();

    // A second init: the manifests and the ports are taken.
    let out = env.kubeadm(&["init", "--config", init_arg]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("[ERROR Port-6443]: Port 6443 is in use"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]"),
        "{}",
        text(&out)
    );

    // The real kubectl sees the node: a control plane, NotReady until a CNI config exists.
    wait_until("node registered", Duration::from_secs(30), || {
        text(&env.kubectl(&["get", "nodes"])).contains(NODE)
    });
    let node = text(&env.kubectl(&["get", "node", NODE, "-o", "json"]));
    assert!(
        node.contains("node-role.kubernetes.io/control-plane"),
        "{node}"
    );
    wait_until("NotReady for lack of CNI", Duration::from_secs(30), || {
        text(&env.kubectl(&["get", "node", NODE, "-o", "json"]))
            .contains("cni plugin not initialized")
    });
    std::fs::create_dir_all(env.root().join("etc/cni/net.d")).expect("cni dir");
    std::fs::write(
        env.root().join("etc/cni/net.d/10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"test","plugins":[]}"#,
    )
    .expect("cni");
    wait_until("node Ready", Duration::from_secs(40), || {
        let o = env.kubectl(&[
            "get",
            "node",
            NODE,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        text(&o).trim() == "True"
    });
    wait_until("mirror pods", Duration::from_secs(30), || {
        let o = text(&env.kubectl(&["get", "pods", "-n", "kube-system"]));
        o.contains("etcd-sim-m1") && o.contains("kube-apiserver-sim-m1")
    });
    let out = env.kubectl(&["get", "lease", "-n", "kube-node-lease", NODE]);
    assert!(out.status.success(), "node lease missing");

    // Join discovery rejects what kubeadm rejects (a second node root, preflight ignored).
    discovery_rejections(&env, &pin);

    // Tokens and certificates.
    let out = env.kubeadm(&[
        "token",
        "create",
        "--print-join-command",
        "--kubeconfig",
        env.root()
            .join("etc/kubernetes/admin.conf")
            .to_str()
            .expect("utf8"),
    ]);
    assert!(
        out.status.success() && text(&out).starts_with("kubeadm join 127.0.0.2:6443 --token "),
        "{}",
        text(&out)
    );
    let out = env.kubeadm(&[
        "token",
        "list",
        "--kubeconfig",
        env.root()
            .join("etc/kubernetes/admin.conf")
            .to_str()
            .expect("utf8"),
    ]);
    assert!(
        text(&out).contains("abcdef.0123456789abcdef"),
        "{}",
        text(&out)
    );
    let out = env.kubeadm(&["certs", "check-expiration"]);
    assert!(
        text(&out).contains("apiserver ") && text(&out).contains("364d"),
        "{}",
        text(&out)
    );
    let before =
        std::fs::read(env.root().join("etc/kubernetes/pki/apiserver.crt")).expect("apiserver.crt");
    let out = env.kubeadm(&["certs", "renew", "apiserver"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(
        std::fs::read(env.root().join("etc/kubernetes/pki/apiserver.crt")).expect("crt"),
        before
    );

    // Upgrades go one minor at a time and never past kubeadm's own version.
    env.set_version("kubeadm", "1.38.0");
    let out = env.kubeadm(&[
        "upgrade",
        "apply",
        "v1.38.0",
        "-y",
        "--force",
        "--ignore-preflight-errors=SystemVerification",
    ]);
    assert!(
        !out.status.success()
            && text(&out).contains("kubeadm can upgrade only 1 minor version at a time"),
        "{}",
        text(&out)
    );
    env.set_version("kubeadm", "1.37.1");
    // On cgroup v1 the upgrade preflight fails unless SystemVerification is ignored.
    let out = env.kubeadm(&["upgrade", "apply", "v1.37.1", "-y"]);
    assert!(
        !out.status.success() && text(&out).contains("[ERROR SystemVerification]"),
        "{}",
        text(&out)
    );
    let out = env.kubeadm(&[
        "upgrade",
        "apply",
        "v1.37.1",
        "-y",
        "--ignore-preflight-errors=SystemVerification",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let etcd_manifest =
        std::fs::read_to_string(env.root().join("etc/kubernetes/manifests/etcd.yaml"))
            .expect("etcd.yaml");
    assert!(
        etcd_manifest.contains("registry.k8s.io/etcd:3.7.0-0"),
        "etcd follows the 1.37 image tag:\n{etcd_manifest}"
    );
    let out = env.kubectl(&["version", "-o", "json"]);
    assert!(
        text(&out).contains("\"gitVersion\": \"v1.37.1\""),
        "{}",
        text(&out)
    );

    // The other control planes follow with `upgrade node`, which reads the version from the cluster.
    let out = env.kubeadm(&[
        "upgrade",
        "node",
        "--ignore-preflight-errors=SystemVerification",
    ]);
    assert!(
        out.status.success() && text(&out).contains("successfully upgraded"),
        "{}",
        text(&out)
    );
    env.set_version("kubeadm", "1.36.2");
    let out = env.kubeadm(&[
        "upgrade",
        "node",
        "--ignore-preflight-errors=SystemVerification",
    ]);
    assert!(
        !out.status.success()
            && text(&out).contains("upgrade the kubeadm package on this node first"),
        "{}",
        text(&out)
    );

    // Learners: one at a time, promoted only once in sync, shown with isLearner.
    etcd_learners(&env);
    // etcd itself refuses a second member add while an added member has not started.
    etcd_refuses_second_unstarted_member(&env);

    let out = env.kubeadm(&["reset", "-f"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!env.root().join("etc/kubernetes/admin.conf").exists());
    assert_eq!(
        std::fs::read_dir(env.root().join("etc/kubernetes/manifests"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    wait_until("API gone after reset", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.2", 6443)).is_err()
    });
}

fn discovery_rejections(env: &Env, pin: &str) {
    let worker = env.dir.path().join("worker");
    std::fs::create_dir_all(&worker).expect("worker root");
    let join = |args: &[&str]| {
        let mut all = vec![
            "join",
            "127.0.0.2:6443",
            "--ignore-preflight-errors=all",
            "--node-name=sim-w1",
        ];
        all.extend_from_slice(args);
        let out = env
            .cmd(env!("CARGO_BIN_EXE_kubeadm"))
            .env("SIM_ROOT", &worker)
            .env("SIM_KUBE_VERSION", "1.36.2")
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .expect("join");
        let t = text(&out);
        eprintln!("$ kubeadm {}\n{t}", all.join(" "));
        (out.status.success(), t)
    };
    let (ok, t) = join(&["--token", "abcdef.0123456789abcdef"]);
    assert!(
        !ok && t.contains("using token-based discovery without caCertHashes can be unsafe"),
        "{t}"
    );

    // The bootstrap signer of the controller-manager publishes the JWS; wait for it.
    wait_until("cluster-info JWS", Duration::from_secs(60), || {
        text(&env.kubectl(&[
            "get",
            "cm",
            "-n",
            "kube-public",
            "cluster-info",
            "-o",
            "json",
        ]))
        .contains("jws-kubeconfig-abcdef")
    });
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let (ok, t) = join(&[
        "--token",
        "abcdef.0123456789abcdef",
        "--discovery-token-ca-cert-hash",
        &wrong_pin,
    ]);
    assert!(!ok && t.contains("none of the public keys"), "{t}");
    let (ok, t) = join(&[
        "--token",
        "abcdef.0123456789abcdeg",
        "--discovery-token-ca-cert-hash",
        pin,
    ]);
    assert!(!ok && t.contains("failed to verify JWS signature"), "{t}");
    let cfg = env.write(
        "join-unknown.yaml",
        &format!("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: zzzzzz.0123456789abcdef\n    apiServerEndpoint: 127.0.0.2:6443\n    caCertHashes: [{pin}]\nnodeRegistration:\n  name: sim-w1\n  ignorePreflightErrors: [all]\ntimeouts:\n  discovery: 5s\n"),
    );
    let out = env
        .cmd(env!("CARGO_BIN_EXE_kubeadm"))
        .env("SIM_ROOT", &worker)
        .env("SIM_KUBE_VERSION", "1.36.2")
        .args(["join", "--config", cfg.to_str().expect("utf8")])
        .output()
        .expect("join");
    assert!(
        !out.status.success()
            && text(&out).contains("This token id \"zzzzzz\" is invalid for this cluster"),
        "{}",
        text(&out)
    );
    // A control-plane join needs the shared CA files on the joining node.
    let (ok, t) = join(&[
        "--token",
        "abcdef.0123456789abcdef",
        "--discovery-token-ca-cert-hash",
        pin,
        "--control-plane",
    ]);
    assert!(
        !ok && t.contains("failure loading certificate authorities") && t.contains("ca.crt"),
        "{t}"
    );
}

fn etcd_learners(env: &Env) {
    let pki = env.root().join("etc/kubernetes/pki");
    let etcd = sim_node::etcd::Etcd::new(
        vec!["https://127.0.0.1:2379".into()],
        &pki,
        "etcd/healthcheck-client",
    )
    .expect("etcd client");
    let (m, _) = etcd
        .member_add_learner("https://127.0.0.5:2380")
        .expect("a learner is accepted");
    assert!(m.is_learner && !m.started());
    let listed = etcd.member_list().expect("list");
    assert!(listed.iter().any(|x| x.id == m.id && x.is_learner));
    // etcdctl shows it the same way
    if Path::new("/usr/bin/etcdctl").exists() {
        let out = Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints=https://127.0.0.1:2379",
                "member",
                "list",
                "-w",
                "json",
            ])
            .arg(format!("--cacert={}", pki.join("etcd/ca.crt").display()))
            .arg(format!(
                "--cert={}",
                pki.join("etcd/healthcheck-client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                pki.join("etcd/healthcheck-client.key").display()
            ))
            .output()
            .expect("etcdctl");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("\"isLearner\":true"),
            "{}",
            text(&out)
        );
    }
    let err = etcd
        .member_add_learner("https://127.0.0.6:2380")
        .expect_err("a second learner must be refused")
        .to_string();
    assert!(err.contains("too many learner members in cluster"), "{err}");
    let err = etcd
        .member_promote(m.id)
        .expect_err("an unstarted learner cannot be promoted")
        .to_string();
    assert!(
        err.contains("can only promote a learner member which is in sync with leader"),
        "{err}"
    );
    etcd.member_remove(m.id).expect("remove the learner");
}

fn etcd_refuses_second_unstarted_member(env: &Env) {
    let pki = env.root().join("etc/kubernetes/pki");
    let etcd = sim_node::etcd::Etcd::new(
        vec!["https://127.0.0.1:2379".into()],
        &pki,
        "etcd/healthcheck-client",
    )
    .expect("etcd client");
    let (m, _) = etcd
        .member_add("https://127.0.0.3:2380")
        .expect("first add is accepted");
    assert!(!m.started());
    let err = etcd
        .member_add("https://127.0.0.4:2380")
        .expect_err("second add must be refused")
        .to_string();
    assert!(err.contains("not enough started members"), "{err}");
}
