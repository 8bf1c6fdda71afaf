//! Structural-schema checks for custom resources (the CRD's openAPIV3Schema): unknown fields
//! (rejected under `fieldValidation=Strict`, pruned otherwise), types, enums, required fields.

use serde_json::{Map, Value};

use crate::errors::Cause;

#[derive(Default)]
pub struct Report {
    /// Paths of fields the schema does not declare (`spec.monn`).
    pub unknown: Vec<String>,
    pub causes: Vec<Cause>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Check `v` against `schema` at `path`, pruning undeclared fields from `v` and recording them.
pub fn check(schema: &Value, v: &mut Value, path: &str, report: &mut Report) {
    if v.is_null() {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            report.causes.push(Cause::invalid(
                path,
                v,
                &format!(
                    "{path} in body must be of type integer,string: {}",
                    render(v)
                ),
            ));
        }
        return;
    }
    if let Some(ty) = schema["type"].as_str()
        && !type_ok(ty, v)
    {
        report.causes.push(Cause::invalid(
            path,
            v,
            &format!("{path} in body must be of type {ty}: {}", render(v)),
        ));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(render).collect();
        report
            .causes
            .push(Cause::not_supported(path, v, &list.join(", ")));
    }
    match v {
        Value::Object(m) => check_object(schema, m, path, report),
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), report);
            }
        }
        _ => {}
    }
}

fn check_object(schema: &Value, m: &mut Map<String, Value>, path: &str, report: &mut Report) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    let embedded = schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
    let props = schema["properties"].as_object();
    let additional = &schema["additionalProperties"];
    for req in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if m.get(req).is_none_or(Value::is_null) {
            report.causes.push(Cause::required(&join(path, req)));
        }
    }
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        let child_path = join(path, &k);
        if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(p) = props.and_then(|p| p.get(&k)) {
            if let Some(child) = m.get_mut(&k) {
                check(p, child, &child_path, report);
            }
        } else if additional.is_object() {
            if let Some(child) = m.get_mut(&k) {
                check(additional, child, &child_path, report);
            }
        } else if additional.as_bool() == Some(true) || preserve {
            // Free-form: anything goes below here.
        } else {
            report.unknown.push(child_path);
            m.remove(&k);
        }
    }
}

/// Check a whole custom resource: the root's apiVersion/kind/metadata are the API's, not the schema's.
pub fn check_resource(schema: &Value, o: &mut Value) -> Report {
    let mut report = Report::default();
    let Some(m) = o.as_object_mut() else {
        return report;
    };
    let mut rest: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut root = schema.clone();
    if let Some(req) = root["required"].as_array_mut() {
        req.retain(|r| !matches!(r.as_str(), Some("apiVersion" | "kind" | "metadata")));
    }
    if let Some(p) = root["properties"].as_object_mut() {
        for k in ["apiVersion", "kind", "metadata"] {
            p.remove(k);
        }
    }
    check_object(&root, &mut rest, "", &mut report);
    m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
    m.extend(rest);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["mon"], "properties": {
                "mon": {"type": "object", "properties": {"count": {"type": "integer"}}},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
    }

    #[test]
    fn undeclared_fields_are_reported_and_pruned() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"mon": {"count": 3, "typo": 1}, "free": {"any": {"thing": 1}}, "labels": {"a": "b"}}, "extra": 1});
        let mut r = check_resource(&schema(), &mut o);
        r.unknown.sort();
        assert_eq!(
            r.unknown,
            vec!["extra".to_string(), "spec.mon.typo".to_string()]
        );
        assert!(r.causes.is_empty());
        assert!(o["spec"]["mon"].get("typo").is_none());
        assert_eq!(o["spec"]["free"]["any"]["thing"], 1);
    }

    #[test]
    fn wrong_types_enums_and_missing_required_fields_are_invalid() {
        let mut o = json!({"spec": {"mon": {"count": "three"}, "mode": "c", "port": true, "labels": {"a": 1}}});
        let r = check_resource(&schema(), &mut o);
        let fields: Vec<&str> = r.causes.iter().map(|c| c.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.mon.count")
                && fields.contains(&"spec.mode")
                && fields.contains(&"spec.port")
                && fields.contains(&"spec.labels.a"),
            "{fields:?}"
        );
        let mut o = json!({"spec": {}});
        let r = check_resource(&schema(), &mut o);
        assert_eq!(r.causes[0].field, "spec.mon");
        assert_eq!(r.causes[0].reason, "FieldValueRequired");
    }
}
