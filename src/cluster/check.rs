//! `installer check`: connect, gather facts, preflight — and print one row per host.
//! Read-only: nothing on any host changes.

use super::phases::{Connect, GatherFacts, HostVerdict, Preflight, Verdict};
use super::{Ctx, PhaseError, run_phases};

pub async fn check(ctx: &mut Ctx) -> Result<(), PhaseError> {
    let preflight = Preflight::new(false);
    run_phases(ctx, &[&Connect, &GatherFacts, &preflight]).await?;
    let verdicts = preflight.verdicts();
    ctx.reporter.print(&render_table(&verdicts));
    ctx.reporter
        .print_json(&serde_json::json!({ "check": verdicts }));
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.verdict == Verdict::Fail)
        .map(|v| v.host.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(PhaseError::new(
        "Preflight checks",
        format!(
            "preflight failed on {}; fix the reasons above and run check again",
            failed.join(", ")
        ),
    ))
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
