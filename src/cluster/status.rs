//! `installer status`: nodes (role, version, Ready), etcd members and health, which master
//! holds the VIP, and API health per master. Read-only.

use serde::Serialize;

use super::kube;
use super::phases::{Connect, GatherFacts};
use super::{Ctx, PhaseError, run_phases};
use crate::inventory::{ControlPlane, Host};

#[derive(Debug, Serialize)]
pub struct Status {
    pub nodes: Vec<NodeRow>,
    pub etcd: Vec<EtcdRow>,
    pub vip_holder: Option<String>,
    pub api: Vec<ApiRow>,
    /// Hosts of the inventory that could not be reached (or read): the rest was read without them.
    pub unreachable: Vec<UnreachableRow>,
}

#[derive(Debug, Serialize)]
pub struct UnreachableRow {
    pub host: String,
    pub roles: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub role: String,
    pub version: String,
    pub ready: bool,
}

#[derive(Debug, Serialize)]
pub struct EtcdRow {
    pub master: String,
    pub member: bool,
    /// A learner: added by a join that has not been promoted (`up` promotes or rejoins it).
    pub learner: bool,
    pub healthy: bool,
}

#[derive(Debug, Serialize)]
pub struct ApiRow {
    pub server: String,
    pub ok: bool,
}

/// Connects, gathers facts and picks the master whose control plane the API is read through.
pub async fn connect_to_leader(ctx: &mut Ctx) -> Result<Host, PhaseError> {
    run_phases(ctx, &[&Connect, &GatherFacts]).await?;
    let leader = ctx
        .usable(Host::is_master)
        .find(|m| {
            ctx.hosts
                .get(&m.name)
                .and_then(|s| s.facts.as_ref())
                .is_some_and(|f| f.has_control_plane_manifests)
        })
        .cloned()
        .ok_or_else(|| {
            PhaseError::new(
                "Status",
                "no reachable master runs a control plane; run `installer up` first",
            )
        })?;
    ctx.init_master = Some(leader.name.clone());
    Ok(leader)
}

pub async fn status(ctx: &mut Ctx) -> Result<(), PhaseError> {
    let status = read_status(ctx).await?;
    ctx.reporter.print(&render(&status));
    ctx.reporter
        .print_json(&serde_json::json!({ "status": status }));
    match unreachable_summary(&status) {
        None => Ok(()),
        Some(message) => Err(PhaseError::new("Status", message)),
    }
}

/// Why `status` exits 1: the hosts it could not reach, by name and role.
fn unreachable_summary(status: &Status) -> Option<String> {
    if status.unreachable.is_empty() {
        return None;
    }
    let hosts: Vec<String> = status
        .unreachable
        .iter()
        .map(|u| format!("{} ({})", u.host, u.roles))
        .collect();
    Some(format!(
        "unreachable: {}; the rest of the cluster was read without them",
        hosts.join(", ")
    ))
}

