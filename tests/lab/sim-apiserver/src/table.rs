//! Server-side printing: meta.k8s.io/v1 Table answers for `kubectl get` (columns per kind).

use serde_json::{Value, json};

use crate::catalog::ResourceType;
use crate::obj;

/// kubectl's short human duration (`45s`, `3m20s`, `5h`, `12d`).
pub fn human_age(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{hh}h")
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age(o: &Value) -> Value {
    let ts = o["metadata"]["creationTimestamp"].as_str().unwrap_or("");
    if ts.is_empty() {
        json!("<unknown>")
    } else {
        json!(human_age(obj::age_seconds(ts)))
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_none(v: String) -> Value {
    if v.is_empty() {
        json!("<none>")
    } else {
        json!(v)
    }
}

fn len(v: &Value) -> usize {
    v.as_object()
        .map(|m| m.len())
        .or_else(|| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

fn condition<'a>(o: &'a Value, t: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

fn node_status(o: &Value) -> String {
    // Like the real printer: any Ready status but True (False, Unknown) prints NotReady.
    let ready = match condition(o, "Ready").and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    };
    let mut out = ready.to_owned();
    if o["spec"]["unschedulable"].as_bool() == Some(true) {
        out.push_str(",SchedulingDisabled");
    }
    out
}

fn node_roles(o: &Value) -> String {
    let mut roles: Vec<String> = obj::labels(o)
        .keys()
        .filter_map(|k| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_owned)
        })
        .filter(|r| !r.is_empty())
        .collect();
    if let Some(r) = obj::labels(o)
        .get("kubernetes.io/role")
        .and_then(Value::as_str)
    {
        roles.push(r.to_owned());
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_address(o: &Value, t: &str) -> String {
    o["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == t))
        .map(|x| s(&x["address"]))
        .unwrap_or_default()
}

fn pod_row(o: &Value) -> Vec<Value> {
    let statuses = o["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = o["spec"]["containers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let ready = statuses
        .iter()
        .filter(|c| c["ready"].as_bool() == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    let mut status = o["status"]["reason"]
        .as_str()
        .or(o["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_owned();
    for c in &statuses {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            status = r.to_owned();
        }
    }
    if o["metadata"]["deletionTimestamp"].is_string() {
        status = "Terminating".into();
    }
    vec![
        json!(obj::name(o)),
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts),
        age(o),
        or_none(s(&o["status"]["podIP"])),
        or_none(s(&o["spec"]["nodeName"])),
        or_none(s(&o["status"]["nominatedNodeName"])),
        json!("<none>"),
    ]
}

fn containers_images(tpl: &Value) -> (String, String) {
    let cs = tpl["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<String> = cs.iter().map(|c| s(&c["image"])).collect();
    (names.join(","), images.join(","))
}

fn selector_str(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        parts.push(format!(
            "{} {} ({})",
            s(&e["key"]),
            s(&e["operator"]).to_lowercase(),
            e["values"]
                .as_array()
                .map(|v| v.iter().map(s).collect::<Vec<_>>().join(","))
                .unwrap_or_default()
        ));
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", s(&p["port"])),
                None => format!("{}/{proto}", s(&p["port"])),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

type Col = (&'static str, &'static str, i64);

fn columns(rt: &ResourceType) -> Vec<Col> {
    let name = ("Name", "string", 0);
    let age = ("Age", "string", 0);
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "nodes") => vec![
            name,
            ("Status", "string", 0),
            ("Roles", "string", 0),
            age,
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        ("", "pods") => vec![
            name,
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            age,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        ("", "namespaces") => vec![name, ("Status", "string", 0), age],
        ("", "services") => vec![
            name,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            age,
            ("Selector", "string", 1),
        ],
        ("", "configmaps") => vec![name, ("Data", "integer", 0), age],
        ("", "secrets") => vec![name, ("Type", "string", 0), ("Data", "integer", 0), age],
        ("", "serviceaccounts") => vec![name, ("Secrets", "integer", 0), age],
        ("", "events") => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        ("apps", "deployments") => vec![
            name,
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "replicasets") => vec![
            name,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "daemonsets") => vec![
            name,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "statefulsets") => vec![
            name,
            ("Ready", "string", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        ("certificates.k8s.io", _) => vec![
            name,
            age,
            ("SignerName", "string", 0),
            ("Requestor", "string", 0),
            ("RequestedDuration", "string", 0),
            ("Condition", "string", 0),
        ],
        ("coordination.k8s.io", "leases") => vec![name, ("Holder", "string", 0), age],
        ("storage.k8s.io", "storageclasses") => vec![
            name,
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            age,
        ],
        ("scheduling.k8s.io", _) => vec![
            name,
            ("Value", "integer", 0),
            ("Global-Default", "boolean", 0),
            age,
            ("PreemptionPolicy", "string", 0),
        ],
        ("apiextensions.k8s.io", _) => vec![name, ("Created At", "date", 0)],
        ("policy", "poddisruptionbudgets") => vec![
            name,
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            age,
        ],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            vec![name, ("Role", "string", 0), age]
        }
        ("rbac.authorization.k8s.io", _) => vec![name, ("Created At", "date", 0)],
        _ => vec![name, age],
    }
}

fn cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    let n = json!(obj::name(o));
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "nodes") => {
            let ni = &o["status"]["nodeInfo"];
            vec![
                n,
                json!(node_status(o)),
                json!(node_roles(o)),
                age(o),
                json!(s(&ni["kubeletVersion"])),
                or_none(node_address(o, "InternalIP")),
                or_none(node_address(o, "ExternalIP")),
                json!(s(&ni["osImage"])),
                json!(s(&ni["kernelVersion"])),
                json!(s(&ni["containerRuntimeVersion"])),
            ]
        }
        ("", "pods") => pod_row(o),
        ("", "namespaces") => vec![
            n,
            json!(o["status"]["phase"].as_str().unwrap_or("Active")),
            age(o),
        ],
        ("", "services") => {
            let ext = o["spec"]["externalIPs"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                n,
                json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                or_none(s(&o["spec"]["clusterIP"])),
                or_none(ext),
                json!(service_ports(o)),
                age(o),
                json!(
                    o["spec"]["selector"]
                        .as_object()
                        .map(|m| m
                            .iter()
                            .map(|(k, v)| format!("{k}={}", s(v)))
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_else(|| "<none>".into())
                ),
            ]
        }
        ("", "configmaps") => vec![n, json!(len(&o["data"]) + len(&o["binaryData"])), age(o)],
        ("", "secrets") => vec![
            n,
            json!(o["type"].as_str().unwrap_or("Opaque")),
            json!(len(&o["data"])),
            age(o),
        ],
        ("", "serviceaccounts") => vec![n, json!(len(&o["secrets"])), age(o)],
        ("", "events") => {
            let last = o["lastTimestamp"]
                .as_str()
                .or(o["eventTime"].as_str())
                .or(o["metadata"]["creationTimestamp"].as_str())
                .unwrap_or("");
            let io = &o["involvedObject"];
            vec![
                json!(human_age(obj::age_seconds(last))),
                json!(s(&o["type"])),
                json!(s(&o["reason"])),
                json!(format!(
                    "{}/{}",
                    s(&io["kind"]).to_lowercase(),
                    s(&io["name"])
                )),
                json!(s(&o["message"])),
            ]
        }
        ("apps", "deployments") => {
            let st = &o["status"];
            let (c, i) = containers_images(&o["spec"]["template"]);
            vec![
                n,
                json!(format!(
                    "{}/{}",
                    st["readyReplicas"].as_i64().unwrap_or(0),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                )),
                json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                age(o),
                json!(c),
                json!(i),
                json!(selector_str(&o["spec"]["selector"])),
            ]
        }
        ("apps", "replicasets") => {
            let st = &o["status"];
            let (c, i) = containers_images(&o["spec"]["template"]);
            vec![
                n,
                json!(o["spec"]["replicas"].as_i64().unwrap_or(1)),
                json!(st["replicas"].as_i64().unwrap_or(0)),
                json!(st["readyReplicas"].as_i64().unwrap_or(0)),
                age(o),
                json!(c),
                json!(i),
                json!(selector_str(&o["spec"]["selector"])),
            ]
        }
        ("apps", "daemonsets") => {
            let st = &o["status"];
            let g = |f: &str| json!(st[f].as_i64().unwrap_or(0));
            let (c, i) = containers_images(&o["spec"]["template"]);
            let ns = o["spec"]["template"]["spec"]["nodeSelector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", s(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                n,
                g("desiredNumberScheduled"),
                g("currentNumberScheduled"),
                g("numberReady"),
                g("updatedNumberScheduled"),
                g("numberAvailable"),
                or_none(ns),
                age(o),
                json!(c),
                json!(i),
                json!(selector_str(&o["spec"]["selector"])),
            ]
        }
        ("apps", "statefulsets") => {
            let (c, i) = containers_images(&o["spec"]["template"]);
            vec![
                n,
                json!(format!(
                    "{}/{}",
                    o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                )),
                age(o),
                json!(c),
                json!(i),
            ]
        }
        ("certificates.k8s.io", _) => {
            let conds: Vec<String> = o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| s(&c["type"]))
                .collect();
            let mut cond = if conds.is_empty() {
                "Pending".to_owned()
            } else {
                conds.join(",")
            };
            if o["status"]["certificate"].is_string() {
                cond.push_str(",Issued");
            }
            let dur = o["spec"]["expirationSeconds"]
                .as_i64()
                .map(human_age)
                .unwrap_or_else(|| "<none>".into());
            vec![
                n,
                age(o),
                json!(s(&o["spec"]["signerName"])),
                json!(s(&o["spec"]["username"])),
                json!(dur),
                json!(cond),
            ]
        }
        ("coordination.k8s.io", "leases") => {
            vec![n, or_none(s(&o["spec"]["holderIdentity"])), age(o)]
        }
        ("storage.k8s.io", "storageclasses") => {
            let default = obj::labels(o).is_empty()
                && o["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                    == "true";
            let name = if default {
                format!("{} (default)", obj::name(o))
            } else {
                obj::name(o).to_owned()
            };
            vec![
                json!(name),
                json!(s(&o["provisioner"])),
                json!(o["reclaimPolicy"].as_str().unwrap_or("Delete")),
                json!(o["volumeBindingMode"].as_str().unwrap_or("Immediate")),
                json!(
                    o["allowVolumeExpansion"]
                        .as_bool()
                        .unwrap_or(false)
                        .to_string()
                ),
                age(o),
            ]
        }
        ("scheduling.k8s.io", _) => vec![
            n,
            o["value"].clone(),
            json!(o["globalDefault"].as_bool().unwrap_or(false)),
            age(o),
            json!(
                o["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
            ),
        ],
        ("apiextensions.k8s.io", _) | ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
            vec![n, o["metadata"]["creationTimestamp"].clone()]
        }
        ("policy", "poddisruptionbudgets") => vec![
            n,
            or_none(s(&o["spec"]["minAvailable"])),
            or_none(s(&o["spec"]["maxUnavailable"])),
            json!(o["status"]["disruptionsAllowed"].as_i64().unwrap_or(0)),
            age(o),
        ],
        ("rbac.authorization.k8s.io", _) => vec![
            n,
            json!(format!(
                "{}/{}",
                s(&o["roleRef"]["kind"]),
                s(&o["roleRef"]["name"])
            )),
            age(o),
        ],
        _ => vec![n, age(o)],
    }
}

/// Evaluate the simple JSONPaths CRDs use in additionalPrinterColumns (`.status.phase`, `.spec.x[0].y`).
fn jsonpath(o: &Value, path: &str) -> Value {
    let mut cur = o.clone();
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (field, idx) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = cur[field].clone();
        if let Some(i) = idx {
            cur = cur[i].clone();
        }
    }
    cur
}

fn custom_columns(rt: &ResourceType, o: &Value) -> (Vec<Value>, Vec<Value>) {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let mut row = vec![json!(obj::name(o))];
    for c in &rt.printer_columns {
        let ty = c["type"].as_str().unwrap_or("string");
        defs.push(json!({"name": c["name"], "type": ty, "format": c["format"].as_str().unwrap_or(""),
            "description": c["description"].as_str().unwrap_or(""), "priority": c["priority"].as_i64().unwrap_or(0)}));
        let v = jsonpath(o, c["jsonPath"].as_str().unwrap_or(""));
        row.push(match (ty, &v) {
            ("date", Value::String(ts)) => json!(human_age(obj::age_seconds(ts))),
            (_, Value::Null) => Value::Null,
            _ => v.clone(),
        });
    }
    (defs, row)
}

/// A Table holding `objects`, as the API returns for `Accept: application/json;as=Table;...`.
pub fn table(rt: &ResourceType, objects: &[Value], resource_version: &str) -> Value {
    let mut defs: Vec<Value> = columns(rt)
        .into_iter()
        .map(|(n, t, p)| json!({"name": n, "type": t, "format": if n == "Name" { "name" } else { "" }, "description": "", "priority": p}))
        .collect();
    let custom = !rt.printer_columns.is_empty();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells = if custom {
                let (d, r) = custom_columns(rt, o);
                defs = d;
                r
            } else {
                cells(rt, o)
            };
            json!({"cells": cells, "object": o})
        })
        .collect();
    if custom && objects.is_empty() {
        defs = custom_columns(rt, &json!({})).0;
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn node_rows_carry_status_roles_and_version() {
        let c = Catalog::new(&[]);
        let rt = c.find("", "v1", "nodes").unwrap();
        let node = json!({"metadata": {"name": "m1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.36.2"}}});
        let t = table(rt, &[node], "5");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[4], "v1.36.2");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    }

    #[test]
    fn ages_are_printed_like_kubectl() {
        assert_eq!(human_age(42), "42s");
        assert_eq!(human_age(200), "3m20s");
        assert_eq!(human_age(3 * 3600), "3h");
        assert_eq!(human_age(3 * 86400), "3d");
    }
}
