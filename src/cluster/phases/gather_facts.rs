//! Gather facts on every connected host (the `facts` playbook), once per run.

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::facts::Facts;
use crate::playbook::Mode;

pub struct GatherFacts;

impl Phase for GatherFacts {
    fn title(&self) -> &'static str {
        "Gather facts"
    }

    fn read_only(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let playbook = ctx
                .playbooks
                .load("facts")
                .map_err(|e| PhaseError::new(self.title(), e.to_string()))?;
            // Hosts with facts already (a verb may add a host later in the run) are not re-read.
            let hosts: Vec<_> = ctx
                .usable(|_| true)
                .filter(|h| ctx.hosts.get(&h.name).is_some_and(|s| s.facts.is_none()))
                .collect();
            let targets = ctx.targets(&hosts, &json!({}));
            let reports =
                crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Apply)).await;
            for report in reports {
                let text = |k: &str| {
                    report
                        .registered
                        .get(k)
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                let Some(unprivileged) = text("facts") else {
                    let why = report
                        .failure
                        .as_ref()
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "facts were not gathered".into());
                    ctx.mark_failed(&report.host, why);
                    continue;
                };
                // A failed root probe is a fact (root_ok = false), judged by preflight.
                let mut facts = Facts::parse(&unprivileged, text("root").as_deref());
                facts.root_error = report.failure.as_ref().map(|f| f.message.clone());
                if let Some(state) = ctx.hosts.get_mut(&report.host) {
                    state.facts = Some(facts);
                }
            }
            Ok(())
        })
    }
}
