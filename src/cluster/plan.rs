//! `installer plan`: what `up` would do, phase by phase and host by host, decided from the
//! hosts' facts and read-only probes — a dry run that changes nothing.

use super::phase::{Phase, PlannedStep, plan_phases};
use super::phases::{Addons, Preflight, Verdict};
use super::{Ctx, PhaseError};

pub async fn plan(ctx: &mut Ctx, prune: bool) -> Result<(), PhaseError> {
    let steps = plan_steps(ctx, prune).await?;
    print(ctx, &steps);
    Ok(())
}

/// `installer plan VERB ...` for a verb other than `up`: dry-run that verb's phase list.
pub async fn plan_verb(ctx: &mut Ctx, phases: &[&dyn Phase]) -> Result<(), PhaseError> {
    let steps = plan_phases(ctx, phases).await?;
    print(ctx, &steps);
    Ok(())
}

fn print(ctx: &Ctx, steps: &[PlannedStep]) {
    ctx.reporter.print(&render(steps));
    ctx.reporter
        .print_json(&serde_json::json!({ "plan": steps }));
}

pub async fn plan_steps(ctx: &mut Ctx, prune: bool) -> Result<Vec<PlannedStep>, PhaseError> {
    let preflight = Preflight::new(false);
    let addons = Addons::new(prune);
    let mut steps = plan_phases(ctx, &super::up::phases(&preflight, addons)).await?;
    let blocked: Vec<PlannedStep> = preflight
        .verdicts()
        .into_iter()
        .filter(|v| v.verdict == Verdict::Fail)
        .map(|v| {
            PlannedStep::change(
                "Preflight checks",
                &v.host,
                format!("STOP: up would stop here ({})", v.reasons.join("; ")),
            )
        })
        .collect();
    steps.splice(0..0, blocked);
    Ok(steps)
}

/// The plan as text: per phase, per host, what would run and what is already in place.
pub fn render(steps: &[PlannedStep]) -> String {
    let mut text = String::new();
    let mut last = ("", "");
    for s in steps {
        if s.phase != last.0 {
            text.push_str(&format!("\n{}\n", s.phase));
            last = (s.phase, "");
        }
        if s.host != last.1 {
            text.push_str(&format!("  {}:\n", s.host));
            last.1 = &s.host;
        }
        match &s.skip {
            None => text.push_str(&format!("    run   {}\n", s.step)),
            Some(why) => text.push_str(&format!("    skip  {} ({why})\n", s.step)),
        }
    }
    let changes = steps.iter().filter(|s| s.would_change()).count();
    if changes == 0 {
        text.push_str(
            "\nNothing would change: the cluster matches the inventory. Nothing was changed.\n",
        );
    } else {
        text.push_str(&format!(
            "\n{changes} step(s) would change hosts, {} already in place or skipped. Nothing was changed.\n",
            steps.len() - changes
        ));
    }
    text.trim_start().to_string()
}
