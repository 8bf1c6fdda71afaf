//! CA certificates: making them the way kubeadm does, and reading what the rest of the
//! installer needs from any PEM certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose, SanType,
    SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::error::PkiError;
use super::pem;
use super::rsa::{RsaKey, rsa_public_der};

/// kubeadm's CA lifetime: ten 365-day years.
pub(crate) const CA_VALIDITY: Duration = Duration::days(3650);

/// Starts validity a little in the past so a master whose clock lags ours still accepts
/// the CA straight away.
pub(crate) const BACKDATE: Duration = Duration::minutes(5);

/// A self-signed CA like kubeadm's: CN (and a DNS SAN) `common_name`, CA:TRUE and key
/// usages digitalSignature, keyEncipherment, keyCertSign (both critical), a subject key
/// identifier, a random serial. Returns the PEM certificate.
pub(crate) fn self_signed_ca(
    common_name: &str,
    key: &RsaKey,
    now: OffsetDateTime,
) -> Result<String, String> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let dns = common_name
        .try_into()
        .map_err(|e| format!("bad CA name {common_name:?}: {e}"))?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params
        .self_signed(key)
        .map(|cert| cert.pem())
        .map_err(|e| format!("cannot sign the {common_name} CA certificate ({e})"))
}

/// 16 random bytes, top bit clear so the DER INTEGER stays positive and 16 bytes long.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// What the PKI checks about a certificate.
pub(crate) struct CertInfo {
    pub is_ca: bool,
    /// `None` when the certificate has no keyUsage extension (then any use is allowed).
    pub may_sign_certs: Option<bool>,
    pub not_after: OffsetDateTime,
    /// DER SubjectPublicKeyInfo, exactly as in the certificate.
    pub spki_der: Vec<u8>,
}

impl CertInfo {
    /// The canonical RSA public key, for comparing with a private key.
    pub fn rsa_public_der(&self) -> Result<Vec<u8>, String> {
        rsa_public_der(&self.spki_der)
    }
}

/// Parses one PEM certificate. Errors are short phrases to put after a file name.
pub(crate) fn inspect(pem_text: &[u8]) -> Result<CertInfo, String> {
    let block = pem::decode_labelled(pem_text, &["CERTIFICATE"])?;
    let (rest, cert) = x509_parser::parse_x509_certificate(&block.der)
        .map_err(|e| format!("is not a valid X.509 certificate ({e})"))?;
    if !rest.is_empty() {
        return Err("has trailing bytes after the certificate".to_string());
    }
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| format!("has a malformed basicConstraints extension ({e})"))?
        .is_some_and(|ext| ext.value.ca);
    let may_sign_certs = cert
        .key_usage()
        .map_err(|e| format!("has a malformed keyUsage extension ({e})"))?
        .map(|ext| ext.value.key_cert_sign());
    Ok(CertInfo {
        is_ca,
        may_sign_certs,
        not_after: cert.validity().not_after.to_datetime(),
        spki_der: cert.public_key().raw.to_vec(),
    })
}

/// The value for `kubeadm join --discovery-token-ca-cert-hash`: `sha256:` and the lowercase
/// hex SHA-256 of the CA certificate's DER SubjectPublicKeyInfo.
pub fn discovery_hash(ca_cert_pem: &str) -> Result<String, PkiError> {
    let info = inspect(ca_cert_pem.as_bytes()).map_err(PkiError::Certificate)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(&info.spki_der))
    ))
}

/// When a PEM certificate expires (its notAfter).
pub fn cert_expiry(cert_pem: &str) -> Result<OffsetDateTime, PkiError> {
    inspect(cert_pem.as_bytes())
        .map(|info| info.not_after)
        .map_err(PkiError::Certificate)
}

/// Whole days from `now` until a PEM certificate expires; negative once it has expired.
pub fn days_left(cert_pem: &str, now: OffsetDateTime) -> Result<i64, PkiError> {
    let not_after = cert_expiry(cert_pem)?;
    Ok((not_after - now).whole_days())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(now: OffsetDateTime) -> String {
        let key = RsaKey::generate().unwrap();
        self_signed_ca("kubernetes", &key, now).unwrap()
    }

    #[test]
    fn generated_ca_is_a_ca_that_may_sign_certificates() {
        let info = inspect(ca(OffsetDateTime::now_utc()).as_bytes()).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.may_sign_certs, Some(true));
    }

    #[test]
    fn generated_ca_lasts_ten_years() {
        let now = OffsetDateTime::now_utc();
        let expiry = cert_expiry(&ca(now)).unwrap();
        // Certificates carry whole seconds.
        assert!((expiry - (now + CA_VALIDITY)).abs() < Duration::seconds(1));
        assert_eq!(days_left(&ca(now), now).unwrap(), 3649);
    }

    #[test]
    fn days_left_is_negative_after_expiry() {
        let now = OffsetDateTime::now_utc();
        let later = now + CA_VALIDITY + Duration::days(3);
        assert_eq!(days_left(&ca(now), later).unwrap(), -3);
    }

    #[test]
    fn discovery_hash_is_sha256_of_the_public_key_info() {
        let key = RsaKey::generate().unwrap();
        let pem_text = self_signed_ca("kubernetes", &key, OffsetDateTime::now_utc()).unwrap();
        let hash = discovery_hash(&pem_text).unwrap();
        let spki_pem = key.public_key_pem().unwrap();
        let spki = pem::decode(spki_pem.as_bytes()).unwrap();
        assert_eq!(
            hash,
            format!("sha256:{}", hex::encode(Sha256::digest(&*spki.der)))
        );
        assert_eq!(hash.len(), "sha256:".len() + 64);
        assert!(
            hash[7..]
                .chars()
                .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
        );
    }

    #[test]
    fn two_cas_get_different_serials() {
        let now = OffsetDateTime::now_utc();
        let serial = |pem_text: &str| {
            let block = pem::decode(pem_text.as_bytes()).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&block.der).unwrap();
            cert.raw_serial().to_vec()
        };
        assert_ne!(serial(&ca(now)), serial(&ca(now)));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let err = discovery_hash("hello").err().unwrap();
        assert!(matches!(err, PkiError::Certificate(_)));
        let not_x509 = pem::encode("CERTIFICATE", &[0x30, 0x03, 1, 2, 3]).unwrap();
        assert!(cert_expiry(&not_x509).is_err());
    }
}
