//! After the control plane was stopped everywhere: wait until `Verify` passes (nodes, etcd
//! members = masters and healthy, the API through the endpoint and on every master), as the
//! pods come back at their own pace.

use std::time::{Duration, Instant};

use super::Verify;
use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};

pub struct WaitHealthy {
    pub timeout: Duration,
}

impl Phase for WaitHealthy {
    fn title(&self) -> &'static str {
        "Wait until the cluster is healthy"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            loop {
                match Verify.run(ctx).await {
                    Ok(()) => {
                        ctx.reporter.info(format!(
                            "healthy after {:.0} s",
                            started.elapsed().as_secs_f64()
                        ));
                        return Ok(());
                    }
                    Err(e) if started.elapsed() > self.timeout => {
                        return Err(PhaseError::new(
                            self.title(),
                            format!(
                                "still not healthy after {} s: {}; `installer status` shows what is missing",
                                self.timeout.as_secs(),
                                e.message
                            ),
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(3)).await,
                }
            }
        })
    }

    fn plan<'a>(&'a self, _ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            Ok(vec![PlannedStep::change(
                self.title(),
                "-",
                format!(
                    "wait (up to {} s) until etcd members = masters, all healthy, and the API answers through the endpoint",
                    self.timeout.as_secs()
                ),
            )])
        })
    }
}
