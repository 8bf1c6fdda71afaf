//! The certs and kubeconfig phases, plus `kubeadm certs check-expiration|renew`.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ClusterConfiguration, host_port, split_host_port};
use crate::kubeconfig::{KubeConfig, User};
use crate::paths::{self, p, s};
use crate::pki::{Ca, CertInfo, CertSpec, KeyAlgo, Usage, key_algo, load_key, write_pair};
use crate::util::write_file;

/// The CA files every control-plane node must share.
pub const SHARED_CA_FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
];

/// Node facts for certificates and kubeconfigs.
pub struct NodePki<'a> {
    pub cfg: &'a ClusterConfiguration,
    pub node_name: &'a str,
    pub advertise: IpAddr,
    pub bind_port: u16,
}

impl NodePki<'_> {
    pub fn dir(&self) -> PathBuf {
        self.cfg.cert_dir()
    }

    fn algo(&self) -> Result<KeyAlgo> {
        KeyAlgo::parse(&self.cfg.encryption_algorithm)
    }

    /// Loads the CAs and SA key, generating the missing ones (`kubeadm init`).
    pub fn cas(&self, generate: bool) -> Result<()> {
        let dir = self.dir();
        println!(
            "[certs] Using certificateDir folder {:?}",
            dir.display().to_string()
        );
        let (_, ca_validity) = self.cfg.validity()?;
        for (base, cn) in [
            ("ca", "kubernetes"),
            ("front-proxy-ca", "front-proxy-ca"),
            ("etcd/ca", "etcd-ca"),
        ] {
            if generate {
                let (_, made) = Ca::load_or_generate(&dir, base, cn, self.algo()?, ca_validity)?;
                if made {
                    println!("[certs] Generating {base:?} certificate and key");
                } else {
                    println!("[certs] Using existing {base} certificate authority");
                }
            } else {
                Ca::load(&dir, base)?;
                println!("[certs] Using existing {base} certificate authority");
            }
        }
        if crate::pki::load_or_generate_sa(&dir, self.algo()?)? {
            println!("[certs] Generating \"sa\" key and public key");
        } else {
            println!("[certs] Using the existing \"sa\" key");
        }
        Ok(())
    }

    fn api_server_sans(&self) -> Result<(Vec<String>, Vec<IpAddr>)> {
        let domain = &self.cfg.networking.dns_domain;
        let mut dns = vec![
            "kubernetes".to_string(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{domain}"),
            self.node_name.to_string(),
        ];
        let mut ips = vec![self.cfg.service_ip()?, self.advertise];
        let mut extra: Vec<String> = self.cfg.api_server.cert_sans.clone();
        if !self.cfg.control_plane_endpoint.is_empty() {
            extra.push(split_host_port(&self.cfg.control_plane_endpoint, 6443)?.0);
        }
        for n in extra {
            match n.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(n),
            }
        }
        dedup(&mut dns);
        dedup(&mut ips);
        Ok((dns, ips))
    }

    fn etcd_sans(&self, extra: &[String]) -> (Vec<String>, Vec<IpAddr>) {
        let mut dns = vec![self.node_name.to_string(), "localhost".into()];
        let mut ips: Vec<IpAddr> = vec![
            self.advertise,
            "127.0.0.1".parse().unwrap_or(self.advertise),
            "::1".parse().unwrap_or(self.advertise),
        ];
        for n in extra {
            match n.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(n.clone()),
            }
        }
        dedup(&mut dns);
        dedup(&mut ips);
        (dns, ips)
    }

    /// The leaf certificates of a control-plane node, as (file base, CA base, spec).
    pub fn leaf_specs(&self) -> Result<Vec<(&'static str, &'static str, CertSpec)>> {
        let (leaf, _) = self.cfg.validity()?;
        let (dns, ips) = self.api_server_sans()?;
        let server = |cn: &str, dns: Vec<String>, ips: Vec<IpAddr>, usage: Usage| CertSpec {
            cn: cn.into(),
            orgs: vec![],
            dns,
            ips,
            usage,
            validity: leaf,
        };
        let client = |cn: &str, orgs: &[&str]| CertSpec {
            validity: leaf,
            ..CertSpec::client(cn, orgs)
        };
        let local = self.cfg.etcd.local.clone().unwrap_or_default();
        let (sd, si) = self.etcd_sans(&local.server_cert_sans);
        let (pd, pi) = self.etcd_sans(&local.peer_cert_sans);
        let mut specs = vec![
            (
                "apiserver",
                "ca",
                server("kube-apiserver", dns, ips, Usage::Server),
            ),
            (
                "apiserver-kubelet-client",
                "ca",
                client("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"]),
            ),
            (
                "front-proxy-client",
                "front-proxy-ca",
                client("front-proxy-client", &[]),
            ),
        ];
        if self.cfg.etcd.local.is_some() {
            specs.extend([
                (
                    "etcd/server",
                    "etcd/ca",
                    server(self.node_name, sd, si, Usage::ServerAndClient),
                ),
                (
                    "etcd/peer",
                    "etcd/ca",
                    server(self.node_name, pd, pi, Usage::ServerAndClient),
                ),
                (
                    "etcd/healthcheck-client",
                    "etcd/ca",
                    client("kube-etcd-healthcheck-client", &[]),
                ),
                (
                    "apiserver-etcd-client",
                    "etcd/ca",
                    client("kube-apiserver-etcd-client", &[]),
                ),
            ]);
        }
        Ok(specs)
    }

    /// Issues the leaf certificates that are missing; existing ones are kept (like kubeadm).
    pub fn leaves(&self) -> Result<()> {
        let dir = self.dir();
        for (base, ca_base, spec) in self.leaf_specs()? {
            if dir.join(format!("{base}.crt")).exists() && dir.join(format!("{base}.key")).exists()
            {
                println!("[certs] Using existing {base} certificate and key on disk");
                continue;
            }
            let ca = Ca::load(&dir, ca_base)?;
            let (pem, key) = ca.issue(&spec, self.algo()?)?;
            println!("[certs] Generating {base:?} certificate and key");
            if spec.usage != Usage::Client {
                let names: Vec<String> = spec
                    .dns
                    .iter()
                    .cloned()
                    .chain(spec.ips.iter().map(|i| i.to_string()))
                    .collect();
                println!(
                    "[certs] {base} serving cert is signed for DNS names and IPs [{}]",
                    names.join(" ")
                );
            }
            write_pair(&dir, base, &pem, &key)?;
        }
        Ok(())
    }

    pub fn local_endpoint(&self) -> String {
        format!(
            "https://{}",
            host_port(&self.advertise.to_string(), self.bind_port)
        )
    }

    pub fn cluster_endpoint(&self) -> Result<String> {
        if self.cfg.control_plane_endpoint.is_empty() {
            return Ok(self.local_endpoint());
        }
        let (h, port) = split_host_port(&self.cfg.control_plane_endpoint, self.bind_port)?;
        Ok(format!("https://{}", host_port(&h, port)))
    }

    /// Writes a kubeconfig with an embedded client certificate unless a valid one exists.
    fn kubeconfig(
        &self,
        file: &str,
        server: &str,
        user: &str,
        cn: &str,
        orgs: &[&str],
    ) -> Result<()> {
        let path = p(file);
        let ca = Ca::load(&self.dir(), "ca")?;
        if path.exists() {
            let kc = KubeConfig::load(&path)?;
            let creds = kc.credentials()?;
            if creds.ca_pem.trim() != ca.cert_pem.trim() {
                bail!(
                    "a kubeconfig file {:?} exists already but has got the wrong CA cert",
                    path.display().to_string()
                );
            }
            println!(
                "[kubeconfig] Using existing kubeconfig file: {:?}",
                path.display().to_string()
            );
            return Ok(());
        }
        let (leaf, _) = self.cfg.validity()?;
        let spec = CertSpec {
            validity: leaf,
            ..CertSpec::client(cn, orgs)
        };
        let (cert, key) = ca.issue(&spec, self.algo()?)?;
        println!(
            "[kubeconfig] Writing {:?} kubeconfig file",
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        KubeConfig::with_cert(
            &self.cfg.cluster_name,
            server,
            &ca.cert_pem,
            user,
            &cert,
            &key.serialize_pem(),
        )
        .write(&path)
    }

    /// admin.conf, controller-manager.conf and scheduler.conf (and super-admin.conf on init).
    pub fn control_plane_kubeconfigs(&self, super_admin: bool) -> Result<()> {
        println!(
            "[kubeconfig] Using kubeconfig folder {:?}",
            s(paths::KUBE_DIR)
        );
        let cluster = self.cluster_endpoint()?;
        let local = self.local_endpoint();
        self.kubeconfig(
            paths::ADMIN_CONF,
            &cluster,
            "kubernetes-admin",
            "kubernetes-admin",
            &["kubeadm:cluster-admins"],
        )?;
        if super_admin {
            self.kubeconfig(
                paths::SUPER_ADMIN_CONF,
                &cluster,
                "kubernetes-super-admin",
                "kubernetes-super-admin",
                &["system:masters"],
            )?;
        }
        self.kubeconfig(
            paths::CONTROLLER_MANAGER_CONF,
            &local,
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &[],
        )?;
        self.kubeconfig(
            paths::SCHEDULER_CONF,
            &local,
            "system:kube-scheduler",
            "system:kube-scheduler",
            &[],
        )?;
        Ok(())
    }

    /// kubelet.conf for the first control plane: a client cert signed directly by the CA,
    /// stored where the kubelet rotates it, and a kubeconfig that points at that file.
    pub fn kubelet_kubeconfig(&self) -> Result<()> {
        let ca = Ca::load(&self.dir(), "ca")?;
        let user = format!("system:node:{}", self.node_name);
        let (leaf, _) = self.cfg.validity()?;
        let spec = CertSpec {
            validity: leaf,
            ..CertSpec::client(&user, &["system:nodes"])
        };
        let (cert, key) = ca.issue(&spec, self.algo()?)?;
        write_kubelet_client(&cert, &key.serialize_pem())?;
        println!("[kubeconfig] Writing \"kubelet.conf\" kubeconfig file");
        kubelet_conf(
            &self.cfg.cluster_name,
            &self.cluster_endpoint()?,
            &ca.cert_pem,
            self.node_name,
        )
    }
}

