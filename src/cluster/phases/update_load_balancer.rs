//! After a master left: haproxy's backends and keepalived's unicast peers on the remaining
//! masters, rendered again without it (the `load-balancer` playbook; each config is checked by
//! haproxy/keepalived before it replaces the old one, then the services reload, not restart).
//! Ends when exactly one remaining master holds the VIP and its port answers.

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture};
use crate::cluster::phases::load_balancer::{lb_vars, wait_for_single_holder};
use crate::cluster::phases::prepare_hosts::planned_tasks;
use crate::cluster::phases::removal_check::RemovalCheck;
use crate::inventory::{ControlPlane, Host};
use crate::playbook::{HostTarget, Mode, SshRemote};

pub struct UpdateLoadBalancer<'a> {
    pub check: &'a RemovalCheck,
}

impl UpdateLoadBalancer<'_> {
    /// The remaining masters of the inventory that can be reached, and their targets.
    fn targets(&self, ctx: &Ctx) -> Result<(Vec<Host>, Vec<HostTarget<SshRemote>>), PhaseError> {
        let err = |m: String| PhaseError::new(self.title(), m);
        let t = self.check.target(self.title())?;
        let remaining: Vec<Host> = ctx
            .usable(|h| h.is_master() && h.name != t.name())
            .cloned()
            .collect();
        let mut targets = Vec::new();
        for (m, lb) in remaining.iter().zip(lb_vars(ctx, &remaining).map_err(err)?) {
            targets.extend(ctx.targets(&[m], &json!({"lb": lb, "reload": true})));
        }
        Ok((remaining, targets))
    }
}

impl Phase for UpdateLoadBalancer<'_> {
    fn title(&self) -> &'static str {
        "Load balancer without it"
    }

    fn should_run(&self, ctx: &Ctx) -> bool {
        self.check.found().is_some_and(|t| t.master)
            && matches!(
                ctx.inventory.cluster.control_plane,
                ControlPlane::Vip { .. }
            )
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let t = self.check.target(self.title())?;
            let missed: Vec<String> = ctx
                .inventory
                .masters()
                .filter(|m| m.name != t.name())
                .filter_map(|m| {
                    let why = ctx.hosts.get(&m.name)?.error.clone()?;
                    Some(format!("{}: {why}", m.name))
                })
                .collect();
            let (remaining, targets) = self.targets(ctx)?;
            ctx.apply("load-balancer", targets).await.map_err(err)?;
            let holder = wait_for_single_holder(ctx, &remaining).await.map_err(err)?;
            ctx.reporter
                .host_info(&holder, "holds the VIP and its port answers");
            if !missed.is_empty() {
                return Err(err(format!(
                    "these masters could not be reached and still list {} in haproxy and keepalived: {}; run `installer up` once they are back",
                    t.name(),
                    missed.join("; ")
                )));
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let (_, targets) = self.targets(ctx)?;
            let playbook = ctx
                .playbooks
                .load("load-balancer")
                .map_err(|e| PhaseError::new(self.title(), e.to_string()))?;
            let reports =
                crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Plan)).await;
            Ok(planned_tasks(self.title(), &reports))
        })
    }
}
