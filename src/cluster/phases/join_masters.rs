//! Join the other masters one at a time, each only after etcd reports the previous one as a
//! started voting member — never two etcd changes in flight (etcd allows one learner at a
//! time). A half-joined master (kubelet set up but not an etcd member, a member that never
//! started, or a learner that cannot be promoted) is cleaned up and joined again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Ctx;
use crate::cluster::kube::{self, EtcdMember};
use crate::cluster::kubeadm_config;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Host;

const MEMBER_TIMEOUT: Duration = Duration::from_secs(180);

pub struct JoinMasters;

impl Phase for JoinMasters {
    fn title(&self) -> &'static str {
        "Join the other masters"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let leader = ctx.leader().map_err(err)?;
            let others: Vec<Host> = ctx
                .usable(Host::is_master)
                .filter(|m| m.name != leader.name)
                .cloned()
                .collect();
            for master in others {
                join_one(ctx, &leader, &master)
                    .await
                    .map_err(|m| err(format!("{}: {m}", master.name)))?;
            }
            Ok(())
        })
    }

    fn should_run(&self, ctx: &Ctx) -> bool {
        ctx.usable(Host::is_master).count() > 1
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let first = ctx
                .leader()
                .ok()
                .map(|l| l.name)
                .or_else(|| ctx.usable(Host::is_master).next().map(|h| h.name.clone()));
            let others: Vec<Host> = ctx
                .usable(Host::is_master)
                .filter(|m| Some(&m.name) != first.as_ref())
                .cloned()
                .collect();
            plan_masters(ctx, self.title(), &others)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))
        })
    }
}

/// What a master needs, decided from its facts and etcd's member list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MasterJoin {
    /// A started, voting etcd member with its kubelet configured: nothing to do.
    Joined,
    /// A join died after kubeadm added the learner: promote it (rejoin if etcd refuses).
    Promote { member_id: String },
    /// Not in the cluster at all.
    Join,
    /// Kubelet configured but no usable member, or a member that never started: remove the
    /// stale members, reset, join again.
    ResetAndJoin { stale_members: Vec<String> },
}

fn decide(has_kubelet: bool, own: &[&EtcdMember]) -> MasterJoin {
    if has_kubelet && own.iter().any(|m| m.voting()) {
        return MasterJoin::Joined;
    }
    if has_kubelet
        && let [learner] = own
        && learner.is_learner
        && learner.started()
    {
        return MasterJoin::Promote {
            member_id: learner.id.clone(),
        };
    }
    if has_kubelet || !own.is_empty() {
        return MasterJoin::ResetAndJoin {
            stale_members: own.iter().map(|m| m.id.clone()).collect(),
        };
    }
    MasterJoin::Join
}

fn peer_url(ctx: &Ctx, master: &Host) -> String {
    format!(
        "https://{}:{}",
        master.address, ctx.defaults.ports.etcd_peer
    )
}

fn has_kubelet(ctx: &Ctx, host: &Host) -> bool {
    ctx.hosts
        .get(&host.name)
        .and_then(|s| s.facts.as_ref())
        .is_some_and(|f| f.has_kubelet_conf)
}

async fn decide_for(
    ctx: &Ctx,
    leader: &Host,
    master: &Host,
) -> Result<(MasterJoin, usize), String> {
    let (members, _) = kube::etcd_status(ctx, leader).await?;
    let peer = peer_url(ctx, master);
    let own: Vec<&EtcdMember> = members
        .iter()
        .filter(|m| m.peer_urls.contains(&peer))
        .collect();
    Ok((decide(has_kubelet(ctx, master), &own), members.len()))
}

async fn join_one(ctx: &mut Ctx, leader: &Host, master: &Host) -> Result<(), String> {
    let peer = peer_url(ctx, master);
    let stale_members = match decide_for(ctx, leader, master).await?.0 {
        MasterJoin::Joined => return Ok(()),
        MasterJoin::Promote { member_id } => {
            let vars = json!({"member_id": member_id});
            if run_playbook(ctx, "etcd-promote-member", leader, &vars)
                .await
                .is_ok()
            {
                ctx.reporter
                    .host_info(&master.name, "promoted its etcd learner to a voting member");
                return wait_for_member(ctx, leader, &peer).await;
            }
            vec![member_id]
        }
        MasterJoin::ResetAndJoin { stale_members } => stale_members,
        MasterJoin::Join => Vec::new(),
    };
    let vars = join_vars(ctx, master)?;
    if !stale_members.is_empty() || has_kubelet(ctx, master) {
        ctx.reporter.host_info(
            &master.name,
            "half-joined: resetting it before joining again",
        );
        for id in &stale_members {
            run_playbook(ctx, "etcd-remove-member", leader, &json!({"member_id": id})).await?;
        }
        run_playbook(ctx, "kubeadm-reset", master, &vars).await?;
        run_playbook(ctx, "pki", master, &vars).await?;
    }
    run_playbook(ctx, "kubeadm-token", leader, &vars).await?;
    run_playbook(ctx, "kubeadm-join", master, &vars).await?;
    wait_for_member(ctx, leader, &peer).await
}

