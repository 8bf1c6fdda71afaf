//! Scheduling predicates shared by the scheduler and the DaemonSet controller: nodeSelector,
//! required node affinity (matchExpressions and matchFields), taints and tolerations, cordon.

use serde_json::{Value, json};

use crate::obj;

/// Why a node does not fit, in the scheduler's words (used in FailedScheduling messages).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    Unschedulable,
    Affinity,
    Taint(String),
}

impl Misfit {
    pub fn describe(&self) -> String {
        match self {
            Misfit::Unschedulable => "node(s) were unschedulable".into(),
            Misfit::Affinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Misfit::Taint(t) => format!("node(s) had untolerated taint {{{t}}}"),
        }
    }
}

pub fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key = t["key"].as_str().unwrap_or("");
        let op = t["operator"].as_str().unwrap_or("Equal");
        let key_ok =
            (key.is_empty() && op == "Exists") || key == taint["key"].as_str().unwrap_or("");
        let value_ok = op == "Exists"
            || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
        effect_ok && key_ok && value_ok
    })
}

fn expr_matches(e: &Value, get: &dyn Fn(&str) -> Option<String>) -> bool {
    let key = e["key"].as_str().unwrap_or("");
    let vals: Vec<&str> = e["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let v = get(key);
    match e["operator"].as_str().unwrap_or("") {
        "In" => v.is_some_and(|v| vals.contains(&v.as_str())),
        "NotIn" => v.is_none_or(|v| !vals.contains(&v.as_str())),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), Some(bound)) = (
                v.and_then(|v| v.parse::<i64>().ok()),
                vals.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity.
pub fn affinity_matches(spec: &Value, node: &Value) -> bool {
    let labels = obj::labels(node);
    if let Some(sel) = spec["nodeSelector"].as_object()
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array();
    let Some(terms) = terms else { return true };
    let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_owned);
    let field = |k: &str| (k == "metadata.name").then(|| obj::name(node).to_owned());
    terms.iter().any(|t| {
        let exprs = t["matchExpressions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let fields = t["matchFields"].as_array().cloned().unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs.iter().all(|e| expr_matches(e, &label))
            && fields.iter().all(|e| expr_matches(e, &field))
    })
}

/// Whether the pod (spec) may be placed on the node, and if not, the first reason.
pub fn fits(spec: &Value, node: &Value) -> Result<(), Misfit> {
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    if node["spec"]["unschedulable"].as_bool() == Some(true)
        && !tolerates(
            &tolerations,
            &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
        )
    {
        return Err(Misfit::Unschedulable);
    }
    if !affinity_matches(spec, node) {
        return Err(Misfit::Affinity);
    }
    for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
        let effect = taint["effect"].as_str().unwrap_or("");
        if matches!(effect, "NoSchedule" | "NoExecute") && !tolerates(&tolerations, taint) {
            let key = taint["key"].as_str().unwrap_or("");
            let value = taint["value"].as_str().unwrap_or("");
            return Err(Misfit::Taint(format!("{key}: {value}")));
        }
    }
    Ok(())
}

/// The DaemonSet controller's view of one node (pkg/controller/daemon `NodeShouldRunDaemonPod`):
/// `(should_run, should_continue_running)` for a pod of this template spec, which must already
/// carry the DaemonSet tolerations ([`daemonset_tolerations`]). A node name in the template
/// and the required node affinity / nodeSelector decide both; an untolerated NoSchedule or
/// NoExecute taint stops new pods, and only an untolerated NoExecute taint evicts running
/// ones. Cordoning (`spec.unschedulable`) is not looked at: daemon pods tolerate it.
pub fn daemon_should_run(spec: &Value, node: &Value) -> (bool, bool) {
    if let Some(n) = spec["nodeName"].as_str().filter(|n| !n.is_empty())
        && n != obj::name(node)
    {
        return (false, false);
    }
    if !affinity_matches(spec, node) {
        return (false, false);
    }
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                effects.contains(&t["effect"].as_str().unwrap_or("")) && !tolerates(&tolerations, t)
            })
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

