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
mod run_playbook;
mod smoke_test;
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
pub use run_playbook::RunPlaybook;
pub use smoke_test::SmokeTest;
pub use verify::Verify;
