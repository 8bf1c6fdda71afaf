//! Before `remove-node` touches anything: is NODE part of the cluster (a node, an etcd member,
//! or both), can its host be reached, and can it go without breaking the cluster — for a
//! master, etcd must keep its quorum and at least one other master must remain. Read-only;
//! what it finds (the [`Target`]) drives every later phase of the removal.
//!
//! A host the user already deleted from the inventory is still removable: it is reached at the
//! address its Node reports (else its etcd member's peer URL), with the SSH settings of the
//! inventory's first master, and added to this run's hosts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::kube::{self, EtcdMember, Node};
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::{Connect, GatherFacts};
use crate::cluster::probe::probe_many;
use crate::inventory::{Host, Role};

/// What the check found out about the node to remove; read by the later phases.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its inventory entry, or one made from what the cluster knows of it.
    pub host: Host,
    pub in_inventory: bool,
    /// A control-plane node, or an etcd member of that name.
    pub master: bool,
    pub node_exists: bool,
    /// Its etcd member, when it still has one.
    pub member: Option<EtcdMember>,
    /// Why its host cannot be reached (then it is not drained or reset; only with `--force`).
    pub unreachable: Option<String>,
    /// Its host was reached and holds no kubelet configuration: `kubeadm reset` already ran.
    pub already_reset: bool,
    /// The master the API and etcd are reached through (never the target).
    pub via: Host,
}

impl Target {
    pub fn name(&self) -> &str {
        &self.host.name
    }
    pub fn role(&self) -> &'static str {
        if self.master { "master" } else { "worker" }
    }
}

pub struct RemovalCheck {
    node: String,
    force: bool,
    target: Mutex<Option<Target>>,
}

impl RemovalCheck {
    pub fn new(node: &str, force: bool) -> Self {
        RemovalCheck {
            node: node.to_string(),
            force,
            target: Mutex::new(None),
        }
    }

    pub fn force(&self) -> bool {
        self.force
    }

    /// What the check found; an error when it has not run (a bug in the pipeline's order).
    pub fn target(&self, phase: &'static str) -> Result<Target, PhaseError> {
        self.target
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .ok_or_else(|| PhaseError::new(phase, "the removal check has not run"))
    }

    /// For `should_run`: the target, when the check found one.
    pub fn found(&self) -> Option<Target> {
        self.target.lock().ok().and_then(|t| t.clone())
    }
}

impl Phase for RemovalCheck {
    fn title(&self) -> &'static str {
        "Removal check"
    }

    fn read_only(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let target = check(ctx, &self.node, self.force)
                .await
                .map_err(|m| PhaseError::new(self.title(), format!("{m}; nothing was changed")))?;
            ctx.init_master = Some(target.via.name.clone());
            ctx.reporter.host_info(&target.host.name, describe(&target));
            if let Ok(mut slot) = self.target.lock() {
                *slot = Some(target);
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            self.run(ctx).await?;
            let t = self.target(self.title())?;
            Ok(vec![PlannedStep::skip(
                self.title(),
                t.name(),
                format!("remove {} {}", t.role(), t.name()),
                describe(&t),
            )])
        })
    }
}

fn describe(t: &Target) -> String {
    let mut parts = vec![format!(
        "{} ({}), through {}",
        t.role(),
        t.host.address,
        t.via.name
    )];
    if !t.in_inventory {
        parts.push("not in the inventory".into());
    }
    if !t.node_exists {
        parts.push("its Node is already deleted".into());
    }
    if t.master {
        parts.push(match &t.member {
            Some(_) => "an etcd member".into(),
            None => "no etcd member left".into(),
        });
    }
    if let Some(why) = &t.unreachable {
        parts.push(format!(
            "UNREACHABLE ({why}): it will not be drained or reset"
        ));
    } else if t.already_reset {
        parts.push("its host is already reset".into());
    }
    parts.join(", ")
}

/// One etcd member as the quorum rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHealth {
    pub name: String,
    pub voting: bool,
    pub healthy: bool,
    pub is_target: bool,
}

