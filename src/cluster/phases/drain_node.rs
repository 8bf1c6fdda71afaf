//! Cordon and drain the node through the API, PodDisruptionBudgets respected, for at most the
//! drain timeout. A drain that does not finish stops the removal unless `--force`. A host that
//! cannot be reached (removal forced) or is already reset is not drained: its pods cannot run
//! there any more and go with its Node.

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::removal_check::{RemovalCheck, Target};

pub struct DrainNode<'a> {
    pub check: &'a RemovalCheck,
    pub timeout_secs: u64,
}

/// Why the node is not drained, if it is not.
fn skip_reason(t: &Target) -> Option<String> {
    if !t.node_exists {
        Some("its Node is already deleted".into())
    } else if t.unreachable.is_some() {
        Some("its host cannot be reached (--force): its pods go with its Node".into())
    } else if t.already_reset {
        Some("its host is already reset: nothing runs there".into())
    } else {
        None
    }
}

impl Phase for DrainNode<'_> {
    fn title(&self) -> &'static str {
        "Drain the node"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let t = self.check.target(self.title())?;
            if let Some(why) = skip_reason(&t) {
                ctx.reporter
                    .host_info(t.name(), format!("not drained: {why}"));
                return Ok(());
            }
            let vars = json!({"node": t.name(), "drain_timeout": self.timeout_secs});
            let targets = ctx.targets(&[&t.via], &vars);
            match ctx.apply("remove-node/drain", targets).await {
                Ok(_) => {
                    ctx.reporter.host_info(t.name(), "cordoned and drained");
                    Ok(())
                }
                Err(why) if self.check.force() => {
                    // The failure was recorded against the master that ran kubectl; the
                    // removal goes on through it.
                    clear_failure(ctx, &t.via.name);
                    ctx.reporter.warn(format!(
                        "{}: the drain did not finish ({why}); going on because of --force: the pods left are deleted with the Node",
                        t.name()
                    ));
                    Ok(())
                }
                Err(why) => Err(PhaseError::new(
                    self.title(),
                    format!(
                        "{} was not drained within {}s ({why}); it stays cordoned, nothing else was changed. A PodDisruptionBudget may forbid the evictions: check `kubectl get pdb -A`, then run remove-node again with a longer --drain-timeout, or with --force to remove it anyway",
                        t.name(),
                        self.timeout_secs
                    ),
                )),
            }
        })
    }

    fn plan<'a>(&'a self, _ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let t = self.check.target(self.title())?;
            let step = format!(
                "cordon and drain through {} (PodDisruptionBudgets respected, DaemonSet pods ignored, emptyDir data deleted, timeout {}s)",
                t.via.name, self.timeout_secs
            );
            Ok(vec![match skip_reason(&t) {
                Some(why) => PlannedStep::skip(self.title(), t.name(), step, why),
                None => PlannedStep::change(self.title(), t.name(), step),
            }])
        })
    }
}

/// Forget a failure recorded against `host` (it still serves the rest of the removal).
fn clear_failure(ctx: &mut Ctx, host: &str) {
    if let Some(state) = ctx.hosts.get_mut(host) {
        state.error = None;
    }
}
