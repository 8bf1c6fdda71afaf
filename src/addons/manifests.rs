//! Upstream manifests patched by structure, and the objects rendered from the inventory.
//! Output is JSON documents (one per line), which `kubectl apply -f` reads like YAML.

use serde_json::{Value, json};

/// Parses a (multi-document) YAML manifest into its objects, flattening `kind: List`.
fn objects(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("manifest is not YAML: {e}"))?;
    let mut out = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        match (doc.get("kind").and_then(Value::as_str), doc.get("items")) {
            (Some("List"), Some(Value::Array(items))) => out.extend(items.iter().cloned()),
            _ => out.push(doc),
        }
    }
    Ok(out)
}

fn render(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| format!("{o}\n"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn kind_named<'a>(objects: &'a mut [Value], kind: &str, name: &str) -> Option<&'a mut Value> {
    objects
        .iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn containers(pod_spec_owner: &mut Value) -> impl Iterator<Item = &mut Value> {
    pod_spec_owner["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .into_iter()
        .flatten()
}

/// Sets env `name` on `container` to `value` (an env entry without its name), replacing it.
fn set_env(container: &mut Value, name: &str, value: Value) {
    let mut entry = json!({ "name": name });
    if let (Some(e), Some(v)) = (entry.as_object_mut(), value.as_object()) {
        e.extend(v.clone());
    }
    let env = &mut container["env"];
    if !env.is_array() {
        *env = json!([]);
    }
    let list = env.as_array_mut().expect("env is a list");
    list.retain(|e| e["name"] != name);
    list.push(entry);
}

/// Weave Net's DaemonSet: IPALLOC_RANGE = the pod subnet, and the encryption password from
/// the `weave-passwd` Secret when one is used.
pub fn weave(
    text: &str,
    pod_subnet: &str,
    password_secret: Option<&str>,
) -> Result<String, String> {
    let mut objs = objects(text)?;
    let ds = kind_named(&mut objs, "DaemonSet", "weave-net")
        .ok_or("the Weave manifest has no DaemonSet weave-net")?;
    let weave = containers(ds)
        .find(|c| c["name"] == "weave")
        .ok_or("the weave-net DaemonSet has no container named weave")?;
    set_env(weave, "IPALLOC_RANGE", json!({ "value": pod_subnet }));
    if let Some(secret) = password_secret {
        set_env(
            weave,
            "WEAVE_PASSWORD",
            json!({"valueFrom": {"secretKeyRef": {"name": secret, "key": "weave-passwd"}}}),
        );
    }
    Ok(render(&objs))
}

/// Headlamp with its image pinned to the release instead of `:latest`.
pub fn headlamp(text: &str, image: &str) -> Result<String, String> {
    let mut objs = objects(text)?;
    let mut pinned = 0;
    for o in objs.iter_mut().filter(|o| o["kind"] == "Deployment") {
        for c in containers(o) {
            if c["image"].as_str().is_some_and(|i| i.contains("headlamp")) {
                c["image"] = json!(image);
                pinned += 1;
            }
        }
    }
    if pinned == 0 {
        return Err("the Headlamp manifest has no headlamp container to pin".into());
    }
    Ok(render(&objs))
}

/// cluster-admin for the dashboard's login, only when the inventory asks for it.
pub fn dashboard_admin(namespace: &str) -> String {
    let objs = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "installer-dashboard-admin", "namespace": namespace}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "installer-dashboard-admin"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "installer-dashboard-admin", "namespace": namespace}]}),
    ];
    render(&objs)
}

/// A storage node of the inventory and its raw disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RookNode {
    pub name: String,
    pub devices: Vec<String>,
}

