//! kubeadm's configuration documents (kubeadm.k8s.io/v1beta4, v1beta3 deprecated) plus the
//! KubeletConfiguration and KubeProxyConfiguration component configs, decoded strictly.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::util::{KubeVersion, parse_duration};

pub const KUBEADM_GROUP: &str = "kubeadm.k8s.io";
pub const V1BETA4: &str = "kubeadm.k8s.io/v1beta4";
pub const V1BETA3: &str = "kubeadm.k8s.io/v1beta3";
pub const KUBELET_API: &str = "kubelet.config.k8s.io/v1beta1";
pub const KUBEPROXY_API: &str = "kubeproxy.config.k8s.io/v1alpha1";

/// v1beta4 `extraArgs` item.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitConfiguration {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub bootstrap_tokens: Vec<BootstrapTokenCfg>,
    #[serde(default)]
    pub node_registration: NodeRegistration,
    #[serde(default, rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate_key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_phases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BootstrapTokenCfg {
    pub token: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default)]
    pub usages: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeRegistration {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cri_socket: String,
    /// `None` means "kubeadm's default" (the control-plane taint); `Some([])` means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<Vec<Taint>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubelet_extra_args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_preflight_errors: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_pull_policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_serial: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiEndpoint {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub advertise_address: String,
    #[serde(default)]
    pub bind_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_component_health_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_health_check: Option<String>,
    #[serde(
        default,
        rename = "kubernetesAPICall",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes_api_call: Option<String>,
    #[serde(
        default,
        rename = "etcdAPICall",
        skip_serializing_if = "Option::is_none"
    )]
    pub etcd_api_call: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_bootstrap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_manifests: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfiguration {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub etcd: EtcdCfg,
    #[serde(default)]
    pub networking: Networking,
    #[serde(default)]
    pub kubernetes_version: String,
    #[serde(default)]
    pub control_plane_endpoint: String,
    #[serde(default, rename = "apiServer")]
    pub api_server: ApiServerCfg,
    #[serde(default)]
    pub controller_manager: ComponentCfg,
    #[serde(default)]
    pub scheduler: ComponentCfg,
    #[serde(default)]
    pub dns: DnsCfg,
    #[serde(default)]
    pub proxy: ProxyCfg,
    #[serde(default)]
    pub certificates_dir: String,
    #[serde(default)]
    pub image_repository: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_gates: BTreeMap<String, bool>,
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encryption_algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_validity_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_validity_period: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdCfg {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalEtcd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalEtcd {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    #[serde(default)]
    pub data_dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_envs: Vec<Value>,
    #[serde(
        default,
        rename = "serverCertSANs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub server_cert_sans: Vec<String>,
    #[serde(
        default,
        rename = "peerCertSANs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub peer_cert_sans: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    #[serde(default)]
    pub service_subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_subnet: String,
    #[serde(default)]
    pub dns_domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiServerCfg {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_volumes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_envs: Vec<Value>,
    #[serde(default, rename = "certSANs", skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentCfg {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_volumes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_envs: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsCfg {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyCfg {
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinConfiguration {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub node_registration: NodeRegistration,
    #[serde(default)]
    pub ca_cert_path: String,
    #[serde(default)]
    pub discovery: Discovery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<JoinControlPlane>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_phases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Discovery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<BootstrapTokenDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileDiscovery>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls_bootstrap_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BootstrapTokenDiscovery {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub api_server_endpoint: String,
    #[serde(default)]
    pub ca_cert_hashes: Vec<String>,
    #[serde(default)]
    pub unsafe_skip_ca_verification: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileDiscovery {
    pub kube_config_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinControlPlane {
    #[serde(default, rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate_key: String,
}

/// The documents found in one configuration file.
#[derive(Debug, Default)]
pub struct Documents {
    pub init: Option<InitConfiguration>,
    pub cluster: Option<ClusterConfiguration>,
    pub join: Option<JoinConfiguration>,
    pub kubelet: Option<Map<String, Value>>,
    pub kube_proxy: Option<Map<String, Value>>,
    pub other_kubeadm_kinds: Vec<String>,
    pub warnings: Vec<String>,
}

/// Parses a multi-document YAML configuration file, rejecting what the real kubeadm rejects,
/// without a kubeadm version (the API versions every supported kubeadm reads; v1beta3 is
/// accepted with the deprecation warning). kubeadm commands use [`parse_documents_for`].
pub fn parse_documents(text: &str) -> Result<Documents> {
    parse_documents_with(text, None)
}

/// [`parse_documents`] as the kubeadm of this version does it: kubeadm 1.36 removed v1beta3.
pub fn parse_documents_for(text: &str, kubeadm: KubeVersion) -> Result<Documents> {
    parse_documents_with(text, Some(kubeadm))
}

fn parse_documents_with(text: &str, kubeadm: Option<KubeVersion>) -> Result<Documents> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| anyhow!("error converting YAML to JSON: {e}"))?;
    let mut out = Documents::default();
    let mut seen = Vec::new();
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let Value::Object(map) = doc else {
            bail!("invalid configuration: a document is not a YAML mapping");
        };
        let api = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if api.is_empty() || kind.is_empty() {
            bail!(
                "invalid configuration for GroupVersionKind {api}, Kind={kind}: kind and apiVersion is mandatory information that must be specified"
            );
        }
        if seen.contains(&kind) {
            bail!("invalid configuration: kind {kind:?} is specified twice in YAML file");
        }
        seen.push(kind.clone());
        let (group, _version) = api.split_once('/').unwrap_or(("", api.as_str()));
        match group {
            KUBEADM_GROUP => decode_kubeadm(&api, &kind, map, kubeadm, &mut out)?,
            "kubelet.config.k8s.io" => {
                check_component(&api, &kind, KUBELET_API, "KubeletConfiguration", &map, KUBELET_FIELDS)?;
                out.kubelet = Some(map);
            }
            "kubeproxy.config.k8s.io" => {
                check_component(&api, &kind, KUBEPROXY_API, "KubeProxyConfiguration", &map, KUBEPROXY_FIELDS)?;
                out.kube_proxy = Some(map);
            }
            _ => out.warnings.push(format!(
                "[config] WARNING: Ignored configuration document with GroupVersionKind {api}, Kind={kind}"
            )),
        }
    }
    Ok(out)
}

fn no_kind(api: &str, kind: &str) -> anyhow::Error {
    anyhow!(
        "no kind {kind:?} is registered for version {api:?} in scheme \"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31\""
    )
}

fn gvk(api: &str, kind: &str) -> String {
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    format!("schema.GroupVersionKind{{Group:{group:?}, Version:{version:?}, Kind:{kind:?}}}")
}

fn strict_error(api: &str, kind: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "error unmarshaling configuration {}: strict decoding error: {e}",
        gvk(api, kind)
    )
}

/// A decoding (type) error, shaped like Go's encoding/json error kubeadm returns.
fn type_error(api: &str, kind: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("error unmarshaling configuration {}: {e}", gvk(api, kind))
}

/// The kubeadm release that last read an API version (validateSupportedVersion's
/// oldKnownAPIVersions; v1beta3 joined it in 1.36, kubernetes/kubernetes#136016).
fn last_kubeadm_for(api: &str, kubeadm: Option<KubeVersion>) -> Option<&'static str> {
    match api {
        "kubeadm.k8s.io/v1alpha1" => Some("v1.11"),
        "kubeadm.k8s.io/v1alpha2" => Some("v1.12"),
        "kubeadm.k8s.io/v1alpha3" => Some("v1.14"),
        "kubeadm.k8s.io/v1beta1" => Some("v1.15"),
        "kubeadm.k8s.io/v1beta2" => Some("v1.22"),
        V1BETA3 if kubeadm.is_some_and(|k| k.minor >= 36) => Some("v1.35"),
        _ => None,
    }
}

/// Go's json type name of a YAML/JSON value, for decoding errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The `[]string` fields kubeadm decodes SANs into: a list of strings, nothing else. Go's
/// decoder names the struct and the field path; serde's message would not.
fn check_string_lists(api: &str, kind: &str, map: &Map<String, Value>) -> Result<()> {
    const FIELDS: &[(&str, &str, &str)] = &[
        ("/apiServer/certSANs", "APIServer", "apiServer.certSANs"),
        (
            "/etcd/local/serverCertSANs",
            "LocalEtcd",
            "etcd.local.serverCertSANs",
        ),
        (
            "/etcd/local/peerCertSANs",
            "LocalEtcd",
            "etcd.local.peerCertSANs",
        ),
    ];
    let doc = Value::Object(map.clone());
    for (pointer, strukt, field) in FIELDS {
        match doc.pointer(pointer) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if let Some(bad) = items.iter().find(|i| !i.is_string()) {
                    return Err(type_error(
                        api,
                        kind,
                        format!(
                            "json: cannot unmarshal {} into Go struct field {strukt}.{field} of type string",
                            json_type(bad)
                        ),
                    ));
                }
            }
            Some(other) => {
                return Err(type_error(
                    api,
                    kind,
                    format!(
                        "json: cannot unmarshal {} into Go struct field {strukt}.{field} of type []string",
                        json_type(other)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// serde's error for a document: unknown fields are strict-decoding errors, anything else a
/// decoding (type) error.
fn decode_error(api: &str, kind: &str, e: serde_json::Error) -> anyhow::Error {
    let m = e.to_string();
    if let Some(rest) = m.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        strict_error(api, kind, format!("unknown field {name:?}"))
    } else {
        type_error(api, kind, format!("json: {m}"))
    }
}

fn decode_kubeadm(
    api: &str,
    kind: &str,
    mut map: Map<String, Value>,
    kubeadm: Option<KubeVersion>,
    out: &mut Documents,
) -> Result<()> {
    if let Some(release) = last_kubeadm_for(api, kubeadm) {
        bail!(
            "your configuration file uses an old API spec: {api:?} (kind: {kind:?}). Please use kubeadm {release} instead and run 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version."
        );
    }
    match api {
        V1BETA4 => {}
        V1BETA3 => {
            out.warnings.push(format!(
                "W [config] your configuration file uses a deprecated API spec: {api:?} (kind: {kind:?}). Please use 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version."
            ));
            map = from_v1beta3(api, kind, map)?;
        }
        _ => return Err(no_kind(api, kind)),
    }
    check_string_lists(api, kind, &map)?;
    let v = Value::Object(map);
    match kind {
        "InitConfiguration" => {
            out.init = Some(serde_json::from_value(v).map_err(|e| decode_error(api, kind, e))?)
        }
        "ClusterConfiguration" => {
            out.cluster = Some(serde_json::from_value(v).map_err(|e| decode_error(api, kind, e))?)
        }
        "JoinConfiguration" => {
            out.join = Some(serde_json::from_value(v).map_err(|e| decode_error(api, kind, e))?)
        }
        "ResetConfiguration" | "UpgradeConfiguration" if api == V1BETA4 => {
            out.other_kubeadm_kinds.push(kind.to_string())
        }
        _ => return Err(no_kind(api, kind)),
    }
    Ok(())
}

/// Converts a v1beta3 document to v1beta4 shape: extraArgs maps become name/value lists and
/// fields v1beta4 dropped are removed; fields only v1beta4 knows are refused.
fn from_v1beta3(api: &str, kind: &str, mut map: Map<String, Value>) -> Result<Map<String, Value>> {
    const V1BETA4_ONLY: &[&str] = &[
        "timeouts",
        "encryptionAlgorithm",
        "certificateValidityPeriod",
        "caCertificateValidityPeriod",
        "extraEnvs",
        "imagePullSerial",
    ];
    fn walk(api: &str, kind: &str, v: &mut Value) -> Result<()> {
        match v {
            Value::Object(m) => {
                for k in V1BETA4_ONLY {
                    if m.contains_key(*k) {
                        return Err(strict_error(api, kind, format!("unknown field \"{k}\"")));
                    }
                }
                m.remove("timeoutForControlPlane");
                for key in ["extraArgs", "kubeletExtraArgs"] {
                    if let Some(args) = m.get_mut(key) {
                        let Value::Object(a) = args else {
                            return Err(strict_error(
                                api,
                                kind,
                                format!("{key}: expected a map of strings"),
                            ));
                        };
                        let list: Vec<Value> = a
                            .iter()
                            .map(|(k, v)| {
                                let val = v
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string());
                                serde_json::json!({"name": k, "value": val})
                            })
                            .collect();
                        *args = Value::Array(list);
                    }
                }
                for (k, child) in m.iter_mut() {
                    if k != "extraArgs" && k != "kubeletExtraArgs" {
                        walk(api, kind, child)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    if let Some(Value::Object(d)) = map.get_mut("discovery") {
        d.remove("timeout");
    }
    let mut v = Value::Object(std::mem::take(&mut map));
    walk(api, kind, &mut v)?;
    let Value::Object(mut m) = v else {
        unreachable!("walk keeps objects")
    };
    m.insert("apiVersion".into(), Value::String(V1BETA4.into()));
    Ok(m)
}

fn check_component(
    api: &str,
    kind: &str,
    want_api: &str,
    want_kind: &str,
    map: &Map<String, Value>,
    fields: &[&str],
) -> Result<()> {
    if api != want_api || kind != want_kind {
        return Err(no_kind(api, kind));
    }
    for k in map.keys() {
        if !fields.contains(&k.as_str()) {
            return Err(strict_error(api, kind, format!("unknown field \"{k}\"")));
        }
    }
    Ok(())
}

const KUBELET_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "enableServer",
    "staticPodPath",
    "podLogsDir",
    "syncFrequency",
    "fileCheckFrequency",
    "httpCheckFrequency",
    "staticPodURL",
    "staticPodURLHeader",
    "address",
    "port",
    "readOnlyPort",
    "tlsCertFile",
    "tlsPrivateKeyFile",
    "tlsCipherSuites",
    "tlsMinVersion",
    "rotateCertificates",
    "serverTLSBootstrap",
    "authentication",
    "authorization",
    "registryPullQPS",
    "registryBurst",
    "imagePullCredentialsVerificationPolicy",
    "preloadedImagesVerificationAllowlist",
    "eventRecordQPS",
    "eventBurst",
    "enableDebuggingHandlers",
    "enableContentionProfiling",
    "healthzPort",
    "healthzBindAddress",
    "oomScoreAdj",
    "clusterDomain",
    "clusterDNS",
    "streamingConnectionIdleTimeout",
    "nodeStatusUpdateFrequency",
    "nodeStatusReportFrequency",
    "nodeLeaseDurationSeconds",
    "imageMinimumGCAge",
    "imageMaximumGCAge",
    "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent",
    "volumeStatsAggPeriod",
    "kubeletCgroups",
    "systemCgroups",
    "cgroupRoot",
    "cgroupsPerQOS",
    "cgroupDriver",
    "cpuManagerPolicy",
    "singleProcessOOMKill",
    "cpuManagerPolicyOptions",
    "cpuManagerReconcilePeriod",
    "memoryManagerPolicy",
    "topologyManagerPolicy",
    "topologyManagerScope",
    "topologyManagerPolicyOptions",
    "qosReserved",
    "runtimeRequestTimeout",
    "hairpinMode",
    "maxPods",
    "podCIDR",
    "podPidsLimit",
    "resolvConf",
    "runOnce",
    "cpuCFSQuota",
    "cpuCFSQuotaPeriod",
    "nodeStatusMaxImages",
    "maxOpenFiles",
    "contentType",
    "kubeAPIQPS",
    "kubeAPIBurst",
    "serializeImagePulls",
    "maxParallelImagePulls",
    "evictionHard",
    "evictionSoft",
    "evictionSoftGracePeriod",
    "evictionPressureTransitionPeriod",
    "evictionMaxPodGracePeriod",
    "evictionMinimumReclaim",
    "mergeDefaultEvictionSettings",
    "podsPerCore",
    "enableControllerAttachDetach",
    "protectKernelDefaults",
    "makeIPTablesUtilChains",
    "iptablesMasqueradeBit",
    "iptablesDropBit",
    "featureGates",
    "failSwapOn",
    "memorySwap",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "containerLogMaxWorkers",
    "containerLogMonitorInterval",
    "configMapAndSecretChangeDetectionStrategy",
    "systemReserved",
    "kubeReserved",
    "reservedSystemCPUs",
    "showHiddenMetricsForVersion",
    "systemReservedCgroup",
    "kubeReservedCgroup",
    "enforceNodeAllocatable",
    "allowedUnsafeSysctls",
    "volumePluginDir",
    "providerID",
    "kernelMemcgNotification",
    "logging",
    "enableSystemLogHandler",
    "enableSystemLogQuery",
    "shutdownGracePeriod",
    "shutdownGracePeriodCriticalPods",
    "shutdownGracePeriodByPodPriority",
    "crashLoopBackOff",
    "reservedMemory",
    "enableProfilingHandler",
    "enableDebugFlagsHandler",
    "seccompDefault",
    "memoryThrottlingFactor",
    "registerWithTaints",
    "registerNode",
    "tracing",
    "localStorageCapacityIsolation",
    "containerRuntimeEndpoint",
    "imageServiceEndpoint",
    "failCgroupV1",
    "userNamespaces",
];

const KUBEPROXY_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "featureGates",
    "clientConnection",
    "logging",
    "hostnameOverride",
    "bindAddress",
    "healthzBindAddress",
    "metricsBindAddress",
    "bindAddressHardFail",
    "enableProfiling",
    "showHiddenMetricsForVersion",
    "mode",
    "iptables",
    "ipvs",
    "nftables",
    "winkernel",
    "detectLocalMode",
    "detectLocal",
    "clusterCIDR",
    "nodePortAddresses",
    "oomScoreAdj",
    "conntrack",
    "configSyncPeriod",
    "portRange",
    "windowsRunAsService",
    "linux",
];

/// A parsed IPv4/IPv6 CIDR.
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("invalid CIDR address: {s}"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| anyhow!("invalid CIDR address: {s}"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| anyhow!("invalid CIDR address: {s}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            bail!("invalid CIDR address: {s}");
        }
        Ok(Self { addr, prefix })
    }

    /// Comma-separated CIDRs (dual-stack settings); any bad one fails the whole string.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        s.split(',').map(|c| Self::parse(c.trim())).collect()
    }

    /// Address bits (32 or 128).
    pub fn bits(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// netutils.RangeSize: the number of addresses, saturating.
    pub fn range_size(&self) -> u128 {
        let host = u32::from(self.bits() - self.prefix);
        if host >= 63 {
            i64::MAX as u128
        } else {
            1u128 << host
        }
    }

    /// The network in CIDR notation, host bits cleared (Go's IPNet.String()).
    pub fn network(&self) -> String {
        format!("{}/{}", self.nth(0), self.prefix)
    }

    /// The address at `offset` within the network (1 = the kubernetes Service IP).
    pub fn nth(&self, offset: u32) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                IpAddr::from((u32::from(a) & mask).wrapping_add(offset).to_be_bytes())
            }
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                IpAddr::from(
                    (u128::from(a) & mask)
                        .wrapping_add(offset as u128)
                        .to_be_bytes(),
                )
            }
        }
    }
}

/// The effective settings after defaulting and validation (kubeadm's internal config).
#[derive(Debug, Clone)]
pub struct Effective {
    pub init: InitConfiguration,
    pub cluster: ClusterConfiguration,
    pub kubelet: Map<String, Value>,
    pub kube_proxy: Map<String, Value>,
    pub version: KubeVersion,
    pub advertise: IpAddr,
    pub bind_port: u16,
    pub node_name: String,
}

impl ClusterConfiguration {
    /// Fills the defaults kubeadm fills.
    pub fn default_fields(&mut self, kubeadm_version: KubeVersion) {
        if self.api_version.is_empty() {
            self.api_version = V1BETA4.into();
        }
        self.kind = "ClusterConfiguration".into();
        if self.networking.service_subnet.is_empty() {
            self.networking.service_subnet = "10.96.0.0/12".into();
        }
        if self.networking.dns_domain.is_empty() {
            self.networking.dns_domain = "cluster.local".into();
        }
        if self.certificates_dir.is_empty() {
            self.certificates_dir = crate::paths::PKI_DIR.into();
        }
        if self.image_repository.is_empty() {
            self.image_repository = "registry.k8s.io".into();
        }
        if self.cluster_name.is_empty() {
            self.cluster_name = "kubernetes".into();
        }
        if self.kubernetes_version.is_empty() || self.kubernetes_version.starts_with("stable") {
            // Without internet the real kubeadm falls back to its own version as well.
            self.kubernetes_version = kubeadm_version.to_string();
        }
        if self.etcd.local.is_none() && self.etcd.external.is_none() {
            self.etcd.local = Some(LocalEtcd::default());
        }
        // LowercaseSANs, as SetClusterDynamicDefaults does before validation.
        for san in self.api_server.cert_sans.iter_mut() {
            *san = san.to_lowercase();
        }
        if let Some(l) = self.etcd.local.as_mut() {
            for san in l
                .server_cert_sans
                .iter_mut()
                .chain(l.peer_cert_sans.iter_mut())
            {
                *san = san.to_lowercase();
            }
        }
        if let Some(l) = self.etcd.local.as_mut()
            && l.data_dir.is_empty()
        {
            l.data_dir = crate::paths::ETCD_DATA_DIR.into();
        }
    }

    /// kubeadm's ValidateClusterConfiguration, for the fields the simulator uses.
    pub fn validate(&self, kubeadm_version: KubeVersion) -> Result<KubeVersion> {
        let mut errs = vec![];
        let v = match KubeVersion::parse(&self.kubernetes_version) {
            Ok(v) => Some(v),
            Err(_) => {
                errs.push(format!(
                    "kubernetesVersion: Invalid value: {:?}: invalid version",
                    self.kubernetes_version
                ));
                None
            }
        };
        if let Some(v) = v {
            let min_minor = kubeadm_version.minor.saturating_sub(1);
            if v.major != kubeadm_version.major || v.minor < min_minor {
                errs.push(format!(
                    "this version of kubeadm only supports deploying clusters with the control plane version >= {}.{}.0. Current version: {v}",
                    kubeadm_version.major, min_minor
                ));
            }
        }
        errs.extend(self.validate_networking());
        errs.extend(validate_cert_sans(
            &self.api_server.cert_sans,
            "apiServer.certSANs",
        ));
        if !self.certificates_dir.starts_with('/') {
            errs.push(format!(
                "certificatesDir: Invalid value: {:?}: path is not absolute",
                self.certificates_dir
            ));
        }
        if let Some(l) = &self.etcd.local {
            if !l.data_dir.starts_with('/') {
                errs.push(format!(
                    "etcd.local.dataDir: Invalid value: {:?}: path is not absolute",
                    l.data_dir
                ));
            }
            errs.extend(validate_cert_sans(
                &l.server_cert_sans,
                "etcd.local.serverCertSANs",
            ));
            errs.extend(validate_cert_sans(
                &l.peer_cert_sans,
                "etcd.local.peerCertSANs",
            ));
        }
        if !self.control_plane_endpoint.is_empty()
            && let Err(e) = split_host_port(&self.control_plane_endpoint, 6443)
        {
            errs.push(format!(
                "controlPlaneEndpoint: Invalid value: {:?}: {e}",
                self.control_plane_endpoint
            ));
        }
        for (field, d) in [
            (
                "certificateValidityPeriod",
                &self.certificate_validity_period,
            ),
            (
                "caCertificateValidityPeriod",
                &self.ca_certificate_validity_period,
            ),
        ] {
            if let Some(d) = d
                && parse_duration(d).is_err()
            {
                errs.push(format!("{field}: Invalid value: {d:?}: not a duration"));
            }
        }
        if let Err(e) = crate::pki::KeyAlgo::parse(&self.encryption_algorithm) {
            errs.push(e.to_string());
        }
        if self.etcd.external.is_some() && self.etcd.local.is_some() {
            errs.push(
                "etcd: Invalid value: \"\": etcd.local and etcd.external are mutually exclusive"
                    .into(),
            );
        }
        if !errs.is_empty() {
            bail!("{}", errs.join("\n"));
        }
        v.ok_or_else(|| anyhow!("invalid kubernetesVersion"))
    }

    pub fn validity(&self) -> Result<(std::time::Duration, std::time::Duration)> {
        let leaf = match &self.certificate_validity_period {
            Some(d) => parse_duration(d)?,
            None => crate::pki::YEAR,
        };
        let ca = match &self.ca_certificate_validity_period {
            Some(d) => parse_duration(d)?,
            None => crate::pki::CA_VALIDITY,
        };
        Ok((leaf, ca))
    }

    /// The certificates directory on this node. The configuration keeps the path as the
    /// cluster knows it; `SIM_ROOT` (tests) relocates it locally.
    pub fn cert_dir(&self) -> std::path::PathBuf {
        crate::paths::p(&self.certificates_dir)
    }

    pub fn service_ip(&self) -> Result<IpAddr> {
        Ok(first_cidr(&self.networking.service_subnet)?.nth(1))
    }

    pub fn dns_ip(&self) -> Result<IpAddr> {
        Ok(first_cidr(&self.networking.service_subnet)?.nth(10))
    }

    /// kubeadm's ValidateNetworking: dnsDomain, service and pod subnets (sizes, dual-stack
    /// shape, the pod subnet against the controller-manager's node mask).
    fn validate_networking(&self) -> Vec<String> {
        let mut errs = vec![];
        for e in dns1123_subdomain_errors(&self.networking.dns_domain) {
            errs.push(format!(
                "networking.dnsDomain: Invalid value: {:?}: {e}",
                self.networking.dns_domain
            ));
        }
        let svc = &self.networking.service_subnet;
        if !svc.is_empty() {
            let field = "networking.serviceSubnet";
            if let Some(subnets) = validate_ip_net(svc, MIN_SERVICE_ADDRESSES, field, &mut errs) {
                for c in subnets {
                    let bits = c.bits();
                    if bits - c.prefix > MAX_SERVICE_SUBNET_BITS {
                        errs.push(format!(
                            "{field}: Invalid value: {:?}: specified service subnet is too large; for {bits}-bit addresses, the mask must be >= {}",
                            c.network(),
                            bits - MAX_SERVICE_SUBNET_BITS
                        ));
                    }
                }
            }
        }
        let pods = &self.networking.pod_subnet;
        if !pods.is_empty() {
            let field = "networking.podSubnet";
            if let Some(subnets) = validate_ip_net(pods, MIN_POD_ADDRESSES, field, &mut errs)
                && arg_value(&self.controller_manager.extra_args, "allocate-node-cidrs").as_deref()
                    != Some("false")
            {
                for c in subnets {
                    let flag = if c.addr.is_ipv4() {
                        "node-cidr-mask-size-ipv4"
                    } else {
                        "node-cidr-mask-size-ipv6"
                    };
                    let node_mask = match arg_value(&self.controller_manager.extra_args, flag) {
                        Some(v) => match v.parse::<u8>() {
                            Ok(m) => m,
                            Err(e) => {
                                errs.push(format!(
                                    "{field}: Invalid value: {:?}: could not parse the value of the kube-controller-manager flag {flag} as an integer: {e}",
                                    c.network()
                                ));
                                continue;
                            }
                        },
                        None if c.addr.is_ipv4() => 24,
                        None => 64,
                    };
                    if c.prefix > node_mask {
                        errs.push(format!(
                            "{field}: Invalid value: {:?}: the size of pod subnet with mask {} is smaller than the size of node subnet with mask {node_mask}",
                            c.network(),
                            c.prefix
                        ));
                    } else if node_mask - c.prefix > POD_SUBNET_NODE_MASK_MAX_DIFF {
                        errs.push(format!(
                            "{field}: Invalid value: {:?}: pod subnet mask ({}) and node-mask ({node_mask}) difference is greater than {POD_SUBNET_NODE_MASK_MAX_DIFF}",
                            c.network(),
                            c.prefix
                        ));
                    }
                }
            }
        }
        errs
    }

    pub fn to_yaml(&self) -> Result<String> {
        crate::util::to_yaml(self)
    }
}

/// kubeadm's constants.MinimumAddressesInServiceSubnet (the DNS Service is the tenth IP).
pub const MIN_SERVICE_ADDRESSES: u128 = 10;
/// constants.MinimumAddressesInPodSubnet.
pub const MIN_POD_ADDRESSES: u128 = 14;
/// constants.MaximumBitsForServiceSubnet: at most /12 for IPv4, /108 for IPv6.
pub const MAX_SERVICE_SUBNET_BITS: u8 = 20;
/// constants.PodSubnetNodeMaskMaxDiff.
pub const POD_SUBNET_NODE_MASK_MAX_DIFF: u8 = 16;

fn first_cidr(s: &str) -> Result<Cidr> {
    Cidr::parse(s.split(',').next().unwrap_or(s).trim())
}

/// The last value of an extraArgs flag (kubeadm.GetArgValue with index -1).
fn arg_value(args: &[Arg], name: &str) -> Option<String> {
    args.iter()
        .rev()
        .find(|a| a.name == name)
        .map(|a| a.value.clone())
}

/// ValidateIPNetFromString: parseable, one CIDR or one per family, each big enough.
fn validate_ip_net(
    value: &str,
    min_addrs: u128,
    field: &str,
    errs: &mut Vec<String>,
) -> Option<Vec<Cidr>> {
    let Ok(subnets) = Cidr::parse_list(value) else {
        errs.push(format!(
            "{field}: Invalid value: {value:?}: couldn't parse subnet"
        ));
        return None;
    };
    let dual_msg =
        "expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking";
    if subnets.len() > 2
        || (subnets.len() == 2 && subnets[0].addr.is_ipv4() == subnets[1].addr.is_ipv4())
    {
        errs.push(format!("{field}: Invalid value: {value:?}: {dual_msg}"));
    }
    for c in &subnets {
        let n = c.range_size();
        if n < min_addrs {
            errs.push(format!(
                "{field}: Invalid value: {:?}: subnet with {n} address(es) is too small, the minimum is {min_addrs}",
                c.network()
            ));
        }
    }
    Some(subnets)
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const WILDCARD_DNS1123_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// validation.IsDNS1123Subdomain's messages.
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = vec![];
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !is_dns1123_subdomain(s) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

/// ValidateCertSANs: each SAN is an IP, a DNS subdomain or a wildcard subdomain.
pub fn validate_cert_sans(sans: &[String], field: &str) -> Vec<String> {
    sans.iter()
        .filter(|san| {
            !is_dns1123_subdomain(san)
                && !san.strip_prefix("*.").is_some_and(is_dns1123_subdomain)
                && san.parse::<IpAddr>().is_err()
        })
        .map(|san| {
            let errs = dns1123_subdomain_errors(san).join("; ");
            format!(
                "{field}: Invalid value: {san:?}: altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards: {errs}; {WILDCARD_DNS1123_MSG}"
            )
        })
        .collect()
}

/// Splits `host[:port]`, defaulting the port.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16)> {
    if s.is_empty() {
        bail!("empty address");
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("missing ']' in address"))?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| {
                anyhow!("port must be a valid number between 1 and 65535, inclusive")
            })?,
            None => default_port,
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port: u16 = p.parse().map_err(|_| {
                anyhow!("port must be a valid number between 1 and 65535, inclusive")
            })?;
            if port == 0 {
                bail!("port must be a valid number between 1 and 65535, inclusive");
            }
            Ok((h.to_string(), port))
        }
        _ => Ok((s.to_string(), default_port)),
    }
}

pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl NodeRegistration {
    /// criSocket with the `unix://` scheme kubeadm prepends (with a warning) when missing.
    pub fn cri_endpoint(&self) -> Option<String> {
        if self.cri_socket.is_empty() {
            return None;
        }
        if self.cri_socket.contains("://") {
            Some(self.cri_socket.clone())
        } else {
            eprintln!(
                "W Usage of CRI endpoints without URL scheme is deprecated and can cause kubelet errors in the future. Automatically prepending scheme \"unix\" to the \"criSocket\" with value {:?}. Please update your configuration!",
                self.cri_socket
            );
            Some(format!("unix://{}", self.cri_socket))
        }
    }
}

/// Reads a configuration file for `init`.
pub fn load_init(path: &std::path::Path, kubeadm_version: KubeVersion) -> Result<Effective> {
    let text = crate::util::read_to_string(path)?;
    let docs = parse_documents_for(&text, kubeadm_version)
        .with_context(|| format!("loading {}", path.display()))?;
    for w in &docs.warnings {
        eprintln!("{w}");
    }
    effective_init(docs, kubeadm_version)
}

pub fn effective_init(docs: Documents, kubeadm_version: KubeVersion) -> Result<Effective> {
    let mut init = docs.init.unwrap_or_default();
    init.api_version = V1BETA4.into();
    init.kind = "InitConfiguration".into();
    let mut cluster = docs.cluster.unwrap_or_default();
    cluster.default_fields(kubeadm_version);
    let version = cluster.validate(kubeadm_version)?;
    for (i, t) in init.bootstrap_tokens.iter().enumerate() {
        if crate::token::Token::parse(&t.token).is_err() {
            bail!(
                "bootstrapTokens[{i}].token: Invalid value: \"<redacted>\": the bootstrap token is invalid"
            );
        }
    }
    let advertise: IpAddr = if init.local_api_endpoint.advertise_address.is_empty() {
        crate::util::default_ipv4().map(IpAddr::V4).ok_or_else(|| {
            anyhow!(
                "unable to select an IP from default routes: set localAPIEndpoint.advertiseAddress"
            )
        })?
    } else {
        init.local_api_endpoint.advertise_address.parse().map_err(|_| {
            anyhow!(
                "localAPIEndpoint.advertiseAddress: Invalid value: {:?}: cannot parse IP address",
                init.local_api_endpoint.advertise_address
            )
        })?
    };
    let bind_port = if init.local_api_endpoint.bind_port == 0 {
        6443
    } else {
        init.local_api_endpoint.bind_port
    };
    let node_name = if init.node_registration.name.is_empty() {
        crate::util::hostname()
    } else {
        init.node_registration.name.clone()
    };
    Ok(Effective {
        init,
        cluster,
        kubelet: docs.kubelet.unwrap_or_default(),
        kube_proxy: docs.kube_proxy.unwrap_or_default(),
        version,
        advertise,
        bind_port,
        node_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: KubeVersion = KubeVersion {
        major: 1,
        minor: 36,
        patch: 2,
    };

    #[test]
    fn unknown_field_in_cluster_configuration_is_a_strict_decoding_error() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.36.2\nnetworkin: {}\n";
        let e = parse_documents(y).unwrap_err().to_string();
        assert!(
            e.contains("strict decoding error") && e.contains("networkin"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_named_like_kubeadms_strict_decoder() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworkin: {}\n";
        let e = parse_documents(y).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "Kind:\"ClusterConfiguration\"}: strict decoding error: unknown field \"networkin\""
            ),
            "{e}"
        );
    }

    const V35: KubeVersion = KubeVersion {
        major: 1,
        minor: 35,
        patch: 0,
    };

    #[test]
    fn v1beta3_is_refused_by_kubeadm_1_36_and_later() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n";
        let e = parse_documents_for(y, V).unwrap_err().to_string();
        assert_eq!(
            e,
            "your configuration file uses an old API spec: \"kubeadm.k8s.io/v1beta3\" (kind: \"ClusterConfiguration\"). Please use kubeadm v1.35 instead and run 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version."
        );
    }

    #[test]
    fn v1beta3_is_still_read_by_kubeadm_1_35_with_the_deprecation_warning() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n";
        let d = parse_documents_for(y, V35).unwrap();
        assert!(
            d.warnings[0].contains("uses a deprecated API spec: \"kubeadm.k8s.io/v1beta3\""),
            "{:?}",
            d.warnings
        );
    }

    fn cluster_with(edit: impl FnOnce(&mut ClusterConfiguration)) -> String {
        let mut c = ClusterConfiguration::default();
        edit(&mut c);
        c.default_fields(V);
        match c.validate(V) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn service_subnet_with_fewer_than_ten_addresses_is_refused() {
        let e = cluster_with(|c| c.networking.service_subnet = "10.96.0.0/29".into());
        assert_eq!(
            e,
            "networking.serviceSubnet: Invalid value: \"10.96.0.0/29\": subnet with 8 address(es) is too small, the minimum is 10"
        );
        assert_eq!(
            cluster_with(|c| c.networking.service_subnet = "10.96.0.0/28".into()),
            ""
        );
    }

    #[test]
    fn service_subnet_wider_than_20_bits_is_refused() {
        let e = cluster_with(|c| c.networking.service_subnet = "10.0.0.0/11".into());
        assert_eq!(
            e,
            "networking.serviceSubnet: Invalid value: \"10.0.0.0/11\": specified service subnet is too large; for 32-bit addresses, the mask must be >= 12"
        );
        assert_eq!(
            cluster_with(|c| c.networking.service_subnet = "10.96.0.0/12".into()),
            ""
        );
        let e = cluster_with(|c| c.networking.service_subnet = "fd00::/107".into());
        assert!(
            e.contains("for 128-bit addresses, the mask must be >= 108"),
            "{e}"
        );
        assert_eq!(
            cluster_with(|c| c.networking.service_subnet = "fd00::/108".into()),
            ""
        );
    }

    #[test]
    fn pod_subnet_smaller_than_the_node_mask_is_refused() {
        let e = cluster_with(|c| c.networking.pod_subnet = "10.244.0.0/25".into());
        assert_eq!(
            e,
            "networking.podSubnet: Invalid value: \"10.244.0.0/25\": the size of pod subnet with mask 25 is smaller than the size of node subnet with mask 24"
        );
        // a smaller node mask from the controller-manager's flags makes it fit
        assert_eq!(
            cluster_with(|c| {
                c.networking.pod_subnet = "10.244.0.0/25".into();
                c.controller_manager.extra_args.push(Arg {
                    name: "node-cidr-mask-size-ipv4".into(),
                    value: "26".into(),
                });
            }),
            ""
        );
        // no node CIDRs allocated, no node-mask rule
        assert_eq!(
            cluster_with(|c| {
                c.networking.pod_subnet = "10.244.0.0/25".into();
                c.controller_manager.extra_args.push(Arg {
                    name: "allocate-node-cidrs".into(),
                    value: "false".into(),
                });
            }),
            ""
        );
    }

    #[test]
    fn pod_subnet_more_than_16_bits_wider_than_the_node_mask_is_refused() {
        let e = cluster_with(|c| c.networking.pod_subnet = "10.0.0.0/7".into());
        assert!(
            e.contains("pod subnet mask (7) and node-mask (24) difference is greater than 16"),
            "{e}"
        );
    }

    #[test]
    fn pod_subnet_below_fourteen_addresses_and_bad_dual_stack_are_refused() {
        let e = cluster_with(|c| c.networking.pod_subnet = "10.244.0.0/29".into());
        assert!(
            e.contains("subnet with 8 address(es) is too small, the minimum is 14"),
            "{e}"
        );
        let e = cluster_with(|c| c.networking.service_subnet = "10.96.0.0/12,10.112.0.0/12".into());
        assert!(
            e.contains("expected one (IPv4 or IPv6) CIDR or two CIDRs from each family"),
            "{e}"
        );
        assert_eq!(
            cluster_with(|c| c.networking.service_subnet = "10.96.0.0/12,fd00::/108".into()),
            ""
        );
    }

    #[test]
    fn unparseable_subnet_is_refused_like_kubeadm() {
        let e = cluster_with(|c| c.networking.service_subnet = "10.96.0.0".into());
        assert_eq!(
            e,
            "networking.serviceSubnet: Invalid value: \"10.96.0.0\": couldn't parse subnet"
        );
    }

    #[test]
    fn cert_sans_that_are_not_a_list_of_strings_are_decoding_errors() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  certSANs: vip.example.com\n";
        let e = parse_documents(y).unwrap_err().to_string();
        assert!(
            e.ends_with("json: cannot unmarshal string into Go struct field APIServer.apiServer.certSANs of type []string"),
            "{e}"
        );
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  certSANs: [vip.example.com, 8443]\n";
        let e = parse_documents(y).unwrap_err().to_string();
        assert!(
            e.ends_with("json: cannot unmarshal number into Go struct field APIServer.apiServer.certSANs of type string"),
            "{e}"
        );
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local:\n    serverCertSANs: {a: b}\n";
        let e = parse_documents(y).unwrap_err().to_string();
        assert!(
            e.contains("cannot unmarshal object into Go struct field LocalEtcd.etcd.local.serverCertSANs of type []string"),
            "{e}"
        );
    }

    #[test]
    fn cert_sans_must_be_ips_dns_names_or_wildcards() {
        let e = cluster_with(|c| c.api_server.cert_sans = vec!["bad_name".into()]);
        assert!(
            e.starts_with("apiServer.certSANs: Invalid value: \"bad_name\": altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards"),
            "{e}"
        );
        assert_eq!(
            cluster_with(|c| {
                c.api_server.cert_sans = vec![
                    "10.0.0.100".into(),
                    "*.apps.example.com".into(),
                    "VIP.Example.com".into(),
                    "fd00::1".into(),
                ]
            }),
            ""
        );
    }

    #[test]
    fn dns_domain_must_be_a_dns_subdomain() {
        let e = cluster_with(|c| c.networking.dns_domain = "cluster_local".into());
        assert!(
            e.starts_with("networking.dnsDomain: Invalid value: \"cluster_local\": a lowercase RFC 1123 subdomain"),
            "{e}"
        );
    }

    #[test]
    fn timeouts_use_v1beta4s_api_call_spelling() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ntimeouts:\n  etcdAPICall: 10s\n  kubernetesAPICall: 1m\n";
        let j = parse_documents(y).unwrap().join.unwrap();
        let t = j.timeouts.unwrap();
        assert_eq!(t.etcd_api_call.as_deref(), Some("10s"));
        assert_eq!(t.kubernetes_api_call.as_deref(), Some("1m"));
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ntimeouts:\n  etcdApiCall: 10s\n";
        assert!(
            parse_documents(y)
                .unwrap_err()
                .to_string()
                .contains("unknown field \"etcdApiCall\"")
        );
    }

    #[test]
    fn unknown_kind_in_the_kubeadm_group_is_not_registered() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfig\n";
        let e = parse_documents(y).unwrap_err().to_string();
        assert!(e.contains("no kind \"InitConfig\" is registered"), "{e}");
    }

    #[test]
    fn unknown_kubeadm_api_version_is_refused() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta9\nkind: InitConfiguration\n";
        assert!(
            parse_documents(y)
                .unwrap_err()
                .to_string()
                .contains("no kind")
        );
        let y = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n";
        assert!(
            parse_documents(y)
                .unwrap_err()
                .to_string()
                .contains("old API spec")
        );
    }

    #[test]
    fn v1beta3_is_accepted_with_a_deprecation_warning_and_map_extra_args() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  timeoutForControlPlane: 4m0s\n  extraArgs:\n    audit-log-maxage: \"30\"\n";
        let d = parse_documents(y).unwrap();
        assert!(d.warnings.iter().any(|w| w.contains("deprecated")));
        let c = d.cluster.unwrap();
        assert_eq!(
            c.api_server.extra_args,
            vec![Arg {
                name: "audit-log-maxage".into(),
                value: "30".into()
            }]
        );
    }

    #[test]
    fn v1beta4_refuses_v1beta3_map_extra_args() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n    audit-log-maxage: \"30\"\n";
        assert!(parse_documents(y).is_err());
    }

    #[test]
    fn v1beta3_refuses_fields_only_v1beta4_has() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nencryptionAlgorithm: RSA-2048\n";
        assert!(
            parse_documents(y)
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn documents_without_kind_or_api_version_are_refused() {
        let e = parse_documents("kind: InitConfiguration\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mandatory"), "{e}");
    }

    #[test]
    fn the_same_kind_twice_is_refused() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n";
        assert!(
            parse_documents(y)
                .unwrap_err()
                .to_string()
                .contains("specified twice")
        );
    }

    #[test]
    fn unknown_kubelet_configuration_field_is_refused() {
        let y = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriverr: systemd\n";
        assert!(
            parse_documents(y)
                .unwrap_err()
                .to_string()
                .contains("cgroupDriverr")
        );
        let y = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\nfailSwapOn: false\n";
        assert!(parse_documents(y).unwrap().kubelet.is_some());
    }

    #[test]
    fn documents_of_foreign_groups_are_ignored_with_a_warning() {
        let y = "apiVersion: example.com/v1\nkind: Thing\n";
        let d = parse_documents(y).unwrap();
        assert!(d.warnings[0].contains("Ignored"));
    }

    #[test]
    fn control_plane_version_two_minors_behind_kubeadm_is_refused() {
        let mut c = ClusterConfiguration {
            kubernetes_version: "v1.34.0".into(),
            ..Default::default()
        };
        c.default_fields(V);
        assert!(c.validate(V).unwrap_err().to_string().contains(">= 1.35.0"));
        c.kubernetes_version = "v1.35.4".into();
        assert!(c.validate(V).is_ok());
    }

    #[test]
    fn invalid_subnets_and_endpoints_are_refused() {
        let mut c = ClusterConfiguration::default();
        c.default_fields(V);
        c.networking.pod_subnet = "10.244.0.0/33".into();
        c.control_plane_endpoint = "vip:notaport".into();
        let e = c.validate(V).unwrap_err().to_string();
        assert!(
            e.contains("networking.podSubnet") && e.contains("controlPlaneEndpoint"),
            "{e}"
        );
    }

    #[test]
    fn service_ip_and_dns_ip_come_from_the_service_subnet() {
        let mut c = ClusterConfiguration::default();
        c.default_fields(V);
        assert_eq!(c.service_ip().unwrap().to_string(), "10.96.0.1");
        assert_eq!(c.dns_ip().unwrap().to_string(), "10.96.0.10");
    }

    #[test]
    fn malformed_bootstrap_token_in_init_configuration_is_refused() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: abc.def\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.0.1\n";
        let e = effective_init(parse_documents(y).unwrap(), V)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrapTokens[0].token"), "{e}");
        assert!(!e.contains("abc.def"), "the token must not be echoed: {e}");
    }
}
