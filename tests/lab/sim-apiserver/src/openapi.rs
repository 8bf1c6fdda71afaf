//! OpenAPI documents, just enough for kubectl: v3 per group-version with a PATCH operation per
//! kind that lists the `fieldValidation` parameter (so kubectl leaves validation to the server),
//! and an empty v2 document (protobuf or JSON) so the legacy path finds no schema and skips.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, ResourceType};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn params() -> Value {
    let q = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    json!([
        q("dryRun"),
        q("fieldManager"),
        q("fieldValidation"),
        q("force"),
        q("pretty")
    ])
}

fn ops_for(t: &ResourceType, version: &str, paths: &mut Map<String, Value>) {
    let base = format!("/{}", gv_path(&t.group, version));
    let gvk = json!({"group": t.group, "version": version, "kind": t.kind});
    let item = if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.resource)
    } else {
        format!("{base}/{}/{{name}}", t.resource)
    };
    let collection = if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", t.resource)
    } else {
        format!("{base}/{}", t.resource)
    };
    let op = |action: &str| {
        json!({"operationId": format!("{action}{}", t.kind), "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk, "parameters": params(), "responses": {"200": {"description": "OK"}}})
    };
    paths.insert(
        item,
        json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
    );
    paths.insert(collection, json!({"get": op("list"), "post": op("post")}));
}

/// The document for one group-version, or None if nothing is served there.
pub fn v3_document(
    catalog: &Catalog,
    group: &str,
    version: &str,
    server_version: &str,
) -> Option<Value> {
    let mut paths = Map::new();
    for t in catalog
        .types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version) && t.stored)
    {
        ops_for(t, version, &mut paths);
    }
    if paths.is_empty() {
        return None;
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths, "components": {"schemas": {}}}),
    )
}

/// `/openapi/v3`: one entry per group-version, with a hash that changes when the content does.
pub fn v3_index(catalog: &Catalog, server_version: &str) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for (g, vs) in catalog.groups() {
        for v in vs {
            gvs.push((g.clone(), v));
        }
    }
    for (g, v) in gvs {
        let p = gv_path(&g, &v);
        let doc = v3_document(catalog, &g, &v, server_version).unwrap_or(Value::Null);
        let hash = hex::encode(Sha256::digest(doc.to_string().as_bytes())).to_uppercase();
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", &hash[..32])}),
        );
    }
    json!({"paths": paths})
}

fn pb_bytes(field: u8, data: &[u8], out: &mut Vec<u8>) {
    out.push((field << 3) | 2);
    let mut n = data.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(data);
}

/// gnostic openapi_v2.Document{swagger: "2.0", info: {title, version}, paths: {}} in protobuf.
pub fn v2_protobuf(server_version: &str) -> Vec<u8> {
    let mut info = vec![];
    pb_bytes(1, b"Kubernetes", &mut info);
    pb_bytes(2, server_version.as_bytes(), &mut info);
    let mut doc = vec![];
    pb_bytes(1, b"2.0", &mut doc);
    pb_bytes(2, &info, &mut doc);
    pb_bytes(8, &[], &mut doc);
    doc
}

pub fn v2_json(server_version: &str) -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": server_version}, "paths": {}, "definitions": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_patch_operations_advertise_field_validation() {
        let c = Catalog::new(&[]);
        let doc = v3_document(&c, "apps", "v1", "v1.36.2").unwrap();
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(p["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            p["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "fieldValidation")
        );
    }

    #[test]
    fn v2_protobuf_encodes_swagger_version_first() {
        let b = v2_protobuf("v1.36.2");
        assert_eq!(&b[..5], &[0x0a, 3, b'2', b'.', b'0']);
    }
}
