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
            server
                .bootstrapped
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The `default/kubernetes` Endpoints and EndpointSlice list every live API server: each
/// replica renews `/registry/masterleases/<ip>` and rewrites the address list (like the real
/// lease endpoint reconciler), so a dead master drops out within `ttl`.
pub async fn reconcile_master_endpoints(server: &Server, ip: &str, port: u16, ttl: Duration) {
    loop {
        if let Err(e) = reconcile_once(server, ip, port, ttl).await {
            eprintln!("endpoint reconciler: {e}");
        }
        tokio::time::sleep(ttl / 3).await;
    }
}

async fn reconcile_once(
    server: &Server,
    ip: &str,
    port: u16,
    ttl: Duration,
) -> Result<(), EtcdError> {
    let etcd = &server.cfg.etcd;
    let key = format!("/registry/masterleases/{ip}");
    let lease = json!({"ip": ip, "port": port, "renewTime": obj::now()}).to_string();
    match etcd.get(&key).await? {
        Some(kv) => {
            let _ = etcd.update(&key, lease.as_bytes(), kv.mod_revision).await;
        }
        None => {
            let _ = etcd.create(&key, lease.as_bytes()).await;
        }
    }
    let (kvs, _) = etcd.list("/registry/masterleases/").await?;
    let mut ips: Vec<String> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|l| obj::age_seconds(l["renewTime"].as_str().unwrap_or("")) <= ttl.as_secs() as i64)
        .filter_map(|l| l["ip"].as_str().map(str::to_owned))
        .collect();
    ips.sort();
    ips.dedup();
    let subsets = json!([{"addresses": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    let ep_key = "/registry/endpoints/default/kubernetes";
    upsert(etcd, ep_key, |cur| {
        let mut ep = cur.unwrap_or_else(|| json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("kubernetes", Some("default"))}));
        ep["metadata"]["labels"] = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
        ep["subsets"] = subsets.clone();
        ep
    })
    .await?;
    let slice_key = "/registry/discovery.k8s.io/endpointslices/default/kubernetes";
    upsert(etcd, slice_key, |cur| {
        let mut s = cur.unwrap_or_else(|| json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta("kubernetes", Some("default"))}));
        s["metadata"]["labels"] = json!({"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"});
        s["addressType"] = json!("IPv4");
        s["endpoints"] = json!(ips.iter().map(|i| json!({"addresses": [i], "conditions": {"ready": true}})).collect::<Vec<_>>());
        s["ports"] = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
        s
    })
    .await
}

/// Write `key` as `f(current)` if that changes it (create when missing).
async fn upsert(
    etcd: &crate::etcd::Etcd,
    key: &str,
    f: impl Fn(Option<Value>) -> Value,
) -> Result<(), EtcdError> {
    let cur = etcd.get(key).await?;
    let old: Option<Value> = cur
        .as_ref()
        .and_then(|kv| serde_json::from_slice(&kv.value).ok());
    let new = f(old.clone());
    if Some(&new) == old.as_ref() {
        return Ok(());
    }
    let bytes = serde_json::to_vec(&new).unwrap_or_default();
    match cur {
        Some(kv) => match etcd.update(key, &bytes, kv.mod_revision).await {
            Ok(_) | Err(EtcdError::Conflict) => Ok(()),
            Err(e) => Err(e),
        },
        None => match etcd.create(key, &bytes).await {
            Ok(_) | Err(EtcdError::Conflict) => Ok(()),
            Err(e) => Err(e),
        },
    }
}
