//! `installer etcd restore FILE`: etcd's documented disaster recovery on every master at once
//! (the etcd and kubeadm procedure): the snapshot checked, the control plane stopped on every
//! master, each member's data directory set aside (kept) and made again from the snapshot as
//! one new cluster of all masters, the control plane started, then waited for until etcd has
//! one healthy member per master and the API answers through the endpoint.

use std::path::Path;
use std::time::Duration;

use super::phases::{
    Connect, ControlPlanePods, GatherFacts, Kubeconfig, PrepareRestore, Restore, RestoreEtcd,
    StaticPodAction, WaitHealthy,
};
use super::{Ctx, Phase, PhaseError, plan_verb, run_phases};
use crate::inventory::Host;

const WAIT: WaitHealthy = WaitHealthy {
    timeout: Duration::from_secs(300),
};

fn phases<'a>(restore: &'a PrepareRestore<'a>, data: &'a RestoreEtcd<'a>) -> [&'a dyn Phase; 8] {
    [
        &Connect,
        &GatherFacts,
        restore,
        &ControlPlanePods(StaticPodAction::Stop),
        data,
        &ControlPlanePods(StaticPodAction::Start),
        &WAIT,
        &Kubeconfig,
    ]
}

pub async fn etcd_restore(ctx: &mut Ctx, file: &Path, yes: bool) -> Result<(), PhaseError> {
    if !yes {
        confirm(
            ctx,
            &format!(
                "This replaces etcd's data on every master of cluster {} with {} (the current data is kept aside); the API is down meanwhile.",
                ctx.inventory.cluster.name,
                file.display()
            ),
        )
        .map_err(|m| PhaseError::new("Confirm", m))?;
    }
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    let restore = Restore::new(file.to_path_buf());
    let prepare = PrepareRestore(&restore);
    let data = RestoreEtcd(&restore);
    lead_with_first_master(ctx);
    run_phases(ctx, &phases(&prepare, &data)).await?;
    ctx.reporter.print(&format!(
        "etcd restored from {} on every master; the old data directories are kept as <data-dir>.before-restore-{}",
        file.display(),
        restore.stamp
    ));
    ctx.reporter
        .print_json(&serde_json::json!({"etcd_restore": "ok", "stamp": restore.stamp}));
    Ok(())
}

pub async fn plan_etcd_restore(ctx: &mut Ctx, file: &Path) -> Result<(), PhaseError> {
    let restore = Restore::new(file.to_path_buf());
    let prepare = PrepareRestore(&restore);
    let data = RestoreEtcd(&restore);
    lead_with_first_master(ctx);
    plan_verb(ctx, &phases(&prepare, &data)).await
}

/// The API is read through the first master once the control plane is back (its manifests
/// may be set aside by an interrupted restore, so "runs a control plane" cannot pick it).
fn lead_with_first_master(ctx: &mut Ctx) {
    ctx.init_master = ctx
        .inventory
        .masters()
        .next()
        .map(|m: &Host| m.name.clone());
}

/// A restore rolls the cluster back to the snapshot: the user types the cluster name, on a
/// terminal (or passes --yes).
fn confirm(ctx: &Ctx, what: &str) -> Result<(), String> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(
            "a restore rolls the whole cluster back to the snapshot; run it on a terminal to confirm, or pass --yes".into(),
        );
    }
    eprint!("{what}\nType the cluster name to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.trim() != ctx.inventory.cluster.name {
        return Err("not confirmed; nothing was changed".into());
    }
    Ok(())
}
