//! Join the other masters one at a time, each only after etcd reports the previous one as a
//! started member — never two etcd changes in flight. A half-joined master (kubelet set up
//! but not an etcd member, or a member that never started) is cleaned up and joined again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Ctx;
use crate::cluster::kube::{self, EtcdMember};
use crate::cluster::kubeadm_config;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
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
}

async fn join_one(ctx: &mut Ctx, leader: &Host, master: &Host) -> Result<(), String> {
    let (members, _) = kube::etcd_status(ctx, leader).await?;
    let peer = format!("https://{}:2380", master.address);
    let own: Vec<&EtcdMember> = members
        .iter()
        .filter(|m| m.peer_urls.contains(&peer))
        .collect();
    let has_kubelet = ctx
        .hosts
        .get(&master.name)
        .and_then(|s| s.facts.as_ref())
        .is_some_and(|f| f.has_kubelet_conf);
    let started = own.iter().any(|m| m.started());
    if has_kubelet && started {
        return Ok(());
    }
    let half_joined = has_kubelet || !own.is_empty();
    let vars = join_vars(ctx, master)?;
    if half_joined {
        ctx.reporter.host_info(
            &master.name,
            "half-joined: resetting it before joining again",
        );
        for stale in &own {
            run_playbook(
                ctx,
                "etcd-remove-member",
                leader,
                &json!({"member_id": stale.id}),
            )
            .await?;
        }
        run_playbook(ctx, "kubeadm-reset", master, &vars).await?;
        run_playbook(ctx, "pki", master, &vars).await?;
    }
    run_playbook(ctx, "kubeadm-token", leader, &vars).await?;
    run_playbook(ctx, "kubeadm-join", master, &vars).await?;
    wait_for_member(ctx, leader, &peer).await
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
                        .any(|m| m.peer_urls.iter().any(|p| p == peer) && m.started())
                {
                    return Ok(());
                }
                format!(
                    "etcd members: {}",
                    members
                        .iter()
                        .map(|m| if m.name.is_empty() {
                            "(unstarted)"
                        } else {
                            m.name.as_str()
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
