//! The verbs as pipelines of phases, read top to bottom like a runbook (one file per verb,
//! one small file per phase under `phases/`). A phase decides from facts whether it has
//! work, does it on the hosts it concerns, and reports per host.

pub mod addons;
mod check;
mod context;
mod dashboard;
pub mod defaults;
mod kube;
mod kubeadm_config;
mod kubeconfig;
mod lock;
mod os_family;
mod phase;
pub mod phases;
mod plan;
pub mod probe;
#[cfg(test)]
mod render_tests;
mod reset;
pub mod run_playbook;
pub(crate) mod secrets;
mod status;
mod table;
mod up;
mod verify;

pub use check::{check, render_table};
pub use context::{Ctx, HostState, Options};
pub use dashboard::dashboard;
pub use defaults::Defaults;
pub use kubeconfig::kubeconfig;
pub use os_family::{OsFamilies, OsFamily};
pub use phase::{Phase, PhaseError, PlannedStep, plan_phases, run_phases};
pub use plan::{plan, plan_verb, render as render_plan};
pub use reset::reset;
pub use run_playbook::run_playbook;
pub use status::{Status, connect_to_leader, status};
pub use up::up;
pub use verify::verify;
