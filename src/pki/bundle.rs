//! The eight files kubeadm needs on every control-plane node before `kubeadm join
//! --control-plane`: three CAs with their keys, and the service-account key pair.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::cert::{self, CertInfo};
use super::error::PkiError;
use super::pem;
use super::rsa::{PUBLIC_KEY_LABEL, RsaKey, rsa_public_der};

/// Where kubeadm keeps these files on a node; every path here is relative to it.
pub const KUBEADM_PKI_DIR: &str = "/etc/kubernetes/pki";

const SA_KEY: &str = "sa.key";
const SA_PUB: &str = "sa.pub";

/// The three cluster CAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaKind {
    /// `ca.crt`: signs API server, kubelet and admin certificates.
    Kubernetes,
    /// `front-proxy-ca.crt`: signs the aggregation layer's client certificate.
    FrontProxy,
    /// `etcd/ca.crt`: signs etcd server and peer certificates.
    Etcd,
}

impl CaKind {
    pub const ALL: [CaKind; 3] = [CaKind::Kubernetes, CaKind::FrontProxy, CaKind::Etcd];

    pub fn cert_path(self) -> &'static str {
        match self {
            CaKind::Kubernetes => "ca.crt",
            CaKind::FrontProxy => "front-proxy-ca.crt",
            CaKind::Etcd => "etcd/ca.crt",
        }
    }

    pub fn key_path(self) -> &'static str {
        match self {
            CaKind::Kubernetes => "ca.key",
            CaKind::FrontProxy => "front-proxy-ca.key",
            CaKind::Etcd => "etcd/ca.key",
        }
    }

    /// The CN kubeadm gives this CA.
    pub fn common_name(self) -> &'static str {
        match self {
            CaKind::Kubernetes => "kubernetes",
            CaKind::FrontProxy => "front-proxy-ca",
            CaKind::Etcd => "etcd-ca",
        }
    }
}

/// The shared files, relative to [`KUBEADM_PKI_DIR`], in the order [`ClusterCa::files`]
/// yields them.
pub const SHARED_FILES: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
    SA_KEY,
    SA_PUB,
];

/// PEM text of a private key: wiped on drop, never shown by `Debug`.
pub(super) struct KeyPem(pub(super) Zeroizing<String>);

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[derive(Debug)]
pub(super) struct CaPair {
    pub(super) cert: String,
    pub(super) key: KeyPem,
}

/// The cluster's shared CA material, validated: each certificate is an unexpired CA whose
/// key belongs to it, and `sa.pub` is the public half of `sa.key`.
#[derive(Debug)]
pub struct ClusterCa {
    pub(super) kubernetes: CaPair,
    pub(super) front_proxy: CaPair,
    pub(super) etcd: CaPair,
    pub(super) sa_key: KeyPem,
    pub(super) sa_pub: String,
}

/// One file to place under [`KUBEADM_PKI_DIR`] on a master. `Debug` hides secret contents.
pub struct SharedFile<'a> {
    /// Relative to [`KUBEADM_PKI_DIR`] (and to the local state directory).
    pub path: &'static str,
    /// 0600 for private keys, 0644 otherwise.
    pub mode: u32,
    /// True for private keys: never print, log or leave them readable by others.
    pub secret: bool,
    contents: &'a [u8],
}

impl<'a> SharedFile<'a> {
    pub fn contents(&self) -> &'a [u8] {
        self.contents
    }
}

impl fmt::Debug for SharedFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SharedFile");
        s.field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode));
        if self.secret {
            s.field("contents", &"[REDACTED]");
        } else {
            s.field("contents", &String::from_utf8_lossy(self.contents));
        }
        s.finish()
    }
}

fn public<'a>(path: &'static str, text: &'a str) -> SharedFile<'a> {
    SharedFile {
        path,
        mode: 0o644,
        secret: false,
        contents: text.as_bytes(),
    }
}

fn secret<'a>(path: &'static str, key: &'a KeyPem) -> SharedFile<'a> {
    SharedFile {
        path,
        mode: 0o600,
        secret: true,
        contents: key.0.as_bytes(),
    }
}

