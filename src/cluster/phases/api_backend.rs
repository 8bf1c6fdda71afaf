//! A master's API server out of every haproxy's rotation while its control plane restarts
//! (upgrade, certificate renewal) and back once it answers ready (`playbooks/api-backend`):
//! clients of the VIP reach only API servers that can answer. Nothing to do without our
//! load balancer (a single master, or an endpoint the user runs).

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::probe::probe_text_many;
use crate::inventory::{ControlPlane, Host};

/// Whether the cluster's endpoint is our haproxy with more than one backend to fall back on.
pub fn in_use(ctx: &Ctx) -> bool {
    matches!(
        ctx.inventory.cluster.control_plane,
        ControlPlane::Vip { .. }
    ) && ctx.usable(Host::is_master).count() > 1
}

fn backend(h: &Host) -> serde_json::Value {
    json!({"name": h.name, "address": h.address})
}

/// Refuses, naming each master and why, when haproxy's runtime API does not answer on every
/// master: asked before anything changes, so a verb that drains masters never stops halfway.
pub async fn check(ctx: &Ctx) -> Result<(), String> {
    if !in_use(ctx) {
        return Ok(());
    }
    let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
    let failed: Vec<String> = probe_text_many(ctx, "api-backend-check", &masters, &json!({}))
        .await
        .into_iter()
        .filter_map(|(_, answer)| answer.err().map(|e| e.to_string()))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Drains MASTER in every master's haproxy (and moves its etcd leadership away).
pub async fn drain(ctx: &mut Ctx, master: &Host) -> Result<(), String> {
    on_every_master(ctx, json!({"action": "drain", "backend": backend(master)})).await
}

/// Puts every drained master back into rotation once it answers /readyz; changes nothing
/// when none is drained (so it also finishes what an interrupted run left).
pub async fn restore(ctx: &mut Ctx) -> Result<(), String> {
    let backends: Vec<serde_json::Value> = ctx.usable(Host::is_master).map(backend).collect();
    on_every_master(ctx, json!({"action": "ready", "backends": backends})).await
}

/// `playbooks/api-backend` with VARS on every master's haproxy, when there is one to drive.
async fn on_every_master(ctx: &mut Ctx, vars: serde_json::Value) -> Result<(), String> {
    if !in_use(ctx) {
        return Ok(());
    }
    let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
    let hosts: Vec<&Host> = masters.iter().collect();
    let targets = ctx.targets(&hosts, &vars);
    ctx.apply("api-backend", targets).await.map(|_| ())
}
