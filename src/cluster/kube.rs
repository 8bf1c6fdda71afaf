//! The API, through `kubectl` on a control-plane node (its admin.conf never leaves it);
//! JSON answers parsed into the few typed shapes the phases need.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::probe::{probe, probe_text};
use crate::inventory::Host;

/// Runs `kubectl ARGS` on `master`; its stdout on success, the error (host named) otherwise.
pub async fn kubectl(ctx: &Ctx, master: &Host, args: &[&str]) -> Result<String, String> {
    probe_text(ctx, "kubectl", master, &json!({ "args": args }))
        .await
        .map_err(|e| format!("kubectl {}: {e}", args.join(" ")))
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeList {
    pub items: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeSpec {
    #[serde(default)]
    pub taints: Vec<NodeTaint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeTaint {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub node_info: NodeInfo,
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    #[serde(default)]
    pub kubelet_version: String,
}

impl Node {
    pub fn ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status == "True")
    }
    pub fn is_control_plane(&self) -> bool {
        self.metadata
            .labels
            .contains_key("node-role.kubernetes.io/control-plane")
    }
}

pub async fn nodes(ctx: &Ctx, master: &Host) -> Result<Vec<Node>, String> {
    let out = kubectl(ctx, master, &["get", "nodes", "-o", "json"]).await?;
    let list: NodeList = serde_json::from_str(&out)
        .map_err(|e| format!("unexpected `kubectl get nodes` output: {e}"))?;
    Ok(list.items)
}

#[derive(Debug, Clone, Deserialize)]
pub struct EtcdMemberList {
    #[serde(default)]
    pub members: Vec<EtcdMember>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMember {
    /// uint64, sent as a string by the JSON gateway.
    #[serde(default, rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "clientURLs")]
    pub client_urls: Vec<String>,
    #[serde(default, rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Real kubeadm adds a joining master as a learner and promotes it once it caught up.
    #[serde(default, rename = "isLearner")]
    pub is_learner: bool,
}

impl EtcdMember {
    /// A member added but not started yet has no name and no client URLs.
    pub fn started(&self) -> bool {
        !self.name.is_empty() && !self.client_urls.is_empty()
    }

    /// A started voting member: what a joined master must be.
    pub fn voting(&self) -> bool {
        self.started() && !self.is_learner
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct EtcdStatus {
    pub members: EtcdMemberList,
    pub healthy: bool,
}

/// etcd's member list and this member's health, read on `master` through etcd's gateway.
pub async fn etcd_status(ctx: &Ctx, master: &Host) -> Result<(Vec<EtcdMember>, bool), String> {
    let status: EtcdStatus = probe(ctx, "etcd-status", master, &json!({}))
        .await
        .map_err(|e| format!("etcd: {e}"))?;
    Ok((status.members.members, status.healthy))
}
