//! Objects the real API server creates for itself at start-up: the system namespaces, the
//! `kubernetes` Service, the system PriorityClasses and the bootstrap ClusterRoles kubeadm binds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admission::first_service_ip;
use crate::etcd::EtcdError;
use crate::obj;
use crate::server::Server;

fn meta(name: &str, ns: Option<&str>) -> Value {
    let mut m = json!({"name": name, "uid": obj::new_uid(), "creationTimestamp": obj::now(), "generation": 1});
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    m
}

fn system_objects(server: &Server) -> Vec<(String, Value)> {
    let mut out = vec![];
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let mut m = meta(ns, None);
        m["labels"] = json!({"kubernetes.io/metadata.name": ns});
        out.push((
            format!("/registry/namespaces/{ns}"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m,
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        ));
    }
    if let Some(cidr) = server.cfg.service_cidr {
        let ip = first_service_ip(cidr);
        let mut m = meta("kubernetes", Some("default"));
        m["labels"] = json!({"component": "apiserver", "provider": "kubernetes"});
        out.push(("/registry/services/default/kubernetes".into(), json!({"apiVersion": "v1", "kind": "Service", "metadata": m,
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "sessionAffinity": "None", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
            "status": {"loadBalancer": {}}})));
    }
    for (name, value) in [
        ("system-node-critical", 2_000_001_000),
        ("system-cluster-critical", 2_000_000_000),
    ] {
        out.push((format!("/registry/scheduling.k8s.io/priorityclasses/{name}"), json!({"apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass", "metadata": meta(name, None), "value": value, "preemptionPolicy": "PreemptLowerPriority",
            "description": "Used for system critical pods that must not be moved from their current node."})));
    }
    let all = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]);
    let roles: Vec<(&str, Value)> = vec![
        ("cluster-admin", all),
        (
            "admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
        (
            "edit",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]),
        ),
        (
            "view",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]),
        ),
        (
            "system:node-bootstrapper",
            json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create", "get", "list", "watch"]}]),
        ),
        (
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/nodeclient"], "verbs": ["create"]}]),
        ),
        (
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/selfnodeclient"], "verbs": ["create"]}]),
        ),
        (
            "system:node",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch", "create", "update", "patch"]}]),
        ),
        (
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        (
            "system:basic-user",
            json!([{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]}]),
        ),
        (
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
    ];
    for (name, rules) in roles {
        let mut m = meta(name, None);
        m["labels"] = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        m["annotations"] = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
        out.push((
            format!("/registry/rbac.authorization.k8s.io/clusterroles/{name}"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole", "metadata": m, "rules": rules}),
        ));
    }
    let mut m = meta("cluster-admin", None);
    m["labels"] = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    out.push(("/registry/rbac.authorization.k8s.io/clusterrolebindings/cluster-admin".into(), json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": m, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]})));
    out
}

/// Create the system objects that are missing; retries until etcd answers.
pub async fn ensure_system_objects(server: &Server) {
    loop {
        let mut failed = false;
        for (key, value) in system_objects(server) {
            match server
                .cfg
                .etcd
                .create(&key, &serde_json::to_vec(&value).unwrap_or_default())
                .await
            {
                Ok(_) | Err(EtcdError::Conflict) => {}
                Err(e) => {
                    eprintln!("bootstrap: creating {key}: {e}");
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
