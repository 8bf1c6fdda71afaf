//! The smoke test: a small Deployment (labels and selector, env, resources, liveness and
//! readiness probes, an emptyDir and a ConfigMap volume) must turn Ready on the workers and
//! nowhere else — the control-plane taint at work — and is removed afterwards, pass or fail.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::kube;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::join_masters::run_playbook;
use crate::inventory::{Host, TaintEffect};

const NAMESPACE: &str = "installer-smoke-test";
const MANIFEST: &str = "/etc/kubernetes/installer/smoke-test.yaml";
const SELECTOR: &str = "app.kubernetes.io/name=installer-smoke";
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// One replica per worker, up to this many: enough to see the pods spread.
const MAX_REPLICAS: usize = 3;

pub struct SmokeTest {
    /// `installer verify` always runs it; `up` only after a run that changed something, so a
    /// re-run with nothing to do stays quick and changes nothing.
    always: bool,
}

impl SmokeTest {
    pub const ON_DEMAND: SmokeTest = SmokeTest { always: true };
    pub const AFTER_CHANGES: SmokeTest = SmokeTest { always: false };
}

impl Phase for SmokeTest {
    fn title(&self) -> &'static str {
        "Smoke test"
    }

    fn should_run(&self, ctx: &Ctx) -> bool {
        self.always || ctx.reporter.changed_count() > 0
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let leader = ctx.leader().map_err(err)?;
            let schedulable = schedulable_workers(ctx.usable(|h| !h.is_master()));
            if schedulable.is_empty() {
                ctx.reporter.warn("smoke test skipped: no worker takes ordinary pods (none, or all tainted NoSchedule/NoExecute)");
                return Ok(());
            }
            // Pods start only on Ready nodes: without a CNI (Weave switched off and none of the
            // user's installed yet) no worker is Ready and the test cannot run.
            let nodes = kube::nodes(ctx, &leader).await.map_err(err)?;
            let workers: BTreeSet<String> = nodes
                .iter()
                .filter(|n| n.ready() && schedulable.contains(&n.metadata.name))
                .map(|n| n.metadata.name.clone())
                .collect();
            if workers.is_empty() {
                let why = "no worker is Ready (is a CNI installed? `kubectl describe node` names the condition)";
                if self.always {
                    return Err(err(format!("smoke test cannot run: {why}")));
                }
                ctx.reporter.warn(format!(
                    "smoke test skipped: {why}; run `installer verify` once the nodes are Ready"
                ));
                return Ok(());
            }
            let replicas = workers.len().min(MAX_REPLICAS);
            let vars = json!({
                "namespace": NAMESPACE,
                "manifest": MANIFEST,
                "replicas": replicas,
                "image": ctx.coredns_image(),
            });
            let outcome = match run_playbook(ctx, "smoke-test", &leader, &vars).await {
                Ok(()) => wait_and_judge(ctx, &leader, &schedulable, replicas).await,
                Err(e) => Err(e),
            };
            // Removed whatever happened: the test leaves nothing on the cluster.
            let removed = run_playbook(ctx, "smoke-test-remove", &leader, &vars).await;
            match (outcome, removed) {
                (Ok(nodes), Ok(())) => {
                    ctx.reporter.info(format!(
                        "smoke test passed: {replicas} pod(s) Ready on {} and none on a master; removed",
                        nodes.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                    Ok(())
                }
                (Ok(_), Err(e)) => Err(err(format!(
                    "the smoke test passed but its namespace {NAMESPACE} could not be removed: {e}; remove it with `kubectl delete namespace {NAMESPACE}`"
                ))),
                (Err(e), _) => Err(err(format!(
                    "{e}; the test workload was removed, `installer verify` runs the test again"
                ))),
            }
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let step = "deploy a test workload, check it is Ready on workers only, remove it";
            Ok(vec![if self.should_run(ctx) {
                PlannedStep::change(self.title(), "-", step)
            } else {
                PlannedStep::skip(
                    self.title(),
                    "-",
                    step,
                    "only after a run that changed something; `installer verify` runs it",
                )
            }])
        })
    }
}

/// The workers that take ordinary pods: none of the inventory's taints keeps them away.
fn schedulable_workers<'a>(workers: impl Iterator<Item = &'a Host>) -> BTreeSet<String> {
    workers
        .filter(|h| {
            !h.taints
                .iter()
                .any(|t| matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute))
        })
        .map(|h| h.name.clone())
        .collect()
}