impl ClusterCa {
    /// New CAs and a new service-account key pair, as `kubeadm init` would make them.
    pub fn generate() -> Result<Self, PkiError> {
        let now = OffsetDateTime::now_utc();
        let sa = RsaKey::generate().map_err(|reason| PkiError::Generate {
            what: "service-account key",
            reason,
        })?;
        let sa_key = sa.to_pkcs1_pem().map_err(|reason| PkiError::Generate {
            what: "service-account key",
            reason,
        })?;
        let sa_pub = sa.public_key_pem().map_err(|reason| PkiError::Generate {
            what: "service-account key",
            reason,
        })?;
        Ok(Self {
            kubernetes: generate_ca(CaKind::Kubernetes, now)?,
            front_proxy: generate_ca(CaKind::FrontProxy, now)?,
            etcd: generate_ca(CaKind::Etcd, now)?,
            sa_key: KeyPem(sa_key),
            sa_pub,
        })
    }

    /// Builds the bundle from files read back from a master, keyed by their path relative
    /// to [`KUBEADM_PKI_DIR`] (absolute paths under it are accepted too; other files are
    /// ignored). Validated like [`ClusterCa::load`].
    pub fn from_files<K, V>(files: impl IntoIterator<Item = (K, V)>) -> Result<Self, PkiError>
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let prefix = format!("{KUBEADM_PKI_DIR}/");
        let mut raw = RawFiles::new();
        for (path, contents) in files {
            let path = path.as_ref();
            let rel = path.strip_prefix(&prefix).unwrap_or(path);
            if let Some(known) = SHARED_FILES.iter().find(|f| **f == rel) {
                raw.insert(known, Zeroizing::new(contents.as_ref().to_vec()));
            }
        }
        Self::validate(raw, &Origin::Master, OffsetDateTime::now_utc())
    }

    /// All eight files, ready to write to a master or to disk.
    pub fn files(&self) -> [SharedFile<'_>; 8] {
        let [k, f, e] = CaKind::ALL.map(|kind| (kind, self.pair(kind)));
        [
            public(k.0.cert_path(), &k.1.cert),
            secret(k.0.key_path(), &k.1.key),
            public(f.0.cert_path(), &f.1.cert),
            secret(f.0.key_path(), &f.1.key),
            public(e.0.cert_path(), &e.1.cert),
            secret(e.0.key_path(), &e.1.key),
            secret(SA_KEY, &self.sa_key),
            public(SA_PUB, &self.sa_pub),
        ]
    }

    /// A CA certificate as PEM.
    pub fn cert_pem(&self, kind: CaKind) -> &str {
        &self.pair(kind).cert
    }

    /// `sha256:<hex>` of the Kubernetes CA, for `kubeadm join --discovery-token-ca-cert-hash`.
    pub fn discovery_hash(&self) -> Result<String, PkiError> {
        cert::discovery_hash(&self.kubernetes.cert)
    }

    fn pair(&self, kind: CaKind) -> &CaPair {
        match kind {
            CaKind::Kubernetes => &self.kubernetes,
            CaKind::FrontProxy => &self.front_proxy,
            CaKind::Etcd => &self.etcd,
        }
    }

    pub(crate) fn validate(
        mut raw: RawFiles,
        origin: &Origin<'_>,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        let mut pair = |kind: CaKind| validate_ca(&mut raw, kind, origin, now);
        let (kubernetes, front_proxy, etcd) = (
            pair(CaKind::Kubernetes)?,
            pair(CaKind::FrontProxy)?,
            pair(CaKind::Etcd)?,
        );
        let (sa_key, sa_pub) = validate_sa(&mut raw, origin)?;
        Ok(Self {
            kubernetes,
            front_proxy,
            etcd,
            sa_key,
            sa_pub,
        })
    }
}

pub(super) fn generate_ca(kind: CaKind, now: OffsetDateTime) -> Result<CaPair, PkiError> {
    let fail = |reason| PkiError::Generate {
        what: kind.common_name(),
        reason,
    };
    let key = RsaKey::generate().map_err(fail)?;
    let cert = cert::self_signed_ca(kind.common_name(), &key, now).map_err(fail)?;
    let key = key.to_pkcs1_pem().map_err(fail)?;
    Ok(CaPair {
        cert,
        key: KeyPem(key),
    })
}

/// File contents by relative path, wiped on drop.
pub(crate) type RawFiles = BTreeMap<&'static str, Zeroizing<Vec<u8>>>;

/// Where files came from, which decides how errors name them and what they advise.
pub(crate) enum Origin<'a> {
    Dir(&'a Path),
    Master,
}

enum Trouble {
    Damaged,
    Expired,
}