/// Plan lines for the other masters: what each needs, with etcd's current size.
async fn plan_masters(
    ctx: &Ctx,
    phase: &'static str,
    others: &[Host],
) -> Result<Vec<PlannedStep>, String> {
    let step = "join the control plane (serially, one etcd change at a time)";
    let Ok(leader) = ctx.leader() else {
        // No control plane yet: init would make etcd's first member.
        return Ok(others
            .iter()
            .enumerate()
            .map(|(i, m)| {
                PlannedStep::change(
                    phase,
                    &m.name,
                    format!("{step}; etcd would have {} member(s) before it", i + 1),
                )
            })
            .collect());
    };
    let mut steps = Vec::new();
    for m in others {
        let (decision, size) = decide_for(ctx, &leader, m).await?;
        steps.push(match decision {
            MasterJoin::Joined => {
                PlannedStep::skip(phase, &m.name, step, "already a voting etcd member")
            }
            MasterJoin::Promote { .. } => PlannedStep::change(
                phase,
                &m.name,
                "promote its etcd learner (a join died before promotion)",
            ),
            MasterJoin::Join => {
                PlannedStep::change(phase, &m.name, format!("{step}; etcd has {size} member(s)"))
            }
            MasterJoin::ResetAndJoin { .. } => PlannedStep::change(
                phase,
                &m.name,
                format!("half-joined: reset it and {step}; etcd has {size} member(s)"),
            ),
        });
    }
    Ok(steps)
}

fn join_vars(ctx: &Ctx, master: &Host) -> Result<Value, String> {
    let mut vars = kubeadm_config::common_vars(ctx)?;
    vars["join_config"] = kubeadm_config::join_config(ctx, master, &vars, true)?.into();
    vars["pki"] = ctx.shared_files_json()?;
    Ok(vars)
}

pub(crate) async fn run_playbook(
    ctx: &mut Ctx,
    name: &str,
    host: &Host,
    vars: &Value,
) -> Result<(), String> {
    let targets = ctx.targets(&[host], vars);
    ctx.apply(name, targets).await.map(|_| ())
}

async fn wait_for_member(ctx: &Ctx, leader: &Host, peer: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let last = match kube::etcd_status(ctx, leader).await {
            Ok((members, healthy)) => {
                if healthy
                    && members
                        .iter()
                        .any(|m| m.peer_urls.iter().any(|p| p == peer) && m.voting())
                {
                    return Ok(());
                }
                format!(
                    "etcd members: {}",
                    members
                        .iter()
                        .map(|m| match (m.name.as_str(), m.is_learner) {
                            ("", _) => "(unstarted)".to_string(),
                            (name, true) => format!("{name} (learner)"),
                            (name, false) => name.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Err(e) => e,
        };
        if started.elapsed() > MEMBER_TIMEOUT {
            return Err(format!(
                "its etcd member did not start within {}s ({last}); check `journalctl -u kubelet` there",
                MEMBER_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str, learner: bool) -> EtcdMember {
        EtcdMember {
            id: id.into(),
            name: name.into(),
            client_urls: if name.is_empty() {
                vec![]
            } else {
                vec!["https://10.0.0.12:2379".into()]
            },
            peer_urls: vec!["https://10.0.0.12:2380".into()],
            is_learner: learner,
        }
    }

    #[test]
    fn voting_member_with_kubelet_is_joined() {
        let m = member("1", "master-2", false);
        assert_eq!(decide(true, &[&m]), MasterJoin::Joined);
    }

    #[test]
    fn started_learner_is_promoted_not_treated_as_joined() {
        let m = member("7", "master-2", true);
        assert_eq!(
            decide(true, &[&m]),
            MasterJoin::Promote {
                member_id: "7".into()
            }
        );
    }

    #[test]
    fn unstarted_member_is_removed_before_rejoining() {
        let m = member("9", "", true);
        assert_eq!(
            decide(false, &[&m]),
            MasterJoin::ResetAndJoin {
                stale_members: vec!["9".into()]
            }
        );
    }

    #[test]
    fn kubelet_without_member_is_reset() {
        assert_eq!(
            decide(true, &[]),
            MasterJoin::ResetAndJoin {
                stale_members: vec![]
            }
        );
    }

    #[test]
    fn fresh_master_joins() {
        assert_eq!(decide(false, &[]), MasterJoin::Join);
    }
}
