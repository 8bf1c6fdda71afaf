//! Before anything is stopped: the snapshot is checked here (its checksum file, etcd's own
//! trailing sha256), every master's member is read from its etcd.yaml, each master gets a
//! snapshot tool that can read the snapshot's format and a private copy of the snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::static_pods::ASIDE;
use crate::cluster::Ctx;
use crate::cluster::etcd_files::{self, SnapshotMeta};
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::probe::probe_many;
use crate::inventory::Host;

/// Where the snapshot is put on each master (0700 directory, 0600 file).
pub const REMOTE_DIR: &str = "/var/lib/installer/etcd-restore";

/// One restore run: the file, a stamp naming what it sets aside, and what `PrepareRestore`
/// found for the phases after it.
pub struct Restore {
    pub file: PathBuf,
    pub stamp: String,
    found: Mutex<Option<Found>>,
}

#[derive(Clone)]
pub struct Found {
    pub meta: Option<SnapshotMeta>,
    /// By host name.
    pub members: BTreeMap<String, Member>,
}

/// A master's etcd member as its etcd.yaml declares it, and the tool on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_url: String,
    pub data_dir: String,
    pub tool: String,
    pub tool_version: String,
    #[serde(default)]
    pub manifest: String,
}

impl Restore {
    pub fn new(file: PathBuf) -> Restore {
        let t = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        Restore {
            file,
            stamp,
            found: Mutex::new(None),
        }
    }

    pub fn found(&self) -> Option<Found> {
        self.found.lock().ok()?.clone()
    }

    pub fn remote_snapshot(&self) -> String {
        format!("{REMOTE_DIR}/snapshot-{}.db", self.stamp)
    }

    /// `name=peer,...` for every member: the cluster every restored member starts in.
    pub fn initial_cluster(found: &Found) -> String {
        found
            .members
            .values()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub struct PrepareRestore<'a>(pub &'a Restore);

impl PrepareRestore<'_> {
    /// The checks that change nothing: the file, and every master's member.
    async fn check(&self, ctx: &Ctx) -> Result<(Vec<u8>, Found), String> {
        let file = &self.0.file;
        let bytes =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        etcd_files::verify_checksum(file, &bytes)?;
        etcd_files::verify_integrity(&bytes).map_err(|m| format!("{}: {m}", file.display()))?;
        let meta = etcd_files::read_meta(file);
        if let Some(m) = &meta
            && m.cluster != ctx.inventory.cluster.name
        {
            return Err(format!(
                "{} is a backup of cluster {}, not {}; nothing was changed",
                file.display(),
                m.cluster,
                ctx.inventory.cluster.name
            ));
        }
        let down: Vec<String> = ctx
            .inventory
            .masters()
            .filter(|m| !ctx.usable(Host::is_master).any(|u| u.name == m.name))
            .map(|m| m.name.clone())
            .collect();
        if !down.is_empty() {
            return Err(format!(
                "every master takes part in a restore, and these cannot be reached: {}; bring them back (or remove them from the inventory) and run it again; nothing was changed",
                down.join(", ")
            ));
        }
        let members = read_members(ctx).await?;
        Ok((bytes, Found { meta, members }))
    }
}

async fn read_members(ctx: &Ctx) -> Result<BTreeMap<String, Member>, String> {
    let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
    let mut members = BTreeMap::new();
    let mut problems = Vec::new();
    for (host, answer) in
        probe_many::<Member>(ctx, "etcd-member", &masters, &json!({"aside": ASIDE})).await
    {
        match answer {
            Ok(m) if m.name.is_empty() || m.peer_url.is_empty() || m.data_dir.is_empty() => {
                problems.push(format!(
                    "{host}: {} names no --name, --initial-advertise-peer-urls or --data-dir",
                    m.manifest
                ))
            }
            Ok(m) => {
                members.insert(host, m);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(members)
    } else {
        Err(problems.join("; "))
    }
}

impl Phase for PrepareRestore<'_> {
    fn title(&self) -> &'static str {
        "Prepare the restore"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new("Prepare the restore", m);
            let (bytes, mut found) = self.check(ctx).await.map_err(err)?;
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            let hosts: Vec<&Host> = masters.iter().collect();
            let targets = ctx.targets(&hosts, &json!({"remote_dir": REMOTE_DIR}));
            ctx.apply("etcd-tools", targets).await.map_err(err)?;
            found.members = read_members(ctx).await.map_err(err)?;
            match &found.meta {
                Some(meta) => {
                    for (host, m) in &found.members {
                        etcd_files::tool_fits(&m.tool, &m.tool_version, &meta.etcd_version)
                            .map_err(|e| err(format!("{host}: {e}; nothing was changed")))?;
                    }
                }
                None => ctx.reporter.warn(format!(
                    "{} has no metadata file beside it: the etcd version it came from is unknown, so the restore tool's version is not checked",
                    self.0.file.display()
                )),
            }
            for master in &masters {
                let remote = ctx
                    .hosts
                    .get(&master.name)
                    .and_then(|s| s.remote.clone())
                    .ok_or_else(|| err(format!("{} is not connected", master.name)))?;
                use crate::playbook::Remote;
                remote
                    .upload(
                        &self.0.remote_snapshot(),
                        bytes.clone(),
                        0o600,
                        "root",
                        "root",
                        true,
                    )
                    .await
                    .map_err(|e| {
                        err(format!(
                            "{}: cannot copy the snapshot: {}",
                            master.name, e.message
                        ))
                    })?;
                let m = &found.members[&master.name];
                ctx.reporter.host_info(
                    &master.name,
                    format!(
                        "member {} ({}), {} {}, snapshot copied",
                        m.name, m.peer_url, m.tool, m.tool_version
                    ),
                );
            }
            if let Ok(mut slot) = self.0.found.lock() {
                *slot = Some(found);
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let (bytes, found) = self
                .check(ctx)
                .await
                .map_err(|m| PhaseError::new(phase, m))?;
            let mut steps = vec![PlannedStep::skip(
                phase,
                "-",
                format!(
                    "{}: sha256 {} matches its checksum file and etcd's trailing hash{}",
                    self.0.file.display(),
                    etcd_files::sha256_hex(&bytes),
                    found
                        .meta
                        .as_ref()
                        .map(|m| format!(
                            " (etcd {}, taken {} from {})",
                            m.etcd_version, m.taken, m.member
                        ))
                        .unwrap_or_default()
                ),
                "checked",
            )];
            for (host, m) in &found.members {
                if m.tool.is_empty() {
                    steps.push(PlannedStep::change(
                        phase,
                        host,
                        "install etcd-client (no etcdutl/etcdctl on PATH)",
                    ));
                } else {
                    steps.push(PlannedStep::skip(
                        phase,
                        host,
                        format!("snapshot tool {} {}", m.tool, m.tool_version),
                        "present",
                    ));
                }
                steps.push(PlannedStep::change(
                    phase,
                    host,
                    format!("copy the snapshot to {}", self.0.remote_snapshot()),
                ));
            }
            if let Ok(mut slot) = self.0.found.lock() {
                *slot = Some(found);
            }
            Ok(steps)
        })
    }
}