/// Writes the kubelet's rotated client cert/key pair and the `-current` symlink.
pub fn write_kubelet_client(cert: &str, key: &str) -> Result<PathBuf> {
    let stamp = time::OffsetDateTime::now_utc();
    let name = format!(
        "kubelet-client-{:04}-{:02}-{:02}-{:02}-{:02}-{:02}.pem",
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    );
    let dir = p(paths::KUBELET_PKI);
    let file = dir.join(&name);
    write_file(&file, format!("{}{}", cert, key), 0o600)?;
    let current = p(paths::KUBELET_CLIENT_CURRENT);
    let tmp = dir.join(".kubelet-client-current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&file, &tmp)?;
    std::fs::rename(&tmp, &current)?;
    Ok(current)
}

/// kubelet.conf pointing at kubelet-client-current.pem, as after kubelet-finalize.
pub fn kubelet_conf(cluster: &str, server: &str, ca_pem: &str, node: &str) -> Result<()> {
    let current = s(paths::KUBELET_CLIENT_CURRENT);
    let user = User {
        cert_file: current.clone(),
        key_file: current,
        ..Default::default()
    };
    KubeConfig::new(
        cluster,
        server,
        ca_pem,
        &format!("system:node:{node}"),
        user,
    )
    .write(&p(paths::KUBELET_CONF))
}

/// The shared CA files a joining control plane needs; the missing ones, in kubeadm's words.
pub fn missing_shared_files(dir: &Path) -> Vec<String> {
    SHARED_CA_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|f| !f.exists())
        .map(|f| {
            format!(
                "couldn't load {}: open {}: no such file or directory",
                f.display(),
                f.display()
            )
        })
        .collect()
}

