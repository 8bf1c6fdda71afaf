//! Day-2 etcd and certificate verbs on the lab (issue 13, parts 3 and 4): 3 masters and 1
//! worker, real etcd (Debian's 3.4) on every master, kubeadm/kubelet/API server simulated.
//! One cluster for the file, brought up once; the tests run one at a time on it.
//!
//! - backup, then every master's etcd data destroyed, then restore: the objects written before
//!   the backup are back, the one written after it is not (the cluster is the snapshot), etcd
//!   has one healthy member per master and the old data directories are kept;
//! - certs check reads every master's expiries (exit 0; exit 1 with a huge --warn-days); renew
//!   gives the API servers new certificates (serial and notAfter, as served on each master)
//!   while a client polls the API through the VIP, and not one poll fails;
//! - certs rotate-ca, killed 40 s in and run again, while a client polls the API through the
//!   VIP (not one poll may fail): every node trusts the new Kubernetes CA alone, every
//!   kubelet's client certificate and every API server's serving certificate are of it, the
//!   masters' front-proxy and etcd CAs are new and alone with their leaves (etcd's real TLS:
//!   3 healthy members), the kubelets
//!   keep renewing their Leases, a kubeconfig from before is refused, kube-root-ca.crt and
//!   cluster-info carry the new CA, `up` changes nothing, and a worker joins afterwards.
//!
//! `sudo cargo test --test lab_etcd_certs` (skips when not root).

#[path = "support/lab.rs"]
mod lab;
#[path = "support/vip_poller.rs"]
mod vip_poller;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::{Lab, all_output, write_inventory};
use vip_poller::VipPoller;

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const LAB_NAME: &str = "etc";
const MASTERS: [&str; 3] = ["master-1", "master-2", "master-3"];
const HOSTS: [&str; 4] = ["master-1", "master-2", "master-3", "worker-1"];
const TLS: &str = "--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key";

struct Cluster {
    lab: &'static Lab,
    dir: PathBuf,
    inv: PathBuf,
}

static CLUSTER: Mutex<Option<Result<(), String>>> = Mutex::new(None);

/// The lab and a cluster on it (brought up by the first test that asks), and the guard that
/// runs the tests one at a time.
fn cluster() -> Option<(Cluster, std::sync::MutexGuard<'static, ()>)> {
    let options = lab::Options {
        busy_apt: Some("none".into()),
        ..Default::default()
    };
    let (lab, guard) = Lab::shared_with(LAB_NAME, 3, 1, &options)?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-etcd-certs");
    let c = Cluster {
        lab,
        inv: dir.join("hosts.yaml"),
        dir: dir.clone(),
    };
    let mut state = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    if state.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_inventory(lab, &dir, "containerd", &HOSTS);
        let out = c.installer(&["up"]);
        *state = Some(if out.status.success() {
            Ok(())
        } else {
            Err(all_output(&out))
        });
    }
    if let Some(Err(e)) = state.as_ref() {
        panic!("installer up failed: {e}");
    }
    Some((c, guard))
}

impl Cluster {
    fn installer(&self, args: &[&str]) -> Output {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_installer"))
            .args(args)
            .arg("-i")
            .arg(&self.inv)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .expect("run installer");
        eprintln!(
            "figure: installer {}: exit {:?} after {:.1}s",
            args.join(" "),
            out.status.code(),
            started.elapsed().as_secs_f64()
        );
        out
    }

