//! `installer check`: connect, gather facts, preflight — and print one row per host.
//! Read-only: nothing on any host changes.

use super::phases::{Connect, GatherFacts, HostVerdict, Preflight, Verdict};
use super::{Ctx, PhaseError, run_phases};

pub async fn check(ctx: &mut Ctx) -> Result<Vec<HostVerdict>, PhaseError> {
    let preflight = Preflight::new(false);
    run_phases(ctx, &[&Connect, &GatherFacts, &preflight]).await?;
    Ok(preflight.verdicts())
}

/// The table `check` prints: HOST, ROLES, ADDRESS, RESULT, REASONS.
pub fn render_table(verdicts: &[HostVerdict]) -> String {
    let rows: Vec<[String; 5]> = verdicts
        .iter()
        .map(|v| {
            let result = match v.verdict {
                Verdict::Pass => "PASS",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            [
                v.host.clone(),
                v.roles.clone(),
                v.address.clone(),
                result.into(),
                v.reasons.join("; "),
            ]
        })
        .collect();
    super::table::render(&["HOST", "ROLES", "ADDRESS", "RESULT", "REASONS"], &rows)
}