/// etcd commits a membership change only with a quorum of its voting members, and the members
/// left afterwards must still form one: refuse when either does not hold.
pub fn quorum_verdict(members: &[MemberHealth]) -> Result<(), String> {
    let voting: Vec<&MemberHealth> = members.iter().filter(|m| m.voting).collect();
    let n = voting.len();
    let h = voting.iter().filter(|m| m.healthy).count();
    let unhealthy = |pick: &dyn Fn(&MemberHealth) -> bool| {
        let names: Vec<&str> = voting
            .iter()
            .filter(|m| !m.healthy && pick(m))
            .map(|m| m.name.as_str())
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(" (unhealthy: {})", names.join(", "))
        }
    };
    if h < n / 2 + 1 {
        return Err(format!(
            "etcd has lost its quorum: {h} of {n} voting members are healthy{}, so no member can be removed; bring the unhealthy members back first",
            unhealthy(&|_| true)
        ));
    }
    let Some(target) = voting.iter().find(|m| m.is_target) else {
        return Ok(()); // a learner, or no member: quorum is not affected
    };
    let left = n - 1;
    if left == 0 {
        return Err(format!(
            "{} is the last etcd member: removing it would destroy the cluster (use `installer reset` for that)",
            target.name
        ));
    }
    let healthy_left = h - usize::from(target.healthy);
    if healthy_left < left / 2 + 1 {
        return Err(format!(
            "removing {} would lose etcd's quorum: {healthy_left} of the {left} remaining members would be healthy, {} needed{}; bring them back first",
            target.name,
            left / 2 + 1,
            unhealthy(&|m| !m.is_target)
        ));
    }
    Ok(())
}

fn is_control_plane(host: &Host, ctx: &Ctx) -> bool {
    ctx.hosts
        .get(&host.name)
        .and_then(|s| s.facts.as_ref())
        .is_some_and(|f| f.has_control_plane_manifests)
}

fn peer_address(member: &EtcdMember) -> Option<std::net::IpAddr> {
    member.peer_urls.iter().find_map(|u| {
        let rest = u
            .strip_prefix("https://")
            .or_else(|| u.strip_prefix("http://"))?;
        let host = rest.rsplit_once(':').map(|(h, _)| h).unwrap_or(rest);
        host.trim_matches(['[', ']']).parse().ok()
    })
}