    fn installer_ok(&self, args: &[&str]) -> String {
        let out = self.installer(args);
        let text = all_output(&out);
        assert!(out.status.success(), "installer {args:?} failed:\n{text}");
        text
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join(".installer/lab")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.state_dir().join("kubeconfig"))
            .arg("--request-timeout=10s")
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            all_output(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Names of the configmaps in `default` labelled as this test's.
    fn probe_configmaps(&self) -> Vec<String> {
        let out = self.kubectl_ok(&[
            "get",
            "configmaps",
            "-n",
            "default",
            "-l",
            "lab-etcd-certs=probe",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        let mut names: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        names.sort();
        names
    }

    fn create_probe(&self, name: &str) {
        self.kubectl_ok(&[
            "create",
            "configmap",
            name,
            "-n",
            "default",
            "--from-literal=k=v",
        ]);
        self.kubectl_ok(&[
            "label",
            "configmap",
            name,
            "-n",
            "default",
            "lab-etcd-certs=probe",
        ]);
    }

    /// etcd as master-N sees it: (members, voting members with a name, healthy).
    fn etcd_view(&self, master: &str) -> (usize, bool) {
        let (_, list, _) = self.lab.exec(
            master,
            &format!("sudo -n curl -sS --max-time 5 {TLS} -X POST -d '{{}}' https://127.0.0.1:2379/v3/cluster/member/list"),
        );
        let members = list.matches("\"peerURLs\"").count();
        let (_, health, _) = self.lab.exec(
            master,
            &format!("sudo -n curl -sS --max-time 5 {TLS} https://127.0.0.1:2379/health"),
        );
        (members, health.contains("\"health\":\"true\""))
    }

    /// `serial=...` and `notAfter=...` of the certificate the API server on `master` serves.
    fn served_apiserver_cert(&self, master: &str) -> String {
        let address = self.lab.host(master).address.clone();
        self.lab.exec_ok(
            master,
            &format!("echo | openssl s_client -connect {address}:6443 2>/dev/null | openssl x509 -noout -serial -enddate"),
        )
    }

    fn apiserver_cert_file(&self, master: &str) -> String {
        self.lab.exec_ok(
            master,
            "sudo -n openssl x509 -in /etc/kubernetes/pki/apiserver.crt -noout -serial -enddate",
        )
    }
}

#[test]
fn backup_then_destroyed_etcd_data_then_restore_brings_the_objects_back() {
    let Some((c, _guard)) = cluster() else { return };
    for n in 1..=3 {
        c.create_probe(&format!("before-backup-{n}"));
    }
    // Three backups with --keep 2: the state directory keeps the newest two.
    let copy = c.dir.join("copy/etcd.db");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    for _ in 0..3 {
        c.installer_ok(&[
            "etcd",
            "backup",
            "--keep",
            "2",
            "-o",
            copy.to_str().unwrap(),
        ]);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let backups = c.state_dir().join("etcd-backups");
    let mut kept: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".db"))
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 2, "keep 2: {kept:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&backups), 0o700);
    let newest = backups.join(kept.last().unwrap());
    for f in [
        newest.clone(),
        PathBuf::from(format!("{}.sha256", newest.display())),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{}.sha256", copy.display()))
        .current_dir(copy.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "sha256sum -c: {}",
        all_output(&check)
    );
    eprintln!(
        "figure: snapshot {} bytes",
        std::fs::metadata(&copy).unwrap().len()
    );

    c.create_probe("after-backup");

    // A damaged copy is refused before anything is stopped.
    let bad = c.dir.join("copy/bad.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    std::fs::copy(
        format!("{}.sha256", copy.display()),
        format!("{}.sha256", bad.display()),
    )
    .unwrap();
    let out = c.installer(&["etcd", "restore", "--yes", bad.to_str().unwrap()]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("does not match its checksum"), "{text}");
    // Without --yes and no terminal: refused, nothing changed.
    let out = c.installer(&["etcd", "restore", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    for m in MASTERS {
        c.lab
            .exec_ok(m, "test -f /etc/kubernetes/manifests/etcd.yaml");
    }

    // The plan names every master's member and changes nothing.
    let plan = c.installer_ok(&["plan", "etcd-restore", copy.to_str().unwrap()]);
    eprintln!("{plan}");
    for m in MASTERS {
        assert!(
            plan.contains(&format!("--name {m} ")),
            "plan lacks {m}'s restore:\n{plan}"
        );
    }
    assert!(plan.contains("Nothing was changed"), "{plan}");
    assert_eq!(c.etcd_view("master-1"), (3, true));

    // The disaster: etcd stopped on every master, its data wiped, its manifest back.
    for m in MASTERS {
        c.lab.exec_ok(
            m,
            "sudo -n mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.lab && \
             for i in $(seq 120); do ss -Hltn 'sport = :2379' | grep -q . || break; sleep 0.5; done && \
             sudo -n rm -rf /var/lib/etcd",
        );
    }
    for m in MASTERS {
        c.lab.exec_ok(
            m,
            "sudo -n mv /etc/kubernetes/etcd.yaml.lab /etc/kubernetes/manifests/etcd.yaml",
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    let lost = c.kubectl(&["get", "configmap", "before-backup-1", "-n", "default"]);
    eprintln!(
        "figure: after the wipe, kubectl get configmap before-backup-1: exit {:?}",
        lost.status.code()
    );

    let started = Instant::now();
    let text = c.installer_ok(&["etcd", "restore", "--yes", copy.to_str().unwrap()]);
    eprintln!(
        "figure: etcd restore took {:.1}s\n{text}",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(
        c.probe_configmaps(),
        ["before-backup-1", "before-backup-2", "before-backup-3"],
        "the objects of the snapshot, and not the one written after it"
    );
    for m in MASTERS {
        assert_eq!(c.etcd_view(m), (3, true), "etcd as {m} sees it");
        c.lab.exec_ok(m, "ls -d /var/lib/etcd.before-restore-*");
        c.lab
            .exec_ok(m, "test -f /etc/kubernetes/manifests/kube-apiserver.yaml");
    }
    // The nodes of the snapshot (NotReady here: the inventory has no CNI addon).
    let nodes = c.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(
        nodes.split_whitespace().collect::<Vec<_>>(),
        ["master-1", "master-2", "master-3", "worker-1"]
    );
}

#[test]
fn certs_check_reads_expiries_and_renew_replaces_every_served_apiserver_certificate() {
    let Some((c, _guard)) = cluster() else { return };
    let table = c.installer_ok(&["certs", "check"]);
    eprintln!("{table}");
    for m in MASTERS {
        for cert in ["apiserver", "admin.conf", "etcd-server", "ca (CA)"] {
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(m) && l.contains(&format!(" {cert} "))),
                "no {cert} row for {m}:\n{table}"
            );
        }
    }
    let out = c.installer(&["certs", "check", "--warn-days", "100000"]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("expire(s) within 100000 days"), "{text}");

    let plan = c.installer_ok(&["plan", "certs-renew"]);
    for m in MASTERS {
        assert!(plan.contains(m), "{plan}");
    }

    let before: Vec<(String, String)> = MASTERS
        .iter()
        .map(|m| (c.apiserver_cert_file(m), c.served_apiserver_cert(m)))
        .collect();
    let kubeconfig_before = std::fs::read_to_string(c.state_dir().join("kubeconfig")).unwrap();

    let poller = VipPoller::start_patient(c.state_dir().join("kubeconfig"), c.lab.vip());
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    c.installer_ok(&["certs", "renew"]);
    let took = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let failures = poller.failures();
    let (polls, failed, longest) = poller.finish();
    eprintln!(
        "figure: certs renew took {took:.1}s; API through the VIP polled {polls} times, {failed} failed, longest gap {longest:.2}s"
    );

    for (m, (file, served)) in MASTERS.iter().zip(before) {
        let file_now = c.apiserver_cert_file(m);
        let served_now = c.served_apiserver_cert(m);
        assert_ne!(file, file_now, "{m}: apiserver.crt not renewed");
        assert_eq!(
            file_now, served_now,
            "{m}: the API server does not serve the renewed certificate"
        );
        assert_ne!(served, served_now);
        eprintln!(
            "figure: {m} apiserver certificate {} -> {}",
            file.replace('\n', " "),
            file_now.replace('\n', " ")
        );
    }
    let kubeconfig_after = std::fs::read_to_string(c.state_dir().join("kubeconfig")).unwrap();
    assert_ne!(
        kubeconfig_before, kubeconfig_after,
        "admin kubeconfig not refreshed"
    );
    c.kubectl_ok(&["get", "nodes"]);
    assert!(polls > 20, "the poller hardly ran: {polls}");
    // The API through the VIP as a client sees it while every master's control plane
    // restarts in turn: each master is out of haproxy's rotation meanwhile, so no poll may
    // fail (before that: 3-9 failed polls of 140-195).
    assert_eq!(
        failed, 0,
        "{failed} of {polls} polls of the API through the VIP failed during the renewal (longest gap {longest:.2}s):\n{failures}"
    );
}

/// SHA-256 (openssl's colon form) of the certificate in the PEM file at `pem_path`.
fn fingerprint_of(pem_path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem_path)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", all_output(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn rotate_ca_replaces_the_kubernetes_ca_everywhere_while_the_api_answers_through_the_vip() {
    let Some((c, _guard)) = cluster() else { return };
    let pki = c.state_dir().join("pki");
    let old_ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let old_front_proxy_ca = std::fs::read_to_string(pki.join("front-proxy-ca.crt")).unwrap();
    let old_etcd_ca = std::fs::read_to_string(pki.join("etcd/ca.crt")).unwrap();
    let old_fp = fingerprint_of(&pki.join("ca.crt"));
    let old_kubeconfig = c.dir.join("kubeconfig-before-rotation");
    std::fs::copy(c.state_dir().join("kubeconfig"), &old_kubeconfig).unwrap();

    // plan: every stage on every host, and nothing made.
    let plan = c.installer_ok(&["plan", "certs-rotate-ca"]);
    for stage in [
        "trust old and new",
        "sign with the new CAs",
        "drop the old CAs",
    ] {
        assert!(
            plan.contains(stage),
            "{stage} missing from the plan:\n{plan}"
        );
    }
    for h in HOSTS {
        assert!(plan.contains(h), "{h} missing from the plan:\n{plan}");
    }
    assert!(!pki.join("next").exists(), "plan made the next CA");

    let poller = VipPoller::start_patient(c.state_dir().join("kubeconfig"), c.lab.vip());
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();

    // An interrupted rotation (killed 40 s in) is in progress: `up` refuses, `plan` shows
    // what is left, and running it again finishes it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_installer"))
        .args(["certs", "rotate-ca", "-i"])
        .arg(&c.inv)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(40));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        pki.join("next/ca.crt").exists(),
        "no rotation in progress after the kill"
    );
    let out = c.installer(&["up"]);
    let text = all_output(&out);
    assert!(!out.status.success(), "up ran during a rotation:\n{text}");
    assert!(
        text.contains("rotation of the cluster's CAs is in progress"),
        "{text}"
    );
    let plan = c.installer_ok(&["plan", "certs-rotate-ca"]);
    assert!(plan.contains("resume the rotation"), "{plan}");
    eprintln!("after the kill:\n{plan}");

    c.installer_ok(&["certs", "rotate-ca"]);
    let took = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let failures = poller.failures();
    let (polls, failed, longest) = poller.finish();
    eprintln!(
        "figure: certs rotate-ca (interrupted once) took {took:.1}s; API through the VIP polled {polls} times, {failed} failed, longest gap {longest:.2}s"
    );
    if failed > 0 {
        eprintln!("failed polls:\n{failures}");
    }

    // The state directory holds the new CA alone; the rotation is over.
    assert!(!pki.join("next").exists(), "the rotation did not finish");
    let new_ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    assert_ne!(new_ca, old_ca);
    let new_fp = fingerprint_of(&pki.join("ca.crt"));
    for h in HOSTS {
        c.lab
            .exec_ok(h, &format!("cat > /tmp/new-ca.crt <<'PEM'\n{new_ca}PEM"));
        c.lab
            .exec_ok(h, &format!("cat > /tmp/old-ca.crt <<'PEM'\n{old_ca}PEM"));
        // Every node trusts the new CA alone.
        let trusted = c.lab.exec_ok(h, "sudo -n cat /etc/kubernetes/pki/ca.crt");
        assert_eq!(
            trusted.matches("BEGIN CERTIFICATE").count(),
            1,
            "{h}: {trusted}"
        );
        let fp = c.lab.exec_ok(
            h,
            "sudo -n openssl x509 -noout -fingerprint -sha256 -in /etc/kubernetes/pki/ca.crt",
        );
        assert_eq!(fp.trim(), new_fp, "{h}: ca.crt is not the new CA");
        // The kubelet's client certificate is signed by the new CA, not the old.
        c.lab.exec_ok(h, "sudo -n openssl verify -CAfile /tmp/new-ca.crt /var/lib/kubelet/pki/kubelet-client-current.pem");
        let (rc, _, _) = c.lab.exec(h, "sudo -n openssl verify -CAfile /tmp/old-ca.crt /var/lib/kubelet/pki/kubelet-client-current.pem");
        assert_ne!(
            rc, 0,
            "{h}: the kubelet's certificate still verifies with the old CA"
        );
        let conf = c.lab.exec_ok(
            h,
            "sudo -n grep certificate-authority-data /etc/kubernetes/kubelet.conf",
        );
        assert_eq!(
            conf.split_whitespace().nth(1),
            Some(b64(&new_ca).as_str()),
            "{h}: kubelet.conf does not trust the new CA alone"
        );
    }
    // The front-proxy and etcd CAs are new too, and alone; their leaves are theirs.
    let next_of = |rel: &str| std::fs::read_to_string(pki.join(rel)).unwrap();
    let (front_proxy_ca, etcd_ca) = (next_of("front-proxy-ca.crt"), next_of("etcd/ca.crt"));
    assert_ne!(
        front_proxy_ca, old_front_proxy_ca,
        "front-proxy CA not rotated"
    );
    assert_ne!(etcd_ca, old_etcd_ca, "etcd CA not rotated");
    for m in MASTERS {
        c.lab.exec_ok(
            m,
            &format!("cat > /tmp/new-front-proxy-ca.crt <<'PEM'\n{front_proxy_ca}PEM"),
        );
        c.lab.exec_ok(
            m,
            &format!("cat > /tmp/new-etcd-ca.crt <<'PEM'\n{etcd_ca}PEM"),
        );
        for (file, want) in [
            ("front-proxy-ca.crt", &front_proxy_ca),
            ("etcd/ca.crt", &etcd_ca),
        ] {
            let have = c
                .lab
                .exec_ok(m, &format!("sudo -n cat /etc/kubernetes/pki/{file}"));
            assert_eq!(
                have.trim(),
                want.trim(),
                "{m}: {file} is not the new CA alone"
            );
        }
        c.lab.exec_ok(m, "sudo -n openssl verify -CAfile /tmp/new-front-proxy-ca.crt /etc/kubernetes/pki/front-proxy-client.crt");
        for leaf in ["server", "peer", "healthcheck-client"] {
            c.lab.exec_ok(m, &format!("sudo -n openssl verify -CAfile /tmp/new-etcd-ca.crt /etc/kubernetes/pki/etcd/{leaf}.crt"));
        }
        c.lab.exec_ok(m, "sudo -n openssl verify -CAfile /tmp/new-etcd-ca.crt /etc/kubernetes/pki/apiserver-etcd-client.crt");
        assert_eq!(
            c.etcd_view(m),
            (3, true),
            "{m}: etcd is not 3 healthy members after the rotation"
        );
    }
    for m in MASTERS {
        assert!(
            c.lab
                .exec_ok(m, "sudo -n ls /etc/kubernetes/pki")
                .lines()
                .all(|f| f != "ca-signer.crt"),
            "{m}: ca-signer.crt left behind"
        );
        c.lab.exec_ok(m, "sudo -n grep -q -- '--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt$' /etc/kubernetes/manifests/kube-controller-manager.yaml");
        // The API server serves a certificate of the new CA.
        let address = c.lab.host(m).address.clone();
        let served = c.lab.exec_ok(
            m,
            &format!("echo | openssl s_client -connect {address}:6443 -CAfile /tmp/new-ca.crt 2>/dev/null | grep 'Verify return code'"),
        );
        assert!(served.contains("0 (ok)"), "{m}: {served}");
        for conf in ["admin", "controller-manager", "scheduler"] {
            let line = c.lab.exec_ok(
                m,
                &format!("sudo -n grep certificate-authority-data /etc/kubernetes/{conf}.conf"),
            );
            assert_eq!(
                line.split_whitespace().nth(1),
                Some(b64(&new_ca).as_str()),
                "{m}: {conf}.conf does not trust the new CA alone"
            );
        }
    }
    // Clients: the refreshed kubeconfig works; one from before the rotation is refused.
    // Every kubelet keeps renewing its node's Lease (every 10 s): it reaches the API with
    // its new certificate and trusts the API servers' new ones.
    let leases = || {
        c.kubectl_ok(&[
            "-n",
            "kube-node-lease",
            "get",
            "leases",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.renewTime} {end}",
        ])
    };
    let first = leases();
    std::thread::sleep(Duration::from_secs(15));
    let second = leases();
    for h in HOSTS {
        let renewal = |all: &str| {
            all.split_whitespace()
                .find(|l| l.starts_with(&format!("{h}=")))
                .map(str::to_string)
        };
        assert!(renewal(&first).is_some(), "no Lease for {h}: {first}");
        assert_ne!(
            renewal(&first),
            renewal(&second),
            "{h}'s kubelet stopped renewing its Lease after the rotation"
        );
    }
    let stale = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&old_kubeconfig)
        .args(["--request-timeout=10s", "get", "nodes"])
        .output()
        .unwrap();
    assert!(
        !stale.status.success(),
        "a kubeconfig of the old CA still works"
    );
    let root_ca = c.kubectl_ok(&[
        "-n",
        "default",
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert_eq!(
        root_ca.trim(),
        new_ca.trim(),
        "kube-root-ca.crt is not the new CA alone"
    );
    let cluster_info = c.kubectl_ok(&[
        "-n",
        "kube-public",
        "get",
        "configmap",
        "cluster-info",
        "-o",
        "jsonpath={.data.kubeconfig}",
    ]);
    assert!(
        cluster_info.contains(&b64(&new_ca)),
        "cluster-info does not carry the new CA:\n{cluster_info}"
    );

    // The state directory and the hosts agree: up with the new CA set changes nothing.
    let again = c.installer_ok(&["up"]);
    assert!(again.contains("nothing changed"), "{again}");

    // A node joins after the rotation: kubeadm's discovery reads cluster-info (the new CA,
    // signed again for the token) and pins the hash of the state directory's new CA.
    c.kubectl_ok(&["delete", "node", "worker-1"]);
    c.lab.exec_ok("worker-1", "sudo -n kubeadm reset -f");
    c.installer_ok(&["up"]);
    let fp = c.lab.exec_ok(
        "worker-1",
        "sudo -n openssl x509 -noout -fingerprint -sha256 -in /etc/kubernetes/pki/ca.crt",
    );
    assert_eq!(fp.trim(), new_fp, "worker-1 joined with another CA");
    c.lab.exec_ok("worker-1", "sudo -n openssl verify -CAfile /tmp/new-ca.crt /var/lib/kubelet/pki/kubelet-client-current.pem");
    let nodes = c.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert!(nodes.contains("node/worker-1"), "{nodes}");
    assert!(polls > 20, "the poller hardly ran: {polls}");
    assert_ne!(old_fp, new_fp);
    assert_eq!(
        failed, 0,
        "{failed} of {polls} polls of the API through the VIP failed during the rotation (longest gap {longest:.2}s):\n{failures}"
    );
}

fn b64(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
