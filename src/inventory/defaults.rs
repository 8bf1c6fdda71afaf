//! Every default of the inventory, in one place.

use super::model::{DashboardKind, HostKeyPolicy, Runtime};

pub const API_VERSION: &str = "installer/v1";
pub const KIND: &str = "Inventory";

/// Kubernetes minors this release can install (late 2026).
pub const SUPPORTED_MINORS: &[(u64, u64)] = &[(1, 35), (1, 36), (1, 37)];

pub const RUNTIME: Runtime = Runtime::Docker;
pub const POD_SUBNET: &str = "10.244.0.0/16";
pub const SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const VIP_PORT: u16 = 8443;
pub const LOAD_BALANCER_PORT: u16 = 6443;
pub const SCHEDULABLE_MASTERS: bool = false;

pub const SSH_USER: &str = "root";
pub const SSH_PORT: u16 = 22;
pub const SSH_AGENT: bool = true;
pub const SSH_KNOWN_HOSTS: &str = "~/.ssh/known_hosts";
pub const SSH_HOST_KEY_POLICY: HostKeyPolicy = HostKeyPolicy::Strict;
pub const SSH_CONNECT_TIMEOUT_SECS: u64 = 10;

/// The upstream per-minor Kubernetes package repository.
pub fn kubernetes_repo(minor: &str) -> String {
    // `{format}` becomes the OS family's package format (deb, rpm), per host.
    format!("https://pkgs.k8s.io/core:/stable:/v{minor}/{{format}}/")
}
/// `{distro}` becomes the host's distribution id (debian, ubuntu), per host.
pub const DOCKER_REPO: &str = "https://download.docker.com/linux/{distro}";
pub const CRI_DOCKERD_REPO: &str = "https://github.com/Mirantis/cri-dockerd/releases/download";

pub const WEAVE_ENABLED: bool = true;
pub const WEAVE_VERSION: &str = "2.9.0";
pub const ROOK_ENABLED: bool = true;
pub const ROOK_VERSION: &str = "v1.20.6";
pub const DASHBOARD_ENABLED: bool = true;
pub const DASHBOARD_KIND: DashboardKind = DashboardKind::Headlamp;
pub const DASHBOARD_ADMIN: bool = false;

/// kubeadm configuration kinds a user may merge into the generated config.
pub const KUBEADM_KINDS: &[&str] = &[
    "InitConfiguration",
    "ClusterConfiguration",
    "JoinConfiguration",
    "KubeletConfiguration",
    "KubeProxyConfiguration",
];
