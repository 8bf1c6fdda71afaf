//! Per-Kubernetes-minor defaults: `playbooks/defaults/common.yaml` overlaid by the minor's own
//! `playbooks/defaults/v1.X.yaml` (image tags, kubeadm API, runtime minimums, ports, token
//! lifetime). Read once per run into types; templates see the same values as `defaults`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::playbook::Playbooks;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    pub kubeadm_api: String,
    pub image_repository: String,
    pub images: Images,
    pub containerd: ContainerdNeeds,
    pub ports: Ports,
    pub haproxy: Haproxy,
    pub bootstrap_token: TokenPolicy,
    pub runtimes: Runtimes,
    /// The patch an upgrade chain stops at when it passes through this minor.
    pub latest_patch: semver::Version,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Runtimes {
    /// docker-ce major.minor.
    pub docker: String,
    /// containerd.io major.minor.
    pub containerd: String,
    pub cri_dockerd: CriDockerd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriDockerd {
    pub version: String,
    /// Distribution release codename → the release asset's flavour (`debian-bookworm`).
    pub assets: BTreeMap<String, String>,
    /// Asset file name → sha256.
    pub sha256: BTreeMap<String, String>,
}

/// One cri-dockerd release asset for one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CriDockerdAsset {
    pub file: String,
    pub url: String,
    /// `None`: nothing pinned; the download is trusted on its TLS connection only.
    pub sha256: Option<String>,
}

