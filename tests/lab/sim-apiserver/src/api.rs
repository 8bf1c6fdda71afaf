//! Resource handlers: get, list, watch, create, update, patch, delete, and the subresources
//! kubectl and the node components use (status, scale, eviction, binding, token, approval,
//! finalize).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use serde_json::{Map, Value, json};

use crate::catalog::ResourceType;
use crate::errors::{ApiError, Cause};
use crate::etcd::{EtcdError, Kv, WatchEvent};
use crate::obj::{self, FieldSelector, LabelSelector};
use crate::server::{Body, Req, Server, Target, json_response, stream_response, text_response};
use crate::{admission, patch, table, validate};

pub fn etcd_err(e: EtcdError) -> ApiError {
    ApiError::unavailable(format!("etcdserver: {e}"))
}

/// Parse a request body: JSON, or YAML (kubectl's apply-patch+yaml). Protobuf/CBOR are refused
/// with 415 so clients fall back to JSON.
pub fn parse_body(r: &Req) -> Result<Value, ApiError> {
    let ct = r.content_type.as_str();
    if ct.contains("protobuf") {
        return crate::proto::decode_envelope(&r.body)
            .map_err(|e| ApiError::new(415, "UnsupportedMediaType", e));
    }
    if ct.contains("cbor") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got {ct})"
            ),
        ));
    }
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(&r.body)
        .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

fn check_type(t: &Target, o: &Value) -> Result<(), ApiError> {
    if let Some(av) = o["apiVersion"].as_str() {
        let want = t.rt.api_version(&t.version);
        if av != want {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
    }
    if let Some(k) = o["kind"].as_str()
        && k != t.rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            t.rt.kind
        )));
    }
    check_shape(o)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

fn want(v: &Value, path: &str, object: bool) -> Result<(), ApiError> {
    let ok = v.is_null() || if object { v.is_object() } else { v.is_array() };
    if ok {
        return Ok(());
    }
    let go = if object { "map or struct" } else { "slice" };
    Err(ApiError::bad_request(format!(
        "json: cannot unmarshal {} into Go struct field {path} of type {go}",
        type_name(v)
    )))
}

/// The structural checks typed decoding does in the real server for the fields this
/// simulator reads and writes (a malformed body is a 400, never a crash).
pub fn check_shape(o: &Value) -> Result<(), ApiError> {
    if !o.is_object() {
        return Err(ApiError::bad_request(format!(
            "json: cannot unmarshal {} into Go value of type struct",
            type_name(o)
        )));
    }
    let m = &o["metadata"];
    want(m, "metadata", true)?;
    for f in ["labels", "annotations"] {
        want(&m[f], &format!("metadata.{f}"), true)?;
        if let Some((k, _)) = m[f]
            .as_object()
            .and_then(|x| x.iter().find(|(_, v)| !v.is_string()))
        {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal non-string value of {k:?} into Go struct field ObjectMeta.metadata.{f} of type string"
            )));
        }
    }
    want(&m["finalizers"], "metadata.finalizers", false)?;
    want(&m["ownerReferences"], "metadata.ownerReferences", false)?;
    for f in ["spec", "status"] {
        want(&o[f], f, true)?;
    }
    for (spec, path) in [
        (&o["spec"], "spec"),
        (&o["spec"]["template"]["spec"], "spec.template.spec"),
    ] {
        if !spec.is_object() {
            continue;
        }
        for f in [
            "containers",
            "initContainers",
            "tolerations",
            "volumes",
            "taints",
        ] {
            want(&spec[f], &format!("{path}.{f}"), false)?;
            if spec[f]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| !x.is_object()))
            {
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal non-object into Go struct field {path}.{f}"
                )));
            }
        }
        want(&spec["nodeSelector"], &format!("{path}.nodeSelector"), true)?;
        want(&spec["affinity"], &format!("{path}.affinity"), true)?;
    }
    want(&o["spec"]["template"], "spec.template", true)?;
    want(
        &o["spec"]["template"]["metadata"],
        "spec.template.metadata",
        true,
    )?;
    want(&o["spec"]["selector"], "spec.selector", true)?;
    want(&o["status"]["conditions"], "status.conditions", false)?;
    Ok(())
}

