//! Defaulting and admission on create/update: what the real defaulters and admission plugins
//! (NamespaceLifecycle, ServiceAccount, Priority, DefaultTolerationSeconds) do that the tests rely on.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng;
use serde_json::{Value, json};

use crate::api::etcd_err;
use crate::auth::User;
use crate::catalog::ResourceType;
use crate::errors::{ApiError, Cause};
use crate::obj;
use crate::server::Server;

fn set_default(o: &mut Value, field: &str, v: Value) {
    if o.get(field).is_none_or(Value::is_null) {
        o[field] = v;
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs {
                let image = c["image"].as_str().unwrap_or("").to_owned();
                let tag = image
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .split_once(':')
                    .map(|(_, t)| t.to_owned());
                let policy = if tag.is_none() || tag.as_deref() == Some("latest") {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_default(c, "imagePullPolicy", json!(policy));
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
            }
        }
    }
}

fn default_workload(o: &mut Value, resource: &str) {
    let spec = &mut o["spec"];
    match resource {
        "deployments" => {
            set_default(spec, "replicas", json!(1));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
        }
        "replicasets" => set_default(spec, "replicas", json!(1)),
        "statefulsets" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
        }
        "daemonsets" => {
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
        }
        _ => {}
    }
    if spec["template"]["spec"].is_object() {
        default_pod_spec(&mut spec["template"]["spec"]);
    }
}

/// Parse `10.96.0.0/12`.
pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

fn in_cidr(ip: u32, (net, len): (u32, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    ip & mask == net & mask
}

async fn allocate_cluster_ip(server: &Server, requested: Option<&str>) -> Result<String, ApiError> {
    let Some(cidr) = server.cfg.service_cidr else {
        return Err(ApiError::internal("--service-cluster-ip-range is not set"));
    };
    let (kvs, _) = server
        .cfg
        .etcd
        .list("/registry/services/")
        .await
        .map_err(etcd_err)?;
    let used: HashSet<String> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_owned))
        .collect();
    if let Some(ip) = requested {
        let parsed: Option<Ipv4Addr> = ip.parse().ok();
        let field = "spec.clusterIPs";
        let Some(p) = parsed else {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("{field}: Invalid value: {ip:?}: must be a valid IP address"),
            ));
        };
        if !in_cidr(u32::from(p), cidr) {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "{field}: Invalid value: {ip:?}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                    Ipv4Addr::from(cidr.0),
                    cidr.1
                ),
            ));
        }
        if used.contains(ip) {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "{field}: Invalid value: []string{{{ip:?}}}: failed to allocate IP {ip}: provided IP is already allocated"
                ),
            ));
        }
        return Ok(ip.to_owned());
    }
    let size = 1u64 << (32 - cidr.1 as u32);
    let mut rng = rand::rng();
    for _ in 0..1000 {
        // Skip the network address, the first address (the kubernetes service) and broadcast.
        let off = rng.random_range(2..size.saturating_sub(1).max(3)) as u32;
        let ip = Ipv4Addr::from(cidr.0.wrapping_add(off)).to_string();
        if !used.contains(&ip) {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(
        "failed to allocate a serviceIP: range is full",
    ))
}

/// The first address of the service range: the `kubernetes` Service's ClusterIP.
pub fn first_service_ip(cidr: (u32, u8)) -> String {
    Ipv4Addr::from(cidr.0.wrapping_add(1)).to_string()
}

