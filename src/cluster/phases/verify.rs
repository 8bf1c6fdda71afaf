//! Verify HA instead of assuming it: every node registered with its role and version, the
//! etcd members are exactly the masters and healthy, the API answers through the endpoint
//! and on every master, and the control-plane static pods exist. Nodes the inventory does not
//! name are reported (with the command that removes one), never removed.

use std::collections::BTreeSet;

use crate::cluster::Ctx;
use crate::cluster::kube;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::Host;

pub struct Verify;

impl Phase for Verify {
    fn title(&self) -> &'static str {
        "Verify the cluster"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let leader = ctx.leader().map_err(|m| PhaseError::new(self.title(), m))?;
            let mut problems = Vec::new();
            let outside = nodes_outside_inventory(ctx, &leader).await;
            if !outside.is_empty() {
                ctx.reporter.warn(outside_warning(ctx, &outside));
            }
            problems.extend(check_nodes(ctx, &leader).await);
            problems.extend(check_etcd(ctx, &outside).await);
            problems.extend(check_api(ctx, &leader).await);
            problems.extend(check_static_pods(ctx, &leader).await);
            if problems.is_empty() {
                ctx.reporter.info("verified: nodes registered, etcd members healthy, API answers through the endpoint and on every master");
                Ok(())
            } else {
                Err(PhaseError::new(self.title(), problems.join("; ")))
            }
        })
    }

    fn plan<'a>(&'a self, _ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            Ok(vec![PlannedStep::skip(
                self.title(),
                "-",
                "verify nodes, etcd, the API through the endpoint and on every master",
                "read-only",
            )])
        })
    }
}

async fn check_nodes(ctx: &Ctx, leader: &Host) -> Vec<String> {
    let nodes = match kube::nodes(ctx, leader).await {
        Ok(n) => n,
        Err(e) => return vec![e],
    };
    let want = format!("v{}", ctx.inventory.cluster.kubernetes);
    let mut problems = Vec::new();
    // Hosts left behind earlier in the run are named by `up` itself.
    for host in ctx.usable(|_| true) {
        match nodes.iter().find(|n| n.metadata.name == host.name) {
            None => problems.push(format!("node {} is not registered", host.name)),
            Some(n) => {
                if host.is_master() != n.is_control_plane() {
                    problems.push(format!("node {} has the wrong role", host.name));
                }
                if n.status.node_info.kubelet_version != want {
                    problems.push(format!(
                        "node {} runs kubelet {} instead of {want}",
                        host.name, n.status.node_info.kubelet_version
                    ));
                }
            }
        }
    }
    problems
}

/// Nodes the cluster has that the inventory does not name: reported, never removed.
async fn nodes_outside_inventory(ctx: &Ctx, leader: &Host) -> Vec<String> {
    let Ok(nodes) = kube::nodes(ctx, leader).await else {
        return Vec::new(); // check_nodes says why
    };
    nodes
        .into_iter()
        .map(|n| n.metadata.name)
        .filter(|n| ctx.inventory.host(n).is_none())
        .collect()
}

fn outside_warning(ctx: &Ctx, names: &[String]) -> String {
    format!(
        "node(s) in the cluster but not in the inventory: {}; `up` leaves them as they are. To take one out of the cluster: installer remove-node -i {} NODE",
        names.join(", "),
        ctx.inventory.source.display()
    )
}

/// `outside`: nodes not in the inventory (already warned about); their etcd members are not
/// counted as a mismatch.
async fn check_etcd(ctx: &Ctx, outside: &[String]) -> Vec<String> {
    let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
    let want: BTreeSet<String> = masters.iter().map(|m| m.name.clone()).collect();
    let mut problems = Vec::new();
    for (i, m) in masters.iter().enumerate() {
        match kube::etcd_status(ctx, m).await {
            Err(e) => problems.push(e),
            Ok((members, healthy)) => {
                if !healthy {
                    problems.push(format!("etcd on {} is not healthy", m.name));
                }
                if i == 0 {
                    for learner in members.iter().filter(|x| x.is_learner) {
                        problems.push(format!(
                            "etcd member {} is still a learner (a join did not finish); run `installer up` again",
                            learner.name
                        ));
                    }
                    let have: BTreeSet<String> = members
                        .iter()
                        .map(|x| x.name.clone())
                        .filter(|n| !outside.contains(n))
                        .collect();
                    if have != want {
                        problems.push(format!(
                            "etcd members are {have:?}, expected the masters {want:?}"
                        ));
                    }
                }
            }
        }
    }
    problems
}

async fn check_api(ctx: &Ctx, leader: &Host) -> Vec<String> {
    let mut servers = vec![format!(
        "https://{}",
        ctx.inventory.cluster.control_plane.endpoint()
    )];
    servers.extend(
        ctx.usable(Host::is_master)
            .map(|m| format!("https://{}:{}", m.address, ctx.defaults.ports.apiserver)),
    );
    let mut problems = Vec::new();
    for server in servers {
        if let Err(e) = kube::kubectl(
            ctx,
            leader,
            &["--server", &server, "get", "--raw", "/readyz"],
        )
        .await
        {
            problems.push(format!("the API does not answer at {server}: {e}"));
        }
    }
    problems
}

async fn check_static_pods(ctx: &Ctx, leader: &Host) -> Vec<String> {
    let out = match kube::kubectl(
        ctx,
        leader,
        &["get", "pods", "-n", "kube-system", "-o", "name"],
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let pods: BTreeSet<&str> = out
        .lines()
        .map(|l| l.trim().trim_start_matches("pod/"))
        .collect();
    let mut problems = Vec::new();
    for m in ctx.inventory.masters() {
        for component in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let name = format!("{component}-{}", m.name);
            if !pods.contains(name.as_str()) {
                problems.push(format!("static pod kube-system/{name} is missing"));
            }
        }
    }
    problems
}
