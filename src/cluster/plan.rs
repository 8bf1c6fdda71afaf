//! `installer plan`: what `up` would do on each host, with guards evaluated against the
//! hosts' facts — a dry run that changes nothing.

use super::phases::{Connect, GatherFacts, Preflight, PrepareHosts};
use super::{Ctx, PhaseError, run_phases};
use crate::playbook::Mode;

pub struct PlannedTask {
    pub host: String,
    pub phase: &'static str,
    pub task: String,
    /// `None`: would run; `Some(reason)`: skipped, with the guard that says so.
    pub skip: Option<String>,
}

pub async fn plan(ctx: &mut Ctx) -> Result<Vec<PlannedTask>, PhaseError> {
    let preflight = Preflight::new(false);
    run_phases(ctx, &[&Connect, &GatherFacts, &preflight]).await?;
    let prepare = PrepareHosts::new(Mode::Plan);
    run_phases(ctx, &[&prepare]).await?;
    Ok(prepare.planned())
}
