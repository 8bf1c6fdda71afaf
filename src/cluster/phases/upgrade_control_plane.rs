//! The control plane to the step's version: `kubeadm upgrade plan` + `apply` on the first
//! master, then `kubeadm upgrade node` on the other masters one at a time (each waits for its
//! own API server at the new version before the next starts, so a quorum of API servers and
//! etcd members always serves). A master whose static pods carry the step's tag is skipped.

use semver::Version;
use serde_json::json;

use super::api_backend;
use super::join_masters::run_playbook;
use super::upgrade_preflight::read_versions;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::{Ctx, kubeadm_config};
use crate::inventory::Host;

pub struct UpgradeControlPlane {
    pub version: Version,
}

impl UpgradeControlPlane {
    /// The first master (the one preflight reads the API through), then the others in
    /// inventory order.
    fn masters(ctx: &Ctx) -> Result<Vec<Host>, String> {
        let leader = ctx.leader()?;
        let mut masters = vec![leader.clone()];
        masters.extend(
            ctx.usable(Host::is_master)
                .filter(|m| m.name != leader.name)
                .cloned(),
        );
        Ok(masters)
    }
}

impl Phase for UpgradeControlPlane {
    fn title(&self) -> &'static str {
        "Upgrade the control plane"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let masters = Self::masters(ctx).map_err(err)?;
            let refs: Vec<&Host> = masters.iter().collect();
            let versions = read_versions(ctx, &refs).await.map_err(err)?;
            let vars = json!({"ignore_preflight": kubeadm_config::ignore_preflight(ctx)});
            // A master an interrupted run left drained is back in rotation before another
            // one leaves it.
            api_backend::restore(ctx).await.map_err(err)?;
            for (i, master) in masters.iter().enumerate() {
                let playbook = if i == 0 {
                    "upgrade/apply"
                } else {
                    "upgrade/node"
                };
                let on = |m: String| err(format!("{}: {m}", master.name));
                let upgraded = versions
                    .get(&master.name)
                    .is_some_and(|h| h.control_plane_at(&self.version));
                if !upgraded {
                    api_backend::drain(ctx, master).await.map_err(on)?;
                }
                run_playbook(ctx, playbook, master, &vars)
                    .await
                    .map_err(on)?;
                if !upgraded {
                    api_backend::restore(ctx).await.map_err(on)?;
                }
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let masters = Self::masters(ctx).map_err(err)?;
            let refs: Vec<&Host> = masters.iter().collect();
            let versions = read_versions(ctx, &refs).await.map_err(err)?;
            let v = &self.version;
            Ok(masters
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let step = if i == 0 {
                        format!("kubeadm upgrade plan v{v}, kubeadm upgrade apply v{v}")
                    } else {
                        format!("kubeadm upgrade node (one master at a time) to v{v}")
                    };
                    let tags = versions
                        .get(&m.name)
                        .map(|h| h.control_plane.join(", "))
                        .unwrap_or_default();
                    let step = if api_backend::in_use(ctx) {
                        format!("{step}, drained from haproxy's rotation until it answers ready")
                    } else {
                        step
                    };
                    if versions.get(&m.name).is_some_and(|h| h.control_plane_at(v)) {
                        PlannedStep::skip(
                            self.title(),
                            &m.name,
                            step,
                            format!("static pods at {tags}"),
                        )
                    } else {
                        PlannedStep::change(
                            self.title(),
                            &m.name,
                            format!("{step}; static pods at {tags}"),
                        )
                    }
                })
                .collect())
        })
    }
}
