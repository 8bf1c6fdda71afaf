//! CertificateSigningRequest checks and signing for the built-in signers (csrsigning controller).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde_json::Value;

pub struct Subject {
    pub cn: String,
    pub orgs: Vec<String>,
    pub has_sans: bool,
    pem: String,
}

/// Decode `spec.request` (base64 of a PEM CERTIFICATE REQUEST) and read its subject.
pub fn parse_request(csr: &Value) -> Result<Subject, String> {
    let raw = csr["spec"]["request"]
        .as_str()
        .ok_or("spec.request is missing")?;
    let pem_bytes = B64.decode(raw).map_err(|_| "spec.request is not base64")?;
    let pem = String::from_utf8(pem_bytes).map_err(|_| "spec.request is not PEM")?;
    let block = ::pem::parse(&pem).map_err(|_| "spec.request is not PEM")?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(block.contents())
            .map_err(|_| "cannot parse the certificate request")?;
    let subj = &req.certification_request_info.subject;
    let cn = subj
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let orgs = subj
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let has_sans = req.requested_extensions().is_some_and(|mut e| {
        e.any(|x| {
            matches!(
                x,
                x509_parser::extensions::ParsedExtension::SubjectAlternativeName(_)
            )
        })
    });
    Ok(Subject {
        cn,
        orgs,
        has_sans,
        pem,
    })
}

use x509_parser::prelude::FromDer;

fn usages(csr: &Value) -> Vec<String> {
    csr["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

/// Why a CSR for the kubelet client signer is not a valid kubelet client certificate request.
pub fn kubelet_client_problem(csr: &Value, s: &Subject) -> Option<String> {
    if s.orgs != ["system:nodes"] {
        return Some("subject organization is not system:nodes".into());
    }
    if !s.cn.starts_with("system:node:") {
        return Some("subject common name does not begin with system:node:".into());
    }
    if s.has_sans {
        return Some("DNS, email, IP or URI subjectAltNames are not allowed".into());
    }
    let u = usages(csr);
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if !u.iter().any(|x| x == "client auth") || u.iter().any(|x| !allowed.contains(&x.as_str())) {
        return Some(format!("usages did not match {allowed:?}"));
    }
    None
}

fn check(csr: &Value, s: &Subject) -> Result<bool, String> {
    let u = usages(csr);
    match csr["spec"]["signerName"].as_str().unwrap_or("") {
        "kubernetes.io/kube-apiserver-client-kubelet" => {
            kubelet_client_problem(csr, s).map_or(Ok(true), Err)
        }
        "kubernetes.io/kube-apiserver-client" => {
            if u.iter().any(|x| x == "server auth") || !u.iter().any(|x| x == "client auth") {
                return Err("invalid usage for client certificate".into());
            }
            Ok(true)
        }
        "kubernetes.io/kubelet-serving" => {
            if s.orgs != ["system:nodes"] || !s.cn.starts_with("system:node:") {
                return Err(
                    "subject must be system:node:<name> in organization system:nodes".into(),
                );
            }
            if !u.iter().any(|x| x == "server auth") {
                return Err("usages must include server auth".into());
            }
            Ok(true)
        }
        // Other signers are not this controller's business.
        _ => Ok(false),
    }
}

/// Whether `csr` is for one of the built-in signers and, if so, a valid request for it
/// (signer.go `handle`: Ok(false) for signers this controller does not serve, Err for a
/// request that gets a Failed condition).
pub fn validate(csr: &Value) -> Result<bool, String> {
    let subject = parse_request(csr)?;
    check(csr, &subject)
}

/// Sign an approved CSR with the cluster signing CA. Ok(None): not a built-in signer.
pub fn sign(csr: &Value, ca: &SigningCa, max: Duration) -> Result<Option<String>, String> {
    let subject = parse_request(csr)?;
    if !check(csr, &subject)? {
        return Ok(None);
    }
    let parsed = CertificateSigningRequestParams::from_pem(&subject.pem)
        .map_err(|e| format!("invalid certificate request: {e}"))?;
    let requested = csr["spec"]["expirationSeconds"]
        .as_u64()
        .map(Duration::from_secs)
        .unwrap_or(max);
    let lifetime = requested.min(max);
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = parsed.params.distinguished_name.clone();
    params.subject_alt_names = parsed.params.subject_alt_names.clone();
    // Backdated like the real signer, to tolerate clock skew.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    let serial: [u8; 16] = rand::rng().random();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    for u in usages(csr) {
        match u.as_str() {
            "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "client auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth),
            _ => {}
        }
    }
    let to_sign = CertificateSigningRequestParams {
        params,
        public_key: parsed.public_key,
    };
    let cert = to_sign
        .signed_by(&ca.issuer)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok(Some(cert.pem()))
}