/// Custom resources against their CRD's structural schema: undeclared fields are an error
/// under `fieldValidation=Strict` (kubectl's default) and pruned otherwise; wrong types,
/// enums and missing required fields are Invalid.
fn apply_schema(r: &Req, t: &Target, o: &mut Value) -> Result<(), ApiError> {
    let Some(schema) = t.rt.schema_for(&t.version) else {
        return Ok(());
    };
    let report = crate::schema::check_resource(schema, o);
    if r.q("fieldValidation") == Some("Strict") && !report.unknown.is_empty() {
        let list: Vec<String> = report
            .unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect();
        let k = &t.rt.kind;
        return Err(ApiError::bad_request(format!(
            "{k} in version \"{}\" cannot be handled as a {k}: strict decoding error: {}",
            t.version,
            list.join(", ")
        )));
    }
    if !report.causes.is_empty() {
        return Err(ApiError::invalid(&t.rt, obj::name(o), report.causes));
    }
    Ok(())
}

/// Drop `null` members: typed decoding in the real server never keeps them.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// What is written to etcd: the object without its resourceVersion (that is etcd's mod_revision).
fn to_storage(rt: &ResourceType, o: &Value) -> Vec<u8> {
    let mut o = o.clone();
    strip_nulls(&mut o);
    let m = obj::meta_mut(&mut o);
    m.remove("resourceVersion");
    m.remove("selfLink");
    o["apiVersion"] = json!(rt.api_version(&rt.versions[0]));
    o["kind"] = json!(rt.kind);
    serde_json::to_vec(&o).unwrap_or_default()
}

pub fn present(rt: &ResourceType, version: &str, mut o: Value, rev: i64) -> Value {
    o["apiVersion"] = json!(rt.api_version(version));
    o["kind"] = json!(rt.kind);
    obj::meta_mut(&mut o).insert("resourceVersion".into(), json!(rev.to_string()));
    o
}

fn decode(rt: &ResourceType, version: &str, kv: &Kv) -> Option<Value> {
    let v: Value = serde_json::from_slice(&kv.value).ok()?;
    Some(present(rt, version, v, kv.mod_revision))
}

