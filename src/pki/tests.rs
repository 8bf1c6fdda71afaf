use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use time::{Duration, OffsetDateTime};

use super::bundle::{Origin, RawFiles};
use super::rsa::RsaKey;
use super::*;

/// Generating costs four RSA keys: share one bundle between the tests that only read it.
fn shared() -> &'static ClusterCa {
    static CA: OnceLock<ClusterCa> = OnceLock::new();
    CA.get_or_init(|| ClusterCa::generate().unwrap())
}

fn as_map(ca: &ClusterCa) -> BTreeMap<String, Vec<u8>> {
    ca.files()
        .iter()
        .map(|f| (f.path.to_string(), f.contents().to_vec()))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn common_name(pem_text: &str) -> String {
    let block = super::pem::decode(pem_text.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&block.der).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    cn.as_str().unwrap().to_string()
}

#[test]
fn generated_bundle_holds_the_eight_kubeadm_files_with_their_modes() {
    let files = shared().files();
    let paths: Vec<_> = files.iter().map(|f| f.path).collect();
    assert_eq!(paths, SHARED_FILES);
    for file in &files {
        let text = std::str::from_utf8(file.contents()).unwrap();
        let (label, mode) = match file.path {
            p if p.ends_with(".crt") => ("CERTIFICATE", 0o644),
            "sa.pub" => ("PUBLIC KEY", 0o644),
            _ => ("RSA PRIVATE KEY", 0o600),
        };
        assert!(
            text.starts_with(&format!("-----BEGIN {label}-----\n")),
            "{}",
            file.path
        );
        assert_eq!(file.mode, mode, "{}", file.path);
        assert_eq!(file.secret, mode == 0o600, "{}", file.path);
    }
}

#[test]
fn generated_cas_carry_kubeadm_common_names() {
    for kind in CaKind::ALL {
        assert_eq!(common_name(shared().cert_pem(kind)), kind.common_name());
    }
}

#[test]
fn generated_cas_have_distinct_keys() {
    let hashes: std::collections::BTreeSet<_> = CaKind::ALL
        .iter()
        .map(|k| discovery_hash(shared().cert_pem(*k)).unwrap())
        .collect();
    assert_eq!(hashes.len(), 3);
}

#[test]
fn bundle_discovery_hash_is_the_kubernetes_ca_hash() {
    assert_eq!(
        shared().discovery_hash().unwrap(),
        discovery_hash(shared().cert_pem(CaKind::Kubernetes)).unwrap()
    );
}

#[test]
fn files_read_back_from_a_master_rebuild_the_same_bundle() {
    let again = ClusterCa::from_files(&as_map(shared())).unwrap();
    assert_eq!(as_map(&again), as_map(shared()));
}

#[test]
fn from_files_accepts_absolute_kubeadm_paths_and_ignores_other_files() {
    let mut files: BTreeMap<String, Vec<u8>> = as_map(shared())
        .into_iter()
        .map(|(k, v)| (format!("{KUBEADM_PKI_DIR}/{k}"), v))
        .collect();
    files.insert("apiserver.crt".into(), b"not ours".to_vec());
    assert!(ClusterCa::from_files(&files).is_ok());
}

#[test]
fn from_files_names_the_missing_file_on_the_master() {
    let mut files = as_map(shared());
    files.remove("etcd/ca.key");
    let err = ClusterCa::from_files(&files).err().unwrap().to_string();
    assert!(
        err.starts_with("/etc/kubernetes/pki/etcd/ca.key (as read from a master) is missing"),
        "{err}"
    );
}

#[test]
fn saved_bundle_loads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("state/pki");
    shared().save(&pki).unwrap();
    let loaded = ClusterCa::load(&pki).unwrap();
    assert_eq!(as_map(&loaded), as_map(shared()));
}

#[test]
fn saved_files_have_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    shared().save(&pki).unwrap();
    assert_eq!(mode(&pki), 0o700);
    assert_eq!(mode(&pki.join("etcd")), 0o700);
    for file in shared().files() {
        assert_eq!(mode(&pki.join(file.path)), file.mode, "{}", file.path);
    }
}