impl Origin<'_> {
    fn name(&self, rel: &str) -> String {
        match self {
            Origin::Dir(dir) => dir.join(rel).display().to_string(),
            Origin::Master => format!("{KUBEADM_PKI_DIR}/{rel} (as read from a master)"),
        }
    }

    fn fix(&self, rel: &str, trouble: Trouble) -> String {
        match (trouble, self) {
            (Trouble::Expired, _) => "a CA cannot be renewed in place: rotate it by hand \
                 (Kubernetes docs: \"Manual Rotation of CA Certificates\"), then run again"
                .to_string(),
            (Trouble::Damaged, Origin::Dir(dir)) => format!(
                "copy {KUBEADM_PKI_DIR}/{rel} from a control-plane node to {file}, or move \
                 {dir} aside so the installer recovers all CA files from the masters",
                file = dir.join(rel).display(),
                dir = dir.display()
            ),
            (Trouble::Damaged, Origin::Master) => format!(
                "check {KUBEADM_PKI_DIR}/{rel} on that master: the CA files can only be \
                 recovered from a control-plane node that has all of them intact"
            ),
        }
    }

    fn missing(&self, rel: &str) -> PkiError {
        PkiError::Missing {
            file: self.name(rel),
            fix: self.fix(rel, Trouble::Damaged),
        }
    }

    fn invalid(&self, rel: &str, problem: impl Into<String>, trouble: Trouble) -> PkiError {
        PkiError::Invalid {
            file: self.name(rel),
            problem: problem.into(),
            fix: self.fix(rel, trouble),
        }
    }
}

fn take(
    raw: &mut RawFiles,
    rel: &'static str,
    origin: &Origin<'_>,
) -> Result<Zeroizing<String>, PkiError> {
    let bytes = raw.remove(rel).ok_or_else(|| origin.missing(rel))?;
    pem::into_text(bytes)
        .map_err(|()| origin.invalid(rel, "is not text (PEM expected)", Trouble::Damaged))
}

fn validate_ca(
    raw: &mut RawFiles,
    kind: CaKind,
    origin: &Origin<'_>,
    now: OffsetDateTime,
) -> Result<CaPair, PkiError> {
    let (cert_rel, key_rel) = (kind.cert_path(), kind.key_path());
    let cert_text = take(raw, cert_rel, origin)?;
    let key_text = take(raw, key_rel, origin)?;
    let damaged = |rel, problem: String| origin.invalid(rel, problem, Trouble::Damaged);

    let info: CertInfo = cert::inspect(cert_text.as_bytes()).map_err(|p| damaged(cert_rel, p))?;
    if !info.is_ca {
        return Err(damaged(
            cert_rel,
            "is not a CA certificate (it lacks basicConstraints CA:TRUE)".to_string(),
        ));
    }
    if info.may_sign_certs == Some(false) {
        return Err(damaged(
            cert_rel,
            "is a CA whose key usage does not allow signing certificates (keyCertSign)".to_string(),
        ));
    }
    if info.not_after <= now {
        return Err(origin.invalid(
            cert_rel,
            format!("this CA expired on {}", info.not_after.date()),
            Trouble::Expired,
        ));
    }
    let key = RsaKey::from_pem(key_text.as_bytes()).map_err(|p| damaged(key_rel, p))?;
    let cert_key = info.rsa_public_der().map_err(|p| damaged(cert_rel, p))?;
    if cert_key != key.public_der() {
        return Err(damaged(
            key_rel,
            format!("is not the key of {cert_rel}: their public keys differ"),
        ));
    }
    Ok(CaPair {
        cert: cert_text.to_string(),
        key: KeyPem(key_text),
    })
}

fn validate_sa(raw: &mut RawFiles, origin: &Origin<'_>) -> Result<(KeyPem, String), PkiError> {
    let key_text = take(raw, SA_KEY, origin)?;
    let pub_text = take(raw, SA_PUB, origin)?;
    let damaged = |rel, problem: String| origin.invalid(rel, problem, Trouble::Damaged);

    let key = RsaKey::from_pem(key_text.as_bytes()).map_err(|p| damaged(SA_KEY, p))?;
    let block = pem::decode_labelled(pub_text.as_bytes(), &[PUBLIC_KEY_LABEL])
        .map_err(|p| damaged(SA_PUB, p))?;
    let public = rsa_public_der(&block.der).map_err(|p| damaged(SA_PUB, p))?;
    if public != key.public_der() {
        return Err(damaged(
            SA_PUB,
            format!("is not the public half of {SA_KEY}"),
        ));
    }
    Ok((KeyPem(key_text), pub_text.to_string()))
}
