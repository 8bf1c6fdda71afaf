//! A phase has a title and a run; the runner announces each phase and stops at the first error.

use std::future::Future;
use std::pin::Pin;

use super::Ctx;

pub type PhaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PhaseError>> + Send + 'a>>;

pub trait Phase: Send + Sync {
    fn title(&self) -> &'static str;
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a>;
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

pub async fn run_phases(ctx: &mut Ctx, phases: &[&dyn Phase]) -> Result<(), PhaseError> {
    for phase in phases {
        ctx.reporter.phase(phase.title());
        phase.run(ctx).await?;
    }
    Ok(())
}