#[test]
fn save_tightens_loose_modes_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(pki.join("etcd")).unwrap();
    std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(pki.join("ca.key"), "old").unwrap();
    std::fs::set_permissions(pki.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    shared().save(&pki).unwrap();
    assert_eq!(mode(&pki), 0o700);
    assert_eq!(mode(&pki.join("ca.key")), 0o600);
    let mut names: Vec<_> = walk(&pki);
    names.sort();
    let mut expected: Vec<_> = SHARED_FILES.iter().map(|s| s.to_string()).collect();
    expected.push("etcd".into());
    expected.sort();
    assert_eq!(names, expected);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.file_type().unwrap().is_dir() {
            out.extend(
                walk(&entry.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        }
        out.push(name);
    }
    out
}

#[test]
fn empty_directory_means_no_local_ca() {
    let dir = tempfile::tempdir().unwrap();
    let err = ClusterCa::load(dir.path()).err().unwrap();
    assert!(matches!(err, PkiError::NoLocalCa { .. }), "{err}");
    let err = ClusterCa::load(&dir.path().join("absent")).err().unwrap();
    assert!(matches!(err, PkiError::NoLocalCa { .. }), "{err}");
}

#[test]
fn load_names_a_missing_file_and_says_how_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    shared().save(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("sa.pub")).unwrap();
    let err = ClusterCa::load(dir.path()).err().unwrap().to_string();
    let file = dir.path().join("sa.pub");
    assert!(
        err.starts_with(&format!("{} is missing", file.display())),
        "{err}"
    );
    assert!(
        err.contains("recovers all CA files from the masters"),
        "{err}"
    );
}

#[test]
fn key_of_another_ca_is_refused() {
    let mut files = as_map(shared());
    let etcd_key = files["etcd/ca.key"].clone();
    files.insert("ca.key".into(), etcd_key);
    let err = ClusterCa::from_files(&files).err().unwrap().to_string();
    assert!(err.contains("/ca.key"), "{err}");
    assert!(err.contains("is not the key of ca.crt"), "{err}");
}

#[test]
fn service_account_public_key_of_another_key_is_refused() {
    let mut files = as_map(shared());
    let other = RsaKey::generate().unwrap().public_key_pem().unwrap();
    files.insert("sa.pub".into(), other.into_bytes());
    let err = ClusterCa::from_files(&files).err().unwrap().to_string();
    assert!(err.contains("sa.pub"), "{err}");
    assert!(err.contains("is not the public half of sa.key"), "{err}");
}

#[test]
fn certificate_that_is_not_a_ca_is_refused() {
    let key = RsaKey::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["kubernetes".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let cert = params.self_signed(&key).unwrap().pem();
    let mut files = as_map(shared());
    files.insert("front-proxy-ca.crt".into(), cert.into_bytes());
    files.insert(
        "front-proxy-ca.key".into(),
        key.to_pkcs1_pem().unwrap().as_bytes().to_vec(),
    );
    let err = ClusterCa::from_files(&files).err().unwrap().to_string();
    assert!(err.contains("front-proxy-ca.crt"), "{err}");
    assert!(err.contains("is not a CA certificate"), "{err}");
}

#[test]
fn expired_ca_is_refused_with_advice_to_rotate() {
    let raw: RawFiles = shared()
        .files()
        .iter()
        .map(|f| (f.path, zeroize::Zeroizing::new(f.contents().to_vec())))
        .collect();
    let after_expiry = OffsetDateTime::now_utc() + Duration::days(3651);
    let err = ClusterCa::validate(raw, &Origin::Master, after_expiry)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ca.crt"), "{err}");
    assert!(err.contains("expired on"), "{err}");
    assert!(err.contains("Manual Rotation of CA Certificates"), "{err}");
}

#[test]
fn corrupt_pem_is_refused() {
    let mut files = as_map(shared());
    let mut cert = String::from_utf8(files["etcd/ca.crt"].clone()).unwrap();
    cert.insert_str(100, "!!");
    files.insert("etcd/ca.crt".into(), cert.into_bytes());
    let err = ClusterCa::from_files(&files).err().unwrap().to_string();
    assert!(err.contains("etcd/ca.crt"), "{err}");
    assert!(err.contains("not a valid PEM block"), "{err}");
}

#[test]
fn binary_garbage_is_refused_as_not_text() {
    let mut files = as_map(shared());
    files.insert("sa.key".into(), vec![0xff, 0x00, 0xfe]);
    let err = ClusterCa::from_files(&files).err().unwrap().to_string();
    assert!(err.contains("sa.key"), "{err}");
    assert!(err.contains("is not text"), "{err}");
}

#[test]
fn debug_output_shows_no_key_material() {
    let ca = shared();
    let debug = format!("{ca:?} {:?}", ca.files());
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    for file in ca.files().iter().filter(|f| f.secret) {
        let text = std::str::from_utf8(file.contents()).unwrap();
        for line in text.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "{} leaks into Debug", file.path);
        }
    }
    // Certificates are public and do show.
    assert!(debug.contains("BEGIN CERTIFICATE"));
}