/// Everything but metadata and status: a change here bumps metadata.generation.
fn spec_part(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

impl Server {
    pub(crate) async fn dispatch(
        self: Arc<Self>,
        r: &Req,
        t: &Target,
        verb: &str,
    ) -> Result<Response<Body>, ApiError> {
        if !t.rt.stored {
            return self.virtual_create(r, t, verb);
        }
        match (verb, t.sub.as_deref()) {
            ("get", None | Some("status")) => self.get(r, t).await,
            ("get", Some("scale")) => self.scale_get(t).await,
            ("get", Some("log")) => Ok(text_response(200, "")),
            ("list", None) => self.list(r, t).await,
            ("watch", None) => self.watch(r, t).await,
            ("create", None) if t.name.is_none() => {
                let o = parse_body(r)?;
                check_type(t, &o)?;
                let created = self.create_object(r, t, o).await?;
                Ok(json_response(201, &created))
            }
            ("create", Some("eviction")) => self.evict(r, t).await,
            ("create", Some("binding")) => self.bind(r, t).await,
            ("create", Some("token")) => self.token(r, t).await,
            ("update", None | Some("status" | "approval" | "finalize")) => self.update(r, t).await,
            ("update" | "patch", Some("scale")) => self.scale_write(r, t).await,
            ("patch", None | Some("status")) => self.patch(r, t).await,
            ("delete", None) => self.delete(r, t).await,
            ("deletecollection", None) => self.delete_collection(r, t).await,
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    pub(crate) async fn load(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<(Value, i64)>, ApiError> {
        let kv = self
            .cfg
            .etcd
            .get(&rt.key(ns, name))
            .await
            .map_err(etcd_err)?;
        Ok(kv.and_then(|kv| decode(rt, version, &kv).map(|v| (v, kv.mod_revision))))
    }

    async fn must_load(&self, t: &Target) -> Result<(Value, i64), ApiError> {
        let name = t.name.as_deref().unwrap_or("");
        self.load(&t.rt, &t.version, t.ns.as_deref(), name)
            .await?
            .ok_or_else(|| ApiError::not_found(&t.rt, name))
    }

    pub(crate) async fn list_all(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
    ) -> Result<(Vec<Value>, i64), ApiError> {
        let (kvs, rev) = self
            .cfg
            .etcd
            .list(&rt.ns_prefix(ns))
            .await
            .map_err(etcd_err)?;
        Ok((
            kvs.iter()
                .filter_map(|kv| decode(rt, version, kv))
                .collect(),
            rev,
        ))
    }

    async fn get(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let (o, rev) = self.must_load(t).await?;
        if r.wants_table() {
            return Ok(json_response(
                200,
                &table::table(&t.rt, &[o], &rev.to_string()),
            ));
        }
        Ok(json_response(200, &o))
    }

    fn selectors(r: &Req, rt: &ResourceType) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let ls = LabelSelector::parse(r.q("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fs = FieldSelector::parse(r.q("fieldSelector").unwrap_or(""), &rt.resource)
            .map_err(ApiError::bad_request)?;
        Ok((ls, fs))
    }

    async fn list(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let (ls, fs) = Self::selectors(r, &t.rt)?;
        let (items, rev) = self.list_all(&t.rt, &t.version, t.ns.as_deref()).await?;
        let items: Vec<Value> = items
            .into_iter()
            .filter(|o| ls.matches(&obj::labels(o)) && fs.matches(o))
            .collect();
        if r.wants_table() {
            return Ok(json_response(
                200,
                &table::table(&t.rt, &items, &rev.to_string()),
            ));
        }
        Ok(json_response(
            200,
            &json!({
                "kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(&t.version),
                "metadata": {"resourceVersion": rev.to_string()}, "items": items,
            }),
        ))
    }

    async fn watch(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let (ls, fs) = Self::selectors(r, &t.rt)?;
        let rv: i64 = r
            .q("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let initial = r.q("sendInitialEvents") == Some("true");
        let timeout = r
            .q("timeoutSeconds")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1800)
            .min(3600);
        let table = r.wants_table();
        let rt = t.rt.clone();
        let version = t.version.clone();
        let prefix = rt.ns_prefix(t.ns.as_deref());
        let matches = move |o: &Value| ls.matches(&obj::labels(o)) && fs.matches(o);
        let render = {
            let rt = rt.clone();
            move |ty: &str, o: Value| -> Bytes {
                let o = if table {
                    table::table(&rt, std::slice::from_ref(&o), obj::meta_rv(&o))
                } else {
                    o
                };
                let mut line = json!({"type": ty, "object": o}).to_string();
                line.push('\n');
                Bytes::from(line)
            }
        };
        let mut start = rv;
        let mut first: Vec<Bytes> = vec![];
        if rv == 0 || initial {
            let (kvs, rev) = self.cfg.etcd.list(&prefix).await.map_err(etcd_err)?;
            for kv in &kvs {
                if let Some(o) = decode(&rt, &version, kv)
                    && matches(&o)
                {
                    first.push(render("ADDED", o));
                }
            }
            if initial {
                let bookmark = json!({"kind": rt.kind, "apiVersion": rt.api_version(&version),
                    "metadata": {"resourceVersion": rev.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                let mut line = json!({"type": "BOOKMARK", "object": bookmark}).to_string();
                line.push('\n');
                first.push(Bytes::from(line));
            }
            start = rev;
        }
        let mut events = match self.cfg.etcd.watch(&prefix, start).await {
            Ok(rx) => rx,
            Err(e) => return Err(etcd_err(e)),
        };
        let (tx, resp) = stream_response();
        tokio::spawn(async move {
            for b in first {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::sleep(Duration::from_secs(timeout));
            tokio::pin!(deadline);
            loop {
                let ev = tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    ev = events.recv() => ev,
                };
                let line = match ev {
                    None => return,
                    Some(Err(EtcdError::Compacted(_))) | Some(Err(_)) => {
                        let status = ApiError::new(
                            410,
                            "Expired",
                            format!("too old resource version: {start}"),
                        )
                        .status();
                        let mut l = json!({"type": "ERROR", "object": status}).to_string();
                        l.push('\n');
                        let _ = tx.send(Bytes::from(l)).await;
                        return;
                    }
                    Some(Ok(WatchEvent::Put(kv, prev))) => {
                        let Some(o) = decode(&rt, &version, &kv) else {
                            continue;
                        };
                        let was = prev
                            .and_then(|p| decode(&rt, &version, &p))
                            .is_some_and(|p| matches(&p));
                        match (was, matches(&o)) {
                            (_, true) if kv.create_revision == kv.mod_revision || !was => {
                                render("ADDED", o)
                            }
                            (_, true) => render("MODIFIED", o),
                            (true, false) => render("DELETED", o),
                            (false, false) => continue,
                        }
                    }
                    Some(Ok(WatchEvent::Delete(prev, rev))) => {
                        let Some(o) = decode(&rt, &version, &prev) else {
                            continue;
                        };
                        if !matches(&o) {
                            continue;
                        }
                        let mut o = o;
                        obj::meta_mut(&mut o)
                            .insert("resourceVersion".into(), json!(rev.to_string()));
                        render("DELETED", o)
                    }
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });
        Ok(resp)
    }

    /// Create an object (POST, or server-side apply of a missing object).
    pub(crate) async fn create_object(
        &self,
        r: &Req,
        t: &Target,
        mut o: Value,
    ) -> Result<Value, ApiError> {
        let rt = &t.rt;
        if rt.namespaced {
            let url_ns = t.ns.clone().unwrap_or_default();
            let body_ns = obj::namespace(&o).to_owned();
            if !body_ns.is_empty() && body_ns != url_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj::meta_mut(&mut o).insert("namespace".into(), json!(url_ns));
            self.namespace_admits(rt, &url_ns, obj::name(&o)).await?;
        } else {
            obj::meta_mut(&mut o).remove("namespace");
        }
        if obj::name(&o).is_empty()
            && let Some(prefix) = o["metadata"]["generateName"].as_str().map(str::to_owned)
        {
            obj::meta_mut(&mut o).insert(
                "name".into(),
                json!(format!("{prefix}{}", obj::random_suffix(5))),
            );
        }
        {
            let m = obj::meta_mut(&mut o);
            m.insert("uid".into(), json!(obj::new_uid()));
            m.insert("creationTimestamp".into(), json!(obj::now()));
            m.insert("generation".into(), json!(1));
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                m.remove(k);
            }
        }
        if rt.has_status()
            && rt.resource != "nodes"
            && let Some(m) = o.as_object_mut()
        {
            m.remove("status");
        }
        admission::default_on_create(self, rt, &mut o, &r.user).await?;
        apply_schema(r, t, &mut o)?;
        let causes = validate::validate_create(rt, &o);
        let name = obj::name(&o).to_owned();
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, causes));
        }
        admission::admit_create(self, rt, &mut o).await?;
        if r.dry_run() {
            return Ok(present(rt, &t.version, o, 0));
        }
        let key = rt.key(t.ns.as_deref(), &name);
        let rev = match self.cfg.etcd.create(&key, &to_storage(rt, &o)).await {
            Ok(rev) => rev,
            Err(EtcdError::Conflict) => return Err(ApiError::already_exists(rt, &name)),
            Err(e) => return Err(etcd_err(e)),
        };
        if rt.resource == "customresourcedefinitions" {
            self.refresh_catalog().await?;
        }
        Ok(present(rt, &t.version, o, rev))
    }

    /// NamespaceLifecycle: the namespace must exist and not be terminating.
    async fn namespace_admits(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let key = format!("/registry/namespaces/{ns}");
        let kv = self.cfg.etcd.get(&key).await.map_err(etcd_err)?;
        let Some(kv) = kv else {
            let mut e = ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"));
            e.details = json!({"name": ns, "kind": "namespaces"});
            return Err(e);
        };
        let nso: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        if nso["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::forbidden(
                rt,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// Merge an incoming object with the stored one according to the endpoint written to.
    fn merge_for_write(t: &Target, old: &Value, incoming: Value) -> Value {
        let mut new = match t.sub.as_deref() {
            None => {
                let mut n = incoming;
                if t.rt.has_status() {
                    n["status"] = old["status"].clone();
                    if n["status"].is_null()
                        && let Some(m) = n.as_object_mut()
                    {
                        m.remove("status");
                    }
                }
                n
            }
            Some("status") => {
                let mut n = old.clone();
                n["status"] = incoming["status"].clone();
                n
            }
            Some("approval") => {
                let mut n = old.clone();
                n["status"]["conditions"] = incoming["status"]["conditions"].clone();
                n
            }
            Some("finalize") => {
                let mut n = old.clone();
                n["spec"]["finalizers"] = incoming["spec"]["finalizers"].clone();
                n
            }
            _ => incoming,
        };
        let om = old["metadata"].as_object().cloned().unwrap_or_default();
        let m = obj::meta_mut(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "generation",
        ] {
            match om.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
        m.remove("managedFields");
        new
    }

    /// Validate and store an update; finalizes the deletion when the last finalizer is gone.
    async fn write(
        &self,
        r: &Req,
        t: &Target,
        old: &Value,
        rev: i64,
        mut new: Value,
    ) -> Result<Value, ApiError> {
        let rt = &t.rt;
        let name = obj::name(old).to_owned();
        if obj::name(&new) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                obj::name(&new)
            )));
        }
        check_shape(&new)?;
        if t.sub.is_none() && spec_part(old) != spec_part(&new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            obj::meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        admission::default_on_update(rt, old, &mut new);
        apply_schema(r, t, &mut new)?;
        let causes = validate::validate_update(rt, old, &new);
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, causes));
        }
        if r.dry_run() {
            return Ok(present(rt, &t.version, new, rev));
        }
        let key = rt.key(t.ns.as_deref(), &name);
        let finalized = new["metadata"]["deletionTimestamp"].is_string()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
            && new["spec"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty() || rt.resource != "namespaces");
        if finalized {
            return match self.cfg.etcd.delete(&key, rev).await {
                Ok(drev) => Ok(present(rt, &t.version, new, drev)),
                Err(EtcdError::Conflict) => Err(ApiError::conflict(rt, &name)),
                Err(e) => Err(etcd_err(e)),
            };
        }
        let nrev = match self.cfg.etcd.update(&key, &to_storage(rt, &new), rev).await {
            Ok(r) => r,
            Err(EtcdError::Conflict) => return Err(ApiError::conflict(rt, &name)),
            Err(e) => return Err(etcd_err(e)),
        };
        if rt.resource == "customresourcedefinitions" {
            self.refresh_catalog().await?;
        }
        Ok(present(rt, &t.version, new, nrev))
    }

    async fn update(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let body = parse_body(r)?;
        check_type(t, &body)?;
        let url_name = t.name.as_deref().unwrap_or("");
        if obj::name(&body) != url_name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({url_name})",
                obj::name(&body)
            )));
        }
        let (old, rev) = self.must_load(t).await?;
        if let Some(want) = body["metadata"]["resourceVersion"]
            .as_str()
            .filter(|s| !s.is_empty())
            && want != rev.to_string()
        {
            return Err(ApiError::conflict(&t.rt, url_name));
        }
        let new = Self::merge_for_write(t, &old, body);
        let out = self.write(r, t, &old, rev, new).await?;
        Ok(json_response(200, &out))
    }

    async fn patch(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let ct = r
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let p = parse_body(r)?;
        let apply = ct == "application/apply-patch+yaml";
        if apply && r.q("fieldManager").unwrap_or("").is_empty() {
            return Err(ApiError::bad_request(
                "fieldManager is required for apply requests",
            ));
        }
        let name = t.name.clone().unwrap_or_default();
        for _attempt in 0..5 {
            let current = self.load(&t.rt, &t.version, t.ns.as_deref(), &name).await?;
            let Some((old, rev)) = current else {
                if apply && t.sub.is_none() {
                    check_type(t, &p)?;
                    let mut o = p.clone();
                    if obj::name(&o) != name {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            obj::name(&o)
                        )));
                    }
                    obj::meta_mut(&mut o).insert("name".into(), json!(name));
                    let created = self.create_object(r, t, o).await?;
                    return Ok(json_response(201, &created));
                }
                return Err(ApiError::not_found(&t.rt, &name));
            };
            let patched = match ct.as_str() {
                "application/merge-patch+json" => patch::merge_patch(&old, &p),
                "application/json-patch+json" => {
                    patch::json_patch(&old, &p).map_err(|e| ApiError::new(422, "Invalid", e))?
                }
                "application/strategic-merge-patch+json" => {
                    if t.rt.group.contains('.') && !t.rt.group.ends_with(".k8s.io") {
                        return Err(ApiError::new(
                            415,
                            "UnsupportedMediaType",
                            "strategic merge patch is not supported for custom resources",
                        ));
                    }
                    patch::strategic_merge(&old, &p).unwrap_or(Value::Null)
                }
                "application/apply-patch+yaml" => {
                    check_type(t, &p)?;
                    patch::strategic_merge(&old, &p).unwrap_or(Value::Null)
                }
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                        ),
                    ));
                }
            };
            if !patched.is_object() {
                return Err(ApiError::bad_request("the patch did not produce an object"));
            }
            if let Some(want) = p["metadata"]["resourceVersion"]
                .as_str()
                .filter(|s| !s.is_empty())
                && want != rev.to_string()
            {
                return Err(ApiError::conflict(&t.rt, &name));
            }
            let new = Self::merge_for_write(t, &old, patched);
            match self.write(r, t, &old, rev, new).await {
                Err(e) if e.reason == "Conflict" && p["metadata"]["resourceVersion"].is_null() => {
                    continue;
                }
                Err(e) => return Err(e),
                Ok(out) => return Ok(json_response(200, &out)),
            }
        }
        Err(ApiError::conflict(&t.rt, &name))
    }

    /// Delete one object, or mark it for deletion when finalizers hold it.
    pub(crate) async fn delete_one(
        &self,
        r: &Req,
        t: &Target,
        name: &str,
        opts: &Value,
    ) -> Result<Value, ApiError> {
        let rt = &t.rt;
        for _attempt in 0..5 {
            let (mut o, rev) = self
                .load(rt, &t.version, t.ns.as_deref(), name)
                .await?
                .ok_or_else(|| ApiError::not_found(rt, name))?;
            let pre = &opts["preconditions"];
            if let Some(uid) = pre["uid"].as_str()
                && uid != obj::uid(&o)
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        rt.qualified(),
                        obj::uid(&o)
                    ),
                ));
            }
            if let Some(want) = pre["resourceVersion"].as_str()
                && want != rev.to_string()
            {
                return Err(ApiError::conflict(rt, name));
            }
            if r.dry_run() {
                return Ok(o);
            }
            let key = rt.key(t.ns.as_deref(), name);
            let held = o["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
                || (rt.resource == "namespaces"
                    && o["spec"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty()));
            if held {
                if o["metadata"]["deletionTimestamp"].is_string() {
                    return Ok(o);
                }
                obj::meta_mut(&mut o).insert("deletionTimestamp".into(), json!(obj::now()));
                obj::meta_mut(&mut o).insert("deletionGracePeriodSeconds".into(), json!(0));
                if rt.resource == "namespaces" {
                    o["status"]["phase"] = json!("Terminating");
                }
                match self.cfg.etcd.update(&key, &to_storage(rt, &o), rev).await {
                    Ok(nrev) => return Ok(present(rt, &t.version, o, nrev)),
                    Err(EtcdError::Conflict) => continue,
                    Err(e) => return Err(etcd_err(e)),
                }
            }
            match self.cfg.etcd.delete(&key, rev).await {
                Ok(_) => {}
                Err(EtcdError::Conflict) => continue,
                Err(e) => return Err(etcd_err(e)),
            }
            if rt.resource == "customresourcedefinitions" {
                // The CRD's objects go with it (the real server's customresourcecleanup finalizer).
                let cat = self.catalog();
                if let Some(crt) = cat.types.iter().find(|x| {
                    x.group == o["spec"]["group"].as_str().unwrap_or("")
                        && x.resource == o["spec"]["names"]["plural"].as_str().unwrap_or("")
                }) {
                    self.cfg
                        .etcd
                        .delete_prefix(&crt.prefix())
                        .await
                        .map_err(etcd_err)?;
                }
                self.refresh_catalog().await?;
            }
            return Ok(o);
        }
        Err(ApiError::conflict(rt, name))
    }

    async fn delete(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let opts = parse_body(r)?;
        let name = t.name.clone().unwrap_or_default();
        let o = self.delete_one(r, t, &name, &opts).await?;
        Ok(json_response(200, &o))
    }

    async fn delete_collection(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let opts = parse_body(r)?;
        let (ls, fs) = Self::selectors(r, &t.rt)?;
        let (items, rev) = self.list_all(&t.rt, &t.version, t.ns.as_deref()).await?;
        let mut deleted = vec![];
        for o in items
            .into_iter()
            .filter(|o| ls.matches(&obj::labels(o)) && fs.matches(o))
        {
            let mut tt = t.clone();
            tt.ns = (!obj::namespace(&o).is_empty()).then(|| obj::namespace(&o).to_owned());
            match self.delete_one(r, &tt, obj::name(&o), &opts).await {
                Ok(d) => deleted.push(d),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json_response(
            200,
            &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(&t.version),
            "metadata": {"resourceVersion": rev.to_string()}, "items": deleted}),
        ))
    }

    fn virtual_create(&self, r: &Req, t: &Target, verb: &str) -> Result<Response<Body>, ApiError> {
        if verb != "create" {
            return Err(ApiError::method_not_allowed());
        }
        let mut o = parse_body(r)?;
        check_type(t, &o)?;
        let user_info =
            json!({"username": r.user.name, "groups": r.user.groups, "uid": r.user.uid});
        match t.rt.resource.as_str() {
            "selfsubjectreviews" => o["status"] = json!({"userInfo": user_info}),
            // RBAC is not evaluated (see SIMULATORS.md): every authenticated user may act.
            "selfsubjectaccessreviews" | "subjectaccessreviews" => {
                o["status"] = json!({"allowed": true})
            }
            _ => o["status"] = json!({"authenticated": false}),
        }
        o["apiVersion"] = json!(t.rt.api_version(&t.version));
        o["kind"] = json!(t.rt.kind);
        Ok(json_response(201, &o))
    }

    async fn scale_get(&self, t: &Target) -> Result<Response<Body>, ApiError> {
        let (o, _) = self.must_load(t).await?;
        Ok(json_response(200, &scale_of(&o)))
    }

    async fn scale_write(&self, r: &Req, t: &Target) -> Result<Response<Body>, ApiError> {
        let body = parse_body(r)?;
        let (old, rev) = self.must_load(t).await?;
        let current = scale_of(&old);
        let ct = r.content_type.split(';').next().unwrap_or("").trim();
        let scale = match ct {
            "application/json-patch+json" => {
                patch::json_patch(&current, &body).map_err(|e| ApiError::new(422, "Invalid", e))?
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                patch::merge_patch(&current, &body)
            }
            _ => body,
        };
        let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
            return Err(ApiError::invalid(
                &t.rt,
                obj::name(&old),
                vec![Cause::required("spec.replicas")],
            ));
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                &t.rt,
                obj::name(&old),
                vec![Cause::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        let mut tt = t.clone();
        tt.sub = None;
        let out = self.write(r, &tt, &old, rev, new).await?;
        Ok(json_response(200, &scale_of(&out)))
    }
}

fn scale_of(o: &Value) -> Value {
    let sel = &o["spec"]["selector"];
    let selector = if sel.is_object() {
        let mut parts: Vec<String> = sel["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        parts.sort();
        parts.join(",")
    } else {
        String::new()
    };
    let mut meta = Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = o["metadata"].get(k) {
            meta.insert(k.into(), v.clone());
        }
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_are_bad_requests_not_crashes() {
        assert_eq!(check_shape(&json!({"spec": "x"})).unwrap_err().code, 400);
        assert_eq!(
            check_shape(&json!({"metadata": {"labels": {"a": 1}}}))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            check_shape(&json!({"spec": {"template": {"spec": {"containers": ["x"]}}}}))
                .unwrap_err()
                .code,
            400
        );
        assert!(check_shape(&json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}})).is_ok());
    }

    #[test]
    fn stored_objects_drop_nulls_and_resource_version() {
        let c = crate::catalog::Catalog::new(&[]);
        let rt = c.find("", "v1", "configmaps").unwrap();
        let bytes = to_storage(
            rt,
            &json!({"metadata": {"name": "a", "resourceVersion": "5"}, "data": {"k": null}}),
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}})
        );
    }
}
