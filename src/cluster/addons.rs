//! `installer addons apply`: the addons of the inventory on a running cluster, alone —
//! the same phase `up` ends with.

use super::phases::Addons;
use super::{Ctx, PhaseError, connect_to_leader, run_phases};

/// `prune`: also remove the addons the inventory switched off.
pub async fn apply(ctx: &mut Ctx, prune: bool) -> Result<(), PhaseError> {
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    connect_to_leader(ctx).await?;
    run_phases(ctx, &[Addons::new(prune)]).await?;
    ctx.reporter.print("addons are applied and ready");
    Ok(())
}
