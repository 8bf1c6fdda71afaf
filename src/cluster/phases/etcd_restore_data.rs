//! The restore itself, on every master at once while etcd is stopped everywhere: each
//! member's data directory is moved aside (kept) and made again from the snapshot with the
//! member's own name and peer URL and the whole member list (`playbooks/etcd-restore`).

use serde_json::json;

use super::etcd_restore_prepare::Restore;
use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Host;

pub struct RestoreEtcd<'a>(pub &'a Restore);

impl Phase for RestoreEtcd<'_> {
    fn title(&self) -> &'static str {
        "Restore etcd"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new("Restore etcd", m);
            let found = self
                .0
                .found()
                .ok_or_else(|| err("the restore was not prepared".into()))?;
            let vars = json!({
                "members": found.members,
                "initial_cluster": Restore::initial_cluster(&found),
                "snapshot": self.0.remote_snapshot(),
                "stamp": self.0.stamp,
            });
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            let hosts: Vec<&Host> = masters.iter().collect();
            let targets = ctx.targets(&hosts, &vars);
            ctx.apply("etcd-restore", targets).await.map_err(|m| {
                err(format!(
                    "{m}; the old data directories are kept as <data-dir>.before-restore-{}",
                    self.0.stamp
                ))
            })?;
            for (host, m) in &found.members {
                ctx.reporter.host_info(
                    host,
                    format!(
                        "{} restored; the old one is kept as {}.before-restore-{}",
                        m.data_dir, m.data_dir, self.0.stamp
                    ),
                );
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, _ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let Some(found) = self.0.found() else {
                return Ok(vec![PlannedStep::change(self.title(), "-", self.title())]);
            };
            let cluster = Restore::initial_cluster(&found);
            Ok(found
                .members
                .iter()
                .map(|(host, m)| {
                    PlannedStep::change(
                        self.title(),
                        host,
                        format!(
                            "move {d} to {d}.before-restore-{s} (kept); {tool} snapshot restore --name {n} --initial-advertise-peer-urls {p} --initial-cluster {cluster} into {d}",
                            d = m.data_dir,
                            s = self.0.stamp,
                            tool = if m.tool.is_empty() { "etcdutl/etcdctl" } else { &m.tool },
                            n = m.name,
                            p = m.peer_url,
                        ),
                    )
                })
                .collect())
        })
    }
}
