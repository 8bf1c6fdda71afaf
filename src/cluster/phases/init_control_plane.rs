//! Init the first master: `kubeadm init` with the generated kubeadm.yaml — skipped when a
//! master already serves a healthy control plane (that master then leads the joins).

use crate::cluster::Ctx;
use crate::cluster::kubeadm_config;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Host;

pub struct InitControlPlane;

impl Phase for InitControlPlane {
    fn title(&self) -> &'static str {
        "Init the first master"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let first = first_master(ctx).ok_or_else(|| err("no master is reachable".into()))?;
            let mut vars = kubeadm_config::common_vars(ctx).map_err(err)?;
            vars["kubeadm_config"] = kubeadm_config::init_config(ctx, &first, &vars)
                .map_err(err)?
                .into();
            let targets = ctx.targets(&[&first], &vars);
            if let Err(why) = ctx.apply("kubeadm-init", targets).await {
                return Err(err(format!(
                    "{why}; see `journalctl -u kubelet` on {}",
                    first.name
                )));
            }
            ctx.init_master = Some(first.name.clone());
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let first = first_master(ctx)
                .ok_or_else(|| PhaseError::new(phase, "no master is reachable"))?;
            if serves_control_plane(ctx, &first) {
                ctx.init_master = Some(first.name.clone());
                return Ok(vec![PlannedStep::skip(
                    phase,
                    &first.name,
                    "kubeadm init",
                    "a control plane already runs here; it leads the joins",
                )]);
            }
            Ok(vec![PlannedStep::change(
                phase,
                &first.name,
                "kubeadm init (the cluster's first control plane and etcd member)",
            )])
        })
    }
}

fn serves_control_plane(ctx: &Ctx, host: &Host) -> bool {
    ctx.hosts
        .get(&host.name)
        .and_then(|s| s.facts.as_ref())
        .is_some_and(|f| f.has_control_plane_manifests && f.has_kubelet_conf)
}

/// The master that leads: one that already runs a control plane, else the first listed.
fn first_master(ctx: &Ctx) -> Option<Host> {
    let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
    let running = masters.iter().find(|m| serves_control_plane(ctx, m));
    running.or(masters.first()).map(|h| (*h).clone())
}
