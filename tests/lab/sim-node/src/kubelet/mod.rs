//! The kubelet simulator: runs the static pods as processes, bootstraps its client
//! certificate, registers the Node, renews its Lease and reports pods bound to it as Running.

mod node;
pub mod pods;
pub mod workloads;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use crate::paths::{self, p};

/// Flags the real kubelet accepts that the simulator knows; values are kept as strings.
const KNOWN_FLAGS: &[&str] = &[
    "bootstrap-kubeconfig",
    "kubeconfig",
    "config",
    "container-runtime-endpoint",
    "node-ip",
    "hostname-override",
    "node-labels",
    "register-with-taints",
    "v",
    "cgroup-driver",
    "fail-swap-on",
    "runtime-request-timeout",
    "root-dir",
    "cert-dir",
    "rotate-certificates",
    "cloud-provider",
    "provider-id",
    "max-pods",
    "image-service-endpoint",
    "resolv-conf",
    "cluster-dns",
    "cluster-domain",
    "pod-manifest-path",
    "feature-gates",
    "logging-format",
];
const BOOL_FLAGS: &[&str] = &["fail-swap-on", "rotate-certificates"];
/// Known to kubelets before 1.35 only: 1.35 removed `--pod-infra-container-image`
/// (kubernetes/kubernetes#133779). (`--network-plugin`, `--cni-*` went with dockershim in 1.24.)
const FLAGS_BEFORE_1_35: &[&str] = &["pod-infra-container-image"];

/// Parses `--name=value` / `--name value` like pflag, refusing unknown flags (as the 1.35+
/// kubelet knows them).
pub fn parse_flags(args: &[String]) -> Result<BTreeMap<String, String>> {
    parse_flags_for(args, None)
}

/// [`parse_flags`] for a kubelet of this version.
pub fn parse_flags_for(
    args: &[String],
    version: Option<crate::util::KubeVersion>,
) -> Result<BTreeMap<String, String>> {
    let old = version.is_some_and(|v| (v.major, v.minor) < (1, 35));
    let mut out = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            bail!("unknown command {a:?} for \"kubelet\"");
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        let known = KNOWN_FLAGS.contains(&name.as_str())
            || (old && FLAGS_BEFORE_1_35.contains(&name.as_str()));
        if !known {
            bail!("failed to parse kubelet flag: unknown flag: --{name}");
        }
        let value = match value {
            Some(v) => v,
            None if BOOL_FLAGS.contains(&name.as_str()) => "true".into(),
            None => it.next().cloned().ok_or_else(|| {
                anyhow!("failed to parse kubelet flag: flag needs an argument: --{name}")
            })?,
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// Loads and checks the KubeletConfiguration file.
pub fn load_config(path: &std::path::Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "failed to load kubelet config file, path: {0}, error: failed to load Kubelet config file {0}, error failed to read kubelet config file {0:?}, error: {e}",
            path.display()
        )
    })?;
    let docs = crate::config::parse_documents(&text).with_context(|| {
        format!(
            "failed to load kubelet config file, path: {}",
            path.display()
        )
    })?;
    docs.kubelet.ok_or_else(|| {
        anyhow!(
            "failed to load kubelet config file, path: {}: no KubeletConfiguration document",
            path.display()
        )
    })
}

/// The effective settings the kubelet runs with.
pub struct Settings {
    pub node_name: String,
    pub node_ip: String,
    pub cri: String,
    pub static_pod_path: PathBuf,
    pub kubeconfig: PathBuf,
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub healthz: (String, u16),
    pub fail_swap_on: bool,
}

