//! Join the workers, in parallel up to --forks. A worker whose kubelet is configured but
//! whose Node never appeared in the API is reset and joined again.

use std::collections::BTreeSet;

use crate::cluster::Ctx;
use crate::cluster::kube;
use crate::cluster::kubeadm_config;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::join_masters::run_playbook;
use crate::inventory::Host;
use crate::playbook::{HostTarget, Mode, SshRemote};

pub struct JoinWorkers;

impl Phase for JoinWorkers {
    fn title(&self) -> &'static str {
        "Join the workers"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let leader = ctx.leader().map_err(err)?;
            let registered = registered_nodes(ctx, &leader).await.map_err(err)?;
            let mut fresh = Vec::new();
            let mut half = Vec::new();
            for w in ctx.usable(is_worker_only) {
                match decide(configured(ctx, w), registered.contains(&w.name)) {
                    WorkerJoin::Joined => {}
                    WorkerJoin::ResetAndJoin => half.push(w.clone()),
                    WorkerJoin::Join => fresh.push(w.clone()),
                }
            }
            if fresh.is_empty() && half.is_empty() {
                return Ok(());
            }
            let vars = kubeadm_config::common_vars(ctx).map_err(err)?;
            run_playbook(ctx, "kubeadm-token", &leader, &vars)
                .await
                .map_err(err)?;
            for w in &half {
                ctx.reporter
                    .host_info(&w.name, "half-joined: resetting it before joining again");
                run_playbook(ctx, "kubeadm-reset", w, &vars)
                    .await
                    .map_err(err)?;
            }
            let mut targets: Vec<HostTarget<SshRemote>> = Vec::new();
            for w in fresh.iter().chain(&half) {
                let mut v = vars.clone();
                v["join_config"] = kubeadm_config::join_config(ctx, w, &vars, false)
                    .map_err(err)?
                    .into();
                targets.extend(ctx.targets(&[w], &v));
            }
            // Workers are joined independently: one that fails is left behind (named at the
            // end of `up`) and the others go on.
            let playbook = ctx
                .playbooks
                .load("kubeadm-join")
                .map_err(|e| err(e.to_string()))?;
            let reports =
                crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Apply)).await;
            let fatal = ctx.absorb_leaving_workers(self.title(), &reports);
            if fatal.is_empty() {
                Ok(())
            } else {
                Err(err(fatal.join("; ")))
            }
        })
    }

    fn should_run(&self, ctx: &Ctx) -> bool {
        ctx.usable(is_worker_only).next().is_some()
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let registered = match ctx.leader() {
                Ok(leader) => registered_nodes(ctx, &leader)
                    .await
                    .map_err(|m| PhaseError::new(phase, m))?,
                Err(_) => BTreeSet::new(),
            };
            let step = "kubeadm join (workers in parallel)";
            Ok(ctx
                .usable(is_worker_only)
                .map(
                    |w| match decide(configured(ctx, w), registered.contains(&w.name)) {
                        WorkerJoin::Joined => {
                            PlannedStep::skip(phase, &w.name, step, "already a node")
                        }
                        WorkerJoin::Join => PlannedStep::change(phase, &w.name, step),
                        WorkerJoin::ResetAndJoin => PlannedStep::change(
                            phase,
                            &w.name,
                            format!("half-joined: kubeadm reset, then {step}"),
                        ),
                    },
                )
                .collect())
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
enum WorkerJoin {
    Joined,
    Join,
    /// Kubelet configured but no Node in the API: a join that died half-way.
    ResetAndJoin,
}

fn decide(configured: bool, registered: bool) -> WorkerJoin {
    match (configured, registered) {
        (true, true) => WorkerJoin::Joined,
        (true, false) => WorkerJoin::ResetAndJoin,
        (false, _) => WorkerJoin::Join,
    }
}

fn is_worker_only(h: &Host) -> bool {
    h.is_worker() && !h.is_master()
}

fn configured(ctx: &Ctx, host: &Host) -> bool {
    ctx.hosts
        .get(&host.name)
        .and_then(|s| s.facts.as_ref())
        .is_some_and(|f| f.has_kubelet_conf)
}

async fn registered_nodes(ctx: &Ctx, leader: &Host) -> Result<BTreeSet<String>, String> {
    Ok(kube::nodes(ctx, leader)
        .await?
        .into_iter()
        .map(|n| n.metadata.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{WorkerJoin, decide};

    #[test]
    fn configured_but_unregistered_worker_is_reset_then_joined() {
        assert_eq!(decide(true, false), WorkerJoin::ResetAndJoin);
        assert_eq!(decide(true, true), WorkerJoin::Joined);
        assert_eq!(decide(false, false), WorkerJoin::Join);
        // A Node object left from a wiped host does not count as joined.
        assert_eq!(decide(false, true), WorkerJoin::Join);
    }
}