impl CriDockerd {
    /// The asset for a host of release `codename` and machine `arch` (uname -m), fetched
    /// from `base` (the releases/download URL or a mirror of it). `pinned` (the inventory's
    /// sums) wins over the table's.
    pub fn asset(
        &self,
        base: &str,
        codename: &str,
        arch: &str,
        pinned: &BTreeMap<String, String>,
    ) -> Result<CriDockerdAsset, String> {
        let flavour = self.assets.get(codename).ok_or_else(|| {
            format!(
                "cri-dockerd {} has no release package for {codename} (known: {}); use cluster.runtime: containerd",
                self.version,
                self.assets.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        let arch = match arch {
            "x86_64" | "amd64" => "amd64",
            "aarch64" | "arm64" => "arm64",
            other => return Err(format!("cri-dockerd has no release package for {other}")),
        };
        let v = &self.version;
        let file = format!("cri-dockerd_{v}.3-0.{flavour}_{arch}.deb");
        let url = format!("{}/v{v}/{file}", base.trim_end_matches('/'));
        let sha256 = pinned
            .get(&file)
            .or_else(|| self.sha256.get(&file))
            .cloned();
        Ok(CriDockerdAsset { file, url, sha256 })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// Tags only; the repository comes from `imageRepository` (or the user's override).
    pub pause: String,
    pub etcd: String,
    pub coredns: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerdNeeds {
    /// The oldest containerd this minor's kubelet accepts.
    pub minimum: semver::Version,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ports {
    pub apiserver: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub kubelet: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
    pub weave_tcp: u16,
    pub weave_udp: Vec<u16>,
}

/// The load balancer's names the playbooks share.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Haproxy {
    pub backend: String,
    pub admin_socket: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenPolicy {
    pub ttl_hours: u64,
    pub reuse_minutes: u64,
}

impl Ports {
    /// What kubeadm needs free on a master.
    pub fn master(&self) -> Vec<u16> {
        vec![
            self.apiserver,
            self.etcd_client,
            self.etcd_peer,
            self.kubelet,
            self.controller_manager,
            self.scheduler,
        ]
    }
    pub fn worker(&self) -> Vec<u16> {
        vec![self.kubelet]
    }
}

impl Defaults {
    /// The defaults for Kubernetes `minor` ("1.36").
    pub fn load(playbooks: &Playbooks, minor: &str) -> Result<Defaults, String> {
        let read = |path: &str| -> Result<Value, String> {
            let text = playbooks.read(path).map_err(|e| e.to_string())?;
            serde_saphyr::from_str(&text).map_err(|e| format!("playbooks/{path}: {e}"))
        };
        let mut merged = read("defaults/common.yaml")?;
        let own = read(&format!("defaults/v{minor}.yaml")).map_err(|e| {
            format!("no defaults for Kubernetes {minor} ({e}); supported minors have a file in playbooks/defaults/")
        })?;
        overlay(&mut merged, own);
        serde_json::from_value(merged).map_err(|e| format!("playbooks/defaults/v{minor}.yaml: {e}"))
    }

    /// The pause image kubeadm expects, from the user's imageRepository when they set one.
    pub fn pause_image(&self, repository: Option<&str>) -> String {
        let repo = repository.unwrap_or(&self.image_repository);
        format!("{}/pause:{}", repo.trim_end_matches('/'), self.images.pause)
    }

    /// The CoreDNS image kubeadm deploys. As kubeadm's `GetDNSImage` does, the default
    /// registry keeps CoreDNS under `coredns/coredns`; a user repository holds it at its root.
    pub fn coredns_image(&self, repository: Option<&str>) -> String {
        let repo = match repository.map(|r| r.trim_end_matches('/')) {
            Some(r) if r != self.image_repository.trim_end_matches('/') => r.to_string(),
            _ => format!("{}/coredns", self.image_repository.trim_end_matches('/')),
        };
        format!("{repo}/coredns:{}", self.images.coredns)
    }
}

fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                overlay(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, t) => *b = t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::SUPPORTED_MINORS;

    fn load(minor: &str) -> Defaults {
        Defaults::load(&Playbooks::Embedded, minor).expect("defaults load")
    }

    #[test]
    fn every_supported_minor_has_a_defaults_table() {
        for (major, minor) in SUPPORTED_MINORS {
            let d = load(&format!("{major}.{minor}"));
            assert_eq!(d.kubeadm_api, "kubeadm.k8s.io/v1beta4");
            assert!(!d.images.etcd.is_empty() && !d.images.coredns.is_empty());
        }
    }

    #[test]
    fn inventory_port_defaults_agree_with_the_table() {
        let d = load("1.36");
        assert_eq!(
            d.ports.apiserver,
            crate::inventory::defaults::LOAD_BALANCER_PORT,
            "an external load balancer defaults to the apiservers' port"
        );
        assert_ne!(d.ports.apiserver, crate::inventory::defaults::VIP_PORT);
    }

    #[test]
    fn coredns_image_moves_to_the_root_of_a_user_repository_as_kubeadm_does() {
        assert_eq!(
            load("1.36").coredns_image(None),
            "registry.k8s.io/coredns/coredns:v1.14.2"
        );
        assert_eq!(
            load("1.36").coredns_image(Some("registry.k8s.io")),
            "registry.k8s.io/coredns/coredns:v1.14.2"
        );
        assert_eq!(
            load("1.36").coredns_image(Some("mirror.example/k8s/")),
            "mirror.example/k8s/coredns:v1.14.2"
        );
    }

    #[test]
    fn pause_image_follows_the_minor_and_the_users_repository() {
        assert_eq!(
            load("1.35").pause_image(None),
            "registry.k8s.io/pause:3.10.1"
        );
        assert_eq!(
            load("1.36").pause_image(None),
            "registry.k8s.io/pause:3.10.2"
        );
        assert_eq!(
            load("1.37").pause_image(Some("mirror.example/k8s/")),
            "mirror.example/k8s/pause:3.10.2"
        );
    }

    #[test]
    fn containerd_minimum_is_two_from_1_36() {
        assert!(load("1.35").containerd.minimum < semver::Version::new(2, 0, 0));
        assert_eq!(
            load("1.36").containerd.minimum,
            semver::Version::new(2, 0, 0)
        );
    }

    #[test]
    fn cri_dockerd_asset_follows_release_and_arch() {
        let d = load("1.36").runtimes.cri_dockerd;
        let base = "https://github.com/Mirantis/cri-dockerd/releases/download/";
        let none = BTreeMap::new();
        let a = d.asset(base, "bookworm", "x86_64", &none).unwrap();
        assert_eq!(
            a.file,
            format!("cri-dockerd_{}.3-0.debian-bookworm_amd64.deb", d.version)
        );
        assert_eq!(a.url, format!("{}v{}/{}", base, d.version, a.file));
        // Debian 13 has no asset of its own: the bookworm package serves it.
        assert_eq!(
            d.asset(base, "trixie", "x86_64", &none).unwrap().file,
            a.file
        );
        let pinned = BTreeMap::from([(a.file.clone(), "ab".repeat(32))]);
        assert_eq!(
            d.asset(base, "bookworm", "amd64", &pinned).unwrap().sha256,
            Some("ab".repeat(32))
        );
        let e = d.asset(base, "bullseye", "x86_64", &none).unwrap_err();
        assert!(e.contains("bullseye") && e.contains("containerd"), "{e}");
    }

    #[test]
    fn unsupported_minor_is_a_clear_error() {
        let e = Defaults::load(&Playbooks::Embedded, "1.30").unwrap_err();
        assert!(e.contains("no defaults for Kubernetes 1.30"), "{e}");
    }
}