pub fn settings(flags: &BTreeMap<String, String>, cfg: &Map<String, Value>) -> Result<Settings> {
    let get = |k: &str| {
        cfg.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let cri = flags
        .get("container-runtime-endpoint")
        .cloned()
        .or_else(|| get("containerRuntimeEndpoint"))
        .unwrap_or_else(|| "unix:///run/containerd/containerd.sock".into());
    let fail_swap_on = match flags.get("fail-swap-on") {
        Some(v) => v != "false",
        None => cfg
            .get("failSwapOn")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    };
    let mut labels = BTreeMap::new();
    if let Some(l) = flags.get("node-labels") {
        for kv in l.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if k.starts_with("node-role.kubernetes.io/")
                || k.starts_with("kubernetes.io/") && !k.starts_with("kubernetes.io/hostname")
            {
                bail!(
                    "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{k}]\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically allowed set"
                );
            }
            labels.insert(k.to_string(), v.to_string());
        }
    }
    let mut taints = vec![];
    if let Some(t) = flags.get("register-with-taints") {
        for spec in t.split(',').filter(|s| !s.is_empty()) {
            let (kv, effect) = spec
                .split_once(':')
                .ok_or_else(|| anyhow!("invalid taint spec: {spec}"))?;
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let mut taint = serde_json::json!({"key": k, "effect": effect});
            if !v.is_empty() {
                taint["value"] = Value::String(v.into());
            }
            taints.push(taint);
        }
    }
    let node_name = flags
        .get("hostname-override")
        .cloned()
        .unwrap_or_else(crate::util::hostname)
        .to_lowercase();
    let node_ip = match flags.get("node-ip") {
        Some(ip) => ip.clone(),
        None => crate::util::default_ipv4()
            .map(|i| i.to_string())
            .unwrap_or_else(|| "127.0.0.1".into()),
    };
    Ok(Settings {
        node_name,
        node_ip,
        cri,
        static_pod_path: get("staticPodPath")
            .map(PathBuf::from)
            .unwrap_or_else(|| p(paths::MANIFESTS_DIR)),
        kubeconfig: flags
            .get("kubeconfig")
            .map(PathBuf::from)
            .unwrap_or_else(|| p(paths::KUBELET_CONF)),
        bootstrap_kubeconfig: flags.get("bootstrap-kubeconfig").map(PathBuf::from),
        labels,
        taints,
        healthz: (
            get("healthzBindAddress").unwrap_or_else(|| "127.0.0.1".into()),
            cfg.get("healthzPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(10248),
        ),
        fail_swap_on,
    })
}

/// Entry point of the `kubelet` binary; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        match crate::util::package_version("kubelet") {
            Ok(v) => {
                println!("Kubernetes {v}");
                return 0;
            }
            Err(e) => {
                eprintln!("{e:#}");
                return 1;
            }
        }
    }
    match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("E command failed: {e:#}");
            1
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let version = crate::util::package_version("kubelet")?;
    let flags = parse_flags_for(args, Some(version))?;
    let cfg = match flags.get("config") {
        Some(c) => load_config(std::path::Path::new(c))?,
        None => Map::new(),
    };
    if let Ok(mode) = crate::preflight::cgroup_mode() {
        check_cgroup_mode(&cfg, version, mode)?;
    }
    let s = settings(&flags, &cfg)?;
    if s.fail_swap_on && crate::preflight::swap_on(&p("/proc/swaps")) {
        bail!(
            "failed to run Kubelet: running with swap on is not supported, please disable swap or set --fail-swap-on flag to false"
        );
    }
    crate::cri::answers(&s.cri)
        .map_err(|e| anyhow!("failed to run Kubelet: validate service connection: {e:#}"))?;
    let listener = TcpListener::bind((s.healthz.0.as_str(), s.healthz.1)).with_context(|| {
        format!(
            "failed to run Kubelet: listen tcp {}:{}",
            s.healthz.0, s.healthz.1
        )
    })?;
    std::thread::spawn(move || serve_healthz(listener));
    eprintln!(
        "kubelet {version}: node {} ({}), runtime {}, static pods from {}",
        s.node_name,
        s.node_ip,
        s.cri,
        s.static_pod_path.display()
    );
    let pods = pods::StaticPods::new(s.static_pod_path.clone());
    let runner = pods.clone();
    std::thread::spawn(move || runner.run());
    node::Agent::new(s, version, pods).run()
}

