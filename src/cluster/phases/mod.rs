//! One small file per phase.

mod addons;
mod connect;
mod gather_facts;
mod init_control_plane;
pub(crate) mod join_masters;
mod join_workers;
mod kubeconfig;
pub(crate) mod load_balancer;
mod node_config;
mod pki;
pub(crate) mod preflight;
pub(crate) mod prepare_hosts;
mod smoke_test;
mod upgrade_control_plane;
mod upgrade_kubeadm;
mod upgrade_kubelets;
pub(crate) mod upgrade_preflight;
mod verify;

pub use addons::Addons;
pub use connect::Connect;
pub use gather_facts::GatherFacts;
pub use init_control_plane::InitControlPlane;
pub use join_masters::JoinMasters;
pub use join_workers::JoinWorkers;
pub use kubeconfig::{Kubeconfig, write_admin_kubeconfig};
pub use load_balancer::LoadBalancer;
pub use node_config::NodeConfig;
pub use pki::Pki;
pub use preflight::{HostVerdict, Preflight, Verdict};
pub use prepare_hosts::PrepareHosts;
pub use smoke_test::SmokeTest;
pub use upgrade_control_plane::UpgradeControlPlane;
pub use upgrade_kubeadm::UpgradeKubeadm;
pub use upgrade_kubelets::UpgradeKubelets;
pub use upgrade_preflight::{UpgradePreflight, parse_target as parse_upgrade_target};
pub use verify::Verify;