fn internal_ip(node: &Node) -> Option<std::net::IpAddr> {
    node.status
        .addresses
        .iter()
        .find(|a| a.kind == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// etcd's view (read on every reachable master running a control plane): NODE's member, after
/// the quorum rule passed, and the master the rest of the removal goes through.
async fn etcd_and_via(
    ctx: &Ctx,
    name: &str,
    inventory_host: Option<&Host>,
) -> Result<(Option<EtcdMember>, Host), String> {
    // etcd first: with its quorum lost the API cannot answer, and that must be said plainly.
    let masters: Vec<Host> = ctx
        .usable(Host::is_master)
        .filter(|m| is_control_plane(m, ctx))
        .cloned()
        .collect();
    let refs: Vec<&Host> = masters.iter().collect();
    let views = probe_many::<kube::EtcdStatus>(ctx, "etcd-status", &refs, &json!({})).await;
    let members: Vec<EtcdMember> = views
        .iter()
        .find_map(|(_, v)| v.as_ref().ok().map(|s| s.members.members.clone()))
        .ok_or_else(|| {
            let why: Vec<String> = views
                .iter()
                .filter_map(|(_, v)| v.as_ref().err().map(|e| e.to_string()))
                .collect();
            format!(
                "etcd does not answer on any reachable master ({})",
                if why.is_empty() {
                    "no master of the inventory is reachable and runs a control plane".into()
                } else {
                    why.join("; ")
                }
            )
        })?;
    let member = members
        .iter()
        .find(|m| {
            m.name == name || inventory_host.is_some_and(|h| peer_address(m) == Some(h.address))
        })
        .cloned();
    if member.is_some() {
        let health: Vec<MemberHealth> = members
            .iter()
            .map(|m| MemberHealth {
                name: if m.name.is_empty() {
                    m.id.clone()
                } else {
                    m.name.clone()
                },
                voting: !m.is_learner,
                healthy: m.started()
                    && views.iter().any(|(host, v)| {
                        let addr = masters.iter().find(|h| &h.name == host).map(|h| h.address);
                        addr.is_some()
                            && addr == peer_address(m)
                            && v.as_ref().is_ok_and(|s| s.healthy)
                    }),
                is_target: member.as_ref().is_some_and(|t| t.id == m.id),
            })
            .collect();
        quorum_verdict(&health)?;
    }
    let via = pick_via(ctx, &masters, &views, name).await?;
    Ok((member, via))
}

/// etcd is briefly unhealthy after a membership change or on a loaded host: a refusal for
/// quorum (or for want of a healthy master) stands only when it holds for this long.
const SETTLE: Duration = Duration::from_secs(30);

/// The etcd member of NAME, the master to work through, and the cluster's nodes. Right after
/// a member is removed (a re-run of an interrupted removal), etcd elects a leader and the API
/// answers "etcd unavailable" for a moment even once /readyz passed: the node list is read
/// inside the same settling window.
async fn etcd_via_and_nodes(
    ctx: &Ctx,
    name: &str,
    inventory_host: Option<&Host>,
) -> Result<(Option<EtcdMember>, Host, Vec<Node>), String> {
    let (member, via) = etcd_and_via(ctx, name, inventory_host).await?;
    let nodes = kube::nodes(ctx, &via).await?;
    Ok((member, via, nodes))
}

async fn check(ctx: &mut Ctx, name: &str, force: bool) -> Result<Target, String> {
    let inventory_host = ctx.inventory.host(name).cloned();
    let started = Instant::now();
    let (member, via, nodes) = loop {
        match etcd_via_and_nodes(ctx, name, inventory_host.as_ref()).await {
            Ok(found) => break found,
            Err(e) if started.elapsed() < SETTLE => {
                ctx.reporter.info(format!(
                    "etcd is not ready for a removal yet ({e}); looking again"
                ));
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let node = nodes.iter().find(|n| n.metadata.name == name);
    if node.is_none() && member.is_none() {
        let names: Vec<&str> = nodes.iter().map(|n| n.metadata.name.as_str()).collect();
        return Err(format!(
            "{name} is not a node of cluster {} (its nodes: {}) nor an etcd member: nothing to remove",
            ctx.inventory.cluster.name,
            names.join(", ")
        ));
    }
    let master = member.is_some()
        || node.is_some_and(Node::is_control_plane)
        || inventory_host.as_ref().is_some_and(Host::is_master);
    if master
        && !nodes
            .iter()
            .any(|n| n.metadata.name != name && n.is_control_plane())
    {
        return Err(format!(
            "{name} is the only control-plane node: removing it would leave no master"
        ));
    }
    let in_inventory = inventory_host.is_some();
    let host = match inventory_host {
        Some(h) => h,
        None => {
            let address = node
                .and_then(internal_ip)
                .or_else(|| member.as_ref().and_then(peer_address))
                .ok_or_else(|| {
                    format!("{name} is not in the inventory and the cluster knows no address for it; add it to the inventory")
                })?;
            reach_extra_host(ctx, name, address, master).await?
        }
    };
    let state = ctx.hosts.get(name);
    let unreachable = state.and_then(|s| s.error.clone()).or_else(|| {
        match state.and_then(|s| s.remote.as_ref()) {
            Some(_) => None,
            None => Some("not connected".into()),
        }
    });
    let already_reset = unreachable.is_none()
        && state
            .and_then(|s| s.facts.as_ref())
            .is_some_and(|f| !f.has_kubelet_conf && !f.has_control_plane_manifests);
    if let Some(why) = &unreachable
        && !force
    {
        return Err(format!(
            "{name} ({}) cannot be reached ({why}), so it could not be drained or reset; bring it back, or pass --force to remove it from the cluster anyway (its host is then left as it is: reset it before using it again)",
            host.address
        ));
    }
    Ok(Target {
        host,
        in_inventory,
        master,
        node_exists: node.is_some(),
        member,
        unreachable,
        already_reset,
        via,
    })
}

/// A master other than `name` whose etcd is healthy and whose API answers.
async fn pick_via(
    ctx: &Ctx,
    masters: &[Host],
    views: &[(
        String,
        Result<kube::EtcdStatus, crate::cluster::probe::ProbeError>,
    )],
    name: &str,
) -> Result<Host, String> {
    let mut tried = Vec::new();
    for m in masters.iter().filter(|m| m.name != name) {
        let healthy = views
            .iter()
            .any(|(h, v)| h == &m.name && v.as_ref().is_ok_and(|s| s.healthy));
        if !healthy {
            tried.push(format!("{}: etcd not healthy", m.name));
            continue;
        }
        match kube::kubectl(ctx, m, &["get", "--raw", "/readyz"]).await {
            Ok(_) => return Ok(m.clone()),
            Err(e) => tried.push(format!("{}: {e}", m.name)),
        }
    }
    Err(format!(
        "no other reachable master of the inventory serves the API with a healthy etcd{}; the removal needs one",
        if tried.is_empty() {
            String::new()
        } else {
            format!(" ({})", tried.join("; "))
        }
    ))
}

/// A host no longer in the inventory: reached at `address` with the first master's SSH
/// settings, added to this run's hosts, and its facts gathered.
async fn reach_extra_host(
    ctx: &mut Ctx,
    name: &str,
    address: std::net::IpAddr,
    master: bool,
) -> Result<Host, String> {
    let template = ctx
        .inventory
        .masters()
        .next()
        .cloned()
        .ok_or("the inventory has no master")?;
    let host = Host {
        name: name.to_string(),
        address,
        roles: vec![if master { Role::Master } else { Role::Worker }],
        ssh: template.ssh.clone(),
        labels: Default::default(),
        taints: Vec::new(),
        storage: Vec::new(),
    };
    ctx.reporter.host_info(
        name,
        format!(
            "not in the inventory: reaching it at {address} with {}'s SSH settings",
            template.name
        ),
    );
    ctx.inventory.hosts.push(host.clone());
    ctx.hosts.insert(name.to_string(), Default::default());
    Connect.run(ctx).await.map_err(|e| e.to_string())?;
    GatherFacts.run(ctx).await.map_err(|e| e.to_string())?;
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::{MemberHealth, quorum_verdict};

    fn m(name: &str, healthy: bool, is_target: bool) -> MemberHealth {
        MemberHealth {
            name: name.into(),
            voting: true,
            healthy,
            is_target,
        }
    }

    #[test]
    fn one_of_three_healthy_masters_can_go() {
        let members = [
            m("m1", true, false),
            m("m2", true, false),
            m("m3", true, true),
        ];
        assert_eq!(quorum_verdict(&members), Ok(()));
    }

    #[test]
    fn one_of_two_healthy_masters_can_go_the_other_keeps_quorum() {
        assert_eq!(
            quorum_verdict(&[m("m1", true, false), m("m2", true, true)]),
            Ok(())
        );
    }

    #[test]
    fn a_healthy_member_cannot_go_while_another_is_down() {
        let e = quorum_verdict(&[
            m("m1", true, false),
            m("m2", false, false),
            m("m3", true, true),
        ])
        .unwrap_err();
        assert!(
            e.contains("lose etcd's quorum") && e.contains("1 of the 2") && e.contains("m2"),
            "{e}"
        );
    }

    #[test]
    fn the_dead_member_of_three_can_go() {
        let members = [
            m("m1", true, false),
            m("m2", true, false),
            m("m3", false, true),
        ];
        assert_eq!(quorum_verdict(&members), Ok(()));
    }

    #[test]
    fn nothing_goes_from_an_etcd_without_quorum() {
        let e = quorum_verdict(&[m("m1", false, true), m("m2", false, false)]).unwrap_err();
        assert!(e.contains("lost its quorum") && e.contains("0 of 2"), "{e}");
    }

    #[test]
    fn the_last_member_is_refused() {
        let e = quorum_verdict(&[m("m1", true, true)]).unwrap_err();
        assert!(e.contains("last etcd member"), "{e}");
    }

    #[test]
    fn a_learner_does_not_count_for_quorum() {
        let mut learner = m("m3", false, true);
        learner.voting = false;
        assert_eq!(
            quorum_verdict(&[m("m1", true, false), m("m2", true, false), learner]),
            Ok(())
        );
    }
}
