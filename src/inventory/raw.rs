//! The inventory file exactly as written, with source positions, before defaults and checks.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawInventory {
    pub api_version: S<String>,
    pub kind: S<String>,
    pub cluster: S<RawCluster>,
    #[serde(default)]
    pub ssh: Option<S<RawSsh>>,
    #[serde(default)]
    pub packages: Option<RawPackages>,
    pub hosts: S<Vec<S<RawHost>>>,
    #[serde(default)]
    pub addons: Option<RawAddons>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCluster {
    pub name: S<String>,
    pub kubernetes: S<String>,
    #[serde(default)]
    pub runtime: Option<S<String>>,
    #[serde(default)]
    pub network: Option<RawNetwork>,
    pub control_plane: S<RawControlPlane>,
    #[serde(default)]
    pub schedulable_masters: Option<bool>,
    #[serde(default)]
    pub kubeadm: Option<S<BTreeMap<String, serde_json::Value>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNetwork {
    #[serde(default)]
    pub pods: Option<S<String>>,
    #[serde(default)]
    pub services: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawControlPlane {
    #[serde(default)]
    pub vip: Option<S<String>>,
    #[serde(default)]
    pub port: Option<S<u16>>,
    #[serde(default)]
    pub interface: Option<S<String>>,
    #[serde(default)]
    pub load_balancer: Option<S<RawLoadBalancer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLoadBalancer {
    pub address: S<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSsh {
    #[serde(default)]
    pub user: Option<S<String>>,
    #[serde(default)]
    pub port: Option<S<u16>>,
    #[serde(default)]
    pub identity_file: Option<S<String>>,
    #[serde(default)]
    pub identity_passphrase_env: Option<S<String>>,
    #[serde(default)]
    pub agent: Option<bool>,
    #[serde(default)]
    pub password_env: Option<S<String>>,
    #[serde(default)]
    pub sudo_password_env: Option<S<String>>,
    #[serde(default)]
    pub known_hosts: Option<S<String>>,
    #[serde(default)]
    pub host_key_policy: Option<S<String>>,
    #[serde(default)]
    pub bastion: Option<S<RawBastion>>,
    #[serde(default)]
    pub connect_timeout: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBastion {
    pub address: S<String>,
    #[serde(default)]
    pub user: Option<S<String>>,
    #[serde(default)]
    pub port: Option<S<u16>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPackages {
    #[serde(default)]
    pub kubernetes_repo: Option<S<String>>,
    #[serde(default)]
    pub docker_repo: Option<S<String>>,
    #[serde(default)]
    pub manifests_mirror: Option<S<String>>,
    #[serde(default)]
    pub cri_dockerd_repo: Option<S<String>>,
    #[serde(default)]
    pub cri_dockerd_sha256: Option<BTreeMap<String, S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHost {
    pub name: S<String>,
    pub address: S<String>,
    pub roles: S<Vec<S<String>>>,
    #[serde(default)]
    pub labels: Option<S<BTreeMap<String, String>>>,
    #[serde(default)]
    pub taints: Option<Vec<S<String>>>,
    #[serde(default)]
    pub storage: Option<Vec<S<String>>>,
    #[serde(default)]
    pub ssh: Option<S<RawSsh>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAddons {
    #[serde(default)]
    pub weave: Option<S<RawWeave>>,
    #[serde(default)]
    pub rook: Option<S<RawRook>>,
    #[serde(default)]
    pub dashboard: Option<S<RawDashboard>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawWeave {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub version: Option<S<String>>,
    #[serde(default)]
    pub password_env: Option<S<String>>,
    /// The manifest's sha256, for a release the installer does not pin (Weave Net 2.8.1).
    #[serde(default)]
    pub sha256: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRook {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub version: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDashboard {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub kind: Option<S<String>>,
    #[serde(default)]
    pub admin: Option<bool>,
}
