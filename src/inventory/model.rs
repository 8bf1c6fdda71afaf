//! The validated inventory: typed, defaults filled in. Everything downstream trusts it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// The inventory file; the state directory `.installer/<cluster>/` sits beside it.
    pub source: PathBuf,
    pub cluster: Cluster,
    pub packages: Packages,
    pub hosts: Vec<Host>,
    pub addons: Addons,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub name: String,
    pub kubernetes: KubeVersion,
    pub runtime: Runtime,
    pub network: Network,
    pub control_plane: ControlPlane,
    pub schedulable_masters: bool,
    /// kubeadm documents keyed by kind, merged over the generated configuration.
    pub kubeadm: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct KubeVersion(pub semver::Version);

impl KubeVersion {
    /// "1.36" — the package repository and per-minor defaults are keyed by it.
    pub fn minor_string(&self) -> String {
        format!("{}.{}", self.0.major, self.0.minor)
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
        }
    }
    pub fn cri_socket(self) -> &'static str {
        match self {
            Runtime::Docker => "unix:///var/run/cri-dockerd.sock",
            Runtime::Containerd => "unix:///run/containerd/containerd.sock",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub pods: IpNet,
    pub services: IpNet,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ControlPlane {
    /// keepalived + haproxy on the masters hold `vip:port`.
    Vip {
        vip: IpAddr,
        port: u16,
        interface: Option<String>,
    },
    /// The user's own load balancer in front of the masters' apiservers.
    LoadBalancer { address: String, port: u16 },
}

impl ControlPlane {
    /// `host:port` every node and kubeconfig uses to reach the API.
    pub fn endpoint(&self) -> String {
        match self {
            ControlPlane::Vip { vip, port, .. } => host_port(&vip.to_string(), *port),
            ControlPlane::LoadBalancer { address, port } => host_port(address, *port),
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Worker => "worker",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub name: String,
    pub address: IpAddr,
    pub roles: Vec<Role>,
    pub ssh: SshSettings,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub storage: Vec<String>,
}

impl Host {
    pub fn is_master(&self) -> bool {
        self.roles.contains(&Role::Master)
    }
    pub fn is_worker(&self) -> bool {
        self.roles.contains(&Role::Worker)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{}", self.key, v, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// How to reach one host; global `ssh:` defaults merged with the host's own overrides.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    /// Names of environment variables; the secrets themselves never live in the inventory.
    pub identity_passphrase_env: Option<String>,
    pub agent: bool,
    pub password_env: Option<String>,
    pub sudo_password_env: Option<String>,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    pub bastion: Option<Bastion>,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    Strict,
    AcceptNew,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bastion {
    pub address: String,
    pub user: String,
    pub port: u16,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Packages {
    /// Flat apt repository of the Kubernetes minor (`deb [signed-by=...] URL /`).
    pub kubernetes_repo: String,
    pub docker_repo: String,
    /// Base URL addon manifests are fetched from; `None` means their upstream URLs.
    pub manifests_mirror: Option<String>,
    /// Base URL of cri-dockerd's release downloads (`.../releases/download`) or a mirror.
    pub cri_dockerd_repo: String,
    /// sha256 of cri-dockerd release files, by file name: downloads are verified against it.
    pub cri_dockerd_sha256: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Addons {
    pub weave: Weave,
    pub rook: Rook,
    pub dashboard: Dashboard,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Weave {
    pub enabled: bool,
    pub version: String,
    pub password_env: Option<String>,
    /// The user's sha256 of the manifest, for a release without a pinned one.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rook {
    pub enabled: bool,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub enabled: bool,
    pub kind: DashboardKind,
    pub admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DashboardKind {
    Headlamp,
    KubernetesDashboard,
}

impl Inventory {
    pub fn masters(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_master())
    }
    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts
            .iter()
            .filter(|h| h.is_worker() && !h.is_master())
    }
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
    /// `.installer/<cluster>/` next to the inventory file.
    pub fn state_dir(&self) -> PathBuf {
        let dir = self
            .source
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        dir.join(".installer").join(&self.cluster.name)
    }
}