async fn wait_and_judge(
    ctx: &Ctx,
    leader: &Host,
    workers: &BTreeSet<String>,
    replicas: usize,
) -> Result<BTreeSet<String>, String> {
    let started = Instant::now();
    let args = ["-n", NAMESPACE, "get", "pods", "-l", SELECTOR, "-o", "json"];
    loop {
        let out = kube::kubectl(ctx, leader, &args).await?;
        let pods: PodList =
            serde_json::from_str(&out).map_err(|e| format!("unexpected pod list: {e}"))?;
        let verdict = judge(&pods.items, workers, replicas);
        match verdict {
            Verdict::Passed(nodes) => return Ok(nodes),
            Verdict::Failed(why) => return Err(why),
            Verdict::Waiting(why) if started.elapsed() > READY_TIMEOUT => {
                return Err(format!(
                    "the smoke test's pods were not Ready after {}s: {why}",
                    READY_TIMEOUT.as_secs()
                ));
            }
            Verdict::Waiting(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

#[derive(Debug, Deserialize)]
struct PodList {
    items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    metadata: kube::Meta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    phase: String,
    #[serde(default)]
    conditions: Vec<PodCondition>,
}

#[derive(Debug, Deserialize)]
struct PodCondition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl Pod {
    fn ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status == "True")
    }

    /// Why it is not Ready: the first false condition's reason and message, else its phase.
    fn why_not(&self) -> String {
        let name = &self.metadata.name;
        match self.status.conditions.iter().find(|c| c.status != "True") {
            Some(c) => format!(
                "{name}: {} {}",
                c.reason.as_deref().unwrap_or(&c.kind),
                c.message.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_string(),
            None => format!("{name}: {}", self.status.phase),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Every replica Ready on a worker: the nodes they run on.
    Passed(BTreeSet<String>),
    /// Not there yet: why.
    Waiting(String),
    /// Will not get better by waiting: a pod on a node that must refuse it.
    Failed(String),
}

fn judge(pods: &[Pod], workers: &BTreeSet<String>, replicas: usize) -> Verdict {
    let misplaced: Vec<String> = pods
        .iter()
        .filter_map(|p| {
            let node = p.spec.node_name.as_deref()?;
            (!workers.contains(node)).then(|| format!("{} on {node}", p.metadata.name))
        })
        .collect();
    if !misplaced.is_empty() {
        return Verdict::Failed(format!(
            "smoke test pods were scheduled off the workers ({}): the control-plane taint is missing; `kubectl describe node` shows a node's taints",
            misplaced.join(", ")
        ));
    }
    let ready: Vec<&Pod> = pods.iter().filter(|p| p.ready()).collect();
    if ready.len() >= replicas {
        return Verdict::Passed(
            ready
                .iter()
                .filter_map(|p| p.spec.node_name.clone())
                .collect(),
        );
    }
    let waiting: Vec<String> = pods
        .iter()
        .filter(|p| !p.ready())
        .map(Pod::why_not)
        .collect();
    Verdict::Waiting(if waiting.is_empty() {
        format!("{} of {replicas} pod(s) created", pods.len())
    } else {
        waiting.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node},
            "status": {"phase": if ready { "Running" } else { "Pending" }, "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": if ready { "True" } else { "False" },
                 "reason": "ContainersNotReady", "message": "containers with unready status: [coredns]"}
            ]}
        }))
        .unwrap()
    }

    fn workers() -> BTreeSet<String> {
        ["worker-1", "worker-2"].map(String::from).into()
    }

    #[test]
    fn ready_pods_on_workers_pass_and_name_their_nodes() {
        let pods = [
            pod("a", Some("worker-1"), true),
            pod("b", Some("worker-2"), true),
        ];
        assert_eq!(judge(&pods, &workers(), 2), Verdict::Passed(workers()));
    }

    #[test]
    fn a_pod_on_a_master_fails_at_once_naming_it() {
        let pods = [
            pod("a", Some("worker-1"), true),
            pod("b", Some("master-1"), false),
        ];
        match judge(&pods, &workers(), 2) {
            Verdict::Failed(why) => {
                assert!(why.contains("b on master-1"), "{why}");
                assert!(why.contains("control-plane taint"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unready_or_missing_pods_wait_with_the_reason() {
        let pods = [pod("a", Some("worker-1"), true), pod("b", None, false)];
        match judge(&pods, &workers(), 2) {
            Verdict::Waiting(why) => assert!(why.contains("b: ContainersNotReady"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(&[], &workers(), 2),
            Verdict::Waiting(w) if w.contains("0 of 2")
        ));
    }

    #[test]
    fn tainted_workers_do_not_count_as_schedulable() {
        let text = "apiVersion: installer/v1
kind: Inventory
cluster: {name: smoke, kubernetes: 1.36.2, controlPlane: {vip: 10.0.0.100}}
ssh: {user: ops, knownHosts: /dev/null}
hosts:
  - {name: master-1, address: 10.0.0.11, roles: [master]}
  - {name: worker-1, address: 10.0.0.21, roles: [worker], taints: [\"dedicated=db:NoSchedule\"]}
  - {name: worker-2, address: 10.0.0.22, roles: [worker], taints: [\"spot=yes:PreferNoSchedule\"]}
";
        let loaded = crate::inventory::parse(std::path::Path::new("smoke.yaml"), text).unwrap();
        let hosts = &loaded.inventory.hosts;
        let names = schedulable_workers(hosts.iter().filter(|h| !h.is_master()));
        assert!(!names.contains("worker-1"), "{names:?}");
        assert!(names.contains("worker-2"), "{names:?}");
    }
}
