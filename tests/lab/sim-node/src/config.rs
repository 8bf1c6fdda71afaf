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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_api_call: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Parses a multi-document YAML configuration file, rejecting what the real kubeadm rejects.
pub fn parse_documents(text: &str) -> Result<Documents> {
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
            KUBEADM_GROUP => decode_kubeadm(&api, &kind, map, &mut out)?,
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

fn strict_error(api: &str, kind: &str, e: impl std::fmt::Display) -> anyhow::Error {
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    anyhow!(
        "error unmarshaling configuration schema.GroupVersionKind{{Group:{group:?}, Version:{version:?}, Kind:{kind:?}}}: strict decoding error: {e}"
    )
}

fn decode_kubeadm(
    api: &str,
    kind: &str,
    mut map: Map<String, Value>,
    out: &mut Documents,
) -> Result<()> {
    match api {
        V1BETA4 => {}
        V1BETA3 => {
            out.warnings.push(format!(
                "W [config] {api} is deprecated: please use 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version."
            ));
            map = from_v1beta3(api, kind, map)?;
        }
        "kubeadm.k8s.io/v1beta1" | "kubeadm.k8s.io/v1beta2" | "kubeadm.k8s.io/v1alpha3" => bail!(
            "your configuration file uses an old API spec: {api:?}. Please use kubeadm v1.22 instead and run 'kubeadm config migrate --old-config old.yaml --new-config new.yaml', which will write the new, similar spec using a newer API version."
        ),
        _ => return Err(no_kind(api, kind)),
    }
    let v = Value::Object(map);
    match kind {
        "InitConfiguration" => {
            out.init = Some(serde_json::from_value(v).map_err(|e| strict_error(api, kind, e))?)
        }
        "ClusterConfiguration" => {
            out.cluster = Some(serde_json::from_value(v).map_err(|e| strict_error(api, kind, e))?)
        }
        "JoinConfiguration" => {
            out.join = Some(serde_json::from_value(v).map_err(|e| strict_error(api, kind, e))?)
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
        if let Err(e) = Cidr::parse(&self.networking.service_subnet) {
            errs.push(format!(
                "networking.serviceSubnet: Invalid value: {:?}: couldn't parse subnet: {e}",
                self.networking.service_subnet
            ));
        }
        if !self.networking.pod_subnet.is_empty()
            && let Err(e) = Cidr::parse(&self.networking.pod_subnet)
        {
            errs.push(format!(
                "networking.podSubnet: Invalid value: {:?}: couldn't parse subnet: {e}",
                self.networking.pod_subnet
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
        Ok(Cidr::parse(&self.networking.service_subnet)?.nth(1))
    }

    pub fn dns_ip(&self) -> Result<IpAddr> {
        Ok(Cidr::parse(&self.networking.service_subnet)?.nth(10))
    }

    pub fn to_yaml(&self) -> Result<String> {
        crate::util::to_yaml(self)
    }
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
    let docs = parse_documents(&text).with_context(|| format!("loading {}", path.display()))?;
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
