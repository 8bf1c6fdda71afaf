//! `installer verify`: the checks `up` ends with, on demand — nodes, etcd, the API through the
//! endpoint and on every master, the static pods — then the smoke test workload, which leaves
//! nothing behind.

use super::phases::{Connect, GatherFacts, SmokeTest, Verify};
use super::{Ctx, Phase, PhaseError, run_phases};

pub(super) fn phases() -> [&'static dyn Phase; 4] {
    [&Connect, &GatherFacts, &Verify, &SmokeTest::ON_DEMAND]
}

pub async fn verify(ctx: &mut Ctx) -> Result<(), PhaseError> {
    run_phases(ctx, &phases()).await?;
    ctx.reporter.print("cluster verified");
    ctx.reporter
        .print_json(&serde_json::json!({"verify": "ok"}));
    Ok(())
}
