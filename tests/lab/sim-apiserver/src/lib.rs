//! Lab simulators for the Kubernetes control plane: the API server (storage in the real etcd),
//! the controller-manager and the scheduler. Test support only; see tests/lab/SIMULATORS.md.

pub mod admission;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod catalog;
pub mod client;
pub mod controllers;
pub mod csr;
pub mod daemonset;
pub mod errors;
pub mod etcd;
pub mod flags;
pub mod health;
pub mod obj;
pub mod openapi;
pub mod patch;
pub mod proto;
pub mod sched;
pub mod scheduler;
pub mod schema;
pub mod server;
pub mod special;
pub mod table;
pub mod tlsutil;
pub mod validate;
pub mod workloads;

/// The component version: env `SIM_KUBE_VERSION` (set by the kubelet from the image tag),
/// else the kubelet package's version file. Always `v`-prefixed.
pub fn component_version() -> String {
    let raw = std::env::var("SIM_KUBE_VERSION")
        .ok()
        .or_else(|| std::fs::read_to_string("/usr/share/kubernetes-sim/kubelet.version").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "1.36.0".into());
    if raw.starts_with('v') {
        raw
    } else {
        format!("v{raw}")
    }
}
