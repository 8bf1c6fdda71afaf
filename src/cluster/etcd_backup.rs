//! `installer etcd backup`: a verified snapshot of etcd from a healthy member, kept in the
//! state directory (`etcd-backups/`, newest N) with its sha256, and copied to `-o FILE`.

use std::path::Path;

use super::phases::{Connect, EtcdSnapshot, GatherFacts};
use super::{Ctx, Phase, PhaseError, plan_verb, run_phases};

pub fn phases(snapshot: &EtcdSnapshot) -> [&dyn Phase; 3] {
    [&Connect, &GatherFacts, snapshot]
}

pub async fn etcd_backup(
    ctx: &mut Ctx,
    output: Option<&Path>,
    keep: usize,
) -> Result<(), PhaseError> {
    let snapshot = EtcdSnapshot {
        output: output.map(Path::to_path_buf),
        keep,
    };
    run_phases(ctx, &phases(&snapshot)).await
}

pub async fn plan_etcd_backup(
    ctx: &mut Ctx,
    output: Option<&Path>,
    keep: usize,
) -> Result<(), PhaseError> {
    let snapshot = EtcdSnapshot {
        output: output.map(Path::to_path_buf),
        keep,
    };
    plan_verb(ctx, &phases(&snapshot)).await
}
