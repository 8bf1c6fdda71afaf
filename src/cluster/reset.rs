//! `installer reset`: kubeadm reset on every host (workers first, masters last) and removal of
//! what `up` laid down (VIP, haproxy/keepalived config, CNI config, Kubernetes iptables
//! chains). Packages stay unless `--purge`. Asks for the cluster name first (or `--yes`).

use serde_json::json;

use super::phases::{Connect, GatherFacts};
use super::{Ctx, PhaseError, run_phases};
use crate::inventory::{ControlPlane, Host};

pub async fn reset(ctx: &mut Ctx, yes: bool, purge: bool) -> Result<(), PhaseError> {
    if !yes {
        confirm(ctx, purge).map_err(|m| PhaseError::new("Confirm", m))?;
    }
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    reset_hosts(ctx, purge).await?;
    ctx.reporter
        .print("cluster reset; `installer up` builds it again");
    Ok(())
}

/// Reset destroys a cluster: the user types its name, on a terminal.
fn confirm(ctx: &Ctx, purge: bool) -> Result<(), String> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(
            "reset destroys the cluster; run it on a terminal to confirm, or pass --yes".into(),
        );
    }
    eprint!(
        "This destroys cluster {} on {} host(s){}. Type the cluster name to confirm: ",
        ctx.inventory.cluster.name,
        ctx.inventory.hosts.len(),
        if purge {
            " and removes the Kubernetes packages"
        } else {
            ""
        }
    );
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

/// The `reset` playbook's variables (also used by `remove-node` for the one host it resets).
pub(crate) fn reset_vars(ctx: &Ctx, purge: bool) -> serde_json::Value {
    let vip = match &ctx.inventory.cluster.control_plane {
        ControlPlane::Vip { vip, .. } => json!(vip),
        ControlPlane::LoadBalancer { .. } => json!(null),
    };
    json!({"vip": vip, "purge": purge, "cri_socket": ctx.inventory.cluster.runtime.cri_socket()})
}

async fn reset_hosts(ctx: &mut Ctx, purge: bool) -> Result<(), PhaseError> {
    run_phases(ctx, &[&Connect, &GatherFacts]).await?;
    let err = |m: String| PhaseError::new("Reset hosts", m);
    ctx.reporter.phase("Reset hosts");
    let unreachable: Vec<String> = ctx
        .hosts
        .iter()
        .filter_map(|(name, s)| s.error.as_ref().map(|e| format!("{name}: {e}")))
        .collect();
    let vars = reset_vars(ctx, purge);
    // Workers leave first; masters (and etcd) last.
    for pick in [
        (|h: &Host| !h.is_master()) as fn(&Host) -> bool,
        Host::is_master,
    ] {
        let hosts: Vec<&Host> = ctx.usable(pick).collect();
        let targets = ctx.targets(&hosts, &vars);
        ctx.apply("reset", targets).await.map_err(err)?;
    }
    for stale in ["kubeconfig", "bootstrap-token"] {
        let _ = std::fs::remove_file(ctx.inventory.state_dir().join(stale));
    }
    if !unreachable.is_empty() {
        return Err(err(format!(
            "these hosts were not reset: {}",
            unreachable.join("; ")
        )));
    }
    Ok(())
}
