//! Prepare hosts (all of them, in parallel): OS settings, package sources, the container
//! runtime, and the pinned, held kube packages.

use serde::Serialize;

use crate::cluster::Ctx;
use crate::cluster::defaults::CriDockerdAsset;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::{Host, Runtime};
use crate::playbook::{HostReport, Mode};
use crate::ui::TaskOutcome;

pub struct PrepareHosts;

/// Variables of the host-preparation playbooks (`vars`), per host.
#[derive(Debug, Serialize)]
pub(crate) struct PrepareVars {
    /// The sandbox image the runtime must use: the one kubeadm expects.
    pause_image: String,
    cri_socket: String,
    docker_version: String,
    containerd_version: String,
    /// The release package for this host (docker runtime only).
    cri_dockerd: Option<CriDockerdAsset>,
}

pub(crate) fn prepare_vars(ctx: &Ctx, host: &Host) -> Result<PrepareVars, String> {
    let runtimes = &ctx.defaults.runtimes;
    let cri_dockerd = match ctx.inventory.cluster.runtime {
        Runtime::Containerd => None,
        Runtime::Docker => {
            let facts = ctx
                .hosts
                .get(&host.name)
                .and_then(|s| s.facts.as_ref())
                .ok_or_else(|| format!("{}: no facts", host.name))?;
            let packages = &ctx.inventory.packages;
            let asset = runtimes
                .cri_dockerd
                .asset(
                    &packages.cri_dockerd_repo,
                    &facts.os_codename,
                    &facts.arch,
                    &packages.cri_dockerd_sha256,
                )
                .map_err(|e| format!("{}: {e}", host.name))?;
            Some(asset)
        }
    };
    Ok(PrepareVars {
        pause_image: ctx.pause_image(),
        cri_socket: ctx.inventory.cluster.runtime.cri_socket().to_string(),
        docker_version: runtimes.docker.clone(),
        containerd_version: runtimes.containerd.clone(),
        cri_dockerd,
    })
}

impl PrepareHosts {
    fn playbooks(ctx: &Ctx) -> [&'static str; 4] {
        let runtime = match ctx.inventory.cluster.runtime {
            Runtime::Docker => "cri/docker",
            Runtime::Containerd => "cri/containerd",
        };
        ["os", "repos", runtime, "kube-packages"]
    }

    /// Runs the preparation playbooks in `mode`, in order, on every usable host. Each host
    /// goes through them at its own pace (up to --forks hosts at once): no host waits for the
    /// slowest one between playbooks, and a host stops at its first failure. The reports come
    /// back playbook by playbook, as if each had run on every host in turn.
    async fn each_playbook(
        &self,
        ctx: &mut Ctx,
        mode: Mode,
    ) -> Result<Vec<HostReport>, PhaseError> {
        let err = |m: String| PhaseError::new(self.title(), m);
        let hosts: Vec<Host> = ctx
            .usable(|_| true)
            .filter(|h| ctx.hosts.get(&h.name).is_some_and(|s| s.error.is_none()))
            .cloned()
            .collect();
        let mut vars = Vec::new();
        for host in &hosts {
            let v = prepare_vars(ctx, host).map_err(err)?;
            vars.push(serde_json::to_value(v).map_err(|e| err(e.to_string()))?);
        }
        self.warn_unverified(ctx, &vars);
        let mut playbooks = Vec::new();
        for name in Self::playbooks(ctx) {
            playbooks.push(ctx.playbooks.load(name).map_err(|e| err(e.to_string()))?);
        }
        let shared: &Ctx = ctx;
        let opts = shared.run_options(mode);
        let forks = tokio::sync::Semaphore::new(opts.forks.max(1));
        let chains = hosts.iter().zip(&vars).map(|(host, vars)| {
            let (playbooks, opts, forks) = (&playbooks, &opts, &forks);
            async move {
                let _permit = forks.acquire().await.ok();
                let mut done = Vec::new();
                for (index, playbook) in playbooks.iter().enumerate() {
                    let targets = shared.targets(&[host], vars);
                    let reports = crate::playbook::run(playbook, targets, opts).await;
                    let failed = reports.iter().any(|r| r.failure.is_some());
                    done.extend(reports.into_iter().map(|r| (index, r)));
                    if failed {
                        break;
                    }
                }
                done
            }
        });
        let mut all: Vec<(usize, HostReport)> = futures::future::join_all(chains)
            .await
            .into_iter()
            .flatten()
            .collect();
        // Stable: within a playbook, hosts stay in inventory order.
        all.sort_by_key(|(index, _)| *index);
        let reports: Vec<HostReport> = all.iter().map(|(_, r)| r.clone()).collect();
        if mode != Mode::Apply {
            ctx.absorb(&reports);
            return Ok(reports);
        }
        // A failed worker is left behind; a failed master stops the run.
        let fatal = ctx.absorb_leaving_workers(self.title(), &reports);
        if !fatal.is_empty() {
            // The playbooks the run stops on, by the same rule as `absorb_leaving_workers`.
            let mut failed_in: Vec<&str> = all
                .iter()
                .filter(|(_, r)| r.failure.is_some())
                .filter(|(_, r)| {
                    ctx.inventory
                        .host(&r.host)
                        .is_none_or(crate::cluster::context::failure_stops_the_run)
                })
                .map(|(index, _)| playbooks[*index].name.as_str())
                .collect();
            failed_in.dedup();
            return Err(err(format!(
                "{} failed on: {}",
                failed_in.join(", "),
                fatal.join("; ")
            )));
        }
        Ok(reports)
    }
}

impl PrepareHosts {
    /// Say so when a download will be trusted on its TLS connection alone.
    fn warn_unverified(&self, ctx: &Ctx, vars: &[serde_json::Value]) {
        let mut files: Vec<&str> = vars
            .iter()
            .filter(|v| v["cri_dockerd"].is_object() && v["cri_dockerd"]["sha256"].is_null())
            .filter_map(|v| v["cri_dockerd"]["file"].as_str())
            .collect();
        files.dedup();
        for file in files {
            ctx.reporter.warn(format!(
                "no sha256 pinned for {file}: it is trusted on its TLS connection only; pin it with packages.criDockerdSha256"
            ));
        }
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
