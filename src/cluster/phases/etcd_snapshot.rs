//! A snapshot of etcd from a healthy member, checked (etcd's own trailing sha256) and kept in
//! the state directory's `etcd-backups/` with its checksum and metadata; the newest N stay.
//! `-o FILE` writes a copy there too.

use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::etcd_files::{self, SnapshotMeta};
use crate::cluster::kube;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::probe::probe;
use crate::inventory::Host;

pub struct EtcdSnapshot {
    pub output: Option<PathBuf>,
    pub keep: usize,
}

#[derive(Deserialize)]
struct Answer {
    server: String,
    snapshot: String,
}

impl Phase for EtcdSnapshot {
    fn title(&self) -> &'static str {
        "etcd snapshot"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new("etcd snapshot", m);
            let member = healthy_member(ctx).await.map_err(err)?;
            let answer: Answer = probe(ctx, "etcd-snapshot", &member, &json!({}))
                .await
                .map_err(|e| err(e.to_string()))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(answer.snapshot.trim())
                .map_err(|e| {
                    err(format!(
                        "{}: the snapshot did not arrive whole ({e})",
                        member.name
                    ))
                })?;
            etcd_files::verify_integrity(&bytes)
                .map_err(|m| err(format!("snapshot from {}: {m}", member.name)))?;
            let taken = time::OffsetDateTime::now_utc();
            let stamp = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                taken.year(),
                u8::from(taken.month()),
                taken.day(),
                taken.hour(),
                taken.minute(),
                taken.second()
            );
            let cluster = ctx.inventory.cluster.name.clone();
            let meta = SnapshotMeta {
                cluster: cluster.clone(),
                member: member.name.clone(),
                etcd_version: answer.server.clone(),
                taken: stamp.clone(),
                bytes: bytes.len() as u64,
            };
            let dir = etcd_files::backup_dir(&ctx.inventory.state_dir()).map_err(err)?;
            let path = dir.join(format!("etcd-{cluster}-{stamp}.db"));
            etcd_files::write_snapshot(&path, &bytes, &meta).map_err(err)?;
            let sha = etcd_files::sha256_hex(&bytes);
            ctx.reporter.host_info(
                &member.name,
                format!(
                    "snapshot of etcd {} ({} bytes, sha256 {sha}) verified and stored as {}",
                    answer.server,
                    bytes.len(),
                    path.display()
                ),
            );
            if let Some(out) = &self.output {
                etcd_files::write_snapshot(out, &bytes, &meta).map_err(err)?;
                ctx.reporter.info(format!(
                    "copy: {} (checksum {})",
                    out.display(),
                    etcd_files::sidecar(out, "sha256").display()
                ));
            }
            for old in etcd_files::prune(&dir, self.keep.max(1)) {
                ctx.reporter
                    .info(format!("removed the older backup {}", old.display()));
            }
            ctx.reporter
                .print(&format!("etcd backup: {}", path.display()));
            ctx.reporter.print_json(&json!({
                "etcd_backup": path, "sha256": sha, "member": member.name,
                "etcd_version": answer.server, "bytes": bytes.len(),
            }));
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let member = healthy_member(ctx)
                .await
                .map_err(|m| PhaseError::new(phase, m))?;
            let dir = ctx.inventory.state_dir().join("etcd-backups");
            let mut steps = vec![PlannedStep::change(
                phase,
                &member.name,
                format!(
                    "snapshot etcd, verify it, store it in {} with its sha256; keep the newest {}",
                    dir.display(),
                    self.keep.max(1)
                ),
            )];
            if let Some(out) = &self.output {
                steps.push(PlannedStep::change(
                    phase,
                    "-",
                    format!("copy it to {}", out.display()),
                ));
            }
            Ok(steps)
        })
    }
}

/// The first master (inventory order) whose etcd member answers healthy.
async fn healthy_member(ctx: &Ctx) -> Result<Host, String> {
    let mut why = Vec::new();
    let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
    for m in masters {
        match kube::etcd_status(ctx, &m).await {
            Ok((_, true)) => return Ok(m),
            Ok((_, false)) => why.push(format!("{}: etcd member not healthy", m.name)),
            Err(e) => why.push(format!("{}: {e}", m.name)),
        }
    }
    Err(format!(
        "no healthy etcd member to take a snapshot from ({}); `installer status` shows etcd's state",
        why.join("; ")
    ))
}
