//! Each rejection the simulators implement, pinned against what the real components do.

mod common;

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::Cluster;
use serde_json::{Value, json};

fn token_secret(id: &str, secret: &str, expiration: Option<&str>) -> String {
    let mut data = json!({"token-id": id, "token-secret": secret, "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true", "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"});
    if let Some(e) = expiration {
        data["expiration"] = json!(e);
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"}, "stringData": data}).to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unknown_flags_are_rejected_like_the_real_binaries() {
    for b in [
        env!("CARGO_BIN_EXE_kube-apiserver"),
        env!("CARGO_BIN_EXE_kube-controller-manager"),
        env!("CARGO_BIN_EXE_kube-scheduler"),
    ] {
        let o = Command::new(b)
            .arg("--secure-port=6443")
            .arg("--foo=bar")
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(1), "{b}");
        assert!(
            stderr(&o).starts_with("Error: unknown flag: --foo"),
            "{b}: {}",
            stderr(&o)
        );
    }
}

/// A self-signed CA as kubeadm names it (CN=kubernetes): (certificate PEM, key PEM).
fn kubernetes_ca() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("keygen");
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes");
    (
        p.self_signed(&key).expect("self-sign").pem(),
        key.serialize_pem(),
    )
}

/// kube-controller-manager without leader election (the controllers start at once) and
/// without an API server: what it does with the given signing files.
fn controller_manager_with_signing_files(
    dir: &std::path::Path,
    cert: &str,
    key: &str,
) -> std::process::Child {
    let w = |name: &str, data: &str| {
        let p = dir.join(name);
        std::fs::write(&p, data).expect("write");
        p.to_string_lossy().into_owned()
    };
    let kc = w(
        "kc.conf",
        &json!({"apiVersion": "v1", "kind": "Config", "current-context": "x",
            "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
            "contexts": [{"name": "x", "context": {"cluster": "x", "user": "u"}}],
            "users": [{"name": "u", "user": {}}]})
        .to_string(),
    );
    let (c, k) = (w("ca.crt", cert), w("ca.key", key));
    Command::new(env!("CARGO_BIN_EXE_kube-controller-manager"))
        .args([
            format!("--kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            format!("--cluster-signing-cert-file={c}"),
            format!("--cluster-signing-key-file={k}"),
            format!("--root-ca-file={c}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run")
}

/// pkg/controller/certificates/signer ca_provider.go `setCA` ("expected 1 certificate") and
/// dynamiccertificates `loadCertKeyPair` (tls.X509KeyPair): the csrsigning controller fails to
/// start, and with it kube-controller-manager (exit 1), so the kubelet restarts it in a loop.
#[test]
fn controller_manager_exits_when_the_signing_cert_file_is_a_bundle_or_the_key_does_not_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, a_key) = kubernetes_ca();
    let (b, b_key) = kubernetes_ca();
    let cases = [
        (
            format!("{a}{b}"),
            a_key.clone(),
            "expected 1 certificate, found 2",
        ),
        (
            a.clone(),
            b_key.clone(),
            "tls: private key does not match public key",
        ),
    ];
    for (cert, key, why) in cases {
        let mut child = controller_manager_with_signing_files(dir.path(), &cert, &key);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().expect("try_wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let o = child.wait_with_output().expect("wait");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "still running after 10 s: {err}");
        assert!(
            err.contains("\"Error starting controller\" err=\"failed to start kubernetes.io/kubelet-serving certificate controller: error reading CA cert file \\\""),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
    }
    // One certificate and its key: the controllers run (here without an API server).
    let mut child = controller_manager_with_signing_files(dir.path(), &a, &a_key);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let o = child.wait_with_output().expect("wait");
    assert!(running, "exited: {}", stderr(&o));
}

/// The other side of the signing-file rule: CA bundles are fine everywhere else. ca.crt
/// becomes [another CA with the same subject CN=kubernetes, the cluster CA], so every
/// certificate in use is signed by the bundle's SECOND certificate: a second API server
/// replica takes the bundle as `--client-ca-file` and kubectl (kubeconfig
/// certificate-authority-data = the bundle) works through it; the controller-manager
/// publishes `--root-ca-file` as it is in kube-root-ca.crt.
#[test]
fn ca_bundles_are_trusted_as_client_ca_kubeconfig_ca_and_root_ca() {
    let mut c = Cluster::start();
    let single = String::from_utf8(c.read("ca.crt")).expect("utf8");
    std::fs::write(c.p("ca-single.crt"), &single).expect("write");
    let (other, _) = kubernetes_ca();
    let bundle = format!("{other}{single}");
    std::fs::write(c.p("ca.crt"), &bundle).expect("write");
    let port = common::free_port();
    c.start_apiserver("apiserver-bundle", port);
    c.wait_ready(port);
    let kc = c.write_kubeconfig(
        "bundle.conf",
        port,
        json!({"client-certificate-data": B64.encode(c.read("admin.crt")), "client-key-data": B64.encode(c.read("admin.key"))}),
    );
    let o = c.kubectl_with(
        &kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), c.logs());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "kubernetes-admin");
    let signing = format!("--cluster-signing-cert-file={}", c.p("ca-single.crt"));
    c.start_controllers(&[&signing]);
    c.eventually(30, "kube-root-ca.crt holds the bundle", || {
        c.try_json(&["get", "configmap", "kube-root-ca.crt", "-n", "default"])
            .is_some_and(|cm| cm["data"]["ca.crt"] == bundle.as_str())
    });
}

/// GET as an anonymous client (kubectl would prompt for a username without credentials).
fn anonymous_get(c: &Cluster, path: &str) -> (u16, Value) {
    let kc = c.write_kubeconfig("anon.conf", c.port, json!({}));
    let client = sim_apiserver::client::Client::from_kubeconfig(&kc).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match client.get(path).await {
            Ok(Some(v)) => (200, v),
            Ok(None) => (404, Value::Null),
            Err(e) => (e.code, json!(e.message)),
        }
    })
}

