//! kubeadm's configuration files: rendered from playbooks/kubeadm/*.j2, then the inventory's
//! `cluster.kubeadm` documents are merged over them by kind (merged, not replaced).

use serde_json::{Value, json};

use super::Ctx;
use crate::inventory::{ControlPlane, Host};
use crate::playbook::Renderer;

/// Variables shared by the init and join configurations (and the phases that run them).
pub fn common_vars(ctx: &Ctx) -> Result<Value, String> {
    let cluster = &ctx.inventory.cluster;
    let token = ctx
        .token
        .as_ref()
        .ok_or("no bootstrap token yet (the PKI phase makes it)")?;
    let mut sans: Vec<String> = Vec::new();
    if let ControlPlane::Vip { vip, .. } = &cluster.control_plane {
        sans.push(vip.to_string());
    }
    if let ControlPlane::LoadBalancer { address, .. } = &cluster.control_plane {
        sans.push(address.clone());
    }
    for m in ctx.inventory.masters() {
        sans.push(m.address.to_string());
        sans.push(m.name.clone());
    }
    let master_taints = if cluster.schedulable_masters {
        json!([])
    } else {
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    };
    let ignore_preflight = ignore_preflight(ctx);
    use secrecy::ExposeSecret;
    Ok(json!({
        "ignore_preflight": ignore_preflight,
        "endpoint": cluster.control_plane.endpoint(),
        "cri_socket": cluster.runtime.cri_socket(),
        "token": token.to_secret_string().expose_secret(),
        "token_id": token.id(),
        "discovery_hash": ctx.discovery_hash,
        "master_taints": master_taints,
        "cert_sans": sans,
    }))
}

/// The kubeadm preflight checks the user's settings make us skip (init, join and upgrade).
pub fn ignore_preflight(ctx: &Ctx) -> Vec<&'static str> {
    // On cgroup v1 hosts kubeadm's SystemVerification fails for 1.35+; the user opted in by
    // telling the kubelet to accept v1 (failCgroupV1: false), so kubeadm is told too.
    let accepts_cgroup_v1 = ctx
        .kubeadm_setting("KubeletConfiguration", "failCgroupV1")
        .and_then(Value::as_bool)
        == Some(false);
    if accepts_cgroup_v1 {
        vec!["SystemVerification"]
    } else {
        vec![]
    }
}

/// The multi-document kubeadm.yaml for `kubeadm init` on `host`.
pub fn init_config(ctx: &Ctx, host: &Host, vars: &Value) -> Result<String, String> {
    render(ctx, host, vars, "kubeadm/init.yaml.j2")
}

/// The JoinConfiguration for `host`; `control_plane` adds the controlPlane section.
pub fn join_config(
    ctx: &Ctx,
    host: &Host,
    vars: &Value,
    control_plane: bool,
) -> Result<String, String> {
    let mut vars = vars.clone();
    vars["control_plane"] = json!(control_plane);
    render(ctx, host, &vars, "kubeadm/join.yaml.j2")
}

fn render(ctx: &Ctx, host: &Host, vars: &Value, template: &str) -> Result<String, String> {
    let source = ctx.playbooks.read(template).map_err(|e| e.to_string())?;
    let text = Renderer::new().render(template, &source, &ctx.host_context(host, vars))?;
    merge_overrides(&text, &ctx.inventory.cluster.kubeadm)
}

/// Deep-merges the user's documents (keyed by kind) over the rendered ones.
pub fn merge_overrides(
    text: &str,
    overrides: &std::collections::BTreeMap<String, Value>,
) -> Result<String, String> {
    let mut docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("generated kubeadm config: {e}"))?;
    for doc in &mut docs {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(extra) = overrides.get(&kind) {
            deep_merge(doc, extra);
        }
    }
    let parts: Result<Vec<String>, String> = docs
        .iter()
        .map(|d| serde_saphyr::to_string(d).map_err(|e| e.to_string()))
        .collect();
    Ok(parts?.join("---\n"))
}

/// Objects merge key by key. Lists of plain values (certSANs, ...) are united, keeping the
/// generated entries first: the user's SANs add to the VIP and masters, never replace them.
/// Lists of `{name, value}` entries (extraArgs, kubeletExtraArgs, extraVolumes) merge by name.
/// Other lists (taints, ...) are the user's to replace.
fn deep_merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (Value::Array(b), Value::Array(e)) if all_scalars(b) && all_scalars(e) => {
            for v in e {
                if !b.contains(v) {
                    b.push(v.clone());
                }
            }
        }
        (Value::Array(b), Value::Array(e)) if all_named(b) && all_named(e) => {
            for v in e {
                match b.iter_mut().find(|x| x.get("name") == v.get("name")) {
                    Some(same) => *same = v.clone(),
                    None => b.push(v.clone()),
                }
            }
        }
        (b, e) => *b = e.clone(),
    }
}

fn all_scalars(list: &[Value]) -> bool {
    list.iter().all(|v| !v.is_object() && !v.is_array())
}

fn all_named(list: &[Value]) -> bool {
    list.iter()
        .all(|v| v.get("name").is_some_and(Value::is_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_cert_sans_add_to_the_generated_ones_and_extra_args_merge_by_name() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  certSANs: [10.0.0.100, 10.0.0.11]\n  extraArgs:\n  - {name: audit-log-maxage, value: \"30\"}\n  - {name: profiling, value: \"false\"}\n";
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert(
            "ClusterConfiguration".to_string(),
            json!({"apiServer": {
                "certSANs": ["api.example.com", "10.0.0.100"],
                "extraArgs": [{"name": "audit-log-maxage", "value": "7"}, {"name": "v", "value": "2"}],
            }}),
        );
        let merged = merge_overrides(text, &overrides).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&merged).unwrap();
        assert_eq!(
            docs[0]["apiServer"]["certSANs"],
            json!(["10.0.0.100", "10.0.0.11", "api.example.com"]),
            "the VIP stays in the SANs"
        );
        assert_eq!(
            docs[0]["apiServer"]["extraArgs"],
            json!([
                {"name": "audit-log-maxage", "value": "7"},
                {"name": "profiling", "value": "false"},
                {"name": "v", "value": "2"},
            ])
        );
    }

    #[test]
    fn user_fields_merge_into_their_kind_without_replacing_it() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: 10.0.0.100:8443\napiServer:\n  certSANs: [10.0.0.100]\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n";
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert(
            "ClusterConfiguration".to_string(),
            json!({"apiServer": {"extraArgs": [{"name": "audit-log-maxage", "value": "7"}]}}),
        );
        overrides.insert("KubeletConfiguration".to_string(), json!({"maxPods": 200}));
        let merged = merge_overrides(text, &overrides).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&merged).unwrap();
        assert_eq!(
            docs[0]["controlPlaneEndpoint"], "10.0.0.100:8443",
            "generated fields stay"
        );
        assert_eq!(docs[0]["apiServer"]["certSANs"][0], "10.0.0.100");
        assert_eq!(
            docs[0]["apiServer"]["extraArgs"][0]["name"],
            "audit-log-maxage"
        );
        assert_eq!(docs[1]["maxPods"], 200);
        assert_eq!(docs[1]["cgroupDriver"], "systemd");
    }
}
