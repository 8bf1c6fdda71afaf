//! The resource types the server serves: built-in kinds plus those defined by CRDs.

use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    /// Served versions; the first is the preferred (and storage) version.
    pub versions: Vec<String>,
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<String>,
    /// Creatable through POST etc. (false for virtual kinds such as TokenReview).
    pub stored: bool,
    /// The CRD's additionalPrinterColumns for the preferred version, if any.
    pub printer_columns: Vec<Value>,
    /// The CRD's openAPIV3Schema per served version (empty for built-in kinds).
    pub schemas: Vec<(String, Value)>,
}

impl ResourceType {
    /// `pods`, `deployments.apps`: the form used in Status messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Deployment.apps`: the form used in Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// Etcd key prefix: `/registry/<resource>/` for core, `/registry/<group>/<resource>/` else.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.resource)
        } else {
            format!("/registry/{}/{}/", self.group, self.resource)
        }
    }

    /// Key prefix for one namespace (or all objects of a cluster-scoped type).
    pub fn ns_prefix(&self, ns: Option<&str>) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.ns_prefix(ns))
    }

    pub fn schema_for(&self, version: &str) -> Option<&Value> {
        self.schemas
            .iter()
            .find(|(v, s)| v == version && s.is_object())
            .map(|(_, s)| s)
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// (group, version, plural, kind, namespaced, short names, subresources)
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

const BUILTINS: &[Builtin] = &[
    (
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        &["ns"],
        &["status", "finalize"],
    ),
    ("", "v1", "nodes", "Node", false, &["no"], &["status"]),
    (
        "",
        "v1",
        "pods",
        "Pod",
        true,
        &["po"],
        &["status", "eviction", "binding", "log"],
    ),
    ("", "v1", "services", "Service", true, &["svc"], &["status"]),
    ("", "v1", "endpoints", "Endpoints", true, &["ep"], &[]),
    ("", "v1", "configmaps", "ConfigMap", true, &["cm"], &[]),
    ("", "v1", "secrets", "Secret", true, &[], &[]),
    (
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        &["token"],
    ),
    ("", "v1", "events", "Event", true, &["ev"], &[]),
    (
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        &["pv"],
        &["status"],
    ),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        &["status"],
    ),
    (
        "",
        "v1",
        "limitranges",
        "LimitRange",
        true,
        &["limits"],
        &[],
    ),
    (
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        true,
        &["quota"],
        &["status"],
    ),
    (
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
        &["rc"],
        &["status", "scale"],
    ),
    ("", "v1", "podtemplates", "PodTemplate", true, &[], &[]),
    (
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        &["status", "scale"],
    ),
    (
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        &["rs"],
        &["status", "scale"],
    ),
    (
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        true,
        &["ds"],
        &["status"],
    ),
    (
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        &["status", "scale"],
    ),
    (
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        &[],
        &[],
    ),
    ("batch", "v1", "jobs", "Job", true, &[], &["status"]),
    (
        "batch",
        "v1",
        "cronjobs",
        "CronJob",
        true,
        &["cj"],
        &["status"],
    ),
    (
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        &["status"],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        &[],
    ),
    (
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        false,
        &["csr"],
        &["status", "approval"],
    ),
    (
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        &["sc"],
        &[],
    ),
    (
        "storage.k8s.io",
        "v1",
        "csidrivers",
        "CSIDriver",
        false,
        &[],
        &[],
    ),
    (
        "storage.k8s.io",
        "v1",
        "csinodes",
        "CSINode",
        false,
        &[],
        &[],
    ),
    (
        "storage.k8s.io",
        "v1",
        "volumeattachments",
        "VolumeAttachment",
        false,
        &[],
        &["status"],
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &["status"],
    ),
    (
        "apiregistration.k8s.io",
        "v1",
        "apiservices",
        "APIService",
        false,
        &[],
        &["status"],
    ),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        &["status"],
    ),
    (
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
        &["status"],
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
        &[],
        &[],
    ),
    (
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        &[],
    ),
    (
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        &[],
    ),
    ("events.k8s.io", "v1", "events", "Event", true, &["ev"], &[]),
    (
        "node.k8s.io",
        "v1",
        "runtimeclasses",
        "RuntimeClass",
        false,
        &[],
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        false,
        &[],
        &["status"],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        false,
        &[],
        &[],
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "flowschemas",
        "FlowSchema",
        false,
        &[],
        &["status"],
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "prioritylevelconfigurations",
        "PriorityLevelConfiguration",
        false,
        &[],
        &["status"],
    ),
];

