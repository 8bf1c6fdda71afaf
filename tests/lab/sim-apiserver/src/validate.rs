//! Object validation on create and update, with the API's messages for the rules we enforce.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::catalog::ResourceType;
use crate::errors::Cause;
use crate::obj::LabelSelector;

const LABEL_RE: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const SUBDOMAIN_RE: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

static LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{LABEL_RE}$")).unwrap_or_else(|e| panic!("{e}")));
static SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{SUBDOMAIN_RE}$")).unwrap_or_else(|e| panic!("{e}")));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").unwrap_or_else(|e| panic!("{e}"))
});
static QUALIFIED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap_or_else(|e| panic!("{e}"))
});
static CONFIG_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-._a-zA-Z0-9]+$").unwrap_or_else(|e| panic!("{e}")));

/// RFC 1123 label (namespaces, services, container names).
pub fn dns_label(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    if !LABEL.is_match(s) {
        return Some(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{LABEL_RE}')"
        ));
    }
    None
}

/// RFC 1123 subdomain (most object names).
pub fn dns_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if !SUBDOMAIN.is_match(s) {
        return Some(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{SUBDOMAIN_RE}')"
        ));
    }
    None
}

/// Path-segment names (RBAC objects): anything but `.`/`..` and `/`/`%`.
fn path_segment(s: &str) -> Option<String> {
    if s == "." || s == ".." {
        return Some(format!("may not be '{s}'"));
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            return Some(format!("may not contain '{bad}'"));
        }
    }
    None
}

fn name_rule(rt: &ResourceType) -> fn(&str) -> Option<String> {
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "namespaces" | "services" | "replicationcontrollers") => dns_label,
        ("rbac.authorization.k8s.io", _) => path_segment,
        ("", "nodes") => dns_subdomain,
        _ => dns_subdomain,
    }
}

fn label_key(k: &str) -> Option<String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && let Some(e) = dns_subdomain(p)
    {
        return Some(format!("prefix part {e}"));
    }
    if name.is_empty() || name.len() > 63 || !QUALIFIED_NAME.is_match(name) {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    None
}

fn validate_meta(rt: &ResourceType, o: &Value, causes: &mut Vec<Cause>) {
    let name = o["metadata"]["name"].as_str().unwrap_or("");
    if name.is_empty() {
        causes.push(Cause::required_because(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if let Some(e) = name_rule(rt)(name) {
        causes.push(Cause::invalid(
            "metadata.name",
            &Value::String(name.into()),
            &e,
        ));
    }
    // The API caps the total size of annotations (what makes client-side apply of huge CRDs fail).
    const MAX_ANNOTATIONS: usize = 262144;
    let total: usize = o["metadata"]["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum()
        })
        .unwrap_or(0);
    if total > MAX_ANNOTATIONS {
        causes.push(Cause::too_long("metadata.annotations", MAX_ANNOTATIONS));
    }
    if let Some(labels) = o["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(e) = label_key(k) {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    &Value::String(k.clone()),
                    &e,
                ));
            }
            let vs = v.as_str().unwrap_or("");
            if vs.len() > 63 || !LABEL_VALUE.is_match(vs) || !v.is_string() {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ));
            }
        }
    }
}

fn validate_pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required(&format!("{path}.containers")));
        return;
    }
    for (i, c) in containers.into_iter().flatten().enumerate() {
        let cname = c["name"].as_str().unwrap_or("");
        if cname.is_empty() {
            causes.push(Cause::required(&format!("{path}.containers[{i}].name")));
        } else if let Some(e) = dns_label(cname) {
            causes.push(Cause::invalid(
                &format!("{path}.containers[{i}].name"),
                &c["name"],
                &e,
            ));
        }
        if c["image"].as_str().unwrap_or("").is_empty() {
            causes.push(Cause::required(&format!("{path}.containers[{i}].image")));
        }
    }
}

fn validate_workload(o: &Value, causes: &mut Vec<Cause>) {
    let sel = &o["spec"]["selector"];
    if !sel.is_object() {
        causes.push(Cause::required("spec.selector"));
        return;
    }
    let s = LabelSelector::from_object(sel);
    if s.is_empty() {
        causes.push(Cause::invalid(
            "spec.selector",
            sel,
            "empty selector is invalid for deployment",
        ));
    }
    let tl = o["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if !s.matches(&tl) {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            &Value::Object(tl),
            "`selector` does not match template `labels`",
        ));
    }
    validate_pod_spec(&o["spec"]["template"]["spec"], "spec.template.spec", causes);
}

fn validate_crd(o: &Value, causes: &mut Vec<Cause>) {
    let spec = &o["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if spec["names"]["kind"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    let name = o["metadata"]["name"].as_str().unwrap_or("");
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &Value::String(name.into()),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        causes.push(Cause::invalid(
            "spec.scope",
            &spec["scope"],
            "should be either Cluster or Namespaced",
        ));
    }
}

