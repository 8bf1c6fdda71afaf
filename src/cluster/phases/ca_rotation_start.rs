//! Before a rotation of the cluster's CAs changes anything: every host of the inventory reachable (a
//! node left out would keep trusting only the old CA and drop out of the cluster at the end),
//! every master's haproxy drivable (each master leaves its rotation while it restarts); then
//! the new CA made and kept in the state directory, or the one of an interrupted run resumed.

use super::api_backend;
use crate::cluster::Ctx;
use crate::cluster::ca_rotation::{Rotation, next_dir};
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};

pub struct StartCaRotation;

impl StartCaRotation {
    fn refusal(ctx: &Ctx) -> Option<String> {
        let unreachable: Vec<String> = ctx
            .inventory
            .hosts
            .iter()
            .filter(|h| ctx.usable(|_| true).all(|u| u.name != h.name))
            .map(|h| h.name.clone())
            .collect();
        if !unreachable.is_empty() {
            return Some(format!(
                "{} cannot be reached, and every node must take part in a CA rotation (one left out would trust the old CA alone); bring it back or remove it with `installer remove-node`, then run again; nothing was changed",
                unreachable.join(", ")
            ));
        }
        let not_joined: Vec<&str> = ctx
            .usable(|_| true)
            .filter(|h| {
                ctx.hosts
                    .get(&h.name)
                    .and_then(|s| s.facts.as_ref())
                    .is_some_and(|f| !f.has_kubelet_conf)
            })
            .map(|h| h.name.as_str())
            .collect();
        (!not_joined.is_empty()).then(|| {
            format!(
                "{} is not a node of the cluster yet (no /etc/kubernetes/kubelet.conf): run `installer up` first so it joins, then rotate; nothing was changed",
                not_joined.join(", ")
            )
        })
    }
}

impl Phase for StartCaRotation {
    fn title(&self) -> &'static str {
        "CA rotation: new CA"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            if let Some(why) = Self::refusal(ctx) {
                return Err(err(why));
            }
            api_backend::check(ctx).await.map_err(|e| {
                err(format!(
                    "each master leaves haproxy's rotation while it restarts, and cannot: {e}; nothing was changed"
                ))
            })?;
            if ctx.inventory.masters().count() == 1 {
                ctx.reporter.warn(
                    "one master: the API is down while its control plane restarts in each of the three stages",
                );
            }
            let (rotation, new) = Rotation::load_or_begin(ctx).map_err(err)?;
            let short = &rotation.fingerprint[..16];
            ctx.reporter.info(if new {
                format!(
                    "new CAs {short}… kept in {} until the rotation ends",
                    next_dir(ctx).display()
                )
            } else {
                format!("resuming the rotation to the CAs {short}…")
            });
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let title = self.title();
            if let Some(why) = Self::refusal(ctx) {
                return Err(PhaseError::new(title, why));
            }
            let step = match Rotation::load(ctx).map_err(|m| PhaseError::new(title, m))? {
                Some(r) => PlannedStep::skip(
                    title,
                    "-",
                    format!("make new CAs in {}", next_dir(ctx).display()),
                    format!("resume the rotation to {}…", &r.fingerprint[..16]),
                ),
                None => PlannedStep::change(
                    title,
                    "-",
                    format!(
                        "make new Kubernetes, front-proxy and etcd CAs in {} (the service-account keys stay)",
                        next_dir(ctx).display()
                    ),
                ),
            };
            Ok(vec![step])
        })
    }
}
