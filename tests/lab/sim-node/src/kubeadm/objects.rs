//! The API objects `kubeadm init` creates: configuration ConfigMaps, RBAC for bootstrap
//! tokens, cluster-info, and the CoreDNS and kube-proxy addons.

use anyhow::Result;
use serde_json::{Value, json};

use crate::config::ClusterConfiguration;
use crate::kube::{Kube, collection_of};
use crate::token::DEFAULT_GROUP;
use crate::util::KubeVersion;

/// Creates or updates each object, retrying for a minute like kubeadm's API calls do (the API
/// server may still be creating the system namespaces right after it reports live).
pub fn apply_all(kube: &Kube, objs: &[Value]) -> Result<()> {
    for o in objs {
        apply_retrying(kube, &collection_of(o)?, o)?;
    }
    Ok(())
}

pub fn apply_retrying(kube: &Kube, collection: &str, obj: &Value) -> Result<Value> {
    let start = std::time::Instant::now();
    loop {
        match kube.apply(collection, obj) {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() < API_CALL_TIMEOUT => {
                tracing_free_debug(&e);
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

pub const API_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn tracing_free_debug(e: &anyhow::Error) {
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("[api] retrying after: {e:#}");
    }
}

fn cm(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})
}

fn role(ns: &str, name: &str, resource: &str, names: &[&str]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": [resource], "resourceNames": names, "verbs": ["get"]}],
    })
}

fn subjects(groups: &[&str], users: &[&str]) -> Value {
    let mut s: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
        .collect();
    s.extend(
        users
            .iter()
            .map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u})),
    );
    Value::Array(s)
}

fn role_binding(ns: &str, name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": subjects,
    })
}

fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// `kubeadm:cluster-admins` → cluster-admin, so that admin.conf (not in system:masters) works.
pub fn cluster_admins() -> Vec<Value> {
    vec![cluster_role_binding(
        "kubeadm:cluster-admins",
        "cluster-admin",
        subjects(&["kubeadm:cluster-admins"], &[]),
    )]
}

/// upload-config: kubeadm-config and kubelet-config with the roles that let joining nodes read them.
pub fn upload_config(cluster_yaml: &str, kubelet_yaml: &str) -> Vec<Value> {
    let readers = || subjects(&[DEFAULT_GROUP, "system:nodes"], &[]);
    vec![
        cm(
            "kube-system",
            "kubeadm-config",
            json!({"ClusterConfiguration": cluster_yaml}),
        ),
        role(
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            "configmaps",
            &["kubeadm-config"],
        ),
        role_binding(
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            "kubeadm:nodes-kubeadm-config",
            readers(),
        ),
        cm(
            "kube-system",
            "kubelet-config",
            json!({"kubelet": kubelet_yaml}),
        ),
        role(
            "kube-system",
            "kubeadm:kubelet-config",
            "configmaps",
            &["kubelet-config"],
        ),
        role_binding(
            "kube-system",
            "kubeadm:kubelet-config",
            "kubeadm:kubelet-config",
            readers(),
        ),
    ]
}

/// bootstrap-token phase: what lets a token join, get its CSR approved, and read cluster-info.
pub fn bootstrap_rbac(cluster_info_kubeconfig: &str) -> Vec<Value> {
    let bootstrappers = || subjects(&[DEFAULT_GROUP], &[]);
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "kubeadm:get-nodes"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
        }),
        cluster_role_binding("kubeadm:get-nodes", "kubeadm:get-nodes", bootstrappers()),
        cluster_role_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            bootstrappers(),
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            bootstrappers(),
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            subjects(&["system:nodes"], &[]),
        ),
        cm(
            "kube-public",
            "cluster-info",
            json!({"kubeconfig": cluster_info_kubeconfig}),
        ),
        role(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            "configmaps",
            &["cluster-info"],
        ),
        role_binding(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            "kubeadm:bootstrap-signer-clusterinfo",
            subjects(&[], &["system:anonymous"]),
        ),
    ]
}

fn control_plane_toleration() -> Value {
    json!([
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
        {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"},
    ])
}

/// The CoreDNS addon as kubeadm deploys it.
pub fn coredns(cfg: &ClusterConfiguration, kubeadm: KubeVersion) -> Result<Vec<Value>> {
    let domain = &cfg.networking.dns_domain;
    let corefile = format!(
        ".:53 {{\n    errors\n    health {{\n       lameduck 5s\n    }}\n    ready\n    kubernetes {domain} in-addr.arpa ip6.arpa {{\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }}\n    prometheus :9153\n    forward . /etc/resolv.conf {{\n       max_concurrent 1000\n    }}\n    cache 30 {{\n       disable success cluster.local\n       disable denial cluster.local\n    }}\n    loop\n    reload\n    loadbalance\n}}\n"
    );
    let image = crate::images::coredns_image(cfg, kubeadm);
    let labels = json!({"k8s-app": "kube-dns"});
    Ok(vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        }),
        cluster_role_binding(
            "system:coredns",
            "system:coredns",
            json!([{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]),
        ),
        cm("kube-system", "coredns", json!({"Corefile": corefile})),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": "coredns",
                        "tolerations": control_plane_toleration(),
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "containers": [{
                            "name": "coredns",
                            "image": image,
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
                            ],
                            "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                        }],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
            "spec": {
                "clusterIP": cfg.dns_ip()?.to_string(),
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        }),
    ])
}

/// The kube-proxy addon as kubeadm deploys it.
pub fn kube_proxy(cfg: &ClusterConfiguration, server: &str, proxy_config_yaml: &str) -> Vec<Value> {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /var/lib/kube-proxy/ca.crt\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    namespace: default\n    user: default\n  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n"
    );
    let labels = json!({"k8s-app": "kube-proxy"});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kube-proxy", "namespace": "kube-system"}}),
        cluster_role_binding(
            "kubeadm:node-proxier",
            "system:node-proxier",
            json!([{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system"}]),
        ),
        role("kube-system", "kube-proxy", "configmaps", &["kube-proxy"]),
        role_binding(
            "kube-system",
            "kube-proxy",
            "kube-proxy",
            subjects(&[DEFAULT_GROUP], &[]),
        ),
        cm(
            "kube-system",
            "kube-proxy",
            json!({"config.conf": proxy_config_yaml, "kubeconfig.conf": kubeconfig}),
        ),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "hostNetwork": true,
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": "kube-proxy",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{
                            "name": "kube-proxy",
                            "image": format!("{}/kube-proxy:{}", cfg.image_repository, cfg.kubernetes_version),
                            "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "securityContext": {"privileged": true},
                        }],
                    },
                },
            },
        }),
    ]
}

/// kube-proxy's component config with kubeadm's defaults under the user's document.
pub fn kube_proxy_config(
    cfg: &ClusterConfiguration,
    user: &serde_json::Map<String, Value>,
) -> Value {
    let mut base = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "bindAddress": "0.0.0.0",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        "clusterCIDR": cfg.networking.pod_subnet,
        "mode": "",
    });
    for (k, v) in user {
        base[k] = v.clone();
    }
    base
}
