//! The phase contract (after k0sctl's): a phase has a title and a run; it may say from facts
//! that it has nothing to do (`should_run`), describe per host what it would do (`plan`), and
//! undo its work when a later phase fails (`cleanup`). The runner announces each phase, skips
//! the idle ones, and on failure runs the clean-ups of the phases that ran, newest first.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::Ctx;

pub type PhaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PhaseError>> + Send + 'a>>;
pub type PlanFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<PlannedStep>, PhaseError>> + Send + 'a>>;
pub type CleanupFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Phase: Send + Sync {
    fn title(&self) -> &'static str;

    /// Whether there is work, decided from facts and what earlier phases found.
    fn should_run(&self, _ctx: &Ctx) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a>;

    /// A phase that only reads the hosts (connect, facts, verify) plans by running.
    fn read_only(&self) -> bool {
        false
    }

    /// What `run` would do, per host, reading the hosts but changing nothing. The default
    /// runs read-only phases and, for the others, says only that the phase would run.
    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            if self.read_only() {
                self.run(ctx).await?;
                return Ok(Vec::new());
            }
            Ok(vec![PlannedStep::change(self.title(), "-", self.title())])
        })
    }

    /// Undo what `run` did, when a later phase failed. Most phases leave converged state
    /// behind that the next `up` builds on, so the default does nothing.
    fn cleanup<'a>(&'a self, _ctx: &'a mut Ctx) -> CleanupFuture<'a> {
        Box::pin(async {})
    }
}

/// One line of a plan: on `host`, `step` would run (`change`), or is already done / skipped
/// for `reason`.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub phase: &'static str,
    pub host: String,
    pub step: String,
    /// `None`: would change the host; `Some(reason)`: nothing to do, and why.
    pub skip: Option<String>,
}

impl PlannedStep {
    pub fn change(phase: &'static str, host: &str, step: impl Into<String>) -> Self {
        PlannedStep {
            phase,
            host: host.into(),
            step: step.into(),
            skip: None,
        }
    }
    pub fn skip(
        phase: &'static str,
        host: &str,
        step: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        PlannedStep {
            phase,
            host: host.into(),
            step: step.into(),
            skip: Some(reason.into()),
        }
    }
    pub fn would_change(&self) -> bool {
        self.skip.is_none()
    }
}

/// Why a pipeline stopped. The message names the hosts and what to do next.
#[derive(Debug, thiserror::Error)]
#[error("{phase}: {message}")]
pub struct PhaseError {
    pub phase: &'static str,
    pub message: String,
}

impl PhaseError {
    pub fn new(phase: &'static str, message: impl Into<String>) -> Self {
        PhaseError {
            phase,
            message: message.into(),
        }
    }
}

/// Runs `phases` in order; on a failure, the clean-ups of those that ran, newest first.
pub async fn run_phases(ctx: &mut Ctx, phases: &[&dyn Phase]) -> Result<(), PhaseError> {
    let mut ran: Vec<&dyn Phase> = Vec::new();
    for phase in phases {
        ctx.reporter.phase(phase.title());
        let (started, before) = (std::time::Instant::now(), crate::ssh::stats::snapshot());
        if !phase.should_run(ctx) {
            ctx.reporter.info("nothing to do");
            ctx.reporter
                .phase_finished(phase.title(), started, &before, true);
            continue;
        }
        let result = phase.run(ctx).await;
        ctx.reporter
            .phase_finished(phase.title(), started, &before, false);
        if let Err(e) = result {
            for done in ran.iter().rev() {
                done.cleanup(ctx).await;
            }
            return Err(e);
        }
        ran.push(*phase);
    }
    Ok(())
}

/// Plans `phases` in order (a dry run): every phase's per-host steps, nothing changed.
pub async fn plan_phases(
    ctx: &mut Ctx,
    phases: &[&dyn Phase],
) -> Result<Vec<PlannedStep>, PhaseError> {
    let mut steps = Vec::new();
    for phase in phases {
        ctx.reporter.phase(phase.title());
        if !phase.should_run(ctx) {
            steps.push(PlannedStep::skip(
                phase.title(),
                "-",
                phase.title(),
                "nothing to do",
            ));
            continue;
        }
        steps.extend(phase.plan(ctx).await?);
    }
    Ok(steps)
}
