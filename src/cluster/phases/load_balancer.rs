//! Load balancer + VIP on the masters: haproxy (VIP port → every master's apiserver) and
//! keepalived (VRRP over unicast, priority by master order, tracking haproxy). Ends only
//! when exactly one master holds the VIP and its port answers — kubeadm init needs that.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture};
use crate::cluster::phases::prepare_hosts::planned_tasks;
use crate::cluster::probe::probe_many;
use crate::inventory::{ControlPlane, Host};
use crate::playbook::Mode;
use crate::playbook::{HostTarget, SshRemote};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

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
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            let targets = lb_targets(ctx, &masters).map_err(err)?;
            ctx.apply("load-balancer", targets).await.map_err(err)?;
            let holder = wait_for_single_holder(ctx, &masters).await.map_err(err)?;
            ctx.reporter
                .host_info(&holder, "holds the VIP and its port answers");
            Ok(())
        })
    }

    fn should_run(&self, ctx: &Ctx) -> bool {
        matches!(
            ctx.inventory.cluster.control_plane,
            ControlPlane::Vip { .. }
        )
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            let targets = lb_targets(ctx, &masters).map_err(err)?;
            let playbook = ctx
                .playbooks
                .load("load-balancer")
                .map_err(|e| err(e.to_string()))?;
            let reports =
                crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Plan)).await;
            Ok(planned_tasks(self.title(), &reports))
        })
    }
}

/// The `load-balancer` playbook's variables for one master (`vars.lb`).
#[derive(Debug, Serialize)]
pub(crate) struct LbVars {
    vip: IpAddr,
    port: u16,
    interface: String,
    prefix: u8,
    vrid: u8,
    instance: String,
    /// Falls with the master's position in the inventory: the first master is preferred.
    priority: i64,
    /// A failed haproxy check must drop a holder below every healthy master.
    check_weight: usize,
    peers: Vec<IpAddr>,
    backends: Vec<Backend>,
}

#[derive(Debug, Serialize)]
struct Backend {
    name: String,
    address: IpAddr,
}

fn lb_targets(ctx: &Ctx, masters: &[Host]) -> Result<Vec<HostTarget<SshRemote>>, String> {
    let mut targets = Vec::new();
    for (m, lb) in masters.iter().zip(lb_vars(ctx, masters)?) {
        targets.extend(ctx.targets(&[m], &json!({ "lb": lb })));
    }
    Ok(targets)
}

/// The `lb` variables of each master (none without a VIP).
pub(crate) fn lb_vars(ctx: &Ctx, masters: &[Host]) -> Result<Vec<LbVars>, String> {
    let ControlPlane::Vip {
        vip,
        port,
        interface,
    } = &ctx.inventory.cluster.control_plane
    else {
        return Ok(Vec::new());
    };
    let mut all = Vec::new();
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
        all.push(LbVars {
            vip: *vip,
            port: *port,
            interface: interface.clone().unwrap_or_else(|| own.interface.clone()),
            prefix: own.prefix,
            vrid: virtual_router_id(&ctx.inventory.cluster.name),
            instance: format!("k8s_{}", ctx.inventory.cluster.name.replace('-', "_")),
            priority: 150 - 10 * i as i64,
            check_weight: 10 * masters.len() + 10,
            peers: masters
                .iter()
                .filter(|p| p.name != m.name)
                .map(|p| p.address)
                .collect(),
            backends: masters
                .iter()
                .map(|b| Backend {
                    name: b.name.clone(),
                    address: b.address,
                })
                .collect(),
        });
    }
    Ok(all)
}

/// VRRP router ids are shared on a LAN segment: derive ours from the cluster name.
fn virtual_router_id(cluster: &str) -> u8 {
    let digest = Sha256::digest(cluster.as_bytes());
    (digest[0] % 250) + 1
}

/// What one master sees of the VIP (the `vip-check` probe's answer).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct VipView {
    pub holds_vip: bool,
    pub vip_answers: bool,
}

pub(crate) async fn wait_for_single_holder(ctx: &Ctx, masters: &[Host]) -> Result<String, String> {
    let started = Instant::now();
    let vars = json!({"lb": lb_endpoint(ctx)});
    let refs: Vec<&Host> = masters.iter().collect();
    loop {
        let mut views = Vec::new();
        for (host, answer) in probe_many::<VipView>(ctx, "vip-check", &refs, &vars).await {
            views.push((host, answer.map_err(|e| e.to_string())?));
        }
        match election_result(&views) {
            Ok(holder) => return Ok(holder),
            Err(why) if started.elapsed() > ELECTION_TIMEOUT => return Err(why),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Done when exactly one master holds the VIP and its port answers; else why not.
fn election_result(views: &[(String, VipView)]) -> Result<String, String> {
    let holders: Vec<&str> = views
        .iter()
        .filter(|(_, v)| v.holds_vip)
        .map(|(h, _)| h.as_str())
        .collect();
    let answering = views.iter().any(|(_, v)| v.vip_answers);
    match holders.len() {
        1 if answering => Ok(holders[0].to_string()),
        0 => Err("no master took the VIP; check keepalived on the masters (journalctl -u keepalived) and that VRRP (IP protocol 112) passes between them".into()),
        1 => Err(format!("{} holds the VIP but its port does not answer; check haproxy there (journalctl -u haproxy)", holders[0])),
        n => Err(format!("{n} masters hold the VIP at once ({}); VRRP packets are not passing between them", holders.join(", "))),
    }
}

fn lb_endpoint(ctx: &Ctx) -> Value {
    match &ctx.inventory.cluster.control_plane {
        ControlPlane::Vip { vip, port, .. } => json!({"vip": vip, "port": port}),
        ControlPlane::LoadBalancer { .. } => json!(null),
    }
}

#[cfg(test)]
mod tests {
    use super::{VipView, election_result};

    fn view(host: &str, holds_vip: bool, vip_answers: bool) -> (String, VipView) {
        (
            host.into(),
            VipView {
                holds_vip,
                vip_answers,
            },
        )
    }

    #[test]
    fn one_answering_holder_ends_the_election() {
        let views = [view("m1", false, true), view("m2", true, true)];
        assert_eq!(election_result(&views), Ok("m2".into()));
    }

    #[test]
    fn two_holders_is_split_brain_named() {
        let e = election_result(&[view("m1", true, true), view("m2", true, true)]).unwrap_err();
        assert!(e.contains("m1, m2") && e.contains("VRRP"), "{e}");
    }

    #[test]
    fn holder_without_haproxy_points_at_haproxy() {
        let e = election_result(&[view("m1", true, false)]).unwrap_err();
        assert!(e.contains("m1") && e.contains("haproxy"), "{e}");
    }

    #[test]
    fn router_id_is_stable_and_in_range() {
        let a = super::virtual_router_id("prod-eu1");
        assert_eq!(a, super::virtual_router_id("prod-eu1"));
        assert!((1..=250).contains(&a));
    }
}
