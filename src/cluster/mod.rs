//! The verbs as pipelines of phases, read top to bottom like a runbook (one file per verb,
//! one small file per phase under `phases/`). A phase decides from facts whether it has
//! work, does it on the hosts it concerns, and reports per host.

mod check;
mod context;
mod kube;
mod kubeadm_config;
mod phase;
pub mod phases;
mod plan;
mod reset;
mod secrets;
mod status;
mod table;
mod up;

pub use check::{check, render_table};
pub use context::{Ctx, HostState, Options};
pub use phase::{Phase, PhaseError, run_phases};
pub use plan::{PlannedTask, plan};
pub use reset::reset;
pub use status::{Status, connect_to_leader, render as render_status, status};
pub use up::up;