/// failCgroupV1 defaults to true from kubelet 1.35 (KEP-5573): on a cgroup v1 (or hybrid) host
/// the kubelet then refuses to start while validating its configuration.
pub fn check_cgroup_mode(
    cfg: &Map<String, Value>,
    version: crate::util::KubeVersion,
    mode: crate::preflight::CgroupMode,
) -> Result<()> {
    let default = (version.major, version.minor) >= (1, 35);
    let fail = cfg
        .get("failCgroupV1")
        .and_then(Value::as_bool)
        .unwrap_or(default);
    if fail && mode == crate::preflight::CgroupMode::V1 {
        bail!(
            "failed to validate kubelet configuration, error: kubelet is configured to not run on a host using cgroup v1. cgroup v1 support is unsupported and will be removed in a future release"
        );
    }
    Ok(())
}

fn serve_healthz(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_kubelet_flags_are_refused_like_pflag() {
        let e = parse_flags(&args(&["--kubeconfig=/x", "--foo=bar"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown flag: --foo"), "{e}");
    }

    #[test]
    fn real_drop_in_flags_are_accepted() {
        let f = parse_flags(&args(&[
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--config=/var/lib/kubelet/config.yaml",
            "--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock",
            "--node-ip",
            "10.0.0.5",
        ]))
        .unwrap();
        assert_eq!(f["node-ip"], "10.0.0.5");
    }

    #[test]
    fn node_role_labels_cannot_be_self_assigned() {
        let f = parse_flags(&args(&["--node-labels=node-role.kubernetes.io/master="])).unwrap();
        assert!(settings(&f, &Map::new()).is_err());
        let f = parse_flags(&args(&["--node-labels=disk=ssd"])).unwrap();
        assert_eq!(settings(&f, &Map::new()).unwrap().labels["disk"], "ssd");
    }

    #[test]
    fn missing_config_file_is_fatal() {
        let e = load_config(std::path::Path::new("/nonexistent/config.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("failed to load kubelet config file"), "{e}");
    }

    #[test]
    fn kubelet_1_35_refuses_cgroup_v1_unless_fail_cgroup_v1_is_false() {
        use crate::preflight::CgroupMode;
        let v = |minor| crate::util::KubeVersion {
            major: 1,
            minor,
            patch: 0,
        };
        let e = check_cgroup_mode(&Map::new(), v(36), CgroupMode::V1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kubelet is configured to not run on a host using cgroup v1"),
            "{e}"
        );
        let mut cfg = Map::new();
        cfg.insert("failCgroupV1".into(), Value::Bool(false));
        assert!(check_cgroup_mode(&cfg, v(36), CgroupMode::V1).is_ok());
        assert!(check_cgroup_mode(&Map::new(), v(36), CgroupMode::V2).is_ok());
        assert!(check_cgroup_mode(&Map::new(), v(34), CgroupMode::V1).is_ok());
    }

    #[test]
    fn pod_infra_container_image_flag_is_gone_from_kubelet_1_35() {
        let a = args(&["--pod-infra-container-image=registry.k8s.io/pause:3.10"]);
        let e = parse_flags_for(
            &a,
            Some(crate::util::KubeVersion {
                major: 1,
                minor: 35,
                patch: 0,
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown flag: --pod-infra-container-image"),
            "{e}"
        );
        assert!(
            parse_flags_for(
                &a,
                Some(crate::util::KubeVersion {
                    major: 1,
                    minor: 34,
                    patch: 0
                })
            )
            .is_ok()
        );
        assert!(parse_flags(&args(&["--network-plugin=cni"])).is_err());
    }

    #[test]
    fn fail_swap_on_flag_overrides_the_config() {
        let f = parse_flags(&args(&["--fail-swap-on=false"])).unwrap();
        let mut cfg = Map::new();
        cfg.insert("failSwapOn".into(), Value::Bool(true));
        assert!(!settings(&f, &cfg).unwrap().fail_swap_on);
    }
}