#[test]
fn anonymous_requests_reach_only_health_version_and_cluster_info() {
    let c = Cluster::start();
    c.k(&[
        "create",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        "--from-literal=kubeconfig=x",
    ]);
    let (code, v) = anonymous_get(&c, "/version");
    assert_eq!((code, v["gitVersion"].as_str()), (200, Some("v1.36.2")));
    let (code, cm) = anonymous_get(&c, "/api/v1/namespaces/kube-public/configmaps/cluster-info");
    assert_eq!((code, cm["data"]["kubeconfig"].as_str()), (200, Some("x")));
    let (code, msg) = anonymous_get(&c, "/api/v1/nodes");
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );
    let (code, _) = anonymous_get(
        &c,
        "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
    );
    assert_eq!(code, 403);
    let (code, _) = anonymous_get(&c, "/api");
    assert_eq!(code, 403);
}

#[test]
fn bootstrap_tokens_authenticate_only_while_valid_and_only_for_joining() {
    let c = Cluster::start();
    c.k_stdin(
        &["apply", "-f", "-"],
        &token_secret("abcdef", "0123456789abcdef", None),
    );
    c.k_stdin(
        &["apply", "-f", "-"],
        &token_secret("zzzzzz", "0123456789abcdef", Some("2020-01-01T00:00:00Z")),
    );
    let good = c.write_kubeconfig(
        "good.conf",
        c.port,
        json!({"token": "abcdef.0123456789abcdef"}),
    );
    let who = c.kubectl_with(&good, &["auth", "whoami", "-o", "json"], None);
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:bootstrap:abcdef"
    );
    assert!(
        who["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:bootstrappers:kubeadm:default-node-token"))
    );
    let o = c.kubectl_with(&good, &["get", "secrets", "-n", "kube-system"], None);
    assert!(
        stderr(&o).contains(
            "forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"secrets\""
        ),
        "{}",
        stderr(&o)
    );
    for (name, token) in [
        ("wrong", "abcdef.0123456789abcdee"),
        ("expired", "zzzzzz.0123456789abcdef"),
        ("unknown", "qqqqqq.0123456789abcdef"),
    ] {
        let kc = c.write_kubeconfig(&format!("{name}.conf"), c.port, json!({"token": token}));
        let o = c.kubectl_with(&kc, &["get", "--raw", "/api"], None);
        assert!(
            stderr(&o).contains("Unauthorized"),
            "{name}: {}",
            stderr(&o)
        );
    }
}

fn csr_object(name: &str, cn: &str, org: &str, signer: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    let pem = p.serialize_request(&key).unwrap().pem().unwrap();
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": B64.encode(pem), "signerName": signer, "usages": ["digital signature", "client auth"]}}).to_string()
}

