//! Before an upgrade changes anything: every host answers, etcd is healthy, every node is
//! Ready, the versions on the hosts obey Kubernetes' skew rules, and the target is a version
//! this installer supports. From the lowest version in the cluster it works out the chain of
//! steps, one minor each (kubeadm upgrades the control plane one minor at a time).

use std::collections::BTreeMap;
use std::sync::Mutex;

use semver::Version;
use serde::Deserialize;
use serde_json::json;

use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::probe::probe_many;
use crate::cluster::{Ctx, Defaults, kube};
use crate::inventory::{Host, SUPPORTED_MINORS};

/// What `playbooks/upgrade/versions` reads on a host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostVersions {
    #[serde(default)]
    pub kubeadm: String,
    #[serde(default)]
    pub kubelet: String,
    /// Tags of the control-plane static pods (empty on a worker).
    #[serde(default)]
    pub control_plane: Vec<String>,
}

impl HostVersions {
    /// The oldest control-plane component on this master, if it runs one.
    pub fn control_plane_version(&self) -> Option<Version> {
        self.control_plane.iter().filter_map(|t| parse(t)).min()
    }
    /// Whether every control-plane component here runs `version`.
    pub fn control_plane_at(&self, version: &Version) -> bool {
        !self.control_plane.is_empty()
            && self
                .control_plane
                .iter()
                .all(|t| parse(t).as_ref() == Some(version))
    }
}

/// `v1.36.2` or `1.36.2`.
pub fn parse(text: &str) -> Option<Version> {
    Version::parse(text.trim().trim_start_matches('v')).ok()
}

