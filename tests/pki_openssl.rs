//! The cluster PKI checked by the real `openssl` binary: what we generate must look to
//! OpenSSL exactly like what kubeadm makes, and what OpenSSL makes wrong must be refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use installer::pki::{CaKind, ClusterCa, PkiError, SHARED_FILES};

const CA_FILES: [(&str, &str, &str); 3] = [
    ("ca.crt", "ca.key", "kubernetes"),
    ("front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-ca"),
    ("etcd/ca.crt", "etcd/ca.key", "etcd-ca"),
];

/// Runs a command in `dir`; returns whether it succeeded, and its stdout then stderr.
fn run(dir: &Path, program: &str, args: &[&str]) -> (bool, String, String) {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (apt-get install openssl)"));
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(dir, "openssl", args);
    assert!(ok, "openssl {args:?} failed:\n{stderr}");
    stdout
}

/// A freshly generated bundle saved into its own temporary directory.
struct Saved {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ca: ClusterCa,
}

fn saved() -> Saved {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let ca = ClusterCa::generate().unwrap();
    ca.save(&dir).unwrap();
    Saved { _tmp: tmp, dir, ca }
}

fn load_error(dir: &Path) -> String {
    match ClusterCa::load(dir) {
        Ok(_) => panic!("load accepted {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_ca_is_self_signed_with_kubeadm_extensions() {
    let s = saved();
    for (crt, _, cn) in CA_FILES {
        let verified = openssl(&s.dir, &["verify", "-CAfile", crt, crt]);
        assert_eq!(verified.trim(), format!("{crt}: OK"));

        let text = openssl(&s.dir, &["x509", "-noout", "-text", "-in", crt]);
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            format!("Issuer: CN = {cn}"),
            format!("Subject: CN = {cn}"),
            "Signature Algorithm: sha256WithRSAEncryption".to_string(),
            "Public-Key: (2048 bit)".to_string(),
            "X509v3 Basic Constraints: critical CA:TRUE".to_string(),
            "X509v3 Key Usage: critical Digital Signature, Key Encipherment, Certificate Sign"
                .to_string(),
            "X509v3 Subject Key Identifier:".to_string(),
        ] {
            assert!(
                flat.contains(&expected),
                "{crt} lacks {expected:?}:\n{text}"
            );
        }
    }
}

#[test]
fn each_ca_is_valid_for_ten_years() {
    let s = saved();
    let year = 365 * 24 * 3600;
    for (crt, _, _) in CA_FILES {
        // Valid for at least ten years less four days from now, and not past ten years and a day.
        let soon = (10 * year - 4 * 24 * 3600).to_string();
        let too_far = (10 * year + 24 * 3600).to_string();
        let (ok, text, _) = run(
            &s.dir,
            "openssl",
            &["x509", "-noout", "-in", crt, "-checkend", &soon],
        );
        assert!(ok, "{crt} expires too early: {text}");
        let (ok, text, _) = run(
            &s.dir,
            "openssl",
            &["x509", "-noout", "-in", crt, "-checkend", &too_far],
        );
        assert!(!ok, "{crt} lives longer than ten years: {text}");
    }
}

#[test]
fn private_keys_are_pkcs1_and_pass_openssl_rsa_check() {
    let s = saved();
    for key in ["ca.key", "front-proxy-ca.key", "etcd/ca.key", "sa.key"] {
        let text = fs::read_to_string(s.dir.join(key)).unwrap();
        assert!(
            text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "{key}"
        );
        let checked = openssl(&s.dir, &["rsa", "-check", "-noout", "-in", key]);
        assert_eq!(checked.trim(), "RSA key ok", "{key}");
        let size = openssl(&s.dir, &["rsa", "-noout", "-text", "-in", key]);
        assert!(size.contains("Private-Key: (2048 bit"), "{key}");
    }
}

#[test]
fn each_ca_key_has_its_certificate_modulus() {
    let s = saved();
    for (crt, key, _) in CA_FILES {
        let cert_modulus = openssl(&s.dir, &["x509", "-noout", "-modulus", "-in", crt]);
        let key_modulus = openssl(&s.dir, &["rsa", "-noout", "-modulus", "-in", key]);
        assert!(cert_modulus.starts_with("Modulus="));
        assert_eq!(cert_modulus, key_modulus, "{key} does not match {crt}");
    }
    // And the three CAs do not share a key.
    let moduli: std::collections::BTreeSet<_> = CA_FILES
        .iter()
        .map(|(crt, _, _)| openssl(&s.dir, &["x509", "-noout", "-modulus", "-in", crt]))
        .collect();
    assert_eq!(moduli.len(), 3);
}

#[test]
fn sa_pub_is_the_public_half_of_sa_key() {
    let s = saved();
    let derived = openssl(&s.dir, &["rsa", "-in", "sa.key", "-pubout"]);
    let stored = fs::read_to_string(s.dir.join("sa.pub")).unwrap();
    assert!(stored.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(derived.trim(), stored.trim());
}

#[test]
fn discovery_hash_equals_the_openssl_pipeline() {
    let s = saved();
    let (ok, out, err) = run(
        &s.dir,
        "sh",
        &[
            "-c",
            "openssl x509 -pubkey -noout -in ca.crt | openssl pkey -pubin -outform der | sha256sum",
        ],
    );
    assert!(ok, "{err}");
    let hex = out.split_whitespace().next().unwrap();
    assert_eq!(s.ca.discovery_hash().unwrap(), format!("sha256:{hex}"));
    let pem = s.ca.cert_pem(CaKind::Kubernetes);
    assert_eq!(
        installer::pki::discovery_hash(pem).unwrap(),
        format!("sha256:{hex}")
    );
}

#[test]
fn load_accepts_the_pkcs8_keys_openssl_writes() {
    let s = saved();
    let pkcs8 = openssl(
        &s.dir,
        &["pkcs8", "-topk8", "-nocrypt", "-in", "etcd/ca.key"],
    );
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
    fs::write(s.dir.join("etcd/ca.key"), pkcs8).unwrap();
    ClusterCa::load(&s.dir).unwrap();
}

#[test]
fn load_refuses_a_key_that_does_not_match_its_certificate() {
    let s = saved();
    openssl(
        &s.dir,
        &["genrsa", "-traditional", "-out", "ca.key", "2048"],
    );
    let err = load_error(&s.dir);
    assert!(
        err.contains("/pki/ca.key: is not the key of ca.crt"),
        "{err}"
    );
}

#[test]
fn load_refuses_a_ca_that_openssl_made_already_expired() {
    let s = saved();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    fs::create_dir(w.join("newcerts")).unwrap();
    fs::write(w.join("index.txt"), "").unwrap();
    fs::write(w.join("serial"), "01\n").unwrap();
    fs::write(
        w.join("ca.cnf"),
        "[ca]\ndefault_ca = old\n[old]\ndatabase = index.txt\nnew_certs_dir = newcerts\n\
         serial = serial\ndefault_md = sha256\npolicy = any\nx509_extensions = ext\n\
         unique_subject = no\n[any]\ncommonName = supplied\n[ext]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    openssl(
        w,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-subj",
            "/CN=kubernetes",
            "-out",
            "ca.csr",
        ],
    );
    openssl(
        w,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "ca.key",
            "-in",
            "ca.csr",
            "-out",
            "ca.crt",
            "-notext",
            "-startdate",
            "20150101000000Z",
            "-enddate",
            "20250101000000Z",
        ],
    );
    // OpenSSL agrees that it has expired.
    let (ok, _, _) = run(
        w,
        "openssl",
        &["x509", "-noout", "-in", "ca.crt", "-checkend", "0"],
    );
    assert!(!ok, "openssl thinks the test CA is still valid");
    fs::copy(w.join("ca.crt"), s.dir.join("ca.crt")).unwrap();
    fs::copy(w.join("ca.key"), s.dir.join("ca.key")).unwrap();
    let err = load_error(&s.dir);
    assert!(
        err.contains("/pki/ca.crt: this CA expired on 2025-01-01"),
        "{err}"
    );
    assert!(err.contains("rotate it"), "{err}");
}