// ---- the signing CA ---------------------------------------------------------------------
//
// The csrsigning controller reads `--cluster-signing-cert-file`/`--cluster-signing-key-file`
// through a dynamic cert/key loader named "csr-controller" (k8s.io/apiserver
// pkg/server/dynamiccertificates `NewDynamicServingContentFromFiles`, `loadCertKeyPair`:
// both files non-empty, `tls.X509KeyPair` must accept them) and then turns the content into
// its CA (pkg/controller/certificates/signer ca_provider.go `newCAProvider`, `setCA`: exactly
// one certificate). A failure at start fails the controller, and kube-controller-manager
// exits; later, changed files are re-read before signing: content the loader refuses is
// ignored (the old CA keeps signing), content `setCA` refuses stops all signing.

/// The name the loader goes by in messages: `csr-controller::<cert file>::<key file>`.
pub fn loader_name(cert_file: &str, key_file: &str) -> String {
    format!("csr-controller::{cert_file}::{key_file}")
}

/// An I/O error as Go's os.ReadFile words it.
fn read_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("open {path}: no such file or directory"),
        std::io::ErrorKind::PermissionDenied => format!("open {path}: permission denied"),
        std::io::ErrorKind::IsADirectory => format!("read {path}: is a directory"),
        _ => format!("open {path}: {e}"),
    })
}

fn pem_blocks(data: &[u8]) -> Vec<::pem::Pem> {
    ::pem::parse_many(data).unwrap_or_default()
}

/// The public-key algorithm (OID) and key bits of a DER SubjectPublicKeyInfo.
fn spki_parts(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> (String, Vec<u8>) {
    (
        spki.algorithm.algorithm.to_id_string(),
        spki.subject_public_key.data.to_vec(),
    )
}

/// The checks of Go's `tls.X509KeyPair`: the first CERTIFICATE block is the leaf (further
/// ones are its chain), the key is the first block whose type ends in "PRIVATE KEY", and it
/// must be the private half of the leaf's public key.
pub fn x509_key_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    let blocks = pem_blocks(cert_pem);
    let Some(leaf) = blocks.iter().find(|b| b.tag() == "CERTIFICATE") else {
        let skipped: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
        return Err(match skipped.as_slice() {
            [] => "tls: failed to find any PEM data in certificate input".into(),
            [one] if one.ends_with("PRIVATE KEY") => "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched".into(),
            _ => format!(
                "tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: [{}]",
                skipped.join(" ")
            ),
        });
    };
    let blocks = pem_blocks(key_pem);
    let is_key = |t: &str| t == "PRIVATE KEY" || t.ends_with(" PRIVATE KEY");
    let Some(key_block) = blocks.iter().find(|b| is_key(b.tag())) else {
        let skipped: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
        return Err(match skipped.as_slice() {
            [] => "tls: failed to find any PEM data in key input".into(),
            ["CERTIFICATE"] => {
                "tls: found a certificate rather than a key in the PEM for the private key".into()
            }
            _ => format!(
                "tls: failed to find PEM block with type ending in \"PRIVATE KEY\" in key input after skipping PEM blocks of the following types: [{}]",
                skipped.join(" ")
            ),
        });
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.contents())
        .map_err(|_| "x509: malformed certificate".to_string())?;
    let key = KeyPair::try_from(key_block.contents())
        .map_err(|_| "tls: failed to parse private key".to_string())?;
    let (cert_alg, cert_pub) = spki_parts(cert.public_key());
    let key_spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&key_spki)
        .map_err(|_| "tls: failed to parse private key".to_string())?;
    let (key_alg, key_pub) = spki_parts(&parsed);
    if cert_alg != key_alg {
        return Err("tls: private key type does not match public key type".into());
    }
    if cert_pub != key_pub {
        return Err("tls: private key does not match public key".into());
    }
    Ok(())
}

