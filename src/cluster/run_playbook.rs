//! `installer run-playbook PATH` (hidden, for `bench/`): connect, then run one playbook on
//! every host through the normal SSH transport and playbook engine.

use std::path::Path;

use super::phases::{Connect, RunPlaybook};
use super::{Ctx, Phase, PhaseError, run_phases};

/// The phases of `run-playbook`, in order; `plan run-playbook` dry-runs the same list.
pub fn phases(playbook: &RunPlaybook) -> [&dyn Phase; 2] {
    [&Connect, playbook]
}

pub async fn run_playbook(ctx: &mut Ctx, path: &Path) -> Result<(), PhaseError> {
    let playbook = RunPlaybook::new(path).map_err(|m| PhaseError::new("Run playbook", m))?;
    run_phases(ctx, &phases(&playbook)).await
}