/// The tolerations the DaemonSet controller adds to its pods.
pub fn daemonset_tolerations(spec: &Value) -> Vec<Value> {
    let mut tols = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut add = |key: &str, effect: &str| {
        if !tols
            .iter()
            .any(|t| t["key"] == key && t["effect"] == effect)
        {
            tols.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if spec["hostNetwork"].as_bool() == Some(true) {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
    tols
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, taints: Value, unschedulable: bool) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints, "unschedulable": unschedulable}})
    }

    #[test]
    fn master_taint_repels_untolerated_pods() {
        let n = node(
            json!({}),
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            false,
        );
        assert_eq!(
            fits(&json!({}), &n),
            Err(Misfit::Taint(
                "node-role.kubernetes.io/control-plane: ".into()
            ))
        );
        let tol = json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]});
        assert_eq!(fits(&tol, &n), Ok(()));
    }

    #[test]
    fn cordoned_node_gets_no_pods_unless_tolerated() {
        let n = node(json!({}), json!([]), true);
        assert_eq!(fits(&json!({}), &n), Err(Misfit::Unschedulable));
        let ds = json!({"tolerations": daemonset_tolerations(&json!({}))});
        assert_eq!(fits(&ds, &n), Ok(()));
    }

    #[test]
    fn node_selector_and_affinity_are_honoured() {
        let n = node(json!({"disk": "ssd", "zone": "a"}), json!([]), false);
        assert!(fits(&json!({"nodeSelector": {"disk": "ssd"}}), &n).is_ok());
        assert_eq!(
            fits(&json!({"nodeSelector": {"disk": "hdd"}}), &n),
            Err(Misfit::Affinity)
        );
        let aff = |op: &str, vals: Value| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": op, "values": vals}]}]}}}})
        };
        assert!(fits(&aff("In", json!(["a", "b"])), &n).is_ok());
        assert!(fits(&aff("NotIn", json!(["a"])), &n).is_err());
        assert!(fits(&aff("Exists", json!([])), &n).is_ok());
        let by_name = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}});
        assert!(fits(&by_name, &n).is_err());
    }

    #[test]
    fn daemon_pods_follow_taints_selectors_and_node_names() {
        let master = node(
            json!({"kubernetes.io/os": "linux"}),
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            false,
        );
        let plain = json!({"containers": []});
        let spec = |s: &Value| {
            let mut s = s.clone();
            s["tolerations"] = json!(daemonset_tolerations(&s));
            s
        };
        // Not tolerated: no new pod, but a running one may stay (NoSchedule only).
        assert_eq!(daemon_should_run(&spec(&plain), &master), (false, true));
        // Weave's tolerations (`operator: Exists` per effect) cover the master.
        let weave = json!({"hostNetwork": true, "tolerations": [
            {"effect": "NoSchedule", "operator": "Exists"}, {"effect": "NoExecute", "operator": "Exists"}]});
        assert_eq!(daemon_should_run(&spec(&weave), &master), (true, true));
        // An untolerated NoExecute taint evicts.
        let gone = node(
            json!({}),
            json!([{"key": "maintenance", "effect": "NoExecute"}]),
            false,
        );
        assert_eq!(daemon_should_run(&spec(&plain), &gone), (false, false));
        // Cordoned nodes still run daemon pods; a node that does not match the selector does not.
        let cordoned = node(json!({"kubernetes.io/os": "linux"}), json!([]), true);
        let linux = json!({"nodeSelector": {"kubernetes.io/os": "linux"}});
        assert_eq!(daemon_should_run(&spec(&linux), &cordoned), (true, true));
        let windows = json!({"nodeSelector": {"kubernetes.io/os": "windows"}});
        assert_eq!(
            daemon_should_run(&spec(&windows), &cordoned),
            (false, false)
        );
        assert_eq!(
            daemon_should_run(&spec(&json!({"nodeName": "other"})), &cordoned),
            (false, false)
        );
        // The NotReady taint's NoSchedule half is not among the added tolerations.
        let not_ready = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            false,
        );
        assert_eq!(daemon_should_run(&spec(&plain), &not_ready), (false, true));
        assert_eq!(daemon_should_run(&spec(&weave), &not_ready), (true, true));
    }

    #[test]
    fn prefer_no_schedule_taints_do_not_block() {
        let n = node(
            json!({}),
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
            false,
        );
        assert!(fits(&json!({}), &n).is_ok());
    }
}