/// Validation of a new object (after defaulting).
pub fn validate_create(rt: &ResourceType, o: &Value) -> Vec<Cause> {
    let mut causes = vec![];
    validate_meta(rt, o, &mut causes);
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "pods") => validate_pod_spec(&o["spec"], "spec", &mut causes),
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            validate_workload(o, &mut causes)
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => validate_crd(o, &mut causes),
        ("", "services") => {
            let headless = o["spec"]["clusterIP"].as_str() == Some("None");
            let external = o["spec"]["type"].as_str() == Some("ExternalName");
            if !headless && !external && o["spec"]["ports"].as_array().is_none_or(|p| p.is_empty())
            {
                causes.push(Cause::required("spec.ports"));
            }
        }
        ("", "configmaps" | "secrets") => {
            for field in ["data", "binaryData", "stringData"] {
                for k in o[field].as_object().into_iter().flat_map(|m| m.keys()) {
                    if !CONFIG_KEY.is_match(k) {
                        causes.push(Cause::invalid(
                            &format!("{field}[{k}]"),
                            &Value::String(k.clone()),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                        ));
                    }
                }
            }
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            if o["spec"]["request"].as_str().unwrap_or("").is_empty() {
                causes.push(Cause::required("spec.request"));
            }
            if o["spec"]["signerName"].as_str().unwrap_or("").is_empty() {
                causes.push(Cause::required("spec.signerName"));
            }
        }
        ("scheduling.k8s.io", "priorityclasses") if !o["value"].is_i64() => {
            causes.push(Cause::required("value"));
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings")
            if o["roleRef"]["name"].as_str().unwrap_or("").is_empty() =>
        {
            causes.push(Cause::required("roleRef.name"));
        }
        _ => {}
    }
    causes
}

/// Pod spec fields the API lets an update change (everything else is immutable).
fn mutable_pod_spec(spec: &Value) -> Value {
    let mut s = spec.clone();
    if let Some(m) = s.as_object_mut() {
        for f in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
        ] {
            m.remove(f);
        }
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for c in cs {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                        c.remove("resources");
                    }
                }
            }
        }
    }
    s
}

