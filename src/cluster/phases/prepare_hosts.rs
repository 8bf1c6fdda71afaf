//! Prepare hosts (all of them, in parallel): OS settings, package sources, the container
//! runtime, and the pinned, held kube packages.

use serde::Serialize;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Runtime;
use crate::playbook::{HostReport, Mode};
use crate::ui::TaskOutcome;

pub struct PrepareHosts;

/// Variables of the host-preparation playbooks (`vars`).
#[derive(Debug, Serialize)]
struct PrepareVars {
    /// The sandbox image the runtime must use: the one kubeadm expects.
    pause_image: String,
}

impl PrepareHosts {
    fn playbooks(ctx: &Ctx) -> [&'static str; 4] {
        let runtime = match ctx.inventory.cluster.runtime {
            Runtime::Docker => "cri/docker",
            Runtime::Containerd => "cri/containerd",
        };
        ["os", "repos", runtime, "kube-packages"]
    }

    /// Runs the preparation playbooks in `mode`, in order, on every usable host.
    async fn each_playbook(
        &self,
        ctx: &mut Ctx,
        mode: Mode,
    ) -> Result<Vec<HostReport>, PhaseError> {
        let err = |m: String| PhaseError::new(self.title(), m);
        let vars = serde_json::to_value(PrepareVars {
            pause_image: ctx.pause_image(),
        })
        .map_err(|e| err(e.to_string()))?;
        let mut all = Vec::new();
        for name in Self::playbooks(ctx) {
            let playbook = ctx.playbooks.load(name).map_err(|e| err(e.to_string()))?;
            let hosts: Vec<_> = ctx.usable(|_| true).collect();
            let targets = ctx.targets(&hosts, &vars);
            let reports = crate::playbook::run(&playbook, targets, &ctx.run_options(mode)).await;
            let failed = ctx.absorb(&reports);
            if !failed.is_empty() && mode == Mode::Apply {
                return Err(err(format!(
                    "{} failed on: {}",
                    playbook.name,
                    failed.join("; ")
                )));
            }
            all.extend(reports);
        }
        Ok(all)
    }
}

/// Each task of a dry run as a plan line.
pub fn planned_tasks(phase: &'static str, reports: &[HostReport]) -> Vec<PlannedStep> {
    reports
        .iter()
        .flat_map(|r| {
            r.tasks.iter().map(|t| match &t.outcome {
                TaskOutcome::Changed => PlannedStep::change(phase, &r.host, &t.task),
                TaskOutcome::Ok => PlannedStep::skip(phase, &r.host, &t.task, "already in place"),
                TaskOutcome::Skipped(why) => PlannedStep::skip(phase, &r.host, &t.task, why),
                TaskOutcome::Failed(why) => {
                    PlannedStep::skip(phase, &r.host, &t.task, format!("check failed: {why}"))
                }
            })
        })
        .collect()
}

impl Phase for PrepareHosts {
    fn title(&self) -> &'static str {
        "Prepare hosts"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move { self.each_playbook(ctx, Mode::Apply).await.map(|_| ()) })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let reports = self.each_playbook(ctx, Mode::Plan).await?;
            Ok(planned_tasks(self.title(), &reports))
        })
    }
}
