//! Prepare hosts (all of them, in parallel): OS settings, package sources, the container
//! runtime, and the pinned, held kube packages. In plan mode, only report what would run.

use std::sync::Mutex;

use serde_json::{Value, json};

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::cluster::plan::PlannedTask;
use crate::inventory::Runtime;
use crate::playbook::Mode;
use crate::ui::TaskOutcome;

pub struct PrepareHosts {
    mode: Mode,
    planned: Mutex<Vec<PlannedTask>>,
}

impl PrepareHosts {
    pub fn new(mode: Mode) -> Self {
        PrepareHosts {
            mode,
            planned: Mutex::new(Vec::new()),
        }
    }

    pub fn planned(&self) -> Vec<PlannedTask> {
        self.planned
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// Per-minor defaults from playbooks/defaults/versions.yaml.
pub fn versions(ctx: &Ctx) -> Result<Value, String> {
    let text = ctx
        .playbooks
        .read("defaults/versions.yaml")
        .map_err(|e| e.to_string())?;
    let table: serde_json::Map<String, Value> =
        serde_saphyr::from_str(&text).map_err(|e| format!("defaults/versions.yaml: {e}"))?;
    let minor = ctx.inventory.cluster.kubernetes.minor_string();
    table
        .get(&minor)
        .cloned()
        .ok_or_else(|| format!("defaults/versions.yaml has no entry for Kubernetes {minor}"))
}

impl Phase for PrepareHosts {
    fn title(&self) -> &'static str {
        "Prepare hosts"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let runtime = match ctx.inventory.cluster.runtime {
                Runtime::Docker => "cri/docker",
                Runtime::Containerd => "cri/containerd",
            };
            let vars = json!({"versions": versions(ctx).map_err(err)?});
            for name in ["os", "repos", runtime, "kube-packages"] {
                let playbook = ctx.playbooks.load(name).map_err(|e| err(e.to_string()))?;
                let hosts: Vec<_> = ctx.usable(|_| true).collect();
                let targets = ctx.targets(&hosts, &vars);
                let reports =
                    crate::playbook::run(&playbook, targets, &ctx.run_options(self.mode)).await;
                if let Ok(mut planned) = self.planned.lock() {
                    for r in &reports {
                        for t in &r.tasks {
                            planned.push(PlannedTask {
                                host: r.host.clone(),
                                phase: self.title(),
                                task: t.task.clone(),
                                skip: match &t.outcome {
                                    TaskOutcome::Changed => None,
                                    TaskOutcome::Ok => Some("already in place".into()),
                                    TaskOutcome::Skipped(why) => Some(why.clone()),
                                    TaskOutcome::Failed(why) => {
                                        Some(format!("check failed: {why}"))
                                    }
                                },
                            });
                        }
                    }
                }
                let failed = ctx.absorb(&reports);
                if !failed.is_empty() && self.mode == Mode::Apply {
                    return Err(err(format!(
                        "{} failed on: {}",
                        playbook.name,
                        failed.join("; ")
                    )));
                }
            }
            Ok(())
        })
    }
}
