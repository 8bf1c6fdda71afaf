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

/// Why the drain of NODE (through master VIA) failed, and what to do: an API that never
/// answered, evictions still refused when the timeout ran out (PodDisruptionBudgets, or pods
/// that would not end), or anything else kubectl reported.
fn drain_failure(node: &str, via: &str, timeout_secs: u64, why: &str) -> String {
    if why.contains(API_ANSWERS_TASK) {
        format!(
            "{node} was not drained: the API did not answer through {via} ({why}); nothing was changed. Check the control plane with `installer status`, then run remove-node again"
        )
    } else if why.contains("global timeout reached") || why.contains("disruption budget") {
        format!(
            "{node} was not drained within {timeout_secs}s ({why}); it stays cordoned, nothing else was changed. A PodDisruptionBudget may forbid the evictions: check `kubectl get pdb -A`, then run remove-node again with a longer --drain-timeout, or with --force to remove it anyway"
        )
    } else {
        format!(
            "{node} was not drained ({why}); it may stay cordoned, nothing else was changed. Fix what kubectl reports, then run remove-node again, or with --force to remove it anyway"
        )
    }
}

/// The first task of `remove-node/drain`: the API must answer before anything is drained.
const API_ANSWERS_TASK: &str = "The API answers through this master";

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
                    drain_failure(t.name(), &t.via.name, self.timeout_secs, &why),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_playbook_starts_with_the_api_check_the_message_looks_for() {
        let playbook = crate::playbook::Playbooks::Embedded
            .load("remove-node/drain")
            .unwrap();
        assert_eq!(playbook.tasks[0].name, API_ANSWERS_TASK);
    }

    #[test]
    fn a_drain_failure_names_its_cause() {
        let pdb = drain_failure(
            "worker-2",
            "master-1",
            10,
            "kubectl: error when evicting pods/\"pinned\" -n \"default\": global timeout reached: 10s",
        );
        assert!(
            pdb.starts_with("worker-2 was not drained within 10s"),
            "{pdb}"
        );
        assert!(
            pdb.contains("kubectl get pdb -A") && pdb.contains("--force"),
            "{pdb}"
        );

        let api = drain_failure(
            "worker-2",
            "master-1",
            10,
            "master-1: task 'The API answers through this master' failed after 30 tries: exit 1",
        );
        assert!(
            api.contains("the API did not answer through master-1"),
            "{api}"
        );
        assert!(!api.contains("PodDisruptionBudget"), "{api}");

        let other = drain_failure(
            "worker-2",
            "master-1",
            10,
            "exit 1: error: nodes \"worker-2\" not found",
        );
        assert!(
            !other.contains("PodDisruptionBudget") && other.contains("--force"),
            "{other}"
        );
    }
}
