//! Decoding of the Kubernetes protobuf envelope for the kinds kubectl's typed commands send
//! (`create namespace|configmap|secret|serviceaccount|token|rolebinding`, drain's Eviction,
//! `certificate approve`). kubectl 1.33 sends these bodies as protobuf and does not fall back
//! to JSON, so the simulator decodes them with hand-written schemas of those messages only.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bytes,
    Int,
    /// An optional (pointer) integer: zero is meaningful and kept.
    Int0,
    Bool,
    /// intstr.IntOrString{type, intVal, strVal} → a JSON number or string.
    IntOrString,
    Msg(&'static str),
    MapStr,
    MapBytes,
    Time,
    RepStr,
    RepMsg(&'static str),
}

type Field = (u64, &'static str, Ty);

fn schema(msg: &str) -> Option<&'static [Field]> {
    use Ty::*;
    Some(match msg {
        "ObjectMeta" => &[
            (1, "name", Str),
            (2, "generateName", Str),
            (3, "namespace", Str),
            (5, "uid", Str),
            (6, "resourceVersion", Str),
            (7, "generation", Int),
            (8, "creationTimestamp", Time),
            (9, "deletionTimestamp", Time),
            (10, "deletionGracePeriodSeconds", Int),
            (11, "labels", MapStr),
            (12, "annotations", MapStr),
            (13, "ownerReferences", RepMsg("OwnerReference")),
            (14, "finalizers", RepStr),
        ],
        "OwnerReference" => &[
            (1, "kind", Str),
            (3, "name", Str),
            (4, "uid", Str),
            (5, "apiVersion", Str),
            (6, "controller", Bool),
            (7, "blockOwnerDeletion", Bool),
        ],
        "ObjectReference" => &[
            (1, "kind", Str),
            (2, "namespace", Str),
            (3, "name", Str),
            (4, "uid", Str),
            (5, "apiVersion", Str),
            (6, "resourceVersion", Str),
            (7, "fieldPath", Str),
        ],
        "LocalObjectReference" => &[(1, "name", Str)],
        "Namespace" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("NamespaceSpec")),
            (3, "status", Msg("NamespaceStatus")),
        ],
        "NamespaceSpec" => &[(1, "finalizers", RepStr)],
        "NamespaceStatus" => &[(1, "phase", Str)],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "data", MapStr),
            (3, "binaryData", MapBytes),
            (4, "immutable", Bool),
        ],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "data", MapBytes),
            (3, "type", Str),
            (4, "stringData", MapStr),
            (5, "immutable", Bool),
        ],
        "ServiceAccount" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "secrets", RepMsg("ObjectReference")),
            (3, "imagePullSecrets", RepMsg("LocalObjectReference")),
            (4, "automountServiceAccountToken", Bool),
        ],
        "TokenRequest" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("TokenRequestSpec")),
        ],
        "TokenRequestSpec" => &[
            (1, "audiences", RepStr),
            (3, "boundObjectRef", Msg("BoundObjectReference")),
            (4, "expirationSeconds", Int),
        ],
        "BoundObjectReference" => &[
            (1, "kind", Str),
            (2, "apiVersion", Str),
            (3, "name", Str),
            (4, "uid", Str),
        ],
        "Eviction" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "deleteOptions", Msg("DeleteOptions")),
        ],
        "DeleteOptions" => &[
            (1, "gracePeriodSeconds", Int),
            (2, "preconditions", Msg("Preconditions")),
            (3, "orphanDependents", Bool),
            (4, "propagationPolicy", Str),
            (5, "dryRun", RepStr),
        ],
        "Preconditions" => &[(1, "uid", Str), (2, "resourceVersion", Str)],
        "CertificateSigningRequest" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("CertificateSigningRequestSpec")),
            (3, "status", Msg("CertificateSigningRequestStatus")),
        ],
        "CertificateSigningRequestSpec" => &[
            (1, "request", Bytes),
            (2, "username", Str),
            (3, "uid", Str),
            (4, "groups", RepStr),
            (6, "usages", RepStr),
            (7, "signerName", Str),
            (8, "expirationSeconds", Int),
        ],
        "CertificateSigningRequestStatus" => &[
            (
                1,
                "conditions",
                RepMsg("CertificateSigningRequestCondition"),
            ),
            (2, "certificate", Bytes),
        ],
        "CertificateSigningRequestCondition" => &[
            (1, "type", Str),
            (2, "reason", Str),
            (3, "message", Str),
            (4, "lastUpdateTime", Time),
            (5, "lastTransitionTime", Time),
            (6, "status", Str),
        ],
        "RoleBinding" | "ClusterRoleBinding" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "subjects", RepMsg("Subject")),
            (3, "roleRef", Msg("RoleRef")),
        ],
        "Subject" => &[
            (1, "kind", Str),
            (2, "apiGroup", Str),
            (3, "name", Str),
            (4, "namespace", Str),
        ],
        "RoleRef" => &[(1, "apiGroup", Str), (2, "kind", Str), (3, "name", Str)],
        "SelfSubjectReview" => &[(1, "metadata", Msg("ObjectMeta"))],
        "SelfSubjectAccessReview" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("SelfSubjectAccessReviewSpec")),
        ],
        "SelfSubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes")),
            (2, "nonResourceAttributes", Msg("NonResourceAttributes")),
        ],
        "ResourceAttributes" => &[
            (1, "namespace", Str),
            (2, "verb", Str),
            (3, "group", Str),
            (4, "version", Str),
            (5, "resource", Str),
            (6, "subresource", Str),
            (7, "name", Str),
        ],
        "NonResourceAttributes" => &[(1, "path", Str), (2, "verb", Str)],
        "Pod" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("PodSpec")),
        ],
        "Deployment" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("DeploymentSpec")),
        ],
        "DeploymentSpec" => &[
            (1, "replicas", Int0),
            (2, "selector", Msg("LabelSelector")),
            (3, "template", Msg("PodTemplateSpec")),
            (4, "strategy", Msg("DeploymentStrategy")),
            (5, "minReadySeconds", Int),
            (6, "revisionHistoryLimit", Int0),
            (7, "paused", Bool),
            (9, "progressDeadlineSeconds", Int0),
        ],
        "DeploymentStrategy" => &[(1, "type", Str)],
        "LabelSelector" => &[
            (1, "matchLabels", MapStr),
            (2, "matchExpressions", RepMsg("LabelSelectorRequirement")),
        ],
        "LabelSelectorRequirement" => {
            &[(1, "key", Str), (2, "operator", Str), (3, "values", RepStr)]
        }
        "PodTemplateSpec" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("PodSpec")),
        ],
        "PodSpec" => &[
            (2, "containers", RepMsg("Container")),
            (3, "restartPolicy", Str),
            (4, "terminationGracePeriodSeconds", Int0),
            (6, "dnsPolicy", Str),
            (7, "nodeSelector", MapStr),
            (8, "serviceAccountName", Str),
            (10, "nodeName", Str),
            (11, "hostNetwork", Bool),
            (19, "schedulerName", Str),
            (20, "initContainers", RepMsg("Container")),
            (22, "tolerations", RepMsg("Toleration")),
        ],
        "Container" => &[
            (1, "name", Str),
            (2, "image", Str),
            (3, "command", RepStr),
            (4, "args", RepStr),
            (5, "workingDir", Str),
            (6, "ports", RepMsg("ContainerPort")),
            (7, "env", RepMsg("EnvVar")),
            (13, "terminationMessagePath", Str),
            (14, "imagePullPolicy", Str),
        ],
        "ContainerPort" => &[
            (1, "name", Str),
            (2, "hostPort", Int),
            (3, "containerPort", Int),
            (4, "protocol", Str),
        ],
        "EnvVar" => &[(1, "name", Str), (2, "value", Str)],
        "Toleration" => &[
            (1, "key", Str),
            (2, "operator", Str),
            (3, "value", Str),
            (4, "effect", Str),
            (5, "tolerationSeconds", Int0),
        ],
        "PodDisruptionBudget" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("PodDisruptionBudgetSpec")),
        ],
        "PodDisruptionBudgetSpec" => &[
            (1, "minAvailable", IntOrString),
            (2, "selector", Msg("LabelSelector")),
            (3, "maxUnavailable", IntOrString),
            (4, "unhealthyPodEvictionPolicy", Str),
        ],
        "IntOrString" => &[(1, "type", Int), (2, "intVal", Int), (3, "strVal", Str)],
        "Role" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "rules", RepMsg("PolicyRule")),
        ],
        "ClusterRole" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "rules", RepMsg("PolicyRule")),
        ],
        "PolicyRule" => &[
            (1, "verbs", RepStr),
            (2, "apiGroups", RepStr),
            (3, "resources", RepStr),
            (4, "resourceNames", RepStr),
            (5, "nonResourceURLs", RepStr),
        ],
        "Service" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("ServiceSpec")),
        ],
        "ServiceSpec" => &[
            (1, "ports", RepMsg("ServicePort")),
            (2, "selector", MapStr),
            (3, "clusterIP", Str),
            (4, "type", Str),
            (5, "externalIPs", RepStr),
            (7, "sessionAffinity", Str),
            (10, "externalName", Str),
        ],
        "ServicePort" => &[
            (1, "name", Str),
            (2, "protocol", Str),
            (3, "port", Int),
            (4, "targetPort", IntOrString),
            (5, "nodePort", Int),
        ],
        "PriorityClass" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "value", Int0),
            (3, "globalDefault", Bool),
            (4, "description", Str),
            (5, "preemptionPolicy", Str),
        ],
        "Time" => &[(1, "seconds", Int), (2, "nanos", Int)],
        "Unknown" => &[
            (1, "typeMeta", Msg("TypeMeta")),
            (2, "raw", Bytes),
            (3, "contentEncoding", Str),
            (4, "contentType", Str),
        ],
        "TypeMeta" => &[(1, "apiVersion", Str), (2, "kind", Str)],
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            out |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<&[u8], String> {
        let n = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated field")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => {
                self.pos += 8;
                Ok(())
            }
            2 => self.bytes().map(|_| ()),
            5 => {
                self.pos += 4;
                Ok(())
            }
            w => Err(format!("unsupported wire type {w}")),
        }
    }
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in string field".to_owned())
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), String> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while r.pos < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = utf8(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if bytes_value {
                    json!(B64.encode(raw))
                } else {
                    json!(utf8(raw)?)
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn decode_msg(b: &[u8], msg: &str) -> Result<Value, String> {
    let fields = schema(msg).ok_or_else(|| format!("no schema for {msg}"))?;
    let mut r = Reader { buf: b, pos: 0 };
    let mut out = Map::new();
    while r.pos < b.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some((_, name, ty)) = fields.iter().find(|f| f.0 == num) else {
            r.skip(wire)?;
            continue;
        };
        let name = (*name).to_owned();
        match (*ty, wire) {
            // Protobuf carries empty strings, zeros and false explicitly; JSON omits them.
            (Ty::Str, 2) => {
                let s = utf8(r.bytes()?)?;
                if !s.is_empty() {
                    out.insert(name, json!(s));
                }
            }
            (Ty::Bytes, 2) => {
                out.insert(name, json!(B64.encode(r.bytes()?)));
            }
            (Ty::Int, 0) => {
                let n = r.varint()? as i64;
                if n != 0 {
                    out.insert(name, json!(n));
                }
            }
            (Ty::Int0, 0) => {
                out.insert(name, json!(r.varint()? as i64));
            }
            (Ty::Bool, 0) => {
                if r.varint()? != 0 {
                    out.insert(name, json!(true));
                }
            }
            (Ty::Msg(m), 2) => {
                let v = decode_msg(r.bytes()?, m)?;
                if v.as_object().is_some_and(|o| !o.is_empty()) {
                    out.insert(name, v);
                }
            }
            (Ty::IntOrString, 2) => {
                let v = decode_msg(r.bytes()?, "IntOrString")?;
                let value = if v["type"].as_i64() == Some(1) {
                    v["strVal"].clone()
                } else {
                    json!(v["intVal"].as_i64().unwrap_or(0))
                };
                out.insert(name, value);
            }
            (Ty::Time, 2) => {
                let t = decode_msg(r.bytes()?, "Time")?;
                let secs = t["seconds"].as_i64().unwrap_or(0);
                let ts = time::OffsetDateTime::from_unix_timestamp(secs)
                    .map(crate::obj::format_time)
                    .unwrap_or_default();
                out.insert(name, json!(ts));
            }
            (Ty::MapStr | Ty::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(ty, Ty::MapBytes))?;
                let e = out.entry(name).or_insert_with(|| json!({}));
                e[k] = v;
            }
            (Ty::RepStr, 2) => {
                let s = utf8(r.bytes()?)?;
                push(&mut out, name, json!(s));
            }
            (Ty::RepMsg(m), 2) => {
                let v = decode_msg(r.bytes()?, m)?;
                push(&mut out, name, v);
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, name: String, v: Value) {
    match out.entry(name).or_insert_with(|| json!([])) {
        Value::Array(a) => a.push(v),
        other => *other = json!([v]),
    }
}

/// Decode a `k8s\0`-prefixed runtime.Unknown envelope into the JSON form of the object.
pub fn decode_envelope(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing the k8s protobuf magic prefix")?;
    let unknown = decode_msg(rest, "Unknown")?;
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let raw = B64
        .decode(unknown["raw"].as_str().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    if schema(&kind).is_none() || kind == "Unknown" || kind == "TypeMeta" {
        return Err(format!(
            "protobuf bodies of kind {kind:?} are not supported by the simulator; send JSON"
        ));
    }
    let mut v = decode_msg(&raw, &kind)?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, data: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, data.len() as u8];
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn namespace_envelope_decodes_to_json() {
        let meta = [
            field(1, b"foo"),
            field(
                11,
                &[field(1, b"a").as_slice(), field(2, b"b").as_slice()].concat(),
            ),
        ]
        .concat();
        let ns = field(1, &meta);
        let tm = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let unknown = [field(1, &tm), field(2, &ns)].concat();
        let body = [b"k8s\0".as_slice(), &unknown].concat();
        let v = decode_envelope(&body).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "foo", "labels": {"a": "b"}}, "apiVersion": "v1", "kind": "Namespace"})
        );
    }

    #[test]
    fn unsupported_protobuf_kind_is_refused() {
        let tm = [field(1, b"batch/v1"), field(2, b"CronJob")].concat();
        let body = [b"k8s\0".as_slice(), &field(1, &tm)].concat();
        assert!(decode_envelope(&body).unwrap_err().contains("CronJob"));
    }
}
