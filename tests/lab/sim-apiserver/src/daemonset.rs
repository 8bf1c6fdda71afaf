//! The DaemonSet controller's decisions as a pure function of the DaemonSet, the nodes and the
//! pods it owns (pkg/controller/daemon: `manage`/`podsShouldBeOnNode`, `rollingUpdate` in
//! update.go, `updateDaemonSetStatus`). `controllers.rs` lists, calls [`plan`] and writes.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::obj;
use crate::sched;
use crate::special::{int_or_percent, pod_available, pod_ready};

/// The label the controller stamps on its pods with the template's hash
/// (`apps.DefaultDaemonSetUniqueLabelKey`).
pub const HASH_LABEL: &str = "controller-revision-hash";

/// What one pass does for one DaemonSet.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create_on: Vec<String>,
    /// Pods to delete, with why (for the log).
    pub delete: Vec<(String, String)>,
    /// The DaemonSet's new status.
    pub status: Value,
}

/// The template spec the controller's pods get: the DaemonSet's own tolerations plus the
/// ones it always adds (`AddOrUpdateDaemonPodTolerations`).
pub fn pod_spec(ds: &Value) -> Value {
    let mut spec = ds["spec"]["template"]["spec"].clone();
    spec["tolerations"] = json!(sched::daemonset_tolerations(&spec));
    spec
}