/// Certificates and kubeconfigs `certs check-expiration` and `certs renew` know about.
const LEAVES: &[(&str, &str, &str)] = &[
    ("apiserver", "apiserver", "ca"),
    ("apiserver-etcd-client", "apiserver-etcd-client", "etcd-ca"),
    ("apiserver-kubelet-client", "apiserver-kubelet-client", "ca"),
    (
        "etcd-healthcheck-client",
        "etcd/healthcheck-client",
        "etcd-ca",
    ),
    ("etcd-peer", "etcd/peer", "etcd-ca"),
    ("etcd-server", "etcd/server", "etcd-ca"),
    ("front-proxy-client", "front-proxy-client", "front-proxy-ca"),
];
const CONFS: &[&str] = &[
    "admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "super-admin.conf",
];
const CAS: &[(&str, &str)] = &[
    ("ca", "ca"),
    ("etcd-ca", "etcd/ca"),
    ("front-proxy-ca", "front-proxy-ca"),
];

fn ca_file(ca_name: &str) -> &'static str {
    CAS.iter()
        .find(|(n, _)| *n == ca_name)
        .map(|(_, f)| *f)
        .unwrap_or("ca")
}

fn residual(t: time::OffsetDateTime) -> String {
    let d = t - time::OffsetDateTime::now_utc();
    let days = d.whole_days();
    if d.is_negative() {
        "<invalid>".into()
    } else if days >= 365 {
        format!("{}y", days / 365)
    } else if days >= 1 {
        format!("{days}d")
    } else {
        format!("{}h", d.whole_hours())
    }
}

