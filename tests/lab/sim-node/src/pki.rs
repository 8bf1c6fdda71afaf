//! Certificates and keys the way kubeadm lays them out under /etc/kubernetes/pki.

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PKCS_RSA_SHA256, RsaKeySize, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::util::write_file;

pub const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// kubeadm's `encryptionAlgorithm` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgo {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgo {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "" | "RSA-2048" => Self::Rsa2048,
            "RSA-3072" => Self::Rsa3072,
            "RSA-4096" => Self::Rsa4096,
            "ECDSA-P256" => Self::EcdsaP256,
            "ECDSA-P384" => Self::EcdsaP384,
            other => bail!(
                "encryptionAlgorithm: Invalid value: {other:?}: invalid encryption algorithm, supported: [ECDSA-P256 ECDSA-P384 RSA-2048 RSA-3072 RSA-4096]"
            ),
        })
    }

    pub fn generate(self) -> Result<KeyPair> {
        let rsa = |size| KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, size);
        let kp = match self {
            Self::Rsa2048 => rsa(RsaKeySize::_2048),
            Self::Rsa3072 => rsa(RsaKeySize::_3072),
            Self::Rsa4096 => rsa(RsaKeySize::_4096),
            Self::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            Self::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        };
        kp.context("generating a private key")
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// The subject and names of a certificate to issue.
#[derive(Debug, Clone)]
pub struct CertSpec {
    pub cn: String,
    pub orgs: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
    pub validity: Duration,
}

impl CertSpec {
    pub fn client(cn: &str, orgs: &[&str]) -> Self {
        Self {
            cn: cn.into(),
            orgs: orgs.iter().map(|s| s.to_string()).collect(),
            dns: vec![],
            ips: vec![],
            usage: Usage::Client,
            validity: YEAR,
        }
    }
}

/// A certificate authority whose key is at hand.
pub struct Ca {
    pub cert_pem: String,
    pub key: KeyPair,
}

impl Ca {
    /// kubeadm's `LoadCertificateAuthority` (cmd/kubeadm/app/phases/certs/certs.go) with
    /// pkiutil `TryLoadCertAndKeyFromDisk`: the FIRST certificate of `base.crt` (a bundle of
    /// several is fine: `certs[0]`), the key from `base.key`, the certificate must be a CA.
    /// Like upstream it does NOT check that the key belongs to the certificate: a wrong key
    /// signs leaves that later fail verification against the certificate.
    pub fn load(dir: &Path, base: &str) -> Result<Self> {
        let crt = dir.join(format!("{base}.crt"));
        let key = dir.join(format!("{base}.key"));
        let file_pem = std::fs::read_to_string(&crt).with_context(|| {
            format!(
                "failure loading {base} certificate authority: couldn't load the certificate file {}",
                crt.display()
            )
        })?;
        let key_pem = std::fs::read_to_string(&key).with_context(|| {
            format!(
                "failure loading {base} certificate authority: couldn't load the private key file {}",
                key.display()
            )
        })?;
        let first = certs_from_pem(&file_pem)
            .with_context(|| {
                format!(
                    "failure loading {base} certificate authority: couldn't load the certificate file {}",
                    crt.display()
                )
            })?
            .swap_remove(0);
        let key = load_key(&key_pem).with_context(|| format!("parsing {}", key.display()))?;
        let info =
            CertInfo::from_der(&first).with_context(|| format!("parsing {}", crt.display()))?;
        if !info.is_ca {
            bail!(
                "{} is not a CA certificate (basicConstraints CA:TRUE missing)",
                crt.display()
            );
        }
        Ok(Self {
            cert_pem: encode_cert_pem(&first),
            key,
        })
    }

    /// Loads `base.crt/key` from `dir`, generating a self-signed CA when both are absent.
    /// Returns whether it was generated.
    pub fn load_or_generate(
        dir: &Path,
        base: &str,
        cn: &str,
        algo: KeyAlgo,
        validity: Duration,
    ) -> Result<(Self, bool)> {
        let crt = dir.join(format!("{base}.crt"));
        let key = dir.join(format!("{base}.key"));
        if crt.exists() || key.exists() {
            return Ok((Self::load(dir, base)?, false));
        }
        let kp = algo.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        set_validity(&mut params, validity);
        let cert = params.self_signed(&kp)?;
        write_file(&crt, cert.pem(), 0o644)?;
        write_file(&key, kp.serialize_pem(), 0o600)?;
        Ok((
            Self {
                cert_pem: cert.pem(),
                key: kp,
            },
            true,
        ))
    }

