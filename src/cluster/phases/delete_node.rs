//! The last step: delete the Node object through a remaining master. Its pods (and the
//! mirror pods of a master's static pods) are then garbage-collected by the controllers.

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::removal_check::RemovalCheck;

pub struct DeleteNode<'a> {
    pub check: &'a RemovalCheck,
}

impl Phase for DeleteNode<'_> {
    fn title(&self) -> &'static str {
        "Delete the node"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let t = self.check.target(self.title())?;
            let targets = ctx.targets(&[&t.via], &json!({"node": t.name()}));
            ctx.apply("remove-node/delete-node", targets)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            ctx.reporter.host_info(t.name(), "Node deleted");
            Ok(())
        })
    }

    fn plan<'a>(&'a self, _ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let t = self.check.target(self.title())?;
            let step = format!("kubectl delete node {} (through {})", t.name(), t.via.name);
            Ok(vec![if t.node_exists {
                PlannedStep::change(self.title(), t.name(), step)
            } else {
                PlannedStep::skip(self.title(), t.name(), step, "already deleted")
            }])
        })
    }
}
