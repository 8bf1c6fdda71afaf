//! kubelet and kubectl to the step's version, node by node: masters one at a time, then
//! workers in batches of `--max-unavailable`. Per node: `kubeadm upgrade node` on a worker (its
//! kubelet configuration), drain (PodDisruptionBudgets respected, with a timeout), packages
//! upgraded and held, kubelet restarted, wait until the API reports the node Ready at the new
//! version, uncordon. A node is marked while drained, so a re-run after an interruption
//! uncordons it even when its kubelet is already upgraded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use semver::Version;
use serde_json::{Value, json};

use super::api_backend;
use super::join_masters::run_playbook;
use super::upgrade_preflight::{parse, read_versions};
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::{Ctx, kube, kubeadm_config};
use crate::inventory::Host;

/// The annotation a drained node carries until the upgrade uncordons it.
const MARK: &str = "installer/upgrade";
const READY_TIMEOUT: Duration = Duration::from_secs(300);

pub struct UpgradeKubelets {
    pub version: Version,
    pub max_unavailable: usize,
    pub drain_timeout: u64,
}

/// What the API says of a node.
#[derive(Debug, Clone, Default, PartialEq)]
struct NodeView {
    kubelet: String,
    ready: bool,
    marked: bool,
}

async fn node_views(ctx: &Ctx, leader: &Host) -> Result<BTreeMap<String, NodeView>, String> {
    let out = kube::kubectl(ctx, leader, &["get", "nodes", "-o", "json"]).await?;
    let doc: Value = serde_json::from_str(&out)
        .map_err(|e| format!("unexpected `kubectl get nodes` output: {e}"))?;
    Ok(doc["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ready = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let view = NodeView {
                kubelet: n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ready,
                marked: n["metadata"]["annotations"].get(MARK).is_some(),
            };
            (name, view)
        })
        .collect())
}

/// Masters one at a time (in inventory order), then workers in batches of `max_unavailable`.
fn batches(hosts: &[Host], max_unavailable: usize) -> Vec<Vec<Host>> {
    let mut out: Vec<Vec<Host>> = hosts
        .iter()
        .filter(|h| h.is_master())
        .map(|h| vec![h.clone()])
        .collect();
    let workers: Vec<Host> = hosts.iter().filter(|h| !h.is_master()).cloned().collect();
    out.extend(workers.chunks(max_unavailable.max(1)).map(<[Host]>::to_vec));
    out
}

impl UpgradeKubelets {
    fn done(&self, binary: Option<&str>, view: Option<&NodeView>) -> bool {
        binary.and_then(parse).as_ref() == Some(&self.version)
            && view.is_some_and(|n| {
                parse(&n.kubelet).as_ref() == Some(&self.version) && n.ready && !n.marked
            })
    }

    async fn pending(&self, ctx: &Ctx, leader: &Host) -> Result<Vec<(Host, String)>, String> {
        let hosts: Vec<&Host> = ctx.usable(|_| true).collect();
        let versions = read_versions(ctx, &hosts).await?;
        let views = node_views(ctx, leader).await?;
        Ok(hosts
            .into_iter()
            .filter_map(|h| {
                let binary = versions.get(&h.name).map(|v| v.kubelet.as_str());
                let view = views.get(&h.name);
                if self.done(binary, view) {
                    return None;
                }
                let why = match view {
                    Some(n) if n.marked => {
                        format!("kubelet {}, left drained by an earlier run", n.kubelet)
                    }
                    Some(n) => format!("kubelet {}", n.kubelet),
                    None => "not registered".into(),
                };
                Some((h.clone(), why))
            })
            .collect())
    }

    async fn upgrade_batch(
        &self,
        ctx: &mut Ctx,
        leader: &Host,
        batch: &[Host],
    ) -> Result<(), String> {
        let vars = json!({
            "drain_timeout": self.drain_timeout,
            "ignore_preflight": kubeadm_config::ignore_preflight(ctx),
        });
        let workers: Vec<&Host> = batch.iter().filter(|h| !h.is_master()).collect();
        if !workers.is_empty() {
            let targets = ctx.targets(&workers, &vars);
            ctx.apply("upgrade/node", targets).await?;
        }
        for node in batch {
            let vars = json!({"node": node.name, "drain_timeout": self.drain_timeout});
            run_playbook(ctx, "upgrade/drain", leader, &vars)
                .await
                .map_err(|m| format!("draining {}: {m}; the node stays cordoned: look at what blocks the drain (a PodDisruptionBudget?), then run the upgrade again", node.name))?;
        }
        // Should the kubelet's restart take the master's static pods down with it (the lab's
        // kubelet does), no client of the VIP meets them restarting.
        let masters: Vec<&Host> = batch.iter().filter(|h| h.is_master()).collect();
        for master in &masters {
            api_backend::drain(ctx, master).await?;
        }
        let refs: Vec<&Host> = batch.iter().collect();
        let targets = ctx.targets(&refs, &vars);
        ctx.apply("upgrade/kubelet", targets).await?;
        self.wait_ready(ctx, leader, batch).await?;
        if !masters.is_empty() {
            api_backend::restore(ctx).await?;
        }
        for node in batch {
            run_playbook(ctx, "upgrade/uncordon", leader, &json!({"node": node.name})).await?;
            ctx.reporter.host_info(
                &node.name,
                format!("kubelet {} Ready, uncordoned", self.version),
            );
        }
        Ok(())
    }

