//! Load balancer + VIP on the masters: haproxy (VIP port → every apiserver's 6443) and
//! keepalived (VRRP over unicast, priority by master order, tracking haproxy). Ends only
//! when exactly one master holds the VIP and its port answers — kubeadm init needs that.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::inventory::{ControlPlane, Host};
use crate::playbook::{HostTarget, Mode, SshRemote};

/// How long VRRP may take to elect a holder after keepalived starts.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LoadBalancer;

impl Phase for LoadBalancer {
    fn title(&self) -> &'static str {
        "Load balancer and VIP"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            if !matches!(
                ctx.inventory.cluster.control_plane,
                ControlPlane::Vip { .. }
            ) {
                ctx.reporter
                    .info("external load balancer configured: nothing to lay down");
                return Ok(());
            }
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            let targets = lb_targets(ctx, &masters).map_err(err)?;
            ctx.apply("load-balancer", targets).await.map_err(err)?;
            let holder = wait_for_single_holder(ctx, &masters).await.map_err(err)?;
            ctx.reporter
                .host_info(&holder, "holds the VIP and its port answers");
            Ok(())
        })
    }
}

/// Per-master variables: priority falls with the master's position in the inventory.
fn lb_targets(ctx: &Ctx, masters: &[Host]) -> Result<Vec<HostTarget<SshRemote>>, String> {
    let ControlPlane::Vip {
        vip,
        port,
        interface,
    } = &ctx.inventory.cluster.control_plane
    else {
        return Ok(Vec::new());
    };
    let vrid = virtual_router_id(&ctx.inventory.cluster.name);
    let mut targets = Vec::new();
    for (i, m) in masters.iter().enumerate() {
        let facts = ctx
            .hosts
            .get(&m.name)
            .and_then(|s| s.facts.as_ref())
            .ok_or(format!("{}: no facts", m.name))?;
        let own = facts
            .addresses
            .iter()
            .find(|a| a.address == m.address)
            .ok_or(format!(
                "{}: address {} is not on any interface",
                m.name, m.address
            ))?;
        let iface = interface.clone().unwrap_or_else(|| own.interface.clone());
        let peers: Vec<String> = masters
            .iter()
            .filter(|p| p.name != m.name)
            .map(|p| p.address.to_string())
            .collect();
        let backends: Vec<Value> = masters
            .iter()
            .map(|b| json!({"name": b.name, "address": b.address}))
            .collect();
        let vars = json!({"lb": {
            "vip": vip, "port": port, "interface": iface, "prefix": own.prefix,
            "vrid": vrid, "instance": format!("k8s_{}", ctx.inventory.cluster.name.replace('-', "_")),
            "priority": 150 - 10 * i as i64, "check_weight": 10 * masters.len() + 10,
            "peers": peers, "backends": backends,
        }});
        targets.extend(ctx.targets(&[m], &vars));
    }
    Ok(targets)
}

/// VRRP router ids are shared on a LAN segment: derive ours from the cluster name.
fn virtual_router_id(cluster: &str) -> u8 {
    let digest = Sha256::digest(cluster.as_bytes());
    (digest[0] % 250) + 1
}

async fn wait_for_single_holder(ctx: &Ctx, masters: &[Host]) -> Result<String, String> {
    let playbook = ctx.playbooks.load("vip-check").map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        let targets = lb_targets(ctx, masters)?;
        let reports = crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Plan)).await;
        let answer = |r: &crate::playbook::HostReport, k: &str| {
            r.registered.get(k).and_then(|v| v.as_str()) == Some("yes")
        };
        let holders: Vec<&str> = reports
            .iter()
            .filter(|r| answer(r, "holds_vip"))
            .map(|r| r.host.as_str())
            .collect();
        let answering = reports.iter().any(|r| answer(r, "vip_answers"));
        if holders.len() == 1 && answering {
            return Ok(holders[0].to_string());
        }
        if started.elapsed() > ELECTION_TIMEOUT {
            return Err(match holders.len() {
                0 => "no master took the VIP; check keepalived on the masters (journalctl -u keepalived) and that VRRP (IP protocol 112) passes between them".into(),
                1 => "the VIP is held but its port does not answer; check haproxy on the holder (journalctl -u haproxy)".into(),
                _ => format!("{} masters hold the VIP at once ({}); VRRP packets are not passing between them", holders.len(), holders.join(", ")),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn router_id_is_stable_and_in_range() {
        let a = super::virtual_router_id("prod-eu1");
        assert_eq!(a, super::virtual_router_id("prod-eu1"));
        assert!((1..=250).contains(&a));
    }
}