#[test]
fn kubelet_bootstrap_csr_is_approved_and_signed_and_cluster_info_is_signed() {
    let mut c = Cluster::start();
    c.start_controllers(&[]);
    c.k_stdin(
        &["apply", "-f", "-"],
        &token_secret("abcdef", "0123456789abcdef", None),
    );
    c.k_stdin(
        &["apply", "-f", "-"],
        &token_secret("yyyyyy", "0123456789abcdef", Some("2020-01-01T00:00:00Z")),
    );
    c.k(&[
        "create",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        "--from-literal=kubeconfig=apiVersion: v1\nkind: Config\n",
    ]);
    let boot = c.write_kubeconfig(
        "bootstrap-kubelet.conf",
        c.port,
        json!({"token": "abcdef.0123456789abcdef"}),
    );
    let o = c.kubectl_with(
        &boot,
        &["create", "-f", "-"],
        Some(&csr_object(
            "node-csr-w1",
            "system:node:w1",
            "system:nodes",
            "kubernetes.io/kube-apiserver-client-kubelet",
        )),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    c.eventually(20, "CSR approved and issued", || {
        let csr = c.json(&["get", "csr", "node-csr-w1"]);
        csr["status"]["certificate"].is_string()
    });
    let csr = c.json(&["get", "csr", "node-csr-w1"]);
    assert_eq!(
        csr["spec"]["username"], "system:bootstrap:abcdef",
        "the server records the requester"
    );
    assert_eq!(csr["status"]["conditions"][0]["reason"], "AutoApproved");
    let pem = B64
        .decode(csr["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let der = ::pem::parse(&pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.contents()).unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "system:node:w1"
    );
    let table = c.k(&["get", "csr"]);
    assert!(table.contains("Approved,Issued"), "{table}");

    // A CSR that is not a kubelet client certificate is not auto-approved; approving it by
    // hand makes the signer fail it instead of issuing.
    c.k_stdin(
        &["create", "-f", "-"],
        &csr_object(
            "bad-org",
            "system:node:w2",
            "system:masters",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
    );
    c.k(&["certificate", "approve", "bad-org"]);
    c.eventually(20, "bad CSR failed", || {
        let csr = c.json(&["get", "csr", "bad-org"]);
        csr["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|x| x["type"] == "Failed"))
    });
    let bad = c.json(&["get", "csr", "bad-org"]);
    assert!(bad["status"]["certificate"].is_null());

    // Bootstrap signer: one JWS per signing token, verifiable with the token secret.
    c.eventually(20, "jws-kubeconfig-abcdef", || {
        c.json(&["get", "cm", "cluster-info", "-n", "kube-public"])["data"]["jws-kubeconfig-abcdef"]
            .is_string()
    });
    let ci = c.json(&["get", "cm", "cluster-info", "-n", "kube-public"]);
    let jws = ci["data"]["jws-kubeconfig-abcdef"].as_str().unwrap();
    assert!(sim_apiserver::controllers::verify_detached_jws(
        jws,
        ci["data"]["kubeconfig"].as_str().unwrap(),
        "0123456789abcdef"
    ));
    assert!(
        ci["data"]["jws-kubeconfig-yyyyyy"].is_null(),
        "expired tokens are not signed"
    );
    // Token cleaner: the expired token's Secret goes away.
    c.eventually(20, "expired token deleted", || {
        !c.kubectl(&[
            "get",
            "secret",
            "bootstrap-token-yyyyyy",
            "-n",
            "kube-system",
        ])
        .status
        .success()
    });
}

#[test]
fn readyz_fails_while_etcd_is_unreachable() {
    let mut c = Cluster::start();
    c.stop("etcd");
    let o = c.kubectl(&["get", "--raw", "/readyz"]);
    assert!(!o.status.success());
    assert!(
        c.kubectl(&["get", "--raw", "/livez"]).status.success(),
        "liveness does not depend on etcd"
    );
    let o = c.kubectl(&["get", "ns"]);
    assert!(!o.status.success());
    c.start_etcd();
    c.wait_ready(c.port);
    c.k(&["get", "ns", "kube-system"]);
}

#[test]
fn invalid_objects_get_the_api_errors() {
    let c = Cluster::start();
    let err = c.k_err(&["create", "configmap", "Bad_Name"]);
    assert!(err.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{err}");
    let err = c.kubectl_with(&c.p("admin.conf"), &["apply", "-f", "-"], Some(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"empty"},"spec":{"containers":[]}}"#));
    assert!(
        stderr(&err).contains("spec.containers: Required value"),
        "{}",
        stderr(&err)
    );
    c.k(&["create", "configmap", "dup"]);
    let err = c.k_err(&["create", "configmap", "dup"]);
    assert!(err.contains("configmaps \"dup\" already exists"), "{err}");
    let err = c.k_err(&["create", "configmap", "x", "-n", "nope"]);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
    let err = c.kubectl_with(
        &c.p("admin.conf"),
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}"#),
    );
    assert!(
        stderr(&err).contains("no matches for kind \"Widget\" in version \"example.com/v1\""),
        "{}",
        stderr(&err)
    );
    let dep = |app: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": app}}, "template": {"metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}).to_string()
    };
    c.k_stdin(&["apply", "-f", "-"], &dep("a"));
    let err = c.kubectl_with(&c.p("admin.conf"), &["apply", "-f", "-"], Some(&dep("b")));
    assert!(
        stderr(&err).contains("spec.selector: Invalid value")
            && stderr(&err).contains("field is immutable"),
        "{}",
        stderr(&err)
    );
    let pc = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"priorityClassName":"gold","containers":[{"name":"c","image":"i:1"}]}}"#;
    // Without the controller-manager nobody has created the namespace's default account yet.
    let err = c.kubectl_with(&c.p("admin.conf"), &["create", "-f", "-"], Some(pc));
    assert!(
        stderr(&err).contains(
            "error looking up service account default/default: serviceaccount \"default\" not found"
        ),
        "{}",
        stderr(&err)
    );
    // Mirror pods (posted by kubelets for static pods) need no account and may not name one.
    let mirror = |sa: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("etcd-m1{sa}"), "namespace": "default",
        "annotations": {"kubernetes.io/config.mirror": "abc"}}, "spec": {"nodeName": "m1", "serviceAccountName": sa,
        "containers": [{"name": "etcd", "image": "registry.k8s.io/etcd:3.5.21-0"}]}}).to_string()
    };
    c.k_stdin(&["create", "-f", "-"], &mirror(""));
    let err = c.kubectl_with(
        &c.p("admin.conf"),
        &["create", "-f", "-"],
        Some(&mirror("x")),
    );
    assert!(
        stderr(&err).contains("a mirror pod may not reference service accounts"),
        "{}",
        stderr(&err)
    );
    c.k(&["create", "serviceaccount", "default"]);
    let err = c.kubectl_with(&c.p("admin.conf"), &["create", "-f", "-"], Some(pc));
    assert!(
        stderr(&err).contains("no PriorityClass with name gold was found"),
        "{}",
        stderr(&err)
    );
    let err = c.k_err(&["get", "pods", "--field-selector", "spec.foo=bar"]);
    assert!(err.contains("field label not supported: spec.foo"), "{err}");
    // An update carrying a stale resourceVersion is a conflict.
    let mut cm = c.json(&["get", "configmap", "dup"]);
    c.k(&["label", "configmap", "dup", "touched=yes"]);
    cm["data"] = json!({"k": "v"});
    let o = c.kubectl_with(
        &c.p("admin.conf"),
        &["replace", "-f", "-"],
        Some(&cm.to_string()),
    );
    assert!(stderr(&o).contains("the object has been modified; please apply your changes to the latest version and try again"), "{}", stderr(&o));
    // kubectl wait --for=delete follows a watch until the object is gone.
    c.k(&["delete", "configmap", "dup", "--wait=true"]);
    c.k(&["wait", "--for=delete", "configmap/dup", "--timeout=5s"]);
}

