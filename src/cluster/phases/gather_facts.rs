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
            let load = |name: &str| {
                ctx.playbooks
                    .load(name)
                    .map_err(|e| PhaseError::new(self.title(), e.to_string()))
            };
            let (facts, root) = (load("facts")?, load("facts-root")?);
            // Hosts with facts already (a verb may add a host later in the run) are not re-read.
            let hosts: Vec<_> = ctx
                .usable(|_| true)
                .filter(|h| ctx.hosts.get(&h.name).is_some_and(|s| s.facts.is_none()))
                .collect();
            // The unprivileged facts and the root probe side by side: two sessions on each
            // host's one connection, one round trip of waiting instead of two.
            let opts = ctx.run_options(Mode::Apply);
            let (reports, roots) = futures::join!(
                crate::playbook::run(&facts, ctx.targets(&hosts, &json!({})), &opts),
                crate::playbook::run(&root, ctx.targets(&hosts, &json!({})), &opts),
            );
            for report in reports {
                let root = roots.iter().find(|r| r.host == report.host);
                let registered = |r: &crate::playbook::HostReport, k: &str| {
                    r.registered
                        .get(k)
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                let Some(unprivileged) = registered(&report, "facts") else {
                    let why = report
                        .failure
                        .as_ref()
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "facts were not gathered".into());
                    ctx.mark_failed(&report.host, why);
                    continue;
                };
                // A failed root probe is a fact (root_ok = false), judged by preflight.
                let root_text = root.and_then(|r| registered(r, "root"));
                let mut facts = Facts::parse(&unprivileged, root_text.as_deref());
                facts.root_error = match root {
                    Some(r) => r.failure.as_ref().map(|f| f.message.clone()),
                    None => Some("the root probe did not run".into()),
                };
                if let Some(state) = ctx.hosts.get_mut(&report.host) {
                    state.facts = Some(facts);
                }
            }
            Ok(())
        })
    }
}
