//! Stopping and starting the control-plane static pods the documented way (their manifests
//! moved out of the kubelet's directory and back, `playbooks/static-pods`): on every master at
//! once (etcd restore), or on one master at a time (`restart_on`, certificate renewal).

use serde_json::json;

use super::api_backend;
use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Host;

/// Where manifests wait while their pods are stopped: beside the kubelet's staticPodPath,
/// never inside it.
pub const ASIDE: &str = "/etc/kubernetes/installer-stopped-manifests";

/// In start order (etcd first: the API server needs it); stopped in the reverse order.
pub const CONTROL_PLANE: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    Start,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
        }
    }
}

/// The whole control plane on every master, in parallel.
pub struct ControlPlanePods(pub Action);

impl Phase for ControlPlanePods {
    fn title(&self) -> &'static str {
        match self.0 {
            Action::Stop => "Stop the control plane",
            Action::Start => "Start the control plane",
        }
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            let hosts: Vec<&Host> = masters.iter().collect();
            let targets = ctx.targets(&hosts, &vars(self.0, false, 0));
            ctx.apply("static-pods", targets)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let step = match self.0 {
                Action::Stop => format!(
                    "move the manifests of {} to {ASIDE}; wait until their ports close",
                    CONTROL_PLANE.join(", ")
                ),
                Action::Start => {
                    format!("move the manifests back from {ASIDE}; wait until each answers healthy")
                }
            };
            Ok(ctx
                .inventory
                .masters()
                .map(|m| PlannedStep::change(self.title(), &m.name, step.clone()))
                .collect())
        })
    }
}

/// Seconds haproxy needs to mark a stopped API server down (`fall 2` checks `inter 2s`
/// apart in playbooks/load-balancer/haproxy.cfg.j2), plus a margin: waited after the API
/// server stops when it could not be drained first (an endpoint the user runs).
const LB_SETTLE_SECONDS: u64 = 5;

/// `move_leader`: hand etcd's leadership to another member before this one stops (when the
/// others keep running; pointless when every master stops). `settle`: seconds to wait after
/// the API server stopped, for a load balancer to notice.
fn vars(action: Action, move_leader: bool, settle: u64) -> serde_json::Value {
    json!({
        "action": action.word(),
        "pods": CONTROL_PLANE,
        "aside": ASIDE,
        "lb_settle_seconds": settle,
        "move_leader": move_leader,
    })
}

/// Restarts the control plane of `master` alone (stop, then start and wait until healthy),
/// drained from haproxy's rotation meanwhile.
pub async fn restart_on(ctx: &mut Ctx, master: &Host) -> Result<(), String> {
    api_backend::drain(ctx, master).await?;
    restart_drained(ctx, master).await?;
    api_backend::restore(ctx).await
}

/// Like [`restart_on`] for a master the caller drained (and puts back) itself.
pub async fn restart_drained(ctx: &mut Ctx, master: &Host) -> Result<(), String> {
    let settle = if api_backend::in_use(ctx) {
        0
    } else {
        LB_SETTLE_SECONDS
    };
    for action in [Action::Stop, Action::Start] {
        let targets = ctx.targets(&[master], &vars(action, true, settle));
        ctx.apply("static-pods", targets).await?;
    }
    Ok(())
}