/// Go's `cert.ParseCertsPEM`: every CERTIFICATE block, at least one.
fn parse_certs_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = vec![];
    for b in pem_blocks(pem) {
        if b.tag() != "CERTIFICATE" {
            continue;
        }
        x509_parser::parse_x509_certificate(b.contents())
            .map_err(|_| "x509: malformed certificate".to_string())?;
        out.push(b.contents().to_vec());
    }
    if out.is_empty() {
        return Err("data does not contain any valid RSA or ECDSA certificates".into());
    }
    Ok(out)
}

/// The loader's read (`loadCertKeyPair`): both files, non-empty, accepted by X509KeyPair.
fn read_pair(cert_file: &str, key_file: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cert = read_file(cert_file)?;
    let key = read_file(key_file)?;
    if cert.is_empty() || key.is_empty() {
        return Err(format!(
            "missing content for serving cert \"{}\"",
            loader_name(cert_file, key_file)
        ));
    }
    x509_key_pair(&cert, &key)?;
    Ok((cert, key))
}

/// The CA the signer signs with, and the file content it was made from.
pub struct SigningCa {
    raw_cert: Vec<u8>,
    raw_key: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl SigningCa {
    /// `setCA`: the cert content must hold exactly one certificate.
    fn from_content(name: &str, cert: &[u8], key: &[u8]) -> Result<Self, String> {
        let certs = parse_certs_pem(cert)
            .map_err(|e| format!("error reading CA cert file \"{name}\": {e}"))?;
        if certs.len() != 1 {
            return Err(format!(
                "error reading CA cert file \"{name}\": expected 1 certificate, found {}",
                certs.len()
            ));
        }
        let key_block = pem_blocks(key)
            .into_iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| format!("error reading CA key file \"{name}\": data does not contain a valid RSA or ECDSA private key"))?;
        let kp = KeyPair::try_from(key_block.contents())
            .map_err(|e| format!("error reading CA key file \"{name}\": {e}"))?;
        let der = rustls::pki_types::CertificateDer::from(certs[0].as_slice());
        let issuer = Issuer::from_ca_cert_der(&der, kp)
            .map_err(|e| format!("error reading CA cert file \"{name}\": {e}"))?;
        Ok(Self {
            raw_cert: cert.to_vec(),
            raw_key: key.to_vec(),
            issuer,
        })
    }

    /// `newCAProvider`: what the controller does at start. The error is the one the
    /// controller fails with (kube-controller-manager prefixes the signer's name and exits).
    pub fn load(cert_file: &str, key_file: &str) -> Result<Self, String> {
        if cert_file.is_empty() || key_file.is_empty() {
            return Err(format!(
                "error reading CA cert file \"{cert_file}\": missing filename for serving cert"
            ));
        }
        let (cert, key) = read_pair(cert_file, key_file)
            .map_err(|e| format!("error reading CA cert file \"{cert_file}\": {e}"))?;
        Self::from_content(&loader_name(cert_file, key_file), &cert, &key)
    }
}

/// The signer's CA over time: loaded at start, re-read before each signing.
pub struct Signer {
    cert_file: String,
    key_file: String,
    state: std::sync::Mutex<SignerState>,
}

