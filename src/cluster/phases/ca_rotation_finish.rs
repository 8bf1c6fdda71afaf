//! The end of a rotation of the cluster's CAs: `cluster-info` (what `kubeadm join` discovers and
//! pins by the CA's hash) carries the new CA, and the state directory takes the new CA set,
//! so `up` pushes it and joins pin it from now on.

use crate::cluster::Ctx;
use crate::cluster::ca_rotation::{Rotation, Stage, interrupted, pki_dir};
use crate::cluster::phase::{Phase, PhaseFuture, PlanFuture, PlannedStep};

pub struct FinishCaRotation;

impl Phase for FinishCaRotation {
    fn title(&self) -> &'static str {
        "CA rotation: finish"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| interrupted(self.title(), m);
            let Some(rotation) = Rotation::load(ctx).map_err(err)? else {
                return Ok(());
            };
            let leader = ctx.leader().map_err(err)?;
            let targets = ctx.targets(&[&leader], &rotation.vars(Stage::Drop, "cluster-info"));
            ctx.apply("ca-rotation", targets).await.map_err(err)?;
            rotation.finish(ctx).map_err(err)?;
            ctx.reporter.info(format!(
                "the cluster's CAs are rotated; {} holds the new ones",
                pki_dir(ctx).display()
            ));
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            Ok(vec![PlannedStep::change(
                self.title(),
                "-",
                format!(
                    "cluster-info (kube-public) carries the new CA; {} takes the new CA set",
                    pki_dir(ctx).display()
                ),
            )])
        })
    }
}