async fn read_status(ctx: &mut Ctx) -> Result<Status, PhaseError> {
    let err = |m: String| PhaseError::new("Status", m);
    let leader = connect_to_leader(ctx).await?;
    let unreachable = ctx
        .failed_hosts()
        .into_iter()
        .map(|(host, reason)| UnreachableRow {
            roles: ctx
                .inventory
                .host(&host)
                .map(|h| {
                    h.roles
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            host,
            reason,
        })
        .collect();
    let nodes = kube::nodes(ctx, &leader).await.map_err(err)?;
    let node_rows = nodes
        .iter()
        .map(|n| NodeRow {
            name: n.metadata.name.clone(),
            role: if n.is_control_plane() {
                "control-plane".into()
            } else {
                "worker".into()
            },
            version: n.status.node_info.kubelet_version.clone(),
            ready: n.ready(),
        })
        .collect();
    let masters: Vec<Host> = ctx.inventory.masters().cloned().collect();
    let members = kube::etcd_status(ctx, &leader)
        .await
        .map(|(m, _)| m)
        .unwrap_or_default();
    let mut etcd = Vec::new();
    let mut api = Vec::new();
    for m in &masters {
        let healthy = kube::etcd_status(ctx, m).await.is_ok_and(|(_, h)| h);
        etcd.push(EtcdRow {
            master: m.name.clone(),
            member: members.iter().any(|x| x.name == m.name),
            learner: members.iter().any(|x| x.name == m.name && x.is_learner),
            healthy,
        });
        let server = format!("https://{}:{}", m.address, ctx.defaults.ports.apiserver);
        let ok = kube::kubectl(
            ctx,
            &leader,
            &["--server", &server, "get", "--raw", "/readyz"],
        )
        .await
        .is_ok();
        api.push(ApiRow { server, ok });
    }
    let endpoint = format!("https://{}", ctx.inventory.cluster.control_plane.endpoint());
    let ok = kube::kubectl(
        ctx,
        &leader,
        &["--server", &endpoint, "get", "--raw", "/readyz"],
    )
    .await
    .is_ok();
    api.push(ApiRow {
        server: endpoint,
        ok,
    });
    let vip_holder = match ctx.inventory.cluster.control_plane {
        ControlPlane::Vip { vip, .. } => masters
            .iter()
            .find(|m| {
                ctx.hosts
                    .get(&m.name)
                    .and_then(|s| s.facts.as_ref())
                    .is_some_and(|f| f.has_address(vip))
            })
            .map(|m| m.name.clone()),
        ControlPlane::LoadBalancer { .. } => None,
    };
    Ok(Status {
        nodes: node_rows,
        etcd,
        vip_holder,
        api,
        unreachable,
    })
}

pub fn render(s: &Status) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let nodes: Vec<[String; 4]> = s
        .nodes
        .iter()
        .map(|n| {
            [
                n.name.clone(),
                n.role.clone(),
                n.version.clone(),
                yes(n.ready),
            ]
        })
        .collect();
    let unreachable = |host: &str| s.unreachable.iter().any(|u| u.host == host);
    let etcd: Vec<[String; 3]> = s
        .etcd
        .iter()
        .map(|e| {
            let member = if e.learner {
                "learner".to_string()
            } else {
                yes(e.member)
            };
            let healthy = if unreachable(&e.master) {
                "UNREACHABLE".to_string()
            } else {
                yes(e.healthy)
            };
            [e.master.clone(), member, healthy]
        })
        .collect();
    let api: Vec<[String; 2]> = s
        .api
        .iter()
        .map(|a| {
            [
                a.server.clone(),
                if a.ok { "ok" } else { "DOWN" }.to_string(),
            ]
        })
        .collect();
    let mut text = format!(
        "{}\n\n{}\n\nVIP holder: {}\n\n{}",
        super::table::render(&["NODE", "ROLE", "VERSION", "READY"], &nodes),
        super::table::render(&["ETCD ON", "MEMBER", "HEALTHY"], &etcd),
        s.vip_holder.as_deref().unwrap_or("-"),
        super::table::render(&["API", "READYZ"], &api),
    );
    if !s.unreachable.is_empty() {
        let rows: Vec<[String; 3]> = s
            .unreachable
            .iter()
            .map(|u| [u.host.clone(), u.roles.clone(), u.reason.clone()])
            .collect();
        text.push_str("\n\n");
        text.push_str(&super::table::render(
            &["UNREACHABLE", "ROLES", "WHY"],
            &rows,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(unreachable: Vec<UnreachableRow>) -> Status {
        Status {
            nodes: Vec::new(),
            etcd: ["master-1", "master-2"]
                .iter()
                .map(|m| EtcdRow {
                    master: m.to_string(),
                    member: true,
                    learner: false,
                    healthy: *m != "master-1",
                })
                .collect(),
            vip_holder: Some("master-2".into()),
            api: Vec::new(),
            unreachable,
        }
    }

    #[test]
    fn an_unreachable_master_is_named_and_fails_the_status() {
        let s = status(vec![UnreachableRow {
            host: "master-1".into(),
            roles: "master".into(),
            reason: "cannot connect to master-1 (10.0.0.11:22): No route to host".into(),
        }]);
        let text = render(&s);
        assert!(
            text.lines()
                .any(|l| l.starts_with("master-1") && l.contains("UNREACHABLE")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("master-1")
                && l.contains("master")
                && l.contains("No route to host")),
            "{text}"
        );
        assert_eq!(
            unreachable_summary(&s).as_deref(),
            Some("unreachable: master-1 (master); the rest of the cluster was read without them")
        );
    }

    #[test]
    fn a_status_with_every_host_reached_succeeds() {
        let s = status(Vec::new());
        assert!(unreachable_summary(&s).is_none());
        assert!(!render(&s).contains("UNREACHABLE"));
    }
}
