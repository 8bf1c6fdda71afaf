//! `installer up`: the whole cluster, read top to bottom. Every phase looks at the hosts
//! first and does only what is missing, so re-running `up` is always safe.

use super::phases::{
    Addons, Connect, GatherFacts, InitControlPlane, JoinMasters, JoinWorkers, Kubeconfig,
    LoadBalancer, NodeConfig, Pki, Preflight, PrepareHosts, Verify,
};
use super::{Ctx, Phase, PhaseError, run_phases};

/// The phases of `up`, in order; `plan` dry-runs the same list.
pub(super) fn phases(preflight: &Preflight) -> [&dyn Phase; 13] {
    [
        &Connect,
        &GatherFacts,
        preflight,
        &PrepareHosts,
        &Pki,
        &LoadBalancer,
        &InitControlPlane,
        &JoinMasters,
        &JoinWorkers,
        &NodeConfig,
        &Addons,
        &Verify,
        &Kubeconfig,
    ]
}

pub async fn up(ctx: &mut Ctx) -> Result<(), PhaseError> {
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    let preflight = Preflight::new(true);
    run_phases(ctx, &phases(&preflight)).await?;
    let changed = ctx.reporter.changed_count();
    if changed == 0 {
        ctx.reporter.print("cluster is up to date: nothing changed");
    } else {
        ctx.reporter.print(&format!(
            "cluster is up ({changed} change(s)); kubeconfig: {}",
            ctx.inventory.state_dir().join("kubeconfig").display()
        ));
    }
    ctx.reporter
        .print_json(&serde_json::json!({"up": "ok", "changed": changed}));
    Ok(())
}