    async fn wait_ready(&self, ctx: &Ctx, leader: &Host, batch: &[Host]) -> Result<(), String> {
        let started = Instant::now();
        let want = self.version.clone();
        loop {
            let views = node_views(ctx, leader).await.unwrap_or_default();
            let late: Vec<String> = batch
                .iter()
                .filter(|h| {
                    !views
                        .get(&h.name)
                        .is_some_and(|n| n.ready && parse(&n.kubelet).as_ref() == Some(&want))
                })
                .map(|h| h.name.clone())
                .collect();
            if late.is_empty() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{} not Ready at kubelet v{want} after {}s: look at `journalctl -u kubelet` there, then run the upgrade again",
                    late.join(", "),
                    READY_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

impl Phase for UpgradeKubelets {
    fn title(&self) -> &'static str {
        "Upgrade the kubelets"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let leader = ctx.leader().map_err(err)?;
            let pending: Vec<Host> = self
                .pending(ctx, &leader)
                .await
                .map_err(err)?
                .into_iter()
                .map(|(h, _)| h)
                .collect();
            for batch in batches(&pending, self.max_unavailable) {
                self.upgrade_batch(ctx, &leader, &batch)
                    .await
                    .map_err(err)?;
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let leader = ctx.leader().map_err(err)?;
            let pending = self.pending(ctx, &leader).await.map_err(err)?;
            let hosts: Vec<Host> = ctx.usable(|_| true).cloned().collect();
            let order = batches(&hosts, self.max_unavailable);
            let step = format!(
                "drain, kubelet and kubectl {} (held), restart kubelet, uncordon",
                self.version
            );
            let mut steps = Vec::new();
            for (i, batch) in order.iter().enumerate() {
                for h in batch {
                    let text = format!("batch {}: {step}", i + 1);
                    steps.push(match pending.iter().find(|(p, _)| p.name == h.name) {
                        Some((_, why)) => {
                            PlannedStep::change(self.title(), &h.name, format!("{text}; {why}"))
                        }
                        None => PlannedStep::skip(
                            self.title(),
                            &h.name,
                            text,
                            format!("kubelet at v{}, Ready", self.version),
                        ),
                    });
                }
            }
            Ok(steps)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<Host> {
        let text = "apiVersion: installer/v1\nkind: Inventory\ncluster: {name: c, kubernetes: 1.36.2, controlPlane: {vip: 10.0.0.100}}\nssh: {knownHosts: /tmp/kh}\nhosts:\n  - {name: w1, address: 10.0.0.21, roles: [worker]}\n  - {name: m1, address: 10.0.0.11, roles: [master]}\n  - {name: m2, address: 10.0.0.12, roles: [master]}\n  - {name: w2, address: 10.0.0.22, roles: [worker]}\n  - {name: w3, address: 10.0.0.23, roles: [worker]}\n";
        crate::inventory::parse(std::path::Path::new("/x/h.yaml"), text)
            .unwrap()
            .inventory
            .hosts
    }

    fn names(b: &[Vec<Host>]) -> Vec<Vec<&str>> {
        b.iter()
            .map(|b| b.iter().map(|h| h.name.as_str()).collect())
            .collect()
    }

    #[test]
    fn masters_go_one_at_a_time_before_workers_in_batches() {
        let hosts = hosts();
        assert_eq!(
            names(&batches(&hosts, 2)),
            [vec!["m1"], vec!["m2"], vec!["w1", "w2"], vec!["w3"]]
        );
        assert_eq!(names(&batches(&hosts, 0)).len(), 5, "0 means one at a time");
    }

    #[test]
    fn a_node_is_done_only_upgraded_ready_and_uncordoned_by_us() {
        let phase = UpgradeKubelets {
            version: Version::parse("1.37.1").unwrap(),
            max_unavailable: 1,
            drain_timeout: 60,
        };
        let view = |kubelet: &str, ready, marked| NodeView {
            kubelet: kubelet.into(),
            ready,
            marked,
        };
        assert!(phase.done(Some("v1.37.1"), Some(&view("v1.37.1", true, false))));
        assert!(
            !phase.done(Some("v1.37.1"), Some(&view("v1.37.1", true, true))),
            "left drained"
        );
        assert!(
            !phase.done(Some("v1.37.1"), Some(&view("v1.36.2", true, false))),
            "not restarted"
        );
        assert!(!phase.done(Some("v1.36.2"), Some(&view("v1.36.2", true, false))));
        assert!(!phase.done(Some("v1.37.1"), None));
    }
}