fn expires(t: time::OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:02}, {} {:02}:{:02} UTC",
        MONTHS[u8::from(t.month()) as usize - 1],
        t.day(),
        t.year(),
        t.hour(),
        t.minute()
    )
}

/// A kubeconfig `certs check-expiration` and `certs renew` work on, read the way kubeadm's
/// `kubeConfigReadWriter.Read` reads it (cmd/kubeadm/app/phases/certs/renewal/readwriter.go):
/// the first certificate of `<pki>/ca.crt` (`rw.caCert = caCerts[0]`), then the current
/// context, its cluster with embedded CA data and its user with an embedded client
/// certificate.
struct ConfRead {
    kc: KubeConfig,
    cluster: usize,
    user: usize,
    /// The first certificate of ca.crt, PEM-encoded alone.
    ca_cert_pem: String,
    client_cert: CertInfo,
}

impl ConfRead {
    fn read(path: &Path, pki: &Path) -> Result<Self> {
        let kc = KubeConfig::load(path)
            .with_context(|| format!("failed to load kubeConfig file {}", path.display()))?;
        let ca_file = pki.join("ca.crt");
        let ca_certs = std::fs::read_to_string(&ca_file)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    anyhow!("open {}: no such file or directory", ca_file.display())
                }
                _ => anyhow!("open {}: {e}", ca_file.display()),
            })
            .and_then(|pem| crate::pki::certs_from_pem(&pem))
            .context("failed to load existing certificate ca")?;
        let ca_cert_pem = crate::pki::encode_cert_pem(&ca_certs[0]);
        let shown = path.display();
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == kc.current_context)
            .ok_or_else(|| {
                anyhow!(
                    "invalid kubeConfig file {shown}: missing context {}",
                    kc.current_context
                )
            })?;
        let cluster = kc
            .clusters
            .iter()
            .position(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                anyhow!(
                    "invalid kubeConfig file {shown}: missing cluster {}",
                    ctx.context.cluster
                )
            })?;
        if kc.clusters[cluster].cluster.ca_data.trim().is_empty() {
            bail!("kubeConfig file {shown} does not have an embedded server certificate");
        }
        let user = kc
            .users
            .iter()
            .position(|u| u.name == ctx.context.user)
            .ok_or_else(|| {
                anyhow!(
                    "invalid kubeConfig file {shown}: missing authInfo {}",
                    ctx.context.user
                )
            })?;
        let cert_data = &kc.users[user].user.cert_data;
        if cert_data.trim().is_empty() {
            bail!("kubeConfig file {shown} does not have an embedded client certificate");
        }
        let client_cert = base64::engine::general_purpose::STANDARD
            .decode(cert_data.trim())
            .map_err(|e| anyhow!("{e}"))
            .and_then(|pem| crate::pki::certs_from_pem(&String::from_utf8_lossy(&pem)))
            .and_then(|certs| CertInfo::from_der(&certs[0]))
            .with_context(|| {
                format!("kubeConfig file {shown} does not contain a valid client certificate")
            })?;
        Ok(Self {
            kc,
            cluster,
            user,
            ca_cert_pem,
            client_cert,
        })
    }
}

