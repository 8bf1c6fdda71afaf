//! `installer remove-node NODE`: take one node out of the cluster, read top to bottom. The
//! check changes nothing and refuses what would break the cluster (etcd quorum, the last
//! master, an unreachable host without `--force`); every later step looks first at what is
//! still there, so an interrupted removal is finished by running it again.

use super::phases::{
    Connect, DeleteNode, DrainNode, GatherFacts, RemovalCheck, RemoveEtcdMember, ResetRemovedHost,
    UpdateLoadBalancer,
};
use super::{Ctx, Phase, PhaseError, plan_verb, run_phases};

/// How `remove-node` was asked to go about it.
#[derive(Debug, Clone)]
pub struct RemoveNodeOptions {
    pub node: String,
    /// Go on when the drain times out or the host cannot be reached.
    pub force: bool,
    pub drain_timeout_secs: u64,
}

struct Pipeline<'a> {
    check: &'a RemovalCheck,
    drain: DrainNode<'a>,
    member: RemoveEtcdMember<'a>,
    reset: ResetRemovedHost<'a>,
    load_balancer: UpdateLoadBalancer<'a>,
    delete: DeleteNode<'a>,
}

impl<'a> Pipeline<'a> {
    fn new(check: &'a RemovalCheck, options: &RemoveNodeOptions) -> Self {
        Pipeline {
            check,
            drain: DrainNode {
                check,
                timeout_secs: options.drain_timeout_secs,
            },
            member: RemoveEtcdMember { check },
            reset: ResetRemovedHost { check },
            load_balancer: UpdateLoadBalancer { check },
            delete: DeleteNode { check },
        }
    }

    /// The phases of `remove-node`, in order; `plan remove-node` dry-runs the same list.
    fn phases(&self) -> [&dyn Phase; 8] {
        [
            &Connect,
            &GatherFacts,
            self.check,
            &self.drain,
            &self.member,
            &self.reset,
            &self.load_balancer,
            &self.delete,
        ]
    }
}

pub async fn remove_node(ctx: &mut Ctx, options: &RemoveNodeOptions) -> Result<(), PhaseError> {
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    let check = RemovalCheck::new(&options.node, options.force);
    let pipeline = Pipeline::new(&check, options);
    run_phases(ctx, &pipeline.phases()).await?;
    let target = check.target("Remove node")?;
    let name = target.name();
    let mut text = format!(
        "{} {name} removed from cluster {}",
        target.role(),
        ctx.inventory.cluster.name
    );
    if target.unreachable.is_some() {
        text.push_str("; its host was NOT reset (unreachable): reset it before using it again");
    }
    if target.in_inventory {
        text.push_str(&format!(
            "; delete it from {} now, or `installer up` joins it again",
            ctx.inventory.source.display()
        ));
    }
    ctx.reporter.print(&text);
    ctx.reporter.print_json(&serde_json::json!({
        "remove-node": "ok",
        "node": name,
        "role": target.role(),
        "reset": target.unreachable.is_none(),
        "in_inventory": target.in_inventory,
    }));
    Ok(())
}

/// `installer plan remove-node NODE`: the same phases, dry-run.
pub async fn plan_remove_node(
    ctx: &mut Ctx,
    options: &RemoveNodeOptions,
) -> Result<(), PhaseError> {
    let check = RemovalCheck::new(&options.node, options.force);
    let pipeline = Pipeline::new(&check, options);
    plan_verb(ctx, &pipeline.phases()).await
}
