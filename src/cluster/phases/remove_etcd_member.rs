//! A master leaves etcd first, through a remaining master (etcd's member/remove, found by name
//! or peer URL), before its host is reset — so it works when the host is gone too, and the
//! member list never names a master that no longer exists. Idempotent: no member, no change.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::kube::{self, EtcdMember};
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::join_masters::run_playbook;
use crate::cluster::phases::removal_check::{RemovalCheck, Target};

const GONE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct RemoveEtcdMember<'a> {
    pub check: &'a RemovalCheck,
}

fn own_member<'m>(t: &Target, members: &'m [EtcdMember]) -> Option<&'m EtcdMember> {
    let peer = format!("https://{}:", t.host.address);
    members
        .iter()
        .find(|m| m.name == t.name() || m.peer_urls.iter().any(|p| p.starts_with(&peer)))
}

impl Phase for RemoveEtcdMember<'_> {
    fn title(&self) -> &'static str {
        "Remove the etcd member"
    }

    fn should_run(&self, _ctx: &Ctx) -> bool {
        self.check.found().is_some_and(|t| t.master)
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let t = self.check.target(self.title())?;
            let (members, _) = kube::etcd_status(ctx, &t.via).await.map_err(err)?;
            let Some(member) = own_member(&t, &members).cloned() else {
                ctx.reporter
                    .host_info(t.name(), "no etcd member: already removed");
                return Ok(());
            };
            let vars = json!({"member_id": member.id});
            run_playbook(ctx, "etcd-remove-member", &t.via, &vars)
                .await
                .map_err(err)?;
            wait_until_gone(ctx, &t).await.map_err(err)?;
            ctx.reporter.host_info(
                t.name(),
                format!(
                    "etcd member removed; {} member(s) left",
                    members.len().saturating_sub(1)
                ),
            );
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let t = self.check.target(self.title())?;
            let (members, _) = kube::etcd_status(ctx, &t.via)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            let step = format!("remove its etcd member through {}", t.via.name);
            Ok(vec![match own_member(&t, &members) {
                Some(_) => PlannedStep::change(
                    self.title(),
                    t.name(),
                    format!(
                        "{step}: etcd goes from {} to {} member(s)",
                        members.len(),
                        members.len() - 1
                    ),
                ),
                None => PlannedStep::skip(self.title(), t.name(), step, "no etcd member left"),
            }])
        })
    }
}

/// etcd answers the removal at once; wait until the member list says so and etcd is healthy.
async fn wait_until_gone(ctx: &Ctx, t: &Target) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let last = match kube::etcd_status(ctx, &t.via).await {
            Ok((members, healthy)) if healthy && own_member(t, &members).is_none() => return Ok(()),
            Ok((_, healthy)) => {
                format!("member still listed or etcd unhealthy (healthy: {healthy})")
            }
            Err(e) => e,
        };
        if started.elapsed() > GONE_TIMEOUT {
            return Err(format!(
                "etcd on {} still lists {} after {}s ({last}); check it with etcdctl member list there",
                t.via.name,
                t.name(),
                GONE_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