/// Defaulting that every create gets (before validation).
pub async fn default_on_create(
    server: &Server,
    rt: &ResourceType,
    o: &mut Value,
    user: &User,
) -> Result<(), ApiError> {
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "namespaces") => {
            let name = obj::name(o).to_owned();
            let m = obj::meta_mut(o);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
            set_default(o, "spec", json!({}));
            set_default(&mut o["spec"], "finalizers", json!(["kubernetes"]));
            o["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => {
            set_default(o, "spec", json!({}));
            default_pod_spec(&mut o["spec"]);
            let mirror = o["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
            let spec = &mut o["spec"];
            // Mirror pods get no service account (the ServiceAccount plugin skips them).
            if !mirror && spec["serviceAccountName"].as_str().unwrap_or("").is_empty() {
                spec["serviceAccountName"] = spec["serviceAccount"]
                    .as_str()
                    .map(|s| json!(s))
                    .unwrap_or(json!("default"));
            }
            if !spec["serviceAccountName"].is_null() {
                spec["serviceAccount"] = spec["serviceAccountName"].clone();
            }
            // DefaultTolerationSeconds admission.
            let mut tols = spec["tolerations"].as_array().cloned().unwrap_or_default();
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                if !tols
                    .iter()
                    .any(|t| t["key"] == key || (t["key"].is_null() && t["operator"] == "Exists"))
                {
                    tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                }
            }
            spec["tolerations"] = json!(tols);
            o["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("apps", r) => default_workload(o, r),
        ("", "nodes") => add_not_ready_taint(o),
        ("", "secrets") => {
            set_default(o, "type", json!("Opaque"));
            fold_string_data(o);
        }
        ("", "services") => {
            set_default(o, "spec", json!({}));
            let spec = &mut o["spec"];
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    let port = p["port"].clone();
                    set_default(p, "targetPort", port);
                }
            }
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            // The API server records who asked; whatever the client claimed is overwritten.
            let spec = &mut o["spec"];
            spec["username"] = json!(user.name);
            spec["groups"] = json!(user.groups);
            if !user.uid.is_empty() {
                spec["uid"] = json!(user.uid);
            }
            o["status"] = json!({});
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let names = o["spec"]["names"].clone();
            let mut accepted = names.clone();
            set_default(
                &mut accepted,
                "singular",
                json!(names["kind"].as_str().unwrap_or("").to_lowercase()),
            );
            set_default(
                &mut accepted,
                "listKind",
                json!(format!("{}List", names["kind"].as_str().unwrap_or(""))),
            );
            let now = obj::now();
            let stored: Vec<Value> = o["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["storage"] == true)
                .map(|v| v["name"].clone())
                .collect();
            o["status"] = json!({"acceptedNames": accepted, "storedVersions": stored, "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ]});
        }
        _ => {}
    }
    let _ = server;
    Ok(())
}

fn fold_string_data(o: &mut Value) {
    if let Some(sd) = o.get("stringData").and_then(Value::as_object).cloned() {
        if !o["data"].is_object() {
            o["data"] = json!({});
        }
        for (k, v) in sd {
            o["data"][k] = json!(B64.encode(v.as_str().unwrap_or("")));
        }
        if let Some(m) = o.as_object_mut() {
            m.remove("stringData");
        }
    }
}

/// Admission that needs other objects (after validation).
pub async fn admit_create(
    server: &Server,
    rt: &ResourceType,
    o: &mut Value,
) -> Result<(), ApiError> {
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "pods") => {
            let name = obj::name(o).to_owned();
            let ns = obj::namespace(o).to_owned();
            let mirror = o["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
            if mirror
                && !o["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty()
            {
                return Err(ApiError::forbidden(
                    rt,
                    &name,
                    "a mirror pod may not reference service accounts",
                ));
            }
            if !mirror {
                let sa = o["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned();
                let key = format!("/registry/serviceaccounts/{ns}/{sa}");
                if server.cfg.etcd.get(&key).await.map_err(etcd_err)?.is_none() {
                    return Err(ApiError::forbidden(
                        rt,
                        &name,
                        &format!(
                            "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
                        ),
                    ));
                }
            }
            let pc = o["spec"]["priorityClassName"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if !pc.is_empty() {
                let kv = server
                    .cfg
                    .etcd
                    .get(&format!("/registry/scheduling.k8s.io/priorityclasses/{pc}"))
                    .await
                    .map_err(etcd_err)?;
                let Some(kv) = kv else {
                    return Err(ApiError::forbidden(
                        rt,
                        &name,
                        &format!("no PriorityClass with name {pc} was found"),
                    ));
                };
                let p: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
                o["spec"]["priority"] = p["value"].clone();
            } else {
                set_default(&mut o["spec"], "priority", json!(0));
            }
        }
        ("", "services") => {
            let spec = o["spec"].clone();
            let ty = spec["type"].as_str().unwrap_or("ClusterIP");
            let ip = spec["clusterIP"].as_str().unwrap_or("");
            if ty != "ExternalName" && ip != "None" {
                let ip = allocate_cluster_ip(server, (!ip.is_empty()).then_some(ip)).await?;
                o["spec"]["clusterIP"] = json!(ip);
                o["spec"]["clusterIPs"] = json!([ip]);
                o["spec"]["ipFamilies"] = json!(["IPv4"]);
                o["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            }
            if matches!(ty, "NodePort" | "LoadBalancer") {
                let mut rng = rand::rng();
                if let Some(Value::Array(ports)) = o["spec"].get_mut("ports") {
                    for p in ports {
                        if p["nodePort"].is_null() {
                            p["nodePort"] = json!(rng.random_range(30000..=32767));
                        }
                    }
                }
            }
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            let v = o["value"].as_i64().unwrap_or(0);
            let name = obj::name(o).to_owned();
            if v > 1_000_000_000 && !name.starts_with("system-") {
                return Err(ApiError::invalid(
                    rt,
                    &name,
                    vec![Cause::forbidden(
                        "value",
                        "maximum allowed value of a user defined priority is 1000000000",
                    )],
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// TaintNodesByCondition (a default admission plugin, plugin/pkg/admission/nodetaint): a new
/// Node gets `node.kubernetes.io/not-ready:NoSchedule`, so nothing is scheduled there before
/// the node lifecycle controller has seen it Ready (and removed the taint).
pub fn add_not_ready_taint(node: &mut Value) {
    set_default(node, "spec", json!({}));
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if taints
        .iter()
        .any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoSchedule")
    {
        return;
    }
    let mut taints = taints;
    taints.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
    node["spec"]["taints"] = json!(taints);
}

/// Defaulting applied to updates too.
pub fn default_on_update(rt: &ResourceType, old: &Value, new: &mut Value) {
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "secrets") => fold_string_data(new),
        ("", "services")
            if new["spec"]["clusterIP"].as_str().unwrap_or("").is_empty()
                && old["spec"]["clusterIP"].is_string() =>
        {
            new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
        ("", "pods") if new["spec"]["tolerations"].is_null() => {
            new["spec"]["tolerations"] = old["spec"]["tolerations"].clone();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_nodes_are_tainted_not_ready() {
        let mut n = json!({"metadata": {"name": "w"}});
        add_not_ready_taint(&mut n);
        assert_eq!(
            n["spec"]["taints"],
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
        );
        let mut m = json!({"metadata": {"name": "m"}, "spec": {"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}});
        add_not_ready_taint(&mut m);
        add_not_ready_taint(&mut m);
        assert_eq!(m["spec"]["taints"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn kubernetes_service_ip_is_the_first_of_the_range() {
        assert_eq!(
            first_service_ip(parse_cidr("10.96.0.0/12").unwrap()),
            "10.96.0.1"
        );
        assert!(in_cidr(
            u32::from(Ipv4Addr::new(10, 100, 1, 1)),
            parse_cidr("10.96.0.0/12").unwrap()
        ));
        assert!(!in_cidr(
            u32::from(Ipv4Addr::new(10, 112, 0, 1)),
            parse_cidr("10.96.0.0/12").unwrap()
        ));
    }
}
