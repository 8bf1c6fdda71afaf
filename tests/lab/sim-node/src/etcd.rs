//! etcd membership through etcd's v3 JSON gateway (the real etcd answers these).

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

use crate::kube::{agent, tls_config};
use crate::util::read_to_string;

pub struct Etcd {
    agent: ureq::Agent,
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    /// A learner (non-voting) member: `"isLearner": true` in the v3 JSON gateway and in
    /// `etcdctl member list -w json`; the field is absent for voting members.
    pub is_learner: bool,
}

impl Member {
    /// etcd lists a member that was added but never ran without a name.
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }

    fn from_json(v: &Value) -> Result<Self> {
        let id = match &v["ID"] {
            Value::String(s) => s.parse().context("bad member ID")?,
            Value::Number(n) => n.as_u64().ok_or_else(|| anyhow!("bad member ID"))?,
            _ => bail!("member without ID: {v}"),
        };
        let urls = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Self {
            id,
            name: v["name"].as_str().unwrap_or_default().to_string(),
            peer_urls: urls("peerURLs"),
            client_urls: urls("clientURLs"),
            is_learner: v["isLearner"].as_bool().unwrap_or(false),
        })
    }
}

impl Etcd {
    /// A client authenticated with a certificate under `pki` (e.g. `etcd/healthcheck-client`).
    pub fn new(endpoints: Vec<String>, pki: &Path, client: &str) -> Result<Self> {
        let ca = read_to_string(&pki.join("etcd/ca.crt"))?;
        let cert = read_to_string(&pki.join(format!("{client}.crt")))?;
        let key = read_to_string(&pki.join(format!("{client}.key")))?;
        let tls = tls_config(Some(&ca), Some(&cert), Some(&key))?;
        Ok(Self {
            agent: agent(tls, Duration::from_secs(10)),
            endpoints,
        })
    }

    fn post(&self, endpoint: &str, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{}", endpoint.trim_end_matches('/'), path);
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body)?)?;
        let mut resp = self.agent.run(req).with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 200 {
            let msg = v["message"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or(&text);
            return Err(EtcdError(msg.to_string()).into());
        }
        Ok(v)
    }

    /// Tries each endpoint until one answers; an answer that is an etcd error is final.
    fn call(&self, path: &str, body: Value) -> Result<Value> {
        let mut last = anyhow!("no etcd endpoints");
        for ep in &self.endpoints {
            match self.post(ep, path, &body) {
                Ok(v) => return Ok(v),
                Err(e) if e.is::<EtcdError>() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last.context(format!(
            "no etcd endpoint answered ({})",
            self.endpoints.join(",")
        )))
    }

    pub fn member_list(&self) -> Result<Vec<Member>> {
        let v = self.call("/v3/cluster/member/list", json!({}))?;
        members(&v["members"])
    }

    /// Adds a voting member; etcd itself refuses while another added member has not started.
    pub fn member_add(&self, peer_url: &str) -> Result<(Member, Vec<Member>)> {
        let v = self.call("/v3/cluster/member/add", json!({"peerURLs": [peer_url]}))?;
        Ok((Member::from_json(&v["member"])?, members(&v["members"])?))
    }

    /// Adds a learner (etcd 3.4+): it does not count for quorum, so etcd's quorum guard does not
    /// apply, but etcd allows only one learner at a time ("too many learner members in cluster").
    pub fn member_add_learner(&self, peer_url: &str) -> Result<(Member, Vec<Member>)> {
        let v = self.call(
            "/v3/cluster/member/add",
            json!({"peerURLs": [peer_url], "isLearner": true}),
        )?;
        Ok((Member::from_json(&v["member"])?, members(&v["members"])?))
    }

    /// Promotes a learner to a voting member; etcd refuses until the learner has caught up with
    /// the leader ("can only promote a learner member which is in sync with leader").
    pub fn member_promote(&self, id: u64) -> Result<Vec<Member>> {
        let v = self.call("/v3/cluster/member/promote", json!({"ID": id.to_string()}))?;
        members(&v["members"])
    }

    pub fn member_remove(&self, id: u64) -> Result<()> {
        self.call("/v3/cluster/member/remove", json!({"ID": id.to_string()}))?;
        Ok(())
    }

    /// etcd's /health on one endpoint.
    pub fn healthy(&self, endpoint: &str) -> bool {
        let url = format!("{}/health", endpoint.trim_end_matches('/'));
        match self.agent.get(&url).call() {
            Ok(mut r) if r.status().as_u16() == 200 => r
                .body_mut()
                .read_to_string()
                .map(|t| t.contains("\"true\""))
                .unwrap_or(false),
            _ => false,
        }
    }
}

fn members(v: &Value) -> Result<Vec<Member>> {
    v.as_array()
        .map(|a| a.iter().map(Member::from_json).collect())
        .unwrap_or_else(|| Ok(vec![]))
}

/// An error etcd itself returned (as opposed to a connection failure).
#[derive(Debug)]
pub struct EtcdError(pub String);

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EtcdError {}
