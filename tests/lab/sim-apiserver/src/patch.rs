//! The three patch formats of the API: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch for the common cases (lists merged by the key the Go types declare).

use serde_json::{Map, Value};

/// RFC 7386: objects merge, `null` deletes, everything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Some(p) = patch.as_object() else {
        return patch.clone();
    };
    let mut out = target.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let cur = out.get(k).cloned().unwrap_or(Value::Null);
            out.insert(k.clone(), merge_patch(&cur, v));
        }
    }
    Value::Object(out)
}

/// The merge key of list fields that the built-in types declare `patchStrategy:"merge"` for.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        // Container ports merge on containerPort; Service ports on port.
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists with a merge strategy (union instead of replace).
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge patch, with the directives kubectl emits ($patch, $retainKeys,
/// $setElementOrder, $deleteFromPrimitiveList). Returns None when the patch deletes the value.
pub fn strategic_merge(target: &Value, patch: &Value) -> Option<Value> {
    let Some(p) = patch.as_object() else {
        return Some(patch.clone());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("delete") => return None,
        Some("replace") => {
            let mut clean = p.clone();
            clean.remove("$patch");
            return Some(Value::Object(clean));
        }
        _ => {}
    }
    let mut out = target.as_object().cloned().unwrap_or_default();
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in p {
        if k == "$patch" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if k == "$retainKeys" {
            retain = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            });
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (out.get_mut(field), v.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let cur = out.get(k).cloned().unwrap_or(Value::Null);
        let merged = match (v, &cur) {
            (Value::Array(pa), Value::Array(ca)) => merge_list(k, ca, pa),
            (Value::Array(pa), _) => Some(Value::Array(strip_directives(pa))),
            (Value::Object(_), _) => strategic_merge(&cur, v),
            _ => Some(v.clone()),
        };
        match merged {
            Some(m) => {
                out.insert(k.clone(), m);
            }
            None => {
                out.remove(k);
            }
        }
    }
    if let Some(keep) = retain {
        out.retain(|k, _| keep.contains(k));
    }
    Some(Value::Object(out))
}

fn strip_directives(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .filter(|i| i.get("$patch").is_none())
        .map(|i| strategic_merge(&Value::Null, i).unwrap_or(Value::Null))
        .collect()
}

fn merge_list(field: &str, cur: &[Value], patch: &[Value]) -> Option<Value> {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Some(Value::Array(strip_directives(patch)));
    }
    if merges_primitives(field) {
        let mut out = cur.to_vec();
        for v in patch {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return Some(Value::Array(out));
    }
    let Some(key) = merge_key(field, patch).or_else(|| merge_key(field, cur)) else {
        return Some(Value::Array(strip_directives(patch)));
    };
    let mut out: Vec<Value> = cur.to_vec();
    for item in patch {
        let id = item.get(key);
        let pos = id.and_then(|id| out.iter().position(|o| o.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => match strategic_merge(&out[i], item) {
                Some(m) => out[i] = m,
                None => {
                    out.remove(i);
                }
            },
            (None, false) => {
                if let Some(m) = strategic_merge(&Value::Null, item) {
                    out.push(m);
                }
            }
        }
    }
    Some(Value::Array(out))
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(vec![]);
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer {pointer:?}"));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("missing path element {t:?}"))?,
            Value::Array(a) => {
                let i: usize = t
                    .parse()
                    .map_err(|_| format!("invalid array index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => return Err(format!("cannot index a scalar with {t:?}")),
        };
    }
    Ok(cur)
}

fn get_at(doc: &Value, pointer: &str) -> Result<Value, String> {
    doc.pointer(pointer)
        .cloned()
        .ok_or_else(|| format!("path {pointer:?} does not exist"))
}

fn remove_at(doc: &mut Value, pointer: &str) -> Result<Value, String> {
    let toks = tokens(pointer)?;
    let (last, parents) = toks.split_last().ok_or("cannot remove the document root")?;
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("path {pointer:?} does not exist")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("path {pointer:?} does not exist")),
    }
}

fn add_at(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let toks = tokens(pointer)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("array index {i} out of range"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("path {pointer:?} does not exist")),
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    let mut out = doc.clone();
    for op in ops {
        let path = op["path"].as_str().ok_or("operation without path")?;
        match op["op"].as_str().unwrap_or("") {
            "add" => add_at(&mut out, path, op["value"].clone())?,
            "remove" => {
                remove_at(&mut out, path)?;
            }
            "replace" => {
                remove_at(&mut out, path)?;
                add_at(&mut out, path, op["value"].clone())?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("move without from")?;
                let v = remove_at(&mut out, from)?;
                add_at(&mut out, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("copy without from")?;
                let v = get_at(&out, from)?;
                add_at(&mut out, path, v)?;
            }
            "test" => {
                if get_at(&out, path)? != op["value"] {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(out)
}

/// Ensure a JSON value is an object (patches must produce objects).
pub fn as_object(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_null_deletes_a_label() {
        let t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let r = merge_patch(&t, &json!({"metadata": {"labels": {"a": null, "c": "3"}}}));
        assert_eq!(r, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let t = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "y:2"}]}});
        let r = strategic_merge(&t, &p).unwrap();
        assert_eq!(r["spec"]["containers"][0]["image"], "x:1");
        assert_eq!(r["spec"]["containers"][1]["image"], "y:2");
    }

    #[test]
    fn strategic_merge_replaces_taints_and_deletes_by_directive() {
        let t = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}], "unschedulable": true,
            "volumes": [{"name": "v1"}, {"name": "v2"}]}});
        let p = json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}], "unschedulable": null,
            "volumes": [{"name": "v1", "$patch": "delete"}]}});
        let r = strategic_merge(&t, &p).unwrap();
        assert_eq!(
            r["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
        assert!(r["spec"].get("unschedulable").is_none());
        assert_eq!(r["spec"]["volumes"], json!([{"name": "v2"}]));
    }

    #[test]
    fn json_patch_applies_and_test_failure_is_an_error() {
        let t = json!({"a": [1, 2], "b": {"c": 1}});
        let r = json_patch(
            &t,
            &json!([{"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b/c", "value": 2}, {"op": "remove", "path": "/a/0"}]),
        )
        .unwrap();
        assert_eq!(r, json!({"a": [2, 3], "b": {"c": 2}}));
        assert!(json_patch(&t, &json!([{"op": "test", "path": "/b/c", "value": 9}])).is_err());
        assert!(json_patch(&t, &json!([{"op": "remove", "path": "/zz"}])).is_err());
    }
}
