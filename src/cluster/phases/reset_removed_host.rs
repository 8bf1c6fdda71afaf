//! `kubeadm reset -f` on the removed host and the rest of what `installer reset` cleans on a
//! host (the same `reset` playbook: kubelet stopped, keepalived/haproxy stopped and their
//! configuration removed, the VIP released, CNI configuration, links and iptables chains
//! removed). Packages stay. Each task is guarded by what the host still has.

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::prepare_hosts::planned_tasks;
use crate::cluster::phases::removal_check::RemovalCheck;
use crate::cluster::reset::reset_vars;
use crate::playbook::Mode;

pub struct ResetRemovedHost<'a> {
    pub check: &'a RemovalCheck,
}

impl Phase for ResetRemovedHost<'_> {
    fn title(&self) -> &'static str {
        "Reset the removed host"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let t = self.check.target(self.title())?;
            if let Some(why) = &t.unreachable {
                ctx.reporter.warn(format!(
                    "{} cannot be reached ({why}): its host was NOT reset; run `kubeadm reset -f` there (or `installer reset` with it alone in an inventory) before using it again",
                    t.name()
                ));
                return Ok(());
            }
            let targets = ctx.targets(&[&t.host], &reset_vars(ctx, false));
            ctx.apply("reset", targets)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            ctx.reporter.host_info(t.name(), "reset");
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let t = self.check.target(self.title())?;
            if let Some(why) = &t.unreachable {
                return Ok(vec![PlannedStep::skip(
                    self.title(),
                    t.name(),
                    "kubeadm reset and clean-up",
                    format!("cannot be reached ({why}): left as it is"),
                )]);
            }
            let playbook = ctx
                .playbooks
                .load("reset")
                .map_err(|e| PhaseError::new(self.title(), e.to_string()))?;
            let targets = ctx.targets(&[&t.host], &reset_vars(ctx, false));
            let reports =
                crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Plan)).await;
            Ok(planned_tasks(self.title(), &reports))
        })
    }
}
