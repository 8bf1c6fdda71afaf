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

/// Sign an approved CSR with the cluster signing CA. Ok(None): not a built-in signer.
pub fn sign(
    csr: &Value,
    ca_cert: &str,
    ca_key: &str,
    max: Duration,
) -> Result<Option<String>, String> {
    let subject = parse_request(csr)?;
    if !check(csr, &subject)? {
        return Ok(None);
    }
    let parsed = CertificateSigningRequestParams::from_pem(&subject.pem)
        .map_err(|e| format!("invalid certificate request: {e}"))?;
    let ca_pem = std::fs::read_to_string(ca_cert)
        .map_err(|e| format!("reading --cluster-signing-cert-file {ca_cert}: {e}"))?;
    let key_pem = std::fs::read_to_string(ca_key)
        .map_err(|e| format!("reading --cluster-signing-key-file {ca_key}: {e}"))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| format!("parsing --cluster-signing-key-file: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
        .map_err(|e| format!("parsing --cluster-signing-cert-file: {e}"))?;
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
        .signed_by(&issuer)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok(Some(cert.pem()))
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

    fn ca(dir: &std::path::Path) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "kubernetes");
        let cert = p.self_signed(&key).unwrap();
        let (c, k) = (dir.join("ca.crt"), dir.join("ca.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.to_string_lossy().into(), k.to_string_lossy().into())
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
        let pem = sign(&r, &c, &k, Duration::from_secs(3600))
            .unwrap()
            .unwrap();
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
            sign(&r, &c, &k, Duration::from_secs(3600)).unwrap_err(),
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
