//! The verbs as pipelines of phases, read top to bottom like a runbook (one file per verb,
//! one small file per phase under `phases/`). A phase decides from facts whether it has
//! work, does it on the hosts it concerns, and reports per host.

pub mod addons;
mod ca_rotation;
mod certs;
mod check;
mod context;
mod dashboard;
pub mod defaults;
mod etcd_backup;
pub(crate) mod etcd_files;
mod etcd_restore;
mod kube;
mod kubeadm_config;
mod kubeconfig;
mod lock;
mod os_family;
mod phase;
pub mod phases;
mod plan;
pub mod probe;
mod remove_node;
#[cfg(test)]
mod render_tests;
mod reset;
pub mod run_playbook;
pub(crate) mod secrets;
mod status;
mod table;
mod up;
pub mod upgrade;
mod verify;

pub use certs::{
    certs_check, certs_renew, certs_rotate_ca, plan_certs_renew, plan_certs_rotate_ca,
};
pub use check::{check, render_table};
pub use context::{Ctx, HostState, Options};
pub use dashboard::dashboard;
pub use defaults::Defaults;
pub use etcd_backup::{etcd_backup, plan_etcd_backup};
pub use etcd_restore::{etcd_restore, plan_etcd_restore};
pub use kubeconfig::kubeconfig;
pub use os_family::{OsFamilies, OsFamily};
pub use phase::{Phase, PhaseError, PlannedStep, plan_phases, run_phases};
pub use plan::{plan, plan_verb, render as render_plan};
pub use remove_node::{RemoveNodeOptions, plan_remove_node, remove_node};
pub use reset::reset;
pub use run_playbook::run_playbook;
pub use status::{Status, connect_to_leader, status};
pub use up::up;
pub use upgrade::{UpgradeOptions, plan_upgrade, upgrade};
pub use verify::verify;
