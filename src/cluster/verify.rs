//! `installer verify`: the checks `up` ends with, on demand — nodes, etcd, the API through the
//! endpoint and on every master, the static pods — then the smoke test workload, which leaves
//! nothing behind.

use super::phases::{SmokeTest, Verify};
use super::{Ctx, PhaseError, connect_to_leader, run_phases};

pub async fn verify(ctx: &mut Ctx) -> Result<(), PhaseError> {
    connect_to_leader(ctx).await?;
    run_phases(ctx, &[&Verify, &SmokeTest::ON_DEMAND]).await?;
    ctx.reporter.print("cluster verified");
    ctx.reporter
        .print_json(&serde_json::json!({"verify": "ok"}));
    Ok(())
}