/// The CephCluster (exactly the inventory's nodes and devices), a replicated pool and the
/// default `rook-ceph-block` StorageClass. Three monitors, or one (with replication 1) when
/// fewer than three nodes hold storage.
pub fn rook_cluster(nodes: &[RookNode], ceph_image: &str) -> String {
    let small = nodes.len() < 3;
    let (mons, replicas) = if small { (1, 1) } else { (3, 3) };
    let storage_nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let devices: Vec<Value> = n
                .devices
                .iter()
                .map(|d| json!({ "name": d.trim_start_matches("/dev/") }))
                .collect();
            json!({ "name": n.name, "devices": devices })
        })
        .collect();
    let objs = [
        json!({"apiVersion": "ceph.rook.io/v1", "kind": "CephCluster",
        "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
        "spec": {
            "cephVersion": {"image": ceph_image},
            "dataDirHostPath": "/var/lib/rook",
            "mon": {"count": mons, "allowMultiplePerNode": false},
            "mgr": {"count": if small { 1 } else { 2 }},
            "dashboard": {"enabled": true},
            "storage": {"useAllNodes": false, "useAllDevices": false, "nodes": storage_nodes},
        }}),
        json!({"apiVersion": "ceph.rook.io/v1", "kind": "CephBlockPool",
               "metadata": {"name": "replicapool", "namespace": "rook-ceph"},
               "spec": {"failureDomain": "host", "replicated": {"size": replicas}}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "rook-ceph-block",
                            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": "rook-ceph.rbd.csi.ceph.com",
               "parameters": {
                   "clusterID": "rook-ceph", "pool": "replicapool", "imageFormat": "2",
                   "imageFeatures": "layering",
                   "csi.storage.k8s.io/provisioner-secret-name": "rook-csi-rbd-provisioner",
                   "csi.storage.k8s.io/provisioner-secret-namespace": "rook-ceph",
                   "csi.storage.k8s.io/controller-expand-secret-name": "rook-csi-rbd-provisioner",
                   "csi.storage.k8s.io/controller-expand-secret-namespace": "rook-ceph",
                   "csi.storage.k8s.io/node-stage-secret-name": "rook-csi-rbd-node",
                   "csi.storage.k8s.io/node-stage-secret-namespace": "rook-ceph",
                   "csi.storage.k8s.io/fstype": "ext4"},
               "reclaimPolicy": "Delete", "allowVolumeExpansion": true}),
    ];
    render(&objs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/upstream")
            .join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn weave_container(out: &str) -> Value {
        let objs = objects(out).unwrap();
        let ds = objs
            .iter()
            .find(|o| o["kind"] == "DaemonSet")
            .unwrap()
            .clone();
        ds["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "weave")
            .unwrap()
            .clone()
    }

    #[test]
    fn weave_gets_the_pod_subnet_and_the_password_secret() {
        let text = upstream("weave-net/v2.9.0/weave-daemonset-k8s-1.11.yaml");
        let out = weave(&text, "10.244.0.0/16", Some("weave-passwd")).unwrap();
        let c = weave_container(&out);
        let env = c["env"].as_array().unwrap();
        assert!(
            env.contains(&json!({"name": "IPALLOC_RANGE", "value": "10.244.0.0/16"})),
            "{env:?}"
        );
        assert!(env.iter().any(|e| e["name"] == "WEAVE_PASSWORD"
            && e["valueFrom"]["secretKeyRef"]["name"] == "weave-passwd"));
        // All six objects of the List survive the round trip.
        assert_eq!(objects(&out).unwrap().len(), 6);
        // Patching twice changes nothing.
        assert_eq!(
            weave(&out, "10.244.0.0/16", Some("weave-passwd")).unwrap(),
            out
        );
    }

    #[test]
    fn headlamp_image_is_pinned_to_the_release() {
        let text = upstream("headlamp/v0.45.0/kubernetes-headlamp.yaml");
        let out = headlamp(&text, "ghcr.io/headlamp-k8s/headlamp:v0.45.0").unwrap();
        assert!(!out.contains(":latest"), "{out}");
        assert!(out.contains("ghcr.io/headlamp-k8s/headlamp:v0.45.0"));
        assert_eq!(objects(&out).unwrap().len(), 3);
    }

    #[test]
    fn rook_cluster_lists_exactly_the_inventory_disks() {
        let nodes = vec![
            RookNode {
                name: "worker-1".into(),
                devices: vec!["/dev/sdb".into()],
            },
            RookNode {
                name: "worker-2".into(),
                devices: vec!["/dev/sdb".into(), "/dev/sdc".into()],
            },
            RookNode {
                name: "worker-3".into(),
                devices: vec!["/dev/vdb".into()],
            },
        ];
        let objs = objects(&rook_cluster(&nodes, "quay.io/ceph/ceph:v20.2.4")).unwrap();
        let cluster = &objs[0];
        assert_eq!(cluster["spec"]["mon"]["count"], 3);
        assert_eq!(cluster["spec"]["storage"]["useAllDevices"], false);
        assert_eq!(
            cluster["spec"]["storage"]["nodes"][1]["devices"],
            json!([{"name": "sdb"}, {"name": "sdc"}])
        );
        assert_eq!(
            objs[2]["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
            "true"
        );
    }

    #[test]
    fn fewer_than_three_storage_nodes_get_one_monitor() {
        let nodes = vec![RookNode {
            name: "w".into(),
            devices: vec!["/dev/sdb".into()],
        }];
        let objs = objects(&rook_cluster(&nodes, "img")).unwrap();
        assert_eq!(objs[0]["spec"]["mon"]["count"], 1);
        assert_eq!(objs[1]["spec"]["replicated"]["size"], 1);
    }
}
