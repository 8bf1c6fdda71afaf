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
            // Every check only reads, so they all ask at once: one round trip of wall time.
            let (nodes, etcd, api, static_pods) = futures::join!(
                kube::nodes(ctx, &leader),
                read_etcd(ctx),
                check_api(ctx, &leader),
                check_static_pods(ctx, &leader),
            );
            let mut problems = Vec::new();
            let outside = match &nodes {
                Ok(nodes) => nodes_outside_inventory(ctx, nodes),
                Err(e) => {
                    problems.push(e.clone());
                    Vec::new()
                }
            };
            if !outside.is_empty() {
                ctx.reporter.warn(outside_warning(ctx, &outside));
            }
            if let Ok(nodes) = &nodes {
                problems.extend(check_nodes(ctx, nodes));
            }
            problems.extend(check_etcd(ctx, etcd, &outside));
            problems.extend(api);
            problems.extend(static_pods);
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

fn check_nodes(ctx: &Ctx, nodes: &[kube::Node]) -> Vec<String> {
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
fn nodes_outside_inventory(ctx: &Ctx, nodes: &[kube::Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.metadata.name.clone())
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

type EtcdAnswer = Result<(Vec<kube::EtcdMember>, bool), String>;

/// Each master's view of etcd (members, local health), asked of all masters at once.
async fn read_etcd(ctx: &Ctx) -> Vec<(Host, EtcdAnswer)> {
    let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
    let answers =
        futures::future::join_all(masters.iter().map(|m| kube::etcd_status(ctx, m))).await;
    masters.into_iter().zip(answers).collect()
}

/// `outside`: nodes not in the inventory (already warned about); their etcd members are not
/// counted as a mismatch.
fn check_etcd(ctx: &Ctx, answers: Vec<(Host, EtcdAnswer)>, outside: &[String]) -> Vec<String> {
    let want: BTreeSet<String> = ctx
        .usable(Host::is_master)
        .map(|m| m.name.clone())
        .collect();
    let mut problems = Vec::new();
    for (i, (m, answer)) in answers.into_iter().enumerate() {
        match answer {
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
    // A few at a time: each is a session on the leader's connection, and sshd allows ten
    // (MaxSessions) while the other checks hold theirs.
    let mut answers = Vec::new();
    for chunk in servers.chunks(4) {
        let asks: Vec<[&str; 5]> = chunk
            .iter()
            .map(|server| ["--server", server, "get", "--raw", "/readyz"])
            .collect();
        let asked = asks.iter().map(|args| kube::kubectl(ctx, leader, args));
        answers.extend(futures::future::join_all(asked).await);
    }
    servers
        .iter()
        .zip(answers)
        .filter_map(|(server, answer)| {
            answer
                .err()
                .map(|e| format!("the API does not answer at {server}: {e}"))
        })
        .collect()
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
