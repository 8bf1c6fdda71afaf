//! RSA keys as kubeadm makes them (2048 bits, PKCS#1 PEM), backed by aws-lc, whose key
//! objects wipe their private parts when freed.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKey};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use pkcs8::der::Decode;
use zeroize::Zeroizing;

use super::pem;

/// rsaEncryption, the only key algorithm this module writes or accepts.
const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

pub(crate) const PKCS1_LABEL: &str = "RSA PRIVATE KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
pub(crate) const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

pub(crate) struct RsaKey(KeyPair);

impl RsaKey {
    pub fn generate() -> Result<Self, String> {
        KeyPair::generate(KeySize::Rsa2048)
            .map(Self)
            .map_err(|_| "RSA-2048 key generation failed".to_string())
    }

    /// Parses an unencrypted RSA private key, PKCS#1 ("RSA PRIVATE KEY", what kubeadm
    /// writes) or PKCS#8 ("PRIVATE KEY", what openssl 3 writes by default).
    pub fn from_pem(text: &[u8]) -> Result<Self, String> {
        let block = pem::decode_labelled(text, &[PKCS1_LABEL, PKCS8_LABEL])?;
        let parsed = if block.label == PKCS1_LABEL {
            KeyPair::from_der(&block.der)
        } else {
            KeyPair::from_pkcs8(&block.der)
        };
        parsed
            .map(Self)
            .map_err(|e| format!("not a usable RSA private key ({e})"))
    }

    /// The private key as PKCS#1 PEM, the form kubeadm writes.
    pub fn to_pkcs1_pem(&self) -> Result<Zeroizing<String>, String> {
        let pkcs8 = self
            .0
            .as_der()
            .map_err(|_| "cannot serialize an RSA private key".to_string())?;
        // PKCS#8 wraps the PKCS#1 RSAPrivateKey in an OCTET STRING: unwrap it.
        let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8.as_ref())
            .map_err(|e| format!("cannot read back an RSA private key ({e})"))?;
        if info.algorithm.oid != RSA_ENCRYPTION {
            return Err("the crypto library returned a non-RSA key".to_string());
        }
        pem::encode(PKCS1_LABEL, info.private_key.as_bytes())
    }

    /// The public key as a PEM "PUBLIC KEY" (SubjectPublicKeyInfo), like kubeadm's sa.pub.
    pub fn public_key_pem(&self) -> Result<String, String> {
        let spki = self
            .0
            .public_key()
            .as_der()
            .map_err(|_| "cannot serialize an RSA public key".to_string())?;
        pem::encode(PUBLIC_KEY_LABEL, spki.as_ref()).map(|text| text.to_string())
    }

    /// The public key as a DER RSAPublicKey, canonical so two encodings compare equal.
    pub fn public_der(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }
}

/// The canonical DER RSAPublicKey inside a DER SubjectPublicKeyInfo, for comparing keys.
pub(crate) fn rsa_public_der(spki_der: &[u8]) -> Result<Vec<u8>, String> {
    PublicKey::from_der(spki_der)
        .map(|key| key.as_ref().to_vec())
        .map_err(|e| format!("does not hold an RSA public key ({e})"))
}

impl rcgen::PublicKeyData for RsaKey {
    fn der_bytes(&self) -> &[u8] {
        self.public_der()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

// Signing through aws-lc directly keeps the private key out of rcgen's own (unwiped) buffers.
impl rcgen::SigningKey for RsaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut signature = vec![0u8; self.0.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.0
            .sign(&RSA_PKCS1_SHA256, &rng, msg, &mut signature)
            .map_err(|_| rcgen::Error::RingUnspecified)?;
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_rsa_2048_and_survives_a_pkcs1_round_trip() {
        let key = RsaKey::generate().unwrap();
        assert_eq!(key.0.public_modulus_len(), 256);
        let text = key.to_pkcs1_pem().unwrap();
        assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let again = RsaKey::from_pem(text.as_bytes()).unwrap();
        assert_eq!(again.public_der(), key.public_der());
    }

    #[test]
    fn public_key_pem_holds_the_same_public_key() {
        let key = RsaKey::generate().unwrap();
        let text = key.public_key_pem().unwrap();
        let block = pem::decode_labelled(text.as_bytes(), &[PUBLIC_KEY_LABEL]).unwrap();
        assert_eq!(rsa_public_der(&block.der).unwrap(), key.public_der());
    }

    #[test]
    fn two_generated_keys_differ() {
        let a = RsaKey::generate().unwrap();
        let b = RsaKey::generate().unwrap();
        assert_ne!(a.public_der(), b.public_der());
    }

    #[test]
    fn a_certificate_is_not_accepted_as_a_key() {
        let text = pem::encode("CERTIFICATE", &[1, 2, 3]).unwrap();
        let err = RsaKey::from_pem(text.as_bytes()).err().unwrap();
        assert!(err.contains("\"CERTIFICATE\""), "{err}");
    }
}
