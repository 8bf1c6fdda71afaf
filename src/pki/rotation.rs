//! Rotating the cluster's CAs (Kubernetes, front-proxy, etcd): the next set of shared files
//! (three new CAs, the same service-account keys), the trust bundles laid down while old and
//! new CAs are both valid, and kubelet client certificates signed by the new Kubernetes CA.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::bundle::{CaKind, ClusterCa, KeyPem, generate_ca};
use super::cert::{BACKDATE, random_serial};
use super::error::PkiError;
use super::pem;
use super::rsa::RsaKey;

/// What the controller-manager's signer gives a kubelet client certificate by default
/// (`--cluster-signing-duration`, 8760h).
const KUBELET_CLIENT_VALIDITY: Duration = Duration::days(365);

impl ClusterCa {
    /// Three new CAs, the same service-account keys (service-account tokens stay valid).
    pub fn with_new_cas(&self) -> Result<Self, PkiError> {
        let now = OffsetDateTime::now_utc();
        Ok(Self {
            kubernetes: generate_ca(CaKind::Kubernetes, now)?,
            front_proxy: generate_ca(CaKind::FrontProxy, now)?,
            etcd: generate_ca(CaKind::Etcd, now)?,
            sa_key: KeyPem(self.sa_key.0.clone()),
            sa_pub: self.sa_pub.clone(),
        })
    }

    /// Lowercase hex SHA-256 over the three CA certificates (their DER): names a rotation.
    pub fn ca_fingerprint(&self) -> Result<String, PkiError> {
        let mut digest = Sha256::new();
        for kind in CaKind::ALL {
            let block = pem::decode_labelled(self.cert_pem(kind).as_bytes(), &["CERTIFICATE"])
                .map_err(PkiError::Certificate)?;
            digest.update(&*block.der);
        }
        Ok(hex::encode(digest.finalize()))
    }

    /// A CA's private key as PEM text (never print or log it).
    pub fn key_pem(&self, kind: CaKind) -> &str {
        match kind {
            CaKind::Kubernetes => &self.kubernetes.key.0,
            CaKind::FrontProxy => &self.front_proxy.key.0,
            CaKind::Etcd => &self.etcd.key.0,
        }
    }

    /// A kubelet client certificate for `node` (CN `system:node:<node>`, O `system:nodes`,
    /// client auth, a new ECDSA P-256 key, one year), signed by the Kubernetes CA: what the
    /// controller-manager signs for a kubelet's CSR. Returns the certificate followed by its
    /// key, the layout of the kubelet's `kubelet-client-current.pem`.
    pub fn kubelet_client_pem(&self, node: &str) -> Result<Zeroizing<String>, PkiError> {
        let fail = |reason: String| PkiError::Generate {
            what: "kubelet client certificate",
            reason,
        };
        let ca_key = RsaKey::from_pem(self.kubernetes.key.0.as_bytes()).map_err(fail)?;
        let issuer = Issuer::from_ca_cert_pem(&self.kubernetes.cert, ca_key)
            .map_err(|e| fail(e.to_string()))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| fail(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "system:nodes");
        name.push(DnType::CommonName, format!("system:node:{node}"));
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + KUBELET_CLIENT_VALIDITY;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Zeroizing::new(format!(
            "{}{}",
            cert.pem(),
            Zeroizing::new(key.serialize_pem()).as_str()
        )))
    }
}

/// Two PEM texts as one bundle, `first` first (the certificate a signer picks is the first).
pub fn ca_bundle(first: &str, second: &str) -> String {
    let mut out = first.trim_end().to_string();
    out.push('\n');
    out.push_str(second.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_ca_set_has_three_new_cas_and_the_same_service_account_keys() {
        let old = ClusterCa::generate().unwrap();
        let next = old.with_new_cas().unwrap();
        for kind in CaKind::ALL {
            assert_ne!(old.cert_pem(kind), next.cert_pem(kind));
            assert_ne!(old.key_pem(kind), next.key_pem(kind));
        }
        assert_ne!(
            old.ca_fingerprint().unwrap(),
            next.ca_fingerprint().unwrap()
        );
        let files = |ca: &ClusterCa| -> Vec<Vec<u8>> {
            ca.files()[6..]
                .iter()
                .map(|f| f.contents().to_vec())
                .collect()
        };
        assert_eq!(files(&old), files(&next));
        // The next set validates like any other (its key belongs to its certificate).
        let dir = tempfile::tempdir().unwrap();
        next.save(dir.path()).unwrap();
        let loaded = ClusterCa::load(dir.path()).unwrap();
        assert_eq!(
            loaded.ca_fingerprint().unwrap(),
            next.ca_fingerprint().unwrap()
        );
    }

    #[test]
    fn kubelet_client_certificate_is_signed_by_the_kubernetes_ca_for_its_node() {
        use x509_parser::prelude::*;
        let ca = ClusterCa::generate().unwrap();
        let pem_text = ca.kubelet_client_pem("worker-1").unwrap();
        assert!(pem_text.contains("BEGIN CERTIFICATE"));
        assert!(pem_text.contains("PRIVATE KEY"));
        let end = pem_text.find("-----END CERTIFICATE-----").unwrap() + 25;
        let block =
            crate::pki::pem::decode_labelled(pem_text[..end].as_bytes(), &["CERTIFICATE"]).unwrap();
        let (_, cert) = parse_x509_certificate(&block.der).unwrap();
        assert_eq!(
            cert.subject().to_string(),
            "O=system:nodes, CN=system:node:worker-1"
        );
        assert_eq!(cert.issuer().to_string(), "CN=kubernetes");
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        let ca_block = crate::pki::pem::decode_labelled(
            ca.cert_pem(CaKind::Kubernetes).as_bytes(),
            &["CERTIFICATE"],
        )
        .unwrap();
        let (_, ca_cert) = parse_x509_certificate(&ca_block.der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        let other = ClusterCa::generate().unwrap();
        let other_block = crate::pki::pem::decode_labelled(
            other.cert_pem(CaKind::Kubernetes).as_bytes(),
            &["CERTIFICATE"],
        )
        .unwrap();
        let (_, other_cert) = parse_x509_certificate(&other_block.der).unwrap();
        assert!(
            cert.verify_signature(Some(other_cert.public_key()))
                .is_err()
        );
    }

    #[test]
    fn bundle_puts_the_first_certificate_first_one_per_line() {
        assert_eq!(ca_bundle("A\n", "B"), "A\nB\n");
        assert_eq!(ca_bundle("A", "B\n\n"), "A\nB\n");
    }
}
