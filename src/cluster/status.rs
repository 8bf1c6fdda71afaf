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
    Ok(())
}

async fn read_status(ctx: &mut Ctx) -> Result<Status, PhaseError> {
    let err = |m: String| PhaseError::new("Status", m);
    let leader = connect_to_leader(ctx).await?;
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
    let etcd: Vec<[String; 3]> = s
        .etcd
        .iter()
        .map(|e| {
            let member = if e.learner {
                "learner".to_string()
            } else {
                yes(e.member)
            };
            [e.master.clone(), member, yes(e.healthy)]
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
    format!(
        "{}\n\n{}\n\nVIP holder: {}\n\n{}",
        super::table::render(&["NODE", "ROLE", "VERSION", "READY"], &nodes),
        super::table::render(&["ETCD ON", "MEMBER", "HEALTHY"], &etcd),
        s.vip_holder.as_deref().unwrap_or("-"),
        super::table::render(&["API", "READYZ"], &api),
    )
}
