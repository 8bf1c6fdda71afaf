//! Well-known paths. `SIM_ROOT` (tests only) relocates every absolute path under a directory so
//! the simulators can run unprivileged on a development machine; in the lab it is unset.

use std::path::PathBuf;

/// Resolves an absolute path below the simulated filesystem root.
pub fn p(abs: &str) -> PathBuf {
    match std::env::var_os("SIM_ROOT") {
        Some(root) if !root.is_empty() => PathBuf::from(root).join(abs.trim_start_matches('/')),
        _ => PathBuf::from(abs),
    }
}

/// Same as [`p`], as a string for flags and file contents.
pub fn s(abs: &str) -> String {
    p(abs).to_string_lossy().into_owned()
}

pub const KUBE_DIR: &str = "/etc/kubernetes";
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const SUPER_ADMIN_CONF: &str = "/etc/kubernetes/super-admin.conf";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const BOOTSTRAP_KUBELET_CONF: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
pub const CONTROLLER_MANAGER_CONF: &str = "/etc/kubernetes/controller-manager.conf";
pub const SCHEDULER_CONF: &str = "/etc/kubernetes/scheduler.conf";
pub const KUBELET_DIR: &str = "/var/lib/kubelet";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const KUBELET_FLAGS_ENV: &str = "/var/lib/kubelet/kubeadm-flags.env";
pub const KUBELET_PKI: &str = "/var/lib/kubelet/pki";
pub const KUBELET_CLIENT_CURRENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const IMAGES_DIR: &str = "/usr/libexec/kubernetes-sim";
pub const LOG_DIR: &str = "/var/log/kubernetes-sim";
pub const RUN_DIR: &str = "/run/kubernetes-sim";
pub const VERSION_DIR: &str = "/usr/share/kubernetes-sim";