struct SignerState {
    /// What the loader last accepted.
    loaded: (Vec<u8>, Vec<u8>),
    ca: SigningCa,
    last_load_error: Option<String>,
}

impl Signer {
    /// Load the CA as the controller does when it starts; Err is fatal for the process.
    pub fn start(cert_file: &str, key_file: &str) -> Result<Self, String> {
        let ca = SigningCa::load(cert_file, key_file)?;
        Ok(Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            state: std::sync::Mutex::new(SignerState {
                loaded: (ca.raw_cert.clone(), ca.raw_key.clone()),
                ca,
                last_load_error: None,
            }),
        })
    }

    /// Run `f` with the current CA (`caProvider.currentCA`): files the loader refuses leave
    /// the previous CA in place; accepted content that `setCA` refuses is an error.
    pub fn with_ca<R>(&self, f: impl FnOnce(&SigningCa) -> R) -> Result<R, String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match read_pair(&self.cert_file, &self.key_file) {
            Ok(pair) => {
                st.loaded = pair;
                st.last_load_error = None;
            }
            Err(e) => {
                if st.last_load_error.as_deref() != Some(e.as_str()) {
                    eprintln!("E0000 kube-controller-manager: key failed with : {e}");
                    st.last_load_error = Some(e);
                }
            }
        }
        if st.loaded.0 != st.ca.raw_cert || st.loaded.1 != st.ca.raw_key {
            let name = loader_name(&self.cert_file, &self.key_file);
            st.ca = SigningCa::from_content(&name, &st.loaded.0, &st.loaded.1)?;
        }
        Ok(f(&st.ca))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn csr(cn: &str, org: &str, usages: &[&str]) -> Value {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        let req = p.serialize_request(&key).unwrap().pem().unwrap();
        json!({"spec": {"request": B64.encode(req), "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": usages}})
    }

    /// A self-signed CA named like kubeadm's: (certificate PEM, key PEM).
    fn new_ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "kubernetes");
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &std::path::Path, cert: &str, key: &str) -> (String, String) {
        let (c, k) = (dir.join("ca.crt"), dir.join("ca.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c.to_string_lossy().into(), k.to_string_lossy().into())
    }

    fn ca(dir: &std::path::Path) -> (String, String) {
        let (cert, key) = new_ca();
        write(dir, &cert, &key)
    }

    fn approved_kubelet_csr() -> Value {
        csr(
            "system:node:w1",
            "system:nodes",
            &["digital signature", "client auth"],
        )
    }

    #[test]
    fn signing_cert_file_with_two_certificates_is_refused_like_the_csr_controller() {
        // ca.crt = [A, B] with A's key: tls.X509KeyPair accepts it (it looks at the first
        // certificate only), setCA does not.
        let dir = tempfile::tempdir().unwrap();
        let (a, a_key) = new_ca();
        let (b, _) = new_ca();
        let (c, k) = write(dir.path(), &format!("{a}{b}"), &a_key);
        let err = SigningCa::load(&c, &k).err().unwrap();
        assert_eq!(
            err,
            format!(
                "error reading CA cert file \"csr-controller::{c}::{k}\": expected 1 certificate, found 2"
            )
        );
        assert!(Signer::start(&c, &k).is_err());
    }

    #[test]
    fn signing_key_must_match_the_certificate_like_tls_x509_key_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = new_ca();
        let (b, b_key) = new_ca();
        let (c, k) = write(dir.path(), &a, &b_key);
        assert_eq!(
            SigningCa::load(&c, &k).err().unwrap(),
            format!(
                "error reading CA cert file \"{c}\": tls: private key does not match public key"
            )
        );
        // The key of the bundle's second certificate: X509KeyPair compares with the first.
        let (c, k) = write(dir.path(), &format!("{a}{b}"), &b_key);
        assert_eq!(
            SigningCa::load(&c, &k).err().unwrap(),
            format!(
                "error reading CA cert file \"{c}\": tls: private key does not match public key"
            )
        );
        // An RSA key for an ECDSA certificate.
        let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let (c, k) = write(dir.path(), &a, &rsa.serialize_pem());
        assert_eq!(
            SigningCa::load(&c, &k).err().unwrap(),
            format!(
                "error reading CA cert file \"{c}\": tls: private key type does not match public key type"
            )
        );
    }

    #[test]
    fn signing_files_that_cannot_be_read_fail_like_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ca(dir.path());
        std::fs::remove_file(&k).unwrap();
        assert_eq!(
            SigningCa::load(&c, &k).err().unwrap(),
            format!("error reading CA cert file \"{c}\": open {k}: no such file or directory")
        );
        std::fs::write(&k, "").unwrap();
        assert_eq!(
            SigningCa::load(&c, &k).err().unwrap(),
            format!(
                "error reading CA cert file \"{c}\": missing content for serving cert \"csr-controller::{c}::{k}\""
            )
        );
        let (_, key) = new_ca();
        std::fs::write(&c, &key).unwrap();
        std::fs::write(&k, &key).unwrap();
        assert_eq!(
            SigningCa::load(&c, &k).err().unwrap(),
            format!(
                "error reading CA cert file \"{c}\": tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched"
            )
        );
    }

    #[test]
    fn running_signer_refuses_a_bundle_and_ignores_a_key_that_stops_matching() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_key) = new_ca();
        let (b, b_key) = new_ca();
        let (c, k) = write(dir.path(), &a, &a_key);
        let signer = Signer::start(&c, &k).unwrap();
        let signs =
            |s: &Signer| s.with_ca(|ca| sign(&approved_kubelet_csr(), ca, Duration::from_secs(60)));
        assert!(signs(&signer).unwrap().unwrap().is_some());
        // The loader takes [A, B] (A's key matches the first), setCA refuses it: no signing.
        std::fs::write(&c, format!("{a}{b}")).unwrap();
        let err = signs(&signer).err().unwrap();
        assert!(err.ends_with("expected 1 certificate, found 2"), "{err}");
        // Back to A alone: signing resumes.
        std::fs::write(&c, &a).unwrap();
        assert!(signs(&signer).unwrap().unwrap().is_some());
        // B's key with A's certificate: the loader refuses the pair and A keeps signing.
        std::fs::write(&k, &b_key).unwrap();
        let pem = signs(&signer).unwrap().unwrap().unwrap();
        assert!(crate::tlsutil::client_cert_verifies(
            pem.as_bytes(),
            a.as_bytes()
        ));
        assert!(!crate::tlsutil::client_cert_verifies(
            pem.as_bytes(),
            b.as_bytes()
        ));
    }

    #[test]
    fn kubelet_client_csr_is_signed_with_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ca(dir.path());
        let r = csr(
            "system:node:w1",
            "system:nodes",
            &["digital signature", "client auth"],
        );
        let ca = SigningCa::load(&c, &k).unwrap();
        let pem = sign(&r, &ca, Duration::from_secs(3600)).unwrap().unwrap();
        let block = ::pem::parse(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(block.contents()).unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:node:w1"
        );
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
    }

    #[test]
    fn kubelet_client_csr_with_wrong_organization_fails_validation() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ca(dir.path());
        let r = csr(
            "system:node:w1",
            "system:masters",
            &["digital signature", "client auth"],
        );
        assert_eq!(
            sign(
                &r,
                &SigningCa::load(&c, &k).unwrap(),
                Duration::from_secs(3600)
            )
            .unwrap_err(),
            "subject organization is not system:nodes"
        );
    }

    #[test]
    fn kubelet_client_csr_with_server_usage_fails_validation() {
        let r = csr(
            "system:node:w1",
            "system:nodes",
            &["digital signature", "server auth"],
        );
        let s = parse_request(&r).unwrap();
        assert!(
            kubelet_client_problem(&r, &s)
                .unwrap()
                .starts_with("usages did not match")
        );
    }
}
