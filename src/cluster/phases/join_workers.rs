//! Join the workers, in parallel up to --forks. A worker whose kubelet is configured but
//! whose Node never appeared in the API is reset and joined again.

use std::collections::BTreeSet;

use crate::cluster::Ctx;
use crate::cluster::kube;
use crate::cluster::kubeadm_config;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::cluster::phases::join_masters::run_playbook;
use crate::playbook::{HostTarget, SshRemote};

pub struct JoinWorkers;

impl Phase for JoinWorkers {
    fn title(&self) -> &'static str {
        "Join the workers"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let leader = ctx.leader().map_err(err)?;
            let registered: BTreeSet<String> = kube::nodes(ctx, &leader)
                .await
                .map_err(err)?
                .into_iter()
                .map(|n| n.metadata.name)
                .collect();
            let mut fresh = Vec::new();
            let mut half = Vec::new();
            for w in ctx.usable(|h| h.is_worker() && !h.is_master()) {
                let configured = ctx
                    .hosts
                    .get(&w.name)
                    .and_then(|s| s.facts.as_ref())
                    .is_some_and(|f| f.has_kubelet_conf);
                match (configured, registered.contains(&w.name)) {
                    (true, true) => {}
                    (true, false) => half.push(w.clone()),
                    (false, _) => fresh.push(w.clone()),
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
            ctx.apply("kubeadm-join", targets)
                .await
                .map(|_| ())
                .map_err(err)
        })
    }
}