/// Versions on `hosts`, each host named when it cannot be read.
pub async fn read_versions(
    ctx: &Ctx,
    hosts: &[&Host],
) -> Result<BTreeMap<String, HostVersions>, String> {
    let mut out = BTreeMap::new();
    for (host, answer) in
        probe_many::<HostVersions>(ctx, "upgrade/versions", hosts, &json!({})).await
    {
        out.insert(host, answer.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// A `--to` given on the command line: an exact version of a supported minor.
pub fn parse_target(text: &str) -> Result<Version, String> {
    let v = parse(text).ok_or_else(|| {
        format!("{text:?} is not a Kubernetes version: give an exact one, e.g. --to 1.37.1")
    })?;
    if !SUPPORTED_MINORS.contains(&(v.major, v.minor)) {
        let supported: Vec<String> = SUPPORTED_MINORS
            .iter()
            .map(|(a, b)| format!("{a}.{b}"))
            .collect();
        return Err(format!(
            "Kubernetes {v} is not supported by this installer (minors {})",
            supported.join(", ")
        ));
    }
    Ok(v)
}

/// Everything the upgrade decides from, read before any change.
#[derive(Debug, Default)]
pub struct Observed {
    /// Hosts that did not answer, with why.
    pub unreachable: Vec<(String, String)>,
    /// Per master, its oldest control-plane component.
    pub control_planes: Vec<(String, Version)>,
    /// Per node, the kubelet version the API reports.
    pub kubelets: Vec<(String, Version)>,
    pub not_ready: Vec<String>,
    /// Why etcd is not healthy, if it is not.
    pub etcd: Option<String>,
}

/// The chain of versions to go through to reach `to` (one minor per step; the last step is
/// `to` itself, also when the cluster is there already, so a re-run finishes a step an
/// interrupted run left half-done), or every reason to refuse, each naming the host and what
/// to do. `latest_patch(minor)` is the patch a chain stops at in a minor it passes through.
pub fn decide(
    to: &Version,
    observed: &Observed,
    latest_patch: impl Fn(u64) -> Result<Version, String>,
) -> Result<Vec<Version>, Vec<String>> {
    let mut refuse = Vec::new();
    for (host, why) in &observed.unreachable {
        refuse.push(format!(
            "{host} does not answer ({why}): every host must be reachable before an upgrade; bring it back and run the upgrade again"
        ));
    }
    if let Some(why) = &observed.etcd {
        refuse.push(format!(
            "etcd is not healthy ({why}): fix etcd first (installer status shows each member)"
        ));
    }
    for node in &observed.not_ready {
        refuse.push(format!(
            "node {node} is not Ready: an upgrade drains nodes one after another and needs every node Ready first; fix it (kubectl describe node {node}) or remove it"
        ));
    }
    if observed.control_planes.is_empty() {
        refuse.push("no master runs a control plane: run `installer up` first".into());
    }
    let oldest_cp = observed.control_planes.iter().min_by(|a, b| a.1.cmp(&b.1));
    if let Some((master, cp)) = oldest_cp {
        for (node, kubelet) in &observed.kubelets {
            if kubelet > cp {
                refuse.push(format!(
                    "the kubelet on {node} ({kubelet}) is newer than the API server on {master} ({cp}): a kubelet may not be newer than the API server; upgrade the control plane first (installer upgrade --to {kubelet})"
                ));
            }
        }
    }
    let all = observed
        .control_planes
        .iter()
        .chain(&observed.kubelets)
        .collect::<Vec<_>>();
    for (host, v) in &all {
        if v > to {
            refuse.push(format!(
                "{host} runs {v}, newer than --to {to}: downgrades are not supported (kubeadm refuses them)"
            ));
        }
    }
    if !refuse.is_empty() {
        return Err(refuse);
    }
    let Some(lowest) = all.iter().map(|(_, v)| v).min() else {
        return Ok(vec![to.clone()]);
    };
    let mut chain = Vec::new();
    for minor in lowest.minor + 1..to.minor {
        match latest_patch(minor) {
            Ok(v) => chain.push(v),
            Err(e) => return Err(vec![e]),
        }
    }
    chain.push(to.clone());
    Ok(chain)
}

/// The upgrade's preflight: read-only; refuses with every reason at once.
pub struct UpgradePreflight {
    to: Version,
    chain: Mutex<Vec<Version>>,
}

impl UpgradePreflight {
    pub fn new(to: Version) -> Self {
        UpgradePreflight {
            to,
            chain: Mutex::new(Vec::new()),
        }
    }
    /// The steps, known once the phase ran.
    pub fn chain(&self) -> Vec<Version> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn check(&self, ctx: &mut Ctx) -> Result<(), String> {
        crate::cluster::ca_rotation::refuse_while_rotating(ctx)
            .map_err(|e| format!("{e}; nothing was changed"))?;
        let mut observed = Observed {
            unreachable: ctx
                .inventory
                .hosts
                .iter()
                .filter_map(|h| {
                    let s = ctx.hosts.get(&h.name)?;
                    match (&s.error, &s.remote) {
                        (Some(e), _) => Some((h.name.clone(), e.clone())),
                        (None, None) => Some((h.name.clone(), "not connected".into())),
                        _ => None,
                    }
                })
                .collect(),
            ..Observed::default()
        };
        let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
        let versions = read_versions(ctx, &masters).await?;
        super::api_backend::check(ctx).await.map_err(|e| {
            format!("each master leaves haproxy's rotation while it is upgraded, and cannot: {e}; nothing was changed")
        })?;
        for (name, v) in &versions {
            if let Some(cp) = v.control_plane_version() {
                observed.control_planes.push((name.clone(), cp));
            }
        }
        let leader = observed
            .control_planes
            .first()
            .and_then(|(n, _)| ctx.inventory.host(n).cloned());
        if let Some(leader) = &leader {
            ctx.init_master = Some(leader.name.clone());
            match kube::etcd_status(ctx, leader).await {
                Ok((_, true)) => {}
                Ok((_, false)) => {
                    observed.etcd = Some(format!("{} reports it unhealthy", leader.name))
                }
                Err(e) => observed.etcd = Some(e),
            }
            for node in kube::nodes(ctx, leader).await? {
                if !node.ready() {
                    observed.not_ready.push(node.metadata.name.clone());
                }
                if let Some(v) = parse(&node.status.node_info.kubelet_version) {
                    observed.kubelets.push((node.metadata.name.clone(), v));
                }
            }
        }
        let playbooks = ctx.playbooks.clone();
        let major = self.to.major;
        let chain = decide(&self.to, &observed, |minor| {
            Defaults::load(&playbooks, &format!("{major}.{minor}"))
                .map(|d| d.latest_patch)
                .map_err(|e| {
                    format!(
                        "an upgrade to {} passes through {major}.{minor}: {e}",
                        self.to
                    )
                })
        })
        .map_err(|reasons| {
            format!(
                "the upgrade would not be safe; nothing was changed:\n  {}",
                reasons.join("\n  ")
            )
        })?;
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = chain;
        Ok(())
    }
}

impl Phase for UpgradePreflight {
    fn title(&self) -> &'static str {
        "Upgrade preflight"
    }

    fn read_only(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            self.check(ctx)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            let chain: Vec<String> = self.chain().iter().map(Version::to_string).collect();
            ctx.reporter.info(format!("steps: {}", chain.join(" → ")));
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            self.check(ctx)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            let chain: Vec<String> = self.chain().iter().map(Version::to_string).collect();
            Ok(vec![PlannedStep::skip(
                self.title(),
                "-",
                format!(
                    "versions, skew, etcd, nodes Ready: upgrade in {} step(s): {}",
                    chain.len(),
                    chain.join(" → ")
                ),
                "read-only",
            )])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn table(minor: u64) -> Result<Version, String> {
        Defaults::load(&crate::playbook::Playbooks::Embedded, &format!("1.{minor}"))
            .map(|d| d.latest_patch)
    }

    fn cluster_at(version: &str) -> Observed {
        Observed {
            control_planes: ["master-1", "master-2"]
                .iter()
                .map(|m| (m.to_string(), v(version)))
                .collect(),
            kubelets: ["master-1", "master-2", "worker-1"]
                .iter()
                .map(|m| (m.to_string(), v(version)))
                .collect(),
            ..Observed::default()
        }
    }

    #[test]
    fn a_jump_of_two_minors_is_a_chain_through_the_middle_minors_latest_patch() {
        let chain = decide(&v("1.37.1"), &cluster_at("1.35.3"), table).unwrap();
        assert_eq!(chain, [v("1.36.2"), v("1.37.1")]);
    }

    #[test]
    fn the_next_minor_is_one_step_and_a_converged_cluster_one_idle_step() {
        assert_eq!(
            decide(&v("1.37.1"), &cluster_at("1.36.2"), table).unwrap(),
            [v("1.37.1")]
        );
        assert_eq!(
            decide(&v("1.37.1"), &cluster_at("1.37.1"), table).unwrap(),
            [v("1.37.1")]
        );
    }

    #[test]
    fn an_interrupted_upgrade_resumes_from_its_oldest_kubelet() {
        let mut o = cluster_at("1.37.1");
        o.kubelets[2].1 = v("1.36.2");
        assert_eq!(decide(&v("1.37.1"), &o, table).unwrap(), [v("1.37.1")]);
        // Stopped in the 1.36 step of 1.35 → 1.37: control plane at 1.36, a worker still at 1.35.
        let mut o = cluster_at("1.36.2");
        o.kubelets[2].1 = v("1.35.3");
        assert_eq!(
            decide(&v("1.37.1"), &o, table).unwrap(),
            [v("1.36.2"), v("1.37.1")]
        );
    }

    #[test]
    fn a_downgrade_is_refused_naming_the_host() {
        let why = decide(&v("1.36.1"), &cluster_at("1.36.2"), table).unwrap_err();
        assert!(
            why.iter().any(|w| w.starts_with(
                "master-1 runs 1.36.2, newer than --to 1.36.1: downgrades are not supported"
            )),
            "{why:?}"
        );
    }

    #[test]
    fn a_kubelet_newer_than_the_api_server_is_refused() {
        let mut o = cluster_at("1.36.2");
        o.kubelets[2].1 = v("1.37.1");
        let why = decide(&v("1.37.1"), &o, table).unwrap_err();
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].contains(
                "the kubelet on worker-1 (1.37.1) is newer than the API server on master-1 (1.36.2)"
            ),
            "{why:?}"
        );
    }

    #[test]
    fn unreachable_hosts_unready_nodes_and_sick_etcd_are_all_refused_at_once() {
        let mut o = cluster_at("1.36.2");
        o.unreachable
            .push(("master-3".into(), "connection refused".into()));
        o.not_ready.push("worker-1".into());
        o.etcd = Some("master-1 reports it unhealthy".into());
        let why = decide(&v("1.37.1"), &o, table).unwrap_err();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].starts_with("master-3 does not answer"));
        assert!(why.iter().any(|w| w.starts_with("etcd is not healthy")));
        assert!(
            why.iter()
                .any(|w| w.starts_with("node worker-1 is not Ready"))
        );
    }

    #[test]
    fn targets_outside_the_supported_minors_are_refused() {
        assert!(
            parse_target("1.38.0")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            parse_target("latest")
                .unwrap_err()
                .contains("not a Kubernetes version")
        );
        assert_eq!(parse_target("v1.37.1").unwrap(), v("1.37.1"));
    }
}