    /// Issues a leaf certificate with a fresh key of the given algorithm.
    pub fn issue(&self, spec: &CertSpec, algo: KeyAlgo) -> Result<(String, KeyPair)> {
        let kp = algo.generate()?;
        let pem = self.sign(spec, &kp)?;
        Ok((pem, kp))
    }

    pub fn sign(&self, spec: &CertSpec, public: &impl rcgen::PublicKeyData) -> Result<String> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)
            .context("reading the CA certificate")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&spec.cn, &spec.orgs);
        params.subject_alt_names = spec
            .dns
            .iter()
            .map(|d| d.as_str().try_into().map(SanType::DnsName))
            .collect::<Result<_, _>>()
            .context("invalid DNS name in the certificate SANs")?;
        params
            .subject_alt_names
            .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, spec.validity);
        Ok(params.signed_by(public, &issuer)?.pem())
    }

    pub fn pin(&self) -> Result<String> {
        spki_pin(&self.cert_pem)
    }
}

fn dn(cn: &str, orgs: &[String]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for o in orgs {
        d.push(DnType::OrganizationName, o.as_str());
    }
    d.push(DnType::CommonName, cn);
    d
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = time::OffsetDateTime::now_utc();
    // Backdated like kubeadm so that clocks a little behind still accept the certificate.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + validity;
    let serial: [u8; 16] = rand::random();
    let mut serial = serial.to_vec();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// Reads a private key in PKCS#8, PKCS#1 or SEC1 PEM form.
pub fn load_key(pem: &str) -> Result<KeyPair> {
    KeyPair::from_pem(pem).map_err(|e| anyhow!("unsupported or malformed private key: {e}"))
}

/// The discovery pin kubeadm prints: `sha256:` + hex SHA-256 of the DER SubjectPublicKeyInfo.
pub fn spki_pin(cert_pem: &str) -> Result<String> {
    let info = CertInfo::parse(cert_pem)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(&info.spki_der))
    ))
}

/// The facts about a certificate the simulators need.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub spki_der: Vec<u8>,
    pub cn: String,
    pub orgs: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub not_after: time::OffsetDateTime,
    pub is_ca: bool,
    pub server: bool,
    pub client: bool,
}

impl CertInfo {
    pub fn parse(pem: &str) -> Result<Self> {
        let block = pem_first(pem)?;
        Self::from_der(&block)
    }

    pub fn from_der(der: &[u8]) -> Result<Self> {
        use x509_parser::prelude::*;
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| anyhow!("bad certificate: {e}"))?;
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .next()
            .unwrap_or_default()
            .to_string();
        let orgs = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect();
        let mut dns = vec![];
        let mut ips = vec![];
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    GeneralName::IPAddress(b) if b.len() == 4 => {
                        let a: [u8; 4] = (*b).try_into().unwrap_or([0; 4]);
                        ips.push(IpAddr::from(a));
                    }
                    GeneralName::IPAddress(b) if b.len() == 16 => {
                        let a: [u8; 16] = (*b).try_into().unwrap_or([0; 16]);
                        ips.push(IpAddr::from(a));
                    }
                    _ => {}
                }
            }
        }
        let (server, client) = match cert.extended_key_usage() {
            Ok(Some(e)) => (e.value.server_auth, e.value.client_auth),
            _ => (false, false),
        };
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        Ok(Self {
            der: der.to_vec(),
            spki_der: cert.public_key().raw.to_vec(),
            cn,
            orgs,
            dns,
            ips,
            not_after: cert.validity().not_after.to_datetime(),
            is_ca,
            server,
            client,
        })
    }

    /// A spec that reissues this certificate with the same subject and names.
    pub fn respec(&self, validity: Duration) -> CertSpec {
        CertSpec {
            cn: self.cn.clone(),
            orgs: self.orgs.clone(),
            dns: self.dns.clone(),
            ips: self.ips.clone(),
            usage: match (self.server, self.client) {
                (true, true) => Usage::ServerAndClient,
                (true, false) => Usage::Server,
                _ => Usage::Client,
            },
            validity,
        }
    }
}

