//! Subresources with their own semantics: pods/eviction (PodDisruptionBudgets), pods/binding
//! (the scheduler's write), serviceaccounts/token (TokenRequest).

use hyper::Response;
use serde_json::{Value, json};

use crate::api::parse_body;
use crate::errors::{ApiError, Cause};
use crate::obj::{self, LabelSelector};
use crate::server::{Body, Req, Server, Target, json_response};

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

pub fn pod_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Available as the workload controllers count it (k8s.io/kubectl podutils `IsPodAvailable`):
/// ready, and ready for at least `min_ready_seconds` (from the Ready condition's
/// lastTransitionTime).
pub fn pod_available(p: &Value, min_ready_seconds: i64, now: time::OffsetDateTime) -> bool {
    if !pod_ready(p) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let since = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(obj::parse_time);
    since.is_some_and(|t| t + time::Duration::seconds(min_ready_seconds) <= now)
}

/// Resolve an IntOrString field (`2` or `"50%"`) against `total`, rounding up or down.
pub fn int_or_percent(v: &Value, total: i64, round_up: bool) -> Option<i64> {
    resolve(v, total, round_up)
}

/// Resolve an IntOrString budget field (`2` or `"50%"`) against `total`.
fn resolve(v: &Value, total: i64, round_up: bool) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let pct: f64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    let x = pct * total as f64 / 100.0;
    Some(if round_up {
        x.ceil() as i64
    } else {
        x.floor() as i64
    })
}

/// How many more pods the budget lets go, given the pods it selects.
pub fn disruptions_allowed(pdb: &Value, selected: &[Value]) -> (i64, i64, i64) {
    let total = selected.len() as i64;
    let healthy = selected.iter().filter(|p| pod_ready(p)).count() as i64;
    let spec = &pdb["spec"];
    let desired = if !spec["minAvailable"].is_null() {
        resolve(&spec["minAvailable"], total, true).unwrap_or(total)
    } else if !spec["maxUnavailable"].is_null() {
        total - resolve(&spec["maxUnavailable"], total, true).unwrap_or(0)
    } else {
        total
    };
    ((healthy - desired).max(0), desired, healthy)
}