/// The node a daemon pod is meant for: its nodeName once bound, else the node its
/// `matchFields` affinity pins it to (`GetTargetNodeName`).
pub fn target_node(p: &Value) -> String {
    p["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
}

fn alive(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
}

fn created(p: &Value) -> String {
    p["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// One pass of the controller for `ds`, whose template hashes to `hash`, over `nodes` and
/// the live pods it owns.
pub fn plan(ds: &Value, hash: &str, nodes: &[Value], pods: &[&Value], now: OffsetDateTime) -> Plan {
    let spec = pod_spec(ds);
    let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let mut by_node: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for p in pods.iter().filter(|p| alive(p)) {
        by_node.entry(target_node(p)).or_default().push(p);
    }
    for list in by_node.values_mut() {
        // Oldest first, as `podByCreationTimestampAndPhase` orders them.
        list.sort_by_key(|p| (created(p), obj::name(p).to_owned()));
    }
    let mut plan = Plan::default();
    let (mut desired, mut current, mut ready, mut available, mut updated, mut misscheduled) =
        (0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
    // Rolling update bookkeeping: nodes that should run the pod but have no available one,
    // and old-revision pods that are available (deleted only within maxUnavailable).
    let mut unavailable_nodes = 0i64;
    let mut old_available: Vec<&Value> = Vec::new();
    let rolling = ds["spec"]["updateStrategy"]["type"].as_str() != Some("OnDelete");
    let empty = Vec::new();
    for node in nodes {
        let name = obj::name(node);
        let (should_run, should_continue) = sched::daemon_should_run(&spec, node);
        let on_node = by_node.get(name).unwrap_or(&empty);
        // manage / podsShouldBeOnNode
        if should_run && on_node.is_empty() {
            plan.create_on.push(name.to_owned());
        }
        let mut keep: Vec<&Value> = Vec::new();
        if should_continue {
            for p in on_node {
                if p["status"]["phase"] == "Failed" {
                    plan.delete
                        .push((obj::name(p).to_owned(), format!("failed on node {name}")));
                } else {
                    keep.push(p);
                }
            }
            // More than one pod on a node: all but the oldest go.
            for p in keep.iter().skip(1) {
                plan.delete.push((
                    obj::name(p).to_owned(),
                    format!("a second daemon pod on node {name}"),
                ));
            }
            keep.truncate(1);
        } else {
            for p in on_node {
                plan.delete.push((
                    obj::name(p).to_owned(),
                    format!("node {name} no longer runs this DaemonSet"),
                ));
            }
        }
        // updateDaemonSetStatus
        if should_run {
            desired += 1;
            if let Some(p) = on_node.first() {
                current += 1;
                if pod_ready(p) {
                    ready += 1;
                }
                let is_available = pod_available(p, min_ready, now);
                if is_available {
                    available += 1;
                }
                let is_updated =
                    obj::labels(p).get(HASH_LABEL).and_then(Value::as_str) == Some(hash);
                if is_updated {
                    updated += 1;
                }
                if rolling && !is_updated && keep.first().is_some_and(|k| std::ptr::eq(*k, *p)) {
                    if is_available {
                        old_available.push(p);
                    } else {
                        // An old pod that is not available anyway is replaced at once.
                        plan.delete.push((
                            obj::name(p).to_owned(),
                            format!("outdated and unavailable on node {name}"),
                        ));
                    }
                }
                if !is_available {
                    unavailable_nodes += 1;
                }
            } else {
                unavailable_nodes += 1;
            }
        } else if !on_node.is_empty() {
            misscheduled += 1;
        }
    }
    if rolling {
        // maxUnavailable: an int or a percentage of the desired pods rounded up; default 1.
        let max_unavailable = int_or_percent(
            &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            desired,
            true,
        )
        .unwrap_or(1);
        let budget = (max_unavailable - unavailable_nodes).max(0) as usize;
        for p in old_available.into_iter().take(budget) {
            plan.delete.push((
                obj::name(p).to_owned(),
                format!("outdated (rolling update) on node {}", target_node(p)),
            ));
        }
    }
    plan.status = json!({
        "currentNumberScheduled": current,
        "desiredNumberScheduled": desired,
        "numberAvailable": available,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberUnavailable": (desired - available).max(0),
        "observedGeneration": ds["metadata"]["generation"],
        "updatedNumberScheduled": updated,
    });
    plan
}

/// A new daemon pod's template for `node`: the DaemonSet's template with its tolerations, the
/// node pinned by `matchFields` affinity (the scheduler binds it), and the revision labels.
pub fn pod_template(ds: &Value, hash: &str, node: &str) -> Value {
    let mut template = ds["spec"]["template"].clone();
    template["spec"] = pod_spec(ds);
    template["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    template["metadata"]["labels"]["pod-template-generation"] = json!(
        ds["metadata"]["generation"]
            .as_i64()
            .unwrap_or(1)
            .to_string()
    );
    template
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(extra: Value) -> Value {
        let mut d = json!({"metadata": {"name": "weave-net", "namespace": "kube-system", "generation": 2},
            "spec": {"minReadySeconds": 5, "selector": {"matchLabels": {"name": "weave-net"}},
                "template": {"metadata": {"labels": {"name": "weave-net"}},
                    "spec": {"hostNetwork": true, "containers": [{"name": "weave", "image": "w"}],
                        "tolerations": [{"effect": "NoSchedule", "operator": "Exists"}, {"effect": "NoExecute", "operator": "Exists"}]}}}});
        if let (Some(d), Some(e)) = (d["spec"].as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        d
    }

    fn node(name: &str, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/os": "linux"}}, "spec": {"taints": taints}})
    }

    fn nodes() -> Vec<Value> {
        vec![
            node(
                "master-1",
                json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                       {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
            ),
            node("worker-1", json!([])),
            node("worker-2", json!([])),
        ]
    }

    fn t(s: &str) -> OffsetDateTime {
        obj::parse_time(s).unwrap()
    }

    fn pod(name: &str, node: &str, hash: &str, ready_since: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {HASH_LABEL: hash}}, "spec": {"nodeName": node}, "status": {"phase": "Pending"}});
        if let Some(since) = ready_since {
            p["status"] = json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": since}]});
        }
        p
    }

    #[test]
    fn a_tolerate_everything_daemonset_covers_every_node_including_masters() {
        let plan = plan(
            &ds(json!({})),
            "h1",
            &nodes(),
            &[],
            t("2026-01-01T00:01:00Z"),
        );
        assert_eq!(plan.create_on, ["master-1", "worker-1", "worker-2"]);
        assert_eq!(plan.status["desiredNumberScheduled"], 3);
        assert_eq!(plan.status["currentNumberScheduled"], 0);
        assert_eq!(plan.status["numberUnavailable"], 3);
        assert_eq!(plan.status["observedGeneration"], 2);
    }

    #[test]
    fn a_daemonset_without_tolerations_skips_tainted_masters() {
        let mut d = ds(json!({}));
        d["spec"]["template"]["spec"]["tolerations"] = json!([]);
        let p = plan(&d, "h1", &nodes(), &[], t("2026-01-01T00:01:00Z"));
        assert_eq!(p.create_on, ["worker-1", "worker-2"]);
        assert_eq!(p.status["desiredNumberScheduled"], 2);
    }

    #[test]
    fn status_counts_ready_available_after_min_ready_seconds_and_updated() {
        let pods = [
            pod("a", "master-1", "h1", Some("2026-01-01T00:00:58Z")),
            pod("b", "worker-1", "h1", Some("2026-01-01T00:00:10Z")),
            pod("c", "worker-2", "h0", None),
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let p = plan(
            &ds(json!({})),
            "h1",
            &nodes(),
            &refs,
            t("2026-01-01T00:01:00Z"),
        );
        assert!(p.create_on.is_empty());
        assert_eq!(
            p.status,
            json!({"currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberAvailable": 1,
                "numberMisscheduled": 0, "numberReady": 2, "numberUnavailable": 2,
                "observedGeneration": 2, "updatedNumberScheduled": 2})
        );
        // The outdated pod is not available: replaced at once.
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.delete[0].0, "c");
    }

    #[test]
    fn rolling_update_replaces_available_old_pods_one_at_a_time() {
        let pods = [
            pod("a", "master-1", "h0", Some("2026-01-01T00:00:00Z")),
            pod("b", "worker-1", "h0", Some("2026-01-01T00:00:00Z")),
            pod("c", "worker-2", "h0", Some("2026-01-01T00:00:00Z")),
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let now = t("2026-01-01T00:01:00Z");
        let p = plan(&ds(json!({})), "h1", &nodes(), &refs, now);
        assert_eq!(p.delete.len(), 1, "{:?}", p.delete);
        assert_eq!(p.status["updatedNumberScheduled"], 0);
        // OnDelete leaves them alone.
        let p = plan(
            &ds(json!({"updateStrategy": {"type": "OnDelete"}})),
            "h1",
            &nodes(),
            &refs,
            now,
        );
        assert!(p.delete.is_empty());
        // maxUnavailable 2 (or 100%) lets more go at once.
        let d = ds(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}}),
        );
        assert_eq!(plan(&d, "h1", &nodes(), &refs, now).delete.len(), 3);
    }

    #[test]
    fn pods_on_nodes_that_must_not_run_them_are_removed_or_counted_misscheduled() {
        let mut d = ds(json!({}));
        d["spec"]["template"]["spec"]["tolerations"] = json!([]);
        let mut n = nodes();
        n.push(node(
            "worker-3",
            json!([{"key": "maintenance", "effect": "NoExecute"}]),
        ));
        let pods = [
            pod("m", "master-1", "h1", Some("2026-01-01T00:00:00Z")),
            pod("w3", "worker-3", "h1", Some("2026-01-01T00:00:00Z")),
            pod("w1", "worker-1", "h1", Some("2026-01-01T00:00:00Z")),
            pod("w1b", "worker-1", "h1", Some("2026-01-01T00:00:30Z")),
            pod("w2", "worker-2", "h1", Some("2026-01-01T00:00:00Z")),
        ];
        let mut pods = pods.to_vec();
        pods[3]["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:30Z");
        let refs: Vec<&Value> = pods.iter().collect();
        let p = plan(&d, "h1", &n, &refs, t("2026-01-01T00:01:00Z"));
        let deleted: Vec<&str> = p.delete.iter().map(|(n, _)| n.as_str()).collect();
        // NoSchedule on the master: the running pod may stay (misscheduled); NoExecute: evicted;
        // the younger duplicate goes.
        assert_eq!(deleted, ["w1b", "w3"]);
        assert_eq!(p.status["numberMisscheduled"], 2);
        assert_eq!(p.status["desiredNumberScheduled"], 2);
    }

    #[test]
    fn failed_pods_are_deleted_to_be_recreated() {
        let mut failed = pod("a", "worker-1", "h1", None);
        failed["status"]["phase"] = json!("Failed");
        let refs = [&failed];
        let p = plan(
            &ds(json!({})),
            "h1",
            &nodes(),
            &refs,
            t("2026-01-01T00:01:00Z"),
        );
        assert!(p.delete.iter().any(|(n, _)| n == "a"));
        assert_eq!(p.create_on, ["master-1", "worker-2"]);
    }

    #[test]
    fn new_pods_are_pinned_to_their_node_and_labelled_with_the_revision() {
        let t = pod_template(&ds(json!({})), "h1", "worker-1");
        assert_eq!(t["metadata"]["labels"][HASH_LABEL], "h1");
        assert_eq!(t["metadata"]["labels"]["pod-template-generation"], "2");
        assert_eq!(target_node(&json!({"spec": t["spec"]})), "worker-1");
        let tols = t["spec"]["tolerations"].as_array().unwrap();
        assert!(
            tols.iter()
                .any(|t| t["key"] == "node.kubernetes.io/network-unavailable")
        );
    }
}
