//! `installer up`: the whole cluster, read top to bottom. Every phase looks at the hosts
//! first and does only what is missing, so re-running `up` is always safe.

use super::phases::{
    Connect, GatherFacts, InitControlPlane, JoinMasters, JoinWorkers, Kubeconfig, LoadBalancer,
    NodeConfig, Pki, Preflight, PrepareHosts, Verify,
};
use super::{Ctx, PhaseError, run_phases};
use crate::playbook::Mode;

pub async fn up(ctx: &mut Ctx) -> Result<(), PhaseError> {
    run_phases(
        ctx,
        &[
            &Connect,
            &GatherFacts,
            &Preflight::new(true),
            &PrepareHosts::new(Mode::Apply),
            &Pki,
            &LoadBalancer,
            &InitControlPlane,
            &JoinMasters,
            &JoinWorkers,
            &NodeConfig,
            &Verify,
            &Kubeconfig,
        ],
    )
    .await
}