impl Server {
    pub(crate) async fn evict(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let body = parse_body(r)?;
        let name = t.name.clone().unwrap_or_default();
        if !body.is_null() && obj::name(&body) != name && !obj::name(&body).is_empty() {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object".to_string(),
            ));
        }
        let ns = t.ns.clone().unwrap_or_default();
        let (pod, _) = self
            .load(&t.rt, &t.version, Some(&ns), &name)
            .await?
            .ok_or_else(|| ApiError::not_found(&t.rt, &name))?;
        // Pods that are not ready (or already done) may always be evicted.
        if pod_ready(&pod) {
            let cat = self.catalog();
            if let Some(pdb_rt) = cat.find("policy", "v1", "poddisruptionbudgets") {
                let (pdbs, _) = self.list_all(pdb_rt, "v1", Some(&ns)).await?;
                let (pods, _) = self.list_all(&t.rt, &t.version, Some(&ns)).await?;
                for pdb in &pdbs {
                    let sel = LabelSelector::from_object(&pdb["spec"]["selector"]);
                    if !sel.matches(&obj::labels(&pod)) {
                        continue;
                    }
                    let selected: Vec<Value> = pods
                        .iter()
                        .filter(|p| sel.matches(&obj::labels(p)))
                        .cloned()
                        .collect();
                    let (allowed, desired, healthy) = disruptions_allowed(pdb, &selected);
                    if allowed < 1 {
                        let mut e = ApiError::new(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                        );
                        e.details = json!({"causes": [{"reason": "DisruptionBudget", "message": format!(
                            "The disruption budget {} needs {desired} healthy pods and has {healthy} currently", obj::name(pdb))}]});
                        return Err(e);
                    }
                }
            }
        }
        let mut tt = t.clone();
        tt.sub = None;
        self.delete_one(r, &tt, &name, &body["deleteOptions"])
            .await?;
        Ok(json_response(201, &success(201)))
    }

    pub(crate) async fn bind(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let body = parse_body(r)?;
        let name = t.name.clone().unwrap_or_default();
        let node = body["target"]["name"].as_str().unwrap_or("").to_owned();
        if node.is_empty() {
            return Err(ApiError::invalid(
                &t.rt,
                &name,
                vec![Cause::required("target.name")],
            ));
        }
        for _ in 0..5 {
            let (pod, rev) = self
                .load(&t.rt, &t.version, t.ns.as_deref(), &name)
                .await?
                .ok_or_else(|| ApiError::not_found(&t.rt, &name))?;
            if let Some(cur) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{cur}\""
                    ),
                ));
            }
            if pod["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"
                    ),
                ));
            }
            let mut new = pod.clone();
            new["spec"]["nodeName"] = json!(node);
            let mut conds = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            conds.retain(|c| c["type"] != "PodScheduled");
            conds.push(
                json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": obj::now()}),
            );
            new["status"]["conditions"] = json!(conds);
            let key = t.rt.key(t.ns.as_deref(), &name);
            let mut store = new.clone();
            obj::meta_mut(&mut store).remove("resourceVersion");
            let bytes = serde_json::to_vec(&store).unwrap_or_default();
            match self.cfg.etcd.update(&key, &bytes, rev).await {
                Ok(_) => return Ok(json_response(201, &success(201))),
                Err(crate::etcd::EtcdError::Conflict) => continue,
                Err(e) => return Err(crate::api::etcd_err(e)),
            }
        }
        Err(ApiError::conflict(&t.rt, &name))
    }

    pub(crate) async fn token(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let body = parse_body(r)?;
        let name = t.name.clone().unwrap_or_default();
        let ns = t.ns.clone().unwrap_or_default();
        let (sa, _) = self
            .load(&t.rt, &t.version, Some(&ns), &name)
            .await?
            .ok_or_else(|| ApiError::not_found(&t.rt, &name))?;
        let Some(signer) = &self.cfg.sa_signer else {
            return Err(ApiError::not_found_plain(
                "the server could not find the requested resource: --service-account-signing-key-file is not set",
            ));
        };
        let secs = body["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
        if secs < 600 {
            let tr = crate::catalog::ResourceType {
                kind: "TokenRequest".into(),
                group: "authentication.k8s.io".into(),
                ..t.rt.clone()
            };
            return Err(ApiError::invalid(
                &tr,
                &name,
                vec![Cause::invalid(
                    "spec.expirationSeconds",
                    &json!(secs),
                    "may not specify a duration less than 10 minutes",
                )],
            ));
        }
        let secs = secs.min(48 * 3600);
        let audiences: Vec<String> = body["spec"]["audiences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        let (token, exp) = signer
            .sign(&ns, &name, obj::uid(&sa), &audiences, secs)
            .map_err(|e| ApiError::internal(format!("failed to sign the token: {e}")))?;
        let exp_ts = time::OffsetDateTime::from_unix_timestamp(exp)
            .map(obj::format_time)
            .unwrap_or_default();
        let aud = if audiences.is_empty() {
            signer.audiences.clone()
        } else {
            audiences
        };
        Ok(json_response(
            201,
            &json!({
                "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
                "spec": {"audiences": aud, "expirationSeconds": secs, "boundObjectRef": body["spec"]["boundObjectRef"]},
                "status": {"token": token, "expirationTimestamp": exp_ts},
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool) -> Value {
        json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn available_means_ready_for_min_ready_seconds() {
        let p = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let at = |s: &str| obj::parse_time(s).unwrap();
        assert!(pod_available(&p, 0, at("2026-01-01T00:00:00Z")));
        assert!(!pod_available(&p, 5, at("2026-01-01T00:00:04Z")));
        assert!(pod_available(&p, 5, at("2026-01-01T00:00:05Z")));
        assert!(!pod_available(&pod(false), 0, at("2026-01-01T00:00:05Z")));
        // Ready without a transition time: not yet available when minReadySeconds counts.
        assert!(!pod_available(&pod(true), 5, at("2026-01-01T00:00:05Z")));
    }

    #[test]
    fn eviction_budget_blocks_when_min_available_would_be_violated() {
        let pdb = json!({"spec": {"minAvailable": 2}});
        assert_eq!(disruptions_allowed(&pdb, &[pod(true), pod(true)]).0, 0);
        assert_eq!(
            disruptions_allowed(&pdb, &[pod(true), pod(true), pod(true)]).0,
            1
        );
    }

    #[test]
    fn eviction_budget_percent_max_unavailable() {
        let pdb = json!({"spec": {"maxUnavailable": "50%"}});
        assert_eq!(
            disruptions_allowed(&pdb, &[pod(true), pod(true), pod(true), pod(true)]).0,
            2
        );
        assert_eq!(disruptions_allowed(&pdb, &[pod(true), pod(false)]).0, 0);
    }
}