#[test]
fn load_refuses_a_certificate_that_is_not_a_ca() {
    let s = saved();
    openssl(
        &s.dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "front-proxy-ca.key",
            "-out",
            "front-proxy-ca.crt",
            "-subj",
            "/CN=front-proxy-ca",
            "-days",
            "365",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
    let err = load_error(&s.dir);
    assert!(
        err.contains("/pki/front-proxy-ca.crt: is not a CA certificate"),
        "{err}"
    );
}

#[test]
fn load_refuses_a_corrupt_pem() {
    let s = saved();
    let path = s.dir.join("etcd/ca.crt");
    let text = fs::read_to_string(&path).unwrap();
    // Damage one base64 character in the middle of the body.
    let mut bytes = text.into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'*' { b'%' } else { b'*' };
    fs::write(&path, &bytes).unwrap();
    let (ok, _, _) = run(&s.dir, "openssl", &["x509", "-noout", "-in", "etcd/ca.crt"]);
    assert!(!ok, "openssl still reads the damaged certificate");
    let err = load_error(&s.dir);
    assert!(
        err.contains("/pki/etcd/ca.crt: not a valid PEM block"),
        "{err}"
    );
}

#[test]
fn load_refuses_a_truncated_key() {
    let s = saved();
    let path = s.dir.join("sa.key");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, &text[..text.len() / 2]).unwrap();
    let err = load_error(&s.dir);
    assert!(err.contains("/pki/sa.key:"), "{err}");
}

#[test]
fn files_written_have_private_modes() {
    let s = saved();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.dir), 0o700);
    assert_eq!(mode(&s.dir.join("etcd")), 0o700);
    for rel in SHARED_FILES {
        let expected = if rel.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode(&s.dir.join(rel)), expected, "{rel}");
    }
}

#[test]
fn debug_of_the_bundle_shows_no_key_material() {
    let s = saved();
    let debug = format!("{:?}", s.ca);
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    for key in ["ca.key", "front-proxy-ca.key", "etcd/ca.key", "sa.key"] {
        let text = fs::read_to_string(s.dir.join(key)).unwrap();
        for line in text.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "{key} leaks into Debug");
        }
    }
}

#[test]
fn load_of_a_missing_directory_is_no_local_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ClusterCa::load(&tmp.path().join("pki")).err();
    assert!(matches!(err, Some(PkiError::NoLocalCa { .. })), "{err:?}");
}