#[test]
fn silent_node_becomes_unknown_and_unreachable() {
    let mut c = Cluster::start();
    c.start_controllers(&["--node-monitor-grace-period=2s"]);
    c.add_node("w1", json!({}), json!([]));
    c.eventually(20, "node Ready=Unknown", || {
        let n = c.json(&["get", "node", "w1"]);
        n["status"]["conditions"][0]["status"] == "Unknown"
    });
    let n = c.json(&["get", "node", "w1"]);
    assert_eq!(n["status"]["conditions"][0]["reason"], "NodeStatusUnknown");
    c.eventually(20, "unreachable taints", || {
        let n = c.json(&["get", "node", "w1"]);
        n["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter()
                .any(|x| x["key"] == "node.kubernetes.io/unreachable" && x["effect"] == "NoExecute")
        })
    });
    assert!(c.k(&["get", "nodes"]).contains("NotReady"));
}

#[test]
fn controller_manager_and_scheduler_serve_health_and_refuse_a_busy_port() {
    let mut c = Cluster::start();
    c.start_controllers(&[]);
    for port in [c.cm_port, c.sched_port] {
        let server = format!("--server=https://127.0.0.1:{port}");
        c.eventually(15, "health endpoint", || {
            c.kubectl(&[
                &server,
                "--insecure-skip-tls-verify",
                "get",
                "--raw",
                "/healthz",
            ])
            .status
            .success()
        });
        let o = c.kubectl(&[
            &server,
            "--insecure-skip-tls-verify",
            "get",
            "--raw",
            "/metrics",
        ]);
        assert!(!o.status.success(), "only the health paths are open");
    }
    // A second controller-manager on the same port fails at start, as the real one does.
    let o = Command::new(env!("CARGO_BIN_EXE_kube-controller-manager"))
        .args([
            format!("--kubeconfig={}", c.p("admin.conf")),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", c.cm_port),
        ])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("failed to listen on 127.0.0.1"),
        "{}",
        stderr(&o)
    );
}
