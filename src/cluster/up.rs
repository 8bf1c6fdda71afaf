//! `installer up`: the whole cluster, read top to bottom. Every phase looks at the hosts
//! first and does only what is missing, so re-running `up` is always safe.

use super::phases::{
    Addons, Connect, GatherFacts, InitControlPlane, JoinMasters, JoinWorkers, Kubeconfig,
    LoadBalancer, NodeConfig, Pki, Preflight, PrepareHosts, SmokeTest, Verify,
};
use super::{Ctx, Phase, PhaseError, run_phases};

/// The phases of `up`, in order; `plan` dry-runs the same list.
pub(super) fn phases<'a>(preflight: &'a Preflight, addons: &'a Addons) -> [&'a dyn Phase; 14] {
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
        addons,
        &Verify,
        &SmokeTest::AFTER_CHANGES,
        &Kubeconfig,
    ]
}

/// `prune`: remove the addons the inventory switched off (else they are only reported).
pub async fn up(ctx: &mut Ctx, prune: bool) -> Result<(), PhaseError> {
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    // Before any phase: the load balancer phase alone would put a master drained by an
    // interrupted rotation back into haproxy's rotation while its control plane is stopped.
    super::ca_rotation::refuse_while_rotating(ctx)
        .map_err(|m| PhaseError::new("CA rotation", format!("{m}; nothing was changed")))?;
    let preflight = Preflight::new(true);
    run_phases(ctx, &phases(&preflight, Addons::new(prune))).await?;
    let left_behind = ctx.failed_hosts();
    if !left_behind.is_empty() {
        ctx.reporter.print_json(&serde_json::json!({
            "up": "failed",
            "failed": left_behind
                .iter()
                .map(|(host, why)| serde_json::json!({"host": host, "error": why}))
                .collect::<Vec<_>>(),
        }));
        return Err(PhaseError::new("Up", left_behind_summary(&left_behind)));
    }
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

/// The end of a run that left hosts behind: one line per host, naming the phase and the task.
fn left_behind_summary(failed: &[(String, String)]) -> String {
    let mut text = format!(
        "{} host(s) failed and were left behind; the other hosts are set up. Fix these and run `installer up` again:",
        failed.len()
    );
    for (host, why) in failed {
        // One line per host: the reason's first line (the whole output is in the host's log).
        let first = why.lines().next().unwrap_or_default();
        text.push_str(&format!("\n  {host}: {first}"));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_names_each_failed_host_on_one_line() {
        let text = super::left_behind_summary(&[(
            "worker-3".into(),
            "Prepare hosts: task 'Install kubelet' failed: exit 100\nE: no candidate".into(),
        )]);
        assert_eq!(
            text,
            "1 host(s) failed and were left behind; the other hosts are set up. Fix these and run `installer up` again:\n  worker-3: Prepare hosts: task 'Install kubelet' failed: exit 100"
        );
    }
}
