//! What the cluster lab tests share: running the installer and the real kubectl, reading the
//! nodes and a host's upgrade-relevant state, waiting, and a CNI configuration of their own.
#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::lab::{Lab, all_output};

pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

pub fn installer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_installer"))
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run installer")
}

/// The installer's output, which must have succeeded.
pub fn ok(args: &[&str]) -> String {
    let out = installer(args);
    let text = all_output(&out);
    assert!(out.status.success(), "installer {args:?} failed:\n{text}");
    text
}

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        all_output(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packages, holds, package sources, Kubernetes files and their content, services.
pub fn host_state(lab: &Lab, host: &str) -> String {
    lab.exec_ok(
        host,
        "dpkg-query -W -f='${Package} ${Version} ${Status}\\n' | sha256sum; apt-mark showhold; \
         cat /etc/apt/sources.list.d/kubernetes.list; \
         sudo find /etc/kubernetes -type f -not -path '*/tmp/*' -exec sha256sum {} + 2>/dev/null | sort; \
         systemctl is-active kubelet haproxy keepalived containerd 2>&1",
    )
}

pub fn states(lab: &Lab, hosts: &[&str]) -> Vec<String> {
    hosts.iter().map(|h| host_state(lab, h)).collect()
}

/// The nodes as (name, kubeletVersion, Ready, unschedulable).
pub fn nodes(kubeconfig: &Path) -> Vec<(String, String, bool, bool)> {
    let doc: serde_json::Value =
        serde_json::from_str(&kubectl(kubeconfig, &["get", "nodes", "-o", "json"])).unwrap();
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ready,
                n["spec"]["unschedulable"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A CNI configuration of the user's own on HOSTS (the addons are off in these inventories),
/// so the kubelets report Ready as they would with any CNI.
pub fn lay_cni_config(lab: &Lab, hosts: &[&str]) {
    for h in hosts {
        lab.exec_ok(
            h,
            "sudo mkdir -p /etc/cni/net.d && printf '%s\\n' '{\"cniVersion\": \"1.0.0\", \"name\": \"lab\", \"plugins\": [{\"type\": \"bridge\", \"bridge\": \"cni0\", \"ipam\": {\"type\": \"host-local\", \"subnet\": \"10.244.0.0/16\"}}]}' | sudo tee /etc/cni/net.d/10-lab.conflist >/dev/null",
        );
    }
}
