//! `kubeadm certs renew all` on one master at a time, then that master's control plane
//! restarted (the static pods read certificates only at start) and healthy before the next:
//! the other masters keep serving the API through the endpoint meanwhile, and the master
//! renewed is out of haproxy's rotation until it answers ready again.

use serde_json::json;

use super::api_backend;
use super::static_pods::{self, CONTROL_PLANE};
use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Host;

pub struct CertsRenew;

impl Phase for CertsRenew {
    fn title(&self) -> &'static str {
        "Renew certificates"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            crate::cluster::ca_rotation::refuse_while_rotating(ctx)
                .map_err(|e| PhaseError::new(self.title(), format!("{e}; nothing was changed")))?;
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            api_backend::check(ctx).await.map_err(|e| {
                PhaseError::new(
                    self.title(),
                    format!("each master leaves haproxy's rotation while it restarts, and cannot: {e}; nothing was changed"),
                )
            })?;
            if masters.len() == 1 {
                ctx.reporter.warn(
                    "one master: the API is down while its control plane restarts with the new certificates",
                );
            }
            for master in &masters {
                let err = |m: String| {
                    PhaseError::new(
                        "Renew certificates",
                        format!(
                            "{}: {m}; the masters before it are renewed, run `installer certs renew` again",
                            master.name
                        ),
                    )
                };
                let targets = ctx.targets(&[master], &json!({}));
                ctx.apply("certs-renew", targets).await.map_err(err)?;
                static_pods::restart_on(ctx, master).await.map_err(err)?;
                ctx.reporter.host_info(
                    &master.name,
                    "certificates renewed; control plane restarted and healthy",
                );
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let drained = api_backend::in_use(ctx);
            Ok(ctx
                .inventory
                .masters()
                .map(|m| {
                    PlannedStep::change(
                        self.title(),
                        &m.name,
                        format!(
                            "{}kubeadm certs renew all; restart {} (manifests out and back), wait until healthy{}; then the next master",
                            if drained { "out of haproxy's rotation; " } else { "" },
                            CONTROL_PLANE.join(", "),
                            if drained { "; back in rotation" } else { "" }
                        ),
                    )
                })
                .collect())
        })
    }
}