fn conf_cert(path: &Path, pki: &Path) -> Result<CertInfo> {
    Ok(ConfRead::read(path, pki)?.client_cert)
}

/// Renews the client certificate embedded in one kubeconfig (`RenewUsingLocalCA` with a
/// `kubeConfigReadWriter`): reads it, signs a new certificate with the same subject with the
/// CA (`LoadCertificateAuthority`: first certificate of ca.crt, ca.key), and writes the new
/// client certificate and key into the current context's user and the CA certificate it read
/// (ca.crt's first certificate, alone) into the current context's cluster as
/// `certificate-authority-data`; everything else in the file is kept.
fn renew_kubeconfig(path: &Path, pki: &Path, validity: Duration) -> Result<()> {
    let mut r = ConfRead::read(path, pki)?;
    let ca = Ca::load(pki, "ca")?;
    // The new key keeps the old one's algorithm (RSA-2048, kubeadm's default, without one).
    let algo = base64::engine::general_purpose::STANDARD
        .decode(r.kc.users[r.user].user.key_data.trim())
        .ok()
        .and_then(|k| load_key(&String::from_utf8_lossy(&k)).ok())
        .map(|k| key_algo(&k))
        .unwrap_or(KeyAlgo::Rsa2048);
    let (pem, key) = ca.issue(&r.client_cert.respec(validity), algo)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    r.kc.clusters[r.cluster].cluster.ca_data = b64.encode(&r.ca_cert_pem);
    let user = &mut r.kc.users[r.user].user;
    user.cert_data = b64.encode(&pem);
    user.key_data = b64.encode(key.serialize_pem());
    r.kc.write(path)
}