/// The first PEM block's DER contents.
pub fn pem_first(pem: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            if inside {
                return base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .context("malformed PEM");
            }
        } else if inside {
            body.push_str(line);
        }
    }
    bail!("no PEM block found")
}

/// Every CERTIFICATE block of a PEM text, as DER, in file order (client-go's
/// `cert.ParseCertsPEM`, which `CertsFromFile` uses); at least one.
pub fn certs_from_pem(pem: &str) -> Result<Vec<Vec<u8>>> {
    use base64::Engine;
    let mut out = vec![];
    let mut block: Option<(String, String)> = None;
    for line in pem.lines() {
        let line = line.trim();
        if let Some(t) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.strip_suffix("-----"))
        {
            block = Some((t.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((t, body)) = block.take()
                && t == "CERTIFICATE"
            {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .context("malformed PEM")?;
                CertInfo::from_der(&der)?;
                out.push(der);
            }
        } else if let Some((_, body)) = block.as_mut() {
            body.push_str(line);
        }
    }
    if out.is_empty() {
        bail!("data does not contain any valid RSA or ECDSA certificates");
    }
    Ok(out)
}

/// One certificate as PEM, the way Go's `pem.Encode` writes it (64-column base64, LF).
pub fn encode_cert_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The algorithm of an existing key, so that renewals keep it.
pub fn key_algo(kp: &KeyPair) -> KeyAlgo {
    if kp.algorithm() == &PKCS_ECDSA_P256_SHA256 {
        KeyAlgo::EcdsaP256
    } else if kp.algorithm() == &PKCS_ECDSA_P384_SHA384 {
        KeyAlgo::EcdsaP384
    } else {
        // PKCS#1 RSAPublicKey DER length grows with the modulus: ~270, ~398, ~526 bytes.
        match kp.public_key_raw().len() {
            n if n < 330 => KeyAlgo::Rsa2048,
            n if n < 460 => KeyAlgo::Rsa3072,
            _ => KeyAlgo::Rsa4096,
        }
    }
}

/// Writes `base.crt` (0644) and `base.key` (0600).
pub fn write_pair(dir: &Path, base: &str, cert_pem: &str, key: &KeyPair) -> Result<()> {
    write_file(&dir.join(format!("{base}.crt")), cert_pem, 0o644)?;
    write_file(&dir.join(format!("{base}.key")), key.serialize_pem(), 0o600)
}

/// Loads sa.key/sa.pub or generates them (RSA, like kubeadm).
pub fn load_or_generate_sa(dir: &Path, algo: KeyAlgo) -> Result<bool> {
    let key = dir.join("sa.key");
    let public = dir.join("sa.pub");
    if key.exists() {
        let kp = load_key(&std::fs::read_to_string(&key)?)
            .with_context(|| format!("parsing {}", key.display()))?;
        if !public.exists() {
            write_file(&public, kp.public_key_pem(), 0o644)?;
        }
        return Ok(false);
    }
    let algo = match algo {
        KeyAlgo::EcdsaP256 | KeyAlgo::EcdsaP384 => algo,
        _ => KeyAlgo::Rsa2048,
    };
    let kp = algo.generate()?;
    write_file(&key, kp.serialize_pem(), 0o600)?;
    write_file(&public, kp.public_key_pem(), 0o644)?;
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn generated_ca_is_reused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, generated) = Ca::load_or_generate(
            dir.path(),
            "ca",
            "kubernetes",
            KeyAlgo::EcdsaP256,
            CA_VALIDITY,
        )
        .unwrap();
        assert!(generated);
        let (again, generated) = Ca::load_or_generate(
            dir.path(),
            "ca",
            "kubernetes",
            KeyAlgo::EcdsaP256,
            CA_VALIDITY,
        )
        .unwrap();
        assert!(!generated);
        assert_eq!(ca.cert_pem, again.cert_pem);
    }

    /// Whether `leaf_pem` carries a valid ECDSA P-256 signature by the first certificate of
    /// `ca_pem`.
    pub(crate) fn signed_by(leaf_pem: &str, ca_pem: &str) -> bool {
        use x509_parser::prelude::*;
        let (leaf_der, ca_der) = (pem_first(leaf_pem).unwrap(), pem_first(ca_pem).unwrap());
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            ca.public_key().subject_public_key.data.as_ref(),
        )
        .verify(
            leaf.tbs_certificate.as_ref(),
            leaf.signature_value.data.as_ref(),
        )
        .is_ok()
    }

    fn generate_ca(dir: &Path) -> Ca {
        Ca::load_or_generate(dir, "ca", "kubernetes", KeyAlgo::EcdsaP256, CA_VALIDITY)
            .unwrap()
            .0
    }

    #[test]
    fn ca_key_is_not_checked_against_the_certificate_like_load_certificate_authority() {
        // cmd/kubeadm/app/phases/certs/certs.go LoadCertificateAuthority loads the pair and
        // checks IsCA only; leaves signed with a foreign key then fail verification.
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_ca(dir.path());
        let other = KeyAlgo::EcdsaP256.generate().unwrap();
        write_file(&dir.path().join("ca.key"), other.serialize_pem(), 0o600).unwrap();
        let loaded = Ca::load(dir.path(), "ca").unwrap();
        assert_eq!(loaded.cert_pem, ca.cert_pem);
        let (leaf, _) = loaded
            .issue(
                &CertSpec::client("kubernetes-admin", &[]),
                KeyAlgo::EcdsaP256,
            )
            .unwrap();
        assert!(!signed_by(&leaf, &ca.cert_pem));
    }

    #[test]
    fn first_certificate_of_a_ca_bundle_is_the_ca_like_try_load_cert_from_disk() {
        // pkiutil TryLoadCertFromDisk: CertsFromFile, then certs[0].
        let dir = tempfile::tempdir().unwrap();
        let a = generate_ca(dir.path());
        let b_dir = tempfile::tempdir().unwrap();
        let b = generate_ca(b_dir.path());
        let bundle = format!("{}{}", a.cert_pem, b.cert_pem);
        write_file(&dir.path().join("ca.crt"), &bundle, 0o644).unwrap();
        let loaded = Ca::load(dir.path(), "ca").unwrap();
        assert_eq!(loaded.cert_pem, a.cert_pem, "only the first certificate");
        let (leaf, _) = loaded
            .issue(
                &CertSpec::client("kubernetes-admin", &[]),
                KeyAlgo::EcdsaP256,
            )
            .unwrap();
        assert!(signed_by(&leaf, &a.cert_pem));
        assert_eq!(certs_from_pem(&bundle).unwrap().len(), 2);
        assert_eq!(
            certs_from_pem("").unwrap_err().to_string(),
            "data does not contain any valid RSA or ECDSA certificates"
        );
    }

    #[test]
    fn leaf_certificates_carry_the_requested_names_and_usages() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_generate(
            dir.path(),
            "ca",
            "kubernetes",
            KeyAlgo::EcdsaP256,
            CA_VALIDITY,
        )
        .unwrap();
        let spec = CertSpec {
            cn: "kube-apiserver".into(),
            orgs: vec![],
            dns: vec!["kubernetes".into(), "master-1".into()],
            ips: vec!["10.96.0.1".parse().unwrap()],
            usage: Usage::Server,
            validity: YEAR,
        };
        let (pem, _) = ca.issue(&spec, KeyAlgo::EcdsaP256).unwrap();
        let info = CertInfo::parse(&pem).unwrap();
        assert_eq!(info.cn, "kube-apiserver");
        assert_eq!(info.dns, vec!["kubernetes", "master-1"]);
        assert_eq!(info.ips, vec!["10.96.0.1".parse::<IpAddr>().unwrap()]);
        assert!(info.server && !info.client && !info.is_ca);
    }

    #[test]
    fn rsa_2048_is_the_default_key_algorithm_like_kubeadm() {
        assert_eq!(KeyAlgo::parse("").unwrap(), KeyAlgo::Rsa2048);
        let kp = KeyAlgo::Rsa2048.generate().unwrap();
        assert_eq!(key_algo(&kp), KeyAlgo::Rsa2048);
        assert!(KeyAlgo::parse("DSA-1024").is_err());
    }
}