/// Virtual (create-only, never stored) kinds.
const VIRTUAL: &[(&str, &str, &str, &str)] = &[
    ("authentication.k8s.io", "v1", "tokenreviews", "TokenReview"),
    (
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
    ),
];

fn singular_of(kind: &str) -> String {
    kind.to_lowercase()
}

fn builtins() -> Vec<ResourceType> {
    let mut out: Vec<ResourceType> = BUILTINS
        .iter()
        .map(|(g, v, r, k, ns, short, sub)| ResourceType {
            group: (*g).into(),
            versions: vec![(*v).into()],
            resource: (*r).into(),
            singular: singular_of(k),
            kind: (*k).into(),
            namespaced: *ns,
            short_names: short.iter().map(|s| (*s).into()).collect(),
            categories: if matches!(
                *r,
                "pods"
                    | "services"
                    | "deployments"
                    | "replicasets"
                    | "daemonsets"
                    | "statefulsets"
                    | "jobs"
                    | "cronjobs"
                    | "replicationcontrollers"
                    | "horizontalpodautoscalers"
            ) {
                vec!["all".into()]
            } else {
                vec![]
            },
            subresources: sub.iter().map(|s| (*s).into()).collect(),
            stored: true,
            printer_columns: vec![],
            schemas: vec![],
        })
        .collect();
    out.extend(VIRTUAL.iter().map(|(g, v, r, k)| ResourceType {
        group: (*g).into(),
        versions: vec![(*v).into()],
        resource: (*r).into(),
        singular: singular_of(k),
        kind: (*k).into(),
        namespaced: false,
        short_names: vec![],
        categories: vec![],
        subresources: vec![],
        stored: false,
        printer_columns: vec![],
        schemas: vec![],
    }));
    out
}

/// A CRD object's resource type, if it is well-formed.
pub fn from_crd(crd: &Value) -> Option<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let versions: Vec<&Value> = spec["versions"]
        .as_array()?
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .collect();
    // Preferred = the storage version if served, else the first served one.
    let mut ordered: Vec<&Value> = versions.clone();
    ordered.sort_by_key(|v| !v["storage"].as_bool().unwrap_or(false));
    let first = *ordered.first()?;
    let mut subresources = vec![];
    if first["subresources"]["status"].is_object() {
        subresources.push("status".into());
    }
    if first["subresources"]["scale"].is_object() {
        subresources.push("scale".into());
    }
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let kind = names["kind"].as_str()?.to_owned();
    Some(ResourceType {
        group: spec["group"].as_str()?.to_owned(),
        versions: ordered
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect(),
        resource: names["plural"].as_str()?.to_owned(),
        singular: names["singular"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| kind.to_lowercase()),
        kind,
        namespaced: spec["scope"].as_str() != Some("Cluster"),
        short_names: strs(&names["shortNames"]),
        categories: strs(&names["categories"]),
        subresources,
        stored: true,
        printer_columns: first["additionalPrinterColumns"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        schemas: versions
            .iter()
            .filter_map(|v| {
                Some((
                    v["name"].as_str()?.to_owned(),
                    v["schema"]["openAPIV3Schema"].clone(),
                ))
            })
            .collect(),
    })
}