/// `kubeadm certs check-expiration`.
pub fn check_expiration(dir: &Path) -> Result<()> {
    println!("[check-expiration] Reading configuration from the files on disk...\n");
    println!(
        "{:<26} {:<24} {:<15} {:<23} EXTERNALLY MANAGED",
        "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY"
    );
    let external = |ca: &str| {
        if dir.join(format!("{}.key", ca_file(ca))).exists() {
            "no"
        } else {
            "yes"
        }
    };
    // Like upstream (cmd/kubeadm/app/cmd/certs.go, fetchCertificateExpirationInfo and
    // certTextPrinter): every certificate the renewal manager knows is listed, a missing one
    // as `!MISSING! <name>` (super-admin.conf on a joined control plane, for instance). The
    // etcd certificates are known only with a local etcd (here: when etcd/ca.crt exists).
    let local_etcd = dir.join("etcd/ca.crt").exists();
    let mut rows: Vec<(String, Option<CertInfo>, &str)> = vec![];
    for conf in CONFS {
        let path = p(&format!("{}/{conf}", paths::KUBE_DIR));
        let info = if path.exists() {
            Some(conf_cert(&path, dir)?)
        } else {
            None
        };
        rows.push((conf.to_string(), info, "ca"));
    }
    for (name, file, ca) in LEAVES {
        if name.contains("etcd") && !local_etcd {
            continue;
        }
        let path = dir.join(format!("{file}.crt"));
        let info = if path.exists() {
            let pem = std::fs::read_to_string(&path)?;
            Some(CertInfo::parse(&pem).with_context(|| format!("parsing {}", path.display()))?)
        } else {
            None
        };
        rows.push((name.to_string(), info, ca));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, info, ca) in rows {
        let Some(info) = info else {
            println!("!MISSING! {name}");
            continue;
        };
        println!(
            "{:<26} {:<24} {:<15} {:<23} {}",
            name,
            expires(info.not_after),
            residual(info.not_after),
            ca,
            external(ca)
        );
    }
    println!(
        "\n{:<23} {:<24} {:<15} EXTERNALLY MANAGED",
        "CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME"
    );
    for (name, file) in CAS {
        let path = dir.join(format!("{file}.crt"));
        if *name == "etcd-ca" && !local_etcd {
            continue;
        }
        if !path.exists() {
            println!("!MISSING! {name}");
            continue;
        }
        {
            let info = CertInfo::parse(&std::fs::read_to_string(&path)?)?;
            println!(
                "{:<23} {:<24} {:<15} {}",
                name,
                expires(info.not_after),
                residual(info.not_after),
                external(name)
            );
        }
    }
    Ok(())
}

/// `kubeadm certs renew NAME|all`: reissues with the same subject and names and a new key.
pub fn renew(dir: &Path, which: &str, validity: Duration) -> Result<()> {
    let mut known: Vec<&str> = LEAVES.iter().map(|l| l.0).collect();
    known.extend(CONFS);
    if which != "all" && !known.contains(&which) {
        bail!(
            "unknown command {which:?} for \"kubeadm certs renew\"; valid: all, {}",
            known.join(", ")
        );
    }
    println!("[renew] Reading configuration from the files on disk...\n");
    for (name, file, ca_name) in LEAVES {
        if which != "all" && which != *name {
            continue;
        }
        let crt = dir.join(format!("{file}.crt"));
        if !crt.exists() {
            continue;
        }
        let ca = Ca::load(dir, ca_file(ca_name)).with_context(|| format!("certificate {name} cannot be renewed: its CA key is not present (externally managed)"))?;
        let info = CertInfo::parse(&std::fs::read_to_string(&crt)?)?;
        let old_key = load_key(&std::fs::read_to_string(dir.join(format!("{file}.key")))?)?;
        let (pem, key) = ca.issue(&info.respec(validity), key_algo(&old_key))?;
        write_pair(dir, file, &pem, &key)?;
        println!("certificate {name} renewed");
    }
    for conf in CONFS {
        if which != "all" && which != *conf {
            continue;
        }
        let path = p(&format!("{}/{conf}", paths::KUBE_DIR));
        if !path.exists() {
            continue;
        }
        renew_kubeconfig(&path, dir, validity)?;
        println!("certificate embedded in the kubeconfig file for {conf} renewed");
    }
    println!(
        "\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates."
    );
    Ok(())
}

