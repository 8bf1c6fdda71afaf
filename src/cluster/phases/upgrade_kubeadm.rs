//! First of every upgrade step, on every host in parallel: the package repository switched
//! to the step's minor and kubeadm at the step's version, held (`playbooks/upgrade/kubeadm`).
//! A host whose kubeadm is already at the step's version has nothing to do.

use semver::Version;
use serde_json::json;

use super::upgrade_preflight::{parse, read_versions};
use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Host;

pub struct UpgradeKubeadm {
    pub version: Version,
}

impl Phase for UpgradeKubeadm {
    fn title(&self) -> &'static str {
        "Upgrade kubeadm"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let hosts: Vec<Host> = ctx.usable(|_| true).cloned().collect();
            let refs: Vec<&Host> = hosts.iter().collect();
            let targets = ctx.targets(&refs, &json!({}));
            ctx.apply("upgrade/kubeadm", targets)
                .await
                .map(|_| ())
                .map_err(|m| PhaseError::new(self.title(), m))
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let hosts: Vec<&Host> = ctx.usable(|_| true).collect();
            let versions = read_versions(ctx, &hosts)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            let step = format!(
                "package repository of {}.{}, kubeadm {} (held)",
                self.version.major, self.version.minor, self.version
            );
            Ok(versions
                .iter()
                .map(|(host, v)| {
                    if parse(&v.kubeadm).as_ref() == Some(&self.version) {
                        PlannedStep::skip(
                            self.title(),
                            host,
                            &step,
                            format!("kubeadm is {}", v.kubeadm),
                        )
                    } else {
                        PlannedStep::change(
                            self.title(),
                            host,
                            format!("{step}; kubeadm is {}", v.kubeadm),
                        )
                    }
                })
                .collect())
        })
    }
}