/// Immutability rules on update (old = stored object, new = proposed object).
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = vec![];
    validate_meta(rt, new, &mut causes);
    let changed = |p: &str| old.pointer(p) != new.pointer(p);
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "pods") => {
            let old_node = old["spec"]["nodeName"].as_str().unwrap_or("");
            let mut n = new["spec"].clone();
            // The binding subresource sets nodeName once; updates cannot move a bound pod.
            if old_node.is_empty()
                && let Some(m) = n.as_object_mut()
            {
                m.insert("nodeName".into(), old["spec"]["nodeName"].clone());
                if old["spec"].get("nodeName").is_none() {
                    m.remove("nodeName");
                }
            }
            if mutable_pod_spec(&old["spec"]) != mutable_pod_spec(&n) {
                causes.push(Cause::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        ("apps", "deployments" | "replicasets" | "daemonsets") => {
            if changed("/spec/selector") {
                causes.push(Cause::immutable("spec.selector", &new["spec"]["selector"]));
            }
            validate_workload(new, &mut causes);
        }
        ("apps", "statefulsets") => {
            let strip = |o: &Value| {
                let mut s = o["spec"].clone();
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                s
            };
            if strip(old) != strip(new) {
                causes.push(Cause::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        ("batch", "jobs") => {
            if changed("/spec/selector") {
                causes.push(Cause::immutable("spec.selector", &new["spec"]["selector"]));
            }
            if changed("/spec/template") {
                causes.push(Cause::immutable("spec.template", &new["spec"]["template"]));
            }
        }
        ("", "services") => {
            let old_ip = old["spec"]["clusterIP"].as_str().unwrap_or("");
            let new_ip = new["spec"]["clusterIP"].as_str().unwrap_or("");
            if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
                causes.push(Cause::immutable(
                    "spec.clusterIPs[0]",
                    &new["spec"]["clusterIP"],
                ));
            }
        }
        ("", "configmaps" | "secrets") => {
            if old["immutable"].as_bool() == Some(true) {
                for f in ["data", "binaryData"] {
                    if old[f] != new[f] {
                        causes.push(Cause::forbidden(
                            f,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
                if new["immutable"].as_bool() != Some(true) {
                    causes.push(Cause::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if rt.resource == "secrets" && changed("/type") {
                causes.push(Cause::immutable("type", &new["type"]));
            }
        }
        ("storage.k8s.io", "storageclasses") => {
            for (f, what) in [
                ("parameters", "parameters"),
                ("provisioner", "provisioner"),
                ("reclaimPolicy", "reclaimPolicy"),
                ("volumeBindingMode", "volumeBindingMode"),
            ] {
                if old[f] != new[f] {
                    causes.push(Cause::forbidden(
                        f,
                        &format!("updates to {what} are forbidden."),
                    ));
                }
            }
        }
        ("scheduling.k8s.io", "priorityclasses") if old["value"] != new["value"] => {
            causes.push(Cause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings")
            if old["roleRef"] != new["roleRef"] =>
        {
            causes.push(Cause::invalid(
                "roleRef",
                &new["roleRef"],
                "cannot change roleRef",
            ));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            if changed("/spec/scope") {
                causes.push(Cause::immutable("spec.scope", &new["spec"]["scope"]));
            }
            validate_crd(new, &mut causes);
        }
        ("certificates.k8s.io", "certificatesigningrequests") if changed("/spec") => {
            causes.push(Cause::immutable("spec", &Value::String("{...}".into())));
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    fn rt(g: &str, r: &str) -> ResourceType {
        let c = Catalog::new(&[]);
        let v = if g.is_empty() {
            "v1"
        } else {
            c.types
                .iter()
                .find(|t| t.group == g)
                .map(|t| t.versions[0].clone())
                .unwrap_or_default()
                .leak()
        };
        c.find(g, v, r).cloned().unwrap()
    }

    #[test]
    fn uppercase_namespace_name_is_invalid_rfc1123_label() {
        let c = validate_create(&rt("", "namespaces"), &json!({"metadata": {"name": "Foo"}}));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "metadata.name");
        assert!(c[0].detail.starts_with("a lowercase RFC 1123 label"));
    }

    #[test]
    fn oversized_annotations_are_too_long() {
        let big = "x".repeat(262_145);
        let c = validate_create(
            &rt("", "configmaps"),
            &json!({"metadata": {"name": "c", "annotations": {"a": big}}}),
        );
        assert_eq!(c[0].reason, "FieldValueTooLong");
        assert_eq!(c[0].field, "metadata.annotations");
    }

    #[test]
    fn missing_name_is_required() {
        let c = validate_create(&rt("", "configmaps"), &json!({"metadata": {}}));
        assert_eq!(c[0].reason, "FieldValueRequired");
    }

    #[test]
    fn pod_without_containers_is_rejected() {
        let c = validate_create(
            &rt("", "pods"),
            &json!({"metadata": {"name": "p"}, "spec": {}}),
        );
        assert_eq!(c[0].field, "spec.containers");
    }

    #[test]
    fn deployment_selector_must_match_template_labels() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let c = validate_create(&rt("apps", "deployments"), &d);
        assert_eq!(c[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let mk = |v: &str| {
            json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": v}},
            "template": {"metadata": {"labels": {"app": v}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
        };
        let c = validate_update(&rt("apps", "deployments"), &mk("a"), &mk("b"));
        assert!(
            c.iter()
                .any(|c| c.field == "spec.selector" && c.detail == "field is immutable")
        );
    }

    #[test]
    fn pod_spec_change_other_than_image_is_forbidden() {
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let img = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:2"}]}});
        let cmd = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1", "command": ["x"]}]}});
        assert!(validate_update(&rt("", "pods"), &old, &img).is_empty());
        assert_eq!(
            validate_update(&rt("", "pods"), &old, &cmd)[0].reason,
            "FieldValueForbidden"
        );
    }

    #[test]
    fn immutable_configmap_data_cannot_change() {
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let new = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
        assert_eq!(
            validate_update(&rt("", "configmaps"), &old, &new)[0].field,
            "data"
        );
    }

    #[test]
    fn storageclass_provisioner_cannot_change() {
        let old = json!({"metadata": {"name": "s"}, "provisioner": "a"});
        let new = json!({"metadata": {"name": "s"}, "provisioner": "b"});
        assert_eq!(
            validate_update(&rt("storage.k8s.io", "storageclasses"), &old, &new)[0].detail,
            "updates to provisioner are forbidden."
        );
    }

    #[test]
    fn crd_name_must_be_plural_dot_group() {
        let crd = json!({"metadata": {"name": "foo.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "bars", "kind": "Bar"}, "versions": [{"name": "v1", "served": true, "storage": true}]}});
        let c = validate_create(
            &rt("apiextensions.k8s.io", "customresourcedefinitions"),
            &crd,
        );
        assert_eq!(c[0].detail, "must be spec.names.plural+\".\"+spec.group");
    }

    #[test]
    fn rolebinding_roleref_cannot_change() {
        let old = json!({"metadata": {"name": "b"}, "roleRef": {"name": "a"}});
        let new = json!({"metadata": {"name": "b"}, "roleRef": {"name": "b"}});
        assert_eq!(
            validate_update(&rt("rbac.authorization.k8s.io", "rolebindings"), &old, &new)[0].detail,
            "cannot change roleRef"
        );
    }
}