fn dedup<T: PartialEq + Clone>(v: &mut Vec<T>) {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v.drain(..) {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeconfig::{Cluster, NamedCluster};
    use crate::pki::{CA_VALIDITY, YEAR};

    fn ca(dir: &Path) -> Ca {
        Ca::load_or_generate(dir, "ca", "kubernetes", KeyAlgo::EcdsaP256, CA_VALIDITY)
            .unwrap()
            .0
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn unb64(s: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        String::from_utf8(b).unwrap()
    }

    /// cmd/kubeadm/app/phases/certs/renewal/readwriter.go `kubeConfigReadWriter`: Read takes
    /// `caCerts[0]` of ca.crt, Write puts it (alone) into the current context's cluster as
    /// certificate-authority-data next to the new client certificate and key.
    #[test]
    fn renewed_kubeconfig_gets_the_first_certificate_of_ca_crt_as_its_ca() {
        let pki = tempfile::tempdir().unwrap();
        let a = ca(pki.path());
        let old_dir = tempfile::tempdir().unwrap();
        let old = ca(old_dir.path());
        let spec = CertSpec::client("kubernetes-admin", &["kubeadm:cluster-admins"]);
        let (cert, key) = a.issue(&spec, KeyAlgo::EcdsaP256).unwrap();
        // A kubeconfig that still trusts the old CA, with a second cluster not in use.
        let mut kc = KubeConfig::with_cert(
            "kubernetes",
            "https://10.0.0.1:6443",
            &old.cert_pem,
            "kubernetes-admin",
            &cert,
            &key.serialize_pem(),
        );
        kc.clusters.push(NamedCluster {
            cluster: Cluster {
                ca_data: b64(&old.cert_pem),
                ca_file: String::new(),
                server: "https://10.0.0.2:6443".into(),
            },
            name: "other".into(),
        });
        let conf = pki.path().join("admin.conf");
        kc.write(&conf).unwrap();
        // ca.crt becomes a bundle: the cluster CA first, the old one after it.
        let bundle = format!("{}{}", a.cert_pem, old.cert_pem);
        crate::util::write_file(&pki.path().join("ca.crt"), &bundle, 0o644).unwrap();

        renew_kubeconfig(&conf, pki.path(), YEAR).unwrap();

        let after = KubeConfig::load(&conf).unwrap();
        assert_eq!(unb64(&after.clusters[0].cluster.ca_data), a.cert_pem);
        assert_eq!(unb64(&after.clusters[1].cluster.ca_data), old.cert_pem);
        assert_eq!(after.clusters[0].cluster.server, "https://10.0.0.1:6443");
        let creds = after.credentials().unwrap();
        let new_cert = creds.cert_pem.unwrap();
        assert_ne!(new_cert, cert);
        let info = CertInfo::parse(&new_cert).unwrap();
        assert_eq!(info.cn, "kubernetes-admin");
        assert_eq!(info.orgs, vec!["kubeadm:cluster-admins"]);
        assert!(crate::pki::tests::signed_by(&new_cert, &a.cert_pem));
        assert_eq!(
            key_algo(&load_key(&creds.key_pem.unwrap()).unwrap()),
            KeyAlgo::EcdsaP256
        );
    }

    #[test]
    fn kubeconfig_without_embedded_material_is_refused_like_kubeadm_read() {
        let pki = tempfile::tempdir().unwrap();
        let a = ca(pki.path());
        let (cert, key) = a
            .issue(
                &CertSpec::client("system:kube-scheduler", &[]),
                KeyAlgo::EcdsaP256,
            )
            .unwrap();
        let conf = pki.path().join("scheduler.conf");
        let good = KubeConfig::with_cert(
            "kubernetes",
            "https://127.0.0.1:6443",
            &a.cert_pem,
            "system:kube-scheduler",
            &cert,
            &key.serialize_pem(),
        );
        let shown = conf.display().to_string();

        let mut kc = good.clone();
        kc.clusters[0].cluster.ca_data.clear();
        kc.clusters[0].cluster.ca_file = pki.path().join("ca.crt").display().to_string();
        kc.write(&conf).unwrap();
        let err = renew_kubeconfig(&conf, pki.path(), YEAR).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("kubeConfig file {shown} does not have an embedded server certificate")
        );

        let mut kc = good.clone();
        kc.current_context = "nope".into();
        kc.write(&conf).unwrap();
        let err = renew_kubeconfig(&conf, pki.path(), YEAR).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid kubeConfig file {shown}: missing context nope")
        );

        good.write(&conf).unwrap();
        std::fs::remove_file(pki.path().join("ca.crt")).unwrap();
        let err = renew_kubeconfig(&conf, pki.path(), YEAR).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "failed to load existing certificate ca: open {}: no such file or directory",
                pki.path().join("ca.crt").display()
            )
        );
    }
}
