//! kube-scheduler simulation: binds pending pods to the least-loaded node that passes the
//! predicates in `sched`, or records why none fits (PodScheduled=False, Unschedulable).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::client::{CallError, Client, path};
use crate::obj;
use crate::sched::{self, Misfit};

/// The FailedScheduling message: `0/3 nodes are available: 1 node(s) had untolerated taint {...}, 2 node(s) ...`.
pub fn unschedulable_message(total: usize, misfits: &[Misfit]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in misfits {
        let d = m.describe();
        let d = d.replacen("node(s)", "", 1);
        *counts.entry(d).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(d, n)| format!("{n} node(s){d}"))
        .collect();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

/// Choose a node for the pod: the fitting node with the fewest pods (ties by name).
pub fn choose<'a>(
    pod: &Value,
    nodes: &'a [Value],
    load: &HashMap<String, usize>,
) -> Result<&'a Value, Vec<Misfit>> {
    let mut misfits = vec![];
    let mut best: Option<&Value> = None;
    for n in nodes {
        match sched::fits(&pod["spec"], n) {
            Ok(()) => {
                let better = match best {
                    None => true,
                    Some(b) => {
                        let (lb, ln) = (
                            load.get(obj::name(b)).copied().unwrap_or(0),
                            load.get(obj::name(n)).copied().unwrap_or(0),
                        );
                        ln < lb || (ln == lb && obj::name(n) < obj::name(b))
                    }
                };
                if better {
                    best = Some(n);
                }
            }
            Err(m) => misfits.push(m),
        }
    }
    best.ok_or(misfits)
}

pub async fn pass(c: &Client) -> Result<(), CallError> {
    let pods = c.list(&path("", "v1", "pods", None, None)).await?;
    let pending: Vec<&Value> = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"].as_str().unwrap_or("").is_empty())
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["spec"]["schedulerName"]
                .as_str()
                .unwrap_or("default-scheduler")
                == "default-scheduler"
        })
        .filter(|p| {
            p["spec"]["schedulingGates"]
                .as_array()
                .is_none_or(|g| g.is_empty())
        })
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let nodes = c.list(&path("", "v1", "nodes", None, None)).await?;
    let mut load: HashMap<String, usize> = HashMap::new();
    for p in &pods {
        if let Some(n) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            *load.entry(n.to_owned()).or_default() += 1;
        }
    }
    for pod in pending {
        let ns = obj::namespace(pod);
        let name = obj::name(pod);
        match choose(pod, &nodes, &load) {
            Ok(node) => {
                let n = obj::name(node).to_owned();
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": n}});
                match c
                    .create(
                        &format!("{}/binding", path("", "v1", "pods", Some(ns), Some(name))),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => {
                        let msg = format!("Successfully assigned {ns}/{name} to {n}");
                        c.event(pod, "Normal", "Scheduled", &msg, "default-scheduler")
                            .await;
                        eprintln!("{msg}");
                        *load.entry(n).or_default() += 1;
                    }
                    Err(e) if e.code == 409 || e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Err(misfits) => {
                let msg = unschedulable_message(nodes.len(), &misfits);
                let conds = pod["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if conds
                    .iter()
                    .any(|c| c["type"] == "PodScheduled" && c["message"] == msg.as_str())
                {
                    continue;
                }
                c.event(
                    pod,
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    "default-scheduler",
                )
                .await;
                let mut upd = pod.clone();
                let mut cs: Vec<Value> = conds
                    .into_iter()
                    .filter(|c| c["type"] != "PodScheduled")
                    .collect();
                cs.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastTransitionTime": obj::now()}));
                upd["status"]["conditions"] = json!(cs);
                match c
                    .update(
                        &format!("{}/status", path("", "v1", "pods", Some(ns), Some(name))),
                        &upd,
                    )
                    .await
                {
                    Ok(_)
                    | Err(CallError {
                        code: 409 | 404, ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_fitting_node_is_chosen() {
        let nodes = vec![
            json!({"metadata": {"name": "m1"}, "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
            json!({"metadata": {"name": "w1"}, "spec": {}}),
            json!({"metadata": {"name": "w2"}, "spec": {}}),
        ];
        let load = HashMap::from([("w1".to_string(), 3usize), ("w2".to_string(), 1usize)]);
        let pod = json!({"spec": {}});
        assert_eq!(obj::name(choose(&pod, &nodes, &load).unwrap()), "w2");
    }

    #[test]
    fn unschedulable_reasons_are_counted_like_the_scheduler() {
        let m = unschedulable_message(
            3,
            &[
                Misfit::Taint("node-role.kubernetes.io/control-plane: ".into()),
                Misfit::Affinity,
                Misfit::Affinity,
            ],
        );
        assert!(m.starts_with("0/3 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."), "{m}");
    }
}