#[derive(Clone, Debug)]
pub struct Catalog {
    pub types: Vec<ResourceType>,
}

impl Catalog {
    pub fn new(crds: &[Value]) -> Catalog {
        let mut types = builtins();
        for crd in crds {
            if let Some(t) = from_crd(crd) {
                // A CRD may not shadow a built-in type.
                if !types
                    .iter()
                    .any(|b| b.group == t.group && b.resource == t.resource)
                {
                    types.push(t);
                }
            }
        }
        Catalog { types }
    }

    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| {
            t.group == group && t.resource == resource && t.versions.iter().any(|v| v == version)
        })
    }

    pub fn find_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind && t.stored)
    }

    /// Group → served versions (preferred first), in a stable order: built-ins, then CRDs.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = vec![];
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) => {
                    for v in &t.versions {
                        if !vs.contains(v) {
                            vs.push(v.clone());
                        }
                    }
                }
                None => out.push((t.group.clone(), t.versions.clone())),
            }
        }
        out
    }

    /// Discovery's APIResourceList for one group version.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let gv = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        let mut resources = vec![];
        for t in self
            .types
            .iter()
            .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        {
            let verbs: Vec<&str> = if t.stored {
                CRUD.to_vec()
            } else {
                vec!["create"]
            };
            let mut r = json!({
                "name": t.resource, "singularName": t.singular, "namespaced": t.namespaced,
                "kind": t.kind, "verbs": verbs,
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            resources.push(r);
            for sub in &t.subresources {
                resources.push(subresource_entry(t, sub));
            }
        }
        if resources.is_empty() {
            return None;
        }
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }
}

fn subresource_entry(t: &ResourceType, sub: &str) -> Value {
    let name = format!("{}/{sub}", t.resource);
    let (kind, group, version, verbs): (&str, &str, &str, &[&str]) = match sub {
        "eviction" => ("Eviction", "policy", "v1", &["create"]),
        "token" => ("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
        "binding" => ("Binding", "", "v1", &["create"]),
        "scale" => ("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
        "log" => ("Pod", "", "v1", &["get"]),
        "finalize" => (t.kind.as_str(), "", "", &["update"]),
        _ => (t.kind.as_str(), "", "", &["get", "patch", "update"]),
    };
    let mut r = json!({"name": name, "singularName": "", "namespaced": t.namespaced, "kind": kind, "verbs": verbs});
    if !version.is_empty() {
        r["group"] = json!(group);
        r["version"] = json!(version);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_keys_follow_the_real_registry_layout() {
        let c = Catalog::new(&[]);
        let pods = c.find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("kube-system"), "p"),
            "/registry/pods/kube-system/p"
        );
        let deps = c.find("apps", "v1", "deployments").unwrap();
        assert_eq!(deps.key(Some("a"), "d"), "/registry/apps/deployments/a/d");
        let nodes = c.find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/nodes/n1");
    }

    #[test]
    fn created_crd_makes_its_group_discoverable() {
        let crd = json!({"spec": {"group": "ceph.rook.io", "scope": "Namespaced",
            "names": {"plural": "cephclusters", "singular": "cephcluster", "kind": "CephCluster", "shortNames": ["ceph"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}]}});
        let c = Catalog::new(&[crd]);
        assert!(
            c.groups()
                .iter()
                .any(|(g, v)| g == "ceph.rook.io" && v == &vec!["v1".to_string()])
        );
        let list = c.resource_list("ceph.rook.io", "v1").unwrap();
        assert_eq!(list["resources"][0]["kind"], "CephCluster");
        assert_eq!(list["resources"][1]["name"], "cephclusters/status");
    }

    #[test]
    fn drain_finds_the_policy_eviction_subresource() {
        let c = Catalog::new(&[]);
        let list = c.resource_list("", "v1").unwrap();
        let ev = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(ev["group"], "policy");
        assert_eq!(ev["kind"], "Eviction");
    }
}
