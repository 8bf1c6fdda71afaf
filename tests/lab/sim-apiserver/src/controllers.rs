//! kube-controller-manager simulation: level-triggered loops over the API (list, compare,
//! write), one pass per second. Controllers: csrapproving + csrsigning, bootstrapsigner,
//! tokencleaner, serviceaccount + root-ca-cert-publisher, namespace, deployment, replicaset,
//! daemonset, statefulset, nodelifecycle, garbagecollector.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::client::{CallError, Client, path};
use crate::obj::{self, LabelSelector};
use crate::special::{pod_available, pod_ready};

pub struct Settings {
    pub enabled: Vec<String>,
    pub signing_cert: Option<String>,
    pub signing_key: Option<String>,
    pub signing_duration: Duration,
    pub root_ca: Option<String>,
    pub node_grace: Duration,
    /// `--allocate-node-cidrs` with `--cluster-cidr` and `--node-cidr-mask-size`.
    pub node_cidrs: Option<((u32, u8), u8)>,
}

impl Settings {
    /// `--controllers`: `*` enables the default set; bootstrapsigner and tokencleaner are off
    /// by default (kubeadm turns them on with `*,bootstrapsigner,tokencleaner`).
    pub fn enabled(&self, name: &str) -> bool {
        if self.enabled.iter().any(|c| c == &format!("-{name}")) {
            return false;
        }
        if self.enabled.iter().any(|c| c == name) {
            return true;
        }
        self.enabled.iter().any(|c| c == "*") && !matches!(name, "bootstrapsigner" | "tokencleaner")
    }
}

pub struct Controllers {
    pub c: Client,
    pub s: Settings,
    /// csrsigning's CA, loaded when the controllers start (`start_csr_signer`); None: the
    /// controller is off or no signing files were given.
    pub signer: Option<crate::csr::Signer>,
}

/// What csrsigning does when kube-controller-manager starts its controllers (after winning
/// the leader election): unless both `--cluster-signing-cert-file` and
/// `--cluster-signing-key-file` are given it is skipped ("Skipping CSR signer controller
/// because no csr cert/key was specified"); otherwise the CA must load (one certificate, a
/// matching key), or the controller fails to start with the signer's name in front of the
/// error, like cmd/kube-controller-manager/app/certificates.go, whose first signer is
/// kubernetes.io/kubelet-serving.
pub fn start_csr_signer(s: &Settings) -> Result<Option<crate::csr::Signer>, String> {
    if !s.enabled("csrsigning") {
        return Ok(None);
    }
    let (cert, key) = (
        s.signing_cert.as_deref().unwrap_or(""),
        s.signing_key.as_deref().unwrap_or(""),
    );
    // Only the global pair is simulated, so "missing one of them" means "no signer files".
    if cert.is_empty() || key.is_empty() {
        eprintln!("Skipping CSR signer controller because no csr cert/key was specified");
        return Ok(None);
    }
    crate::csr::Signer::start(cert, key).map(Some).map_err(|e| {
        format!("failed to start kubernetes.io/kubelet-serving certificate controller: {e}")
    })
}

fn owner_uid(o: &Value) -> Option<&str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": obj::name(owner), "uid": obj::uid(owner),
        "controller": true, "blockOwnerDeletion": true}])
}

fn alive(o: &Value) -> bool {
    o["metadata"]["deletionTimestamp"].is_null()
}

/// pod-template-hash: a stable short hash of the template in the real label's alphabet.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let d = Sha256::digest(template.to_string().as_bytes());
    d.iter()
        .take(10)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn pod_from_template(
    template: &Value,
    ns: &str,
    name: Option<&str>,
    generate: Option<&str>,
    owner: Value,
) -> Value {
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["namespace"] = json!(ns);
    if let Some(n) = name {
        meta["name"] = json!(n);
    }
    if let Some(g) = generate {
        meta["generateName"] = json!(g);
    }
    meta["ownerReferences"] = owner;
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"].clone()})
}

impl Controllers {
    /// Run every enabled controller once; errors are logged and retried on the next pass.
    pub async fn pass(&self, tick: u64) {
        macro_rules! run {
            ($name:literal, $f:expr) => {
                if self.s.enabled($name) {
                    if let Err(e) = $f.await {
                        eprintln!("controller {}: {e}", $name);
                    }
                }
            };
        }
        run!("csrapproving", self.csr_approve());
        run!("csrsigning", self.csr_sign());
        run!("bootstrapsigner", self.bootstrap_signer());
        run!("tokencleaner", self.token_cleaner());
        run!("serviceaccount", self.service_accounts());
        run!("root-ca-cert-publisher", self.root_ca_publisher());
        run!("deployment", self.deployments());
        run!("replicaset", self.replicasets());
        run!("daemonset", self.daemonsets());
        run!("statefulset", self.statefulsets());
        run!("nodelifecycle", self.node_lifecycle());
        run!("nodeipam", self.node_ipam());
        run!("endpoint", self.endpoints());
        run!("disruption", self.disruption());
        if tick.is_multiple_of(3) {
            run!("namespace", self.namespaces());
            run!("garbagecollector", self.garbage_collect());
        }
    }

    // ---- certificates -------------------------------------------------------------------

    async fn csr_approve(&self) -> Result<(), CallError> {
        let p = path(
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            None,
            None,
        );
        for csr in self.c.list(&p).await? {
            if csr["spec"]["signerName"] != "kubernetes.io/kube-apiserver-client-kubelet"
                || !csr["status"]["conditions"].is_null()
            {
                continue;
            }
            let Ok(subject) = crate::csr::parse_request(&csr) else {
                continue;
            };
            if crate::csr::kubelet_client_problem(&csr, &subject).is_some() {
                continue;
            }
            let groups: Vec<&str> = csr["spec"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let user = csr["spec"]["username"].as_str().unwrap_or("");
            // nodeclient: kubeadm binds its default node token group; selfnodeclient: renewal by the node itself.
            let node_client = groups.contains(&"system:bootstrappers:kubeadm:default-node-token");
            let self_client = groups.contains(&"system:nodes") && user == subject.cn;
            if !(node_client || self_client) {
                continue;
            }
            let mut upd = csr.clone();
            upd["status"]["conditions"] = json!([{"type": "Approved", "status": "True", "reason": "AutoApproved",
                "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                "lastUpdateTime": obj::now(), "lastTransitionTime": obj::now()}]);
            self.c
                .update(
                    &format!(
                        "{}/approval",
                        path(
                            "certificates.k8s.io",
                            "v1",
                            "certificatesigningrequests",
                            None,
                            Some(obj::name(&csr))
                        )
                    ),
                    &upd,
                )
                .await?;
            eprintln!("approved CSR {} for {}", obj::name(&csr), subject.cn);
        }
        Ok(())
    }

    async fn csr_sign(&self) -> Result<(), CallError> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        let p = path(
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            None,
            None,
        );
        for csr in self.c.list(&p).await? {
            let conds = csr["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let approved = conds
                .iter()
                .any(|c| c["type"] == "Approved" && c["status"] == "True");
            let done = conds
                .iter()
                .any(|c| matches!(c["type"].as_str(), Some("Denied" | "Failed")));
            if !approved || done || csr["status"]["certificate"].is_string() {
                continue;
            }
            // The request is checked before the CA is consulted (signer.go `handle`).
            let outcome = match crate::csr::validate(&csr) {
                Ok(false) => continue,
                Err(why) => Err(why),
                Ok(true) => {
                    match signer.with_ca(|ca| crate::csr::sign(&csr, ca, self.s.signing_duration)) {
                        // The CA cannot be used (a bundle in the cert file): nothing is signed,
                        // the CSR stays pending and is retried (certificate_controller.go).
                        Err(e) => {
                            eprintln!(
                                "E0000 kube-controller-manager: Sync {} failed with : error auto signing csr: {e}",
                                obj::name(&csr)
                            );
                            continue;
                        }
                        Ok(Ok(Some(pem))) => Ok(pem),
                        Ok(Ok(None)) => continue,
                        Ok(Err(why)) => Err(why),
                    }
                }
            };
            let mut upd = csr.clone();
            match outcome {
                Ok(pem) => upd["status"]["certificate"] = json!(B64.encode(pem)),
                Err(why) => {
                    let mut c = conds.clone();
                    c.push(json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": why,
                        "lastUpdateTime": obj::now(), "lastTransitionTime": obj::now()}));
                    upd["status"]["conditions"] = json!(c);
                }
            }
            self.c
                .update(
                    &format!(
                        "{}/status",
                        path(
                            "certificates.k8s.io",
                            "v1",
                            "certificatesigningrequests",
                            None,
                            Some(obj::name(&csr))
                        )
                    ),
                    &upd,
                )
                .await?;
        }
        Ok(())
    }

    // ---- bootstrap tokens ---------------------------------------------------------------

    async fn token_secrets(&self) -> Result<Vec<(Value, HashMap<String, String>)>, CallError> {
        let secrets = self
            .c
            .list(&format!(
                "{}?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken",
                path("", "v1", "secrets", Some("kube-system"), None)
            ))
            .await?;
        Ok(secrets
            .into_iter()
            .map(|s| {
                let data = s["data"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| {
                        Some((k, String::from_utf8(B64.decode(v.as_str()?).ok()?).ok()?))
                    })
                    .collect();
                (s, data)
            })
            .collect())
    }

    fn token_expired(data: &HashMap<String, String>) -> bool {
        data.get("expiration").is_some_and(|e| {
            obj::parse_time(e).is_none_or(|t| t <= time::OffsetDateTime::now_utc())
        })
    }

    async fn bootstrap_signer(&self) -> Result<(), CallError> {
        let p = path(
            "",
            "v1",
            "configmaps",
            Some("kube-public"),
            Some("cluster-info"),
        );
        let Some(cm) = self.c.get(&p).await? else {
            return Ok(());
        };
        let Some(kubeconfig) = cm["data"]["kubeconfig"].as_str() else {
            return Ok(());
        };
        let mut wanted: HashMap<String, String> = HashMap::new();
        for (_, data) in self.token_secrets().await? {
            let (Some(id), Some(secret)) = (data.get("token-id"), data.get("token-secret")) else {
                continue;
            };
            if data.get("usage-bootstrap-signing").map(String::as_str) != Some("true")
                || Self::token_expired(&data)
            {
                continue;
            }
            wanted.insert(
                format!("jws-kubeconfig-{id}"),
                detached_jws(kubeconfig, id, secret),
            );
        }
        let mut upd = cm.clone();
        let current = cm["data"].as_object().cloned().unwrap_or_default();
        let mut changed = false;
        for k in current.keys().filter(|k| k.starts_with("jws-kubeconfig-")) {
            if !wanted.contains_key(k) {
                upd["data"].as_object_mut().map(|m| m.remove(k));
                changed = true;
            }
        }
        for (k, v) in wanted {
            if current.get(&k).and_then(Value::as_str) != Some(v.as_str()) {
                upd["data"][k] = json!(v);
                changed = true;
            }
        }
        if changed {
            self.c.update(&p, &upd).await?;
        }
        Ok(())
    }

    async fn token_cleaner(&self) -> Result<(), CallError> {
        for (s, data) in self.token_secrets().await? {
            if Self::token_expired(&data) {
                eprintln!("deleting expired bootstrap token secret {}", obj::name(&s));
                self.c
                    .delete(&path(
                        "",
                        "v1",
                        "secrets",
                        Some("kube-system"),
                        Some(obj::name(&s)),
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    // ---- namespaces ---------------------------------------------------------------------

    async fn service_accounts(&self) -> Result<(), CallError> {
        let sas = self
            .c
            .list(&path("", "v1", "serviceaccounts", None, None))
            .await?;
        let have: HashSet<(String, String)> = sas
            .iter()
            .map(|s| (obj::namespace(s).to_owned(), obj::name(s).to_owned()))
            .collect();
        for ns in self
            .c
            .list(&path("", "v1", "namespaces", None, None))
            .await?
        {
            let n = obj::name(&ns);
            if alive(&ns) && !have.contains(&(n.to_owned(), "default".to_owned())) {
                let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": n}});
                match self
                    .c
                    .create(&path("", "v1", "serviceaccounts", Some(n), None), &sa)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 409 || e.code == 403 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn root_ca_publisher(&self) -> Result<(), CallError> {
        let Some(file) = &self.s.root_ca else {
            return Ok(());
        };
        let Ok(ca) = std::fs::read_to_string(file) else {
            return Ok(());
        };
        let cms = self
            .c
            .list(&format!(
                "{}?fieldSelector=metadata.name%3Dkube-root-ca.crt",
                path("", "v1", "configmaps", None, None)
            ))
            .await?;
        for ns in self
            .c
            .list(&path("", "v1", "namespaces", None, None))
            .await?
        {
            let n = obj::name(&ns);
            if !alive(&ns) {
                continue;
            }
            let existing = cms.iter().find(|c| obj::namespace(c) == n);
            if existing.is_some_and(|c| c["data"]["ca.crt"].as_str() == Some(ca.as_str())) {
                continue;
            }
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": n,
                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": ca}});
            let r = match existing {
                Some(_) => {
                    self.c
                        .update(
                            &path("", "v1", "configmaps", Some(n), Some("kube-root-ca.crt")),
                            &cm,
                        )
                        .await
                }
                None => {
                    self.c
                        .create(&path("", "v1", "configmaps", Some(n), None), &cm)
                        .await
                }
            };
            match r {
                Ok(_) => {}
                Err(e) if e.code == 409 || e.code == 403 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn catalog(&self) -> Result<Catalog, CallError> {
        let crds = self
            .c
            .list(&path(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                None,
                None,
            ))
            .await?;
        Ok(Catalog::new(&crds))
    }

    async fn namespaces(&self) -> Result<(), CallError> {
        let dying: Vec<Value> = self
            .c
            .list(&path("", "v1", "namespaces", None, None))
            .await?
            .into_iter()
            .filter(|n| !alive(n))
            .collect();
        if dying.is_empty() {
            return Ok(());
        }
        let cat = self.catalog().await?;
        for ns in dying {
            let n = obj::name(&ns);
            let mut remaining = 0;
            for t in cat
                .types
                .iter()
                .filter(|t| t.namespaced && t.stored && (t.group != "events.k8s.io"))
            {
                let items = self
                    .c
                    .list(&path(&t.group, &t.versions[0], &t.resource, Some(n), None))
                    .await?;
                for o in &items {
                    remaining += 1;
                    if alive(o) {
                        self.c
                            .delete(&path(
                                &t.group,
                                &t.versions[0],
                                &t.resource,
                                Some(n),
                                Some(obj::name(o)),
                            ))
                            .await?;
                    }
                }
            }
            if remaining == 0 {
                let mut fin = ns.clone();
                fin["spec"]["finalizers"] = json!([]);
                self.c
                    .update(
                        &format!("{}/finalize", path("", "v1", "namespaces", None, Some(n))),
                        &fin,
                    )
                    .await?;
                eprintln!("namespace {n} finalized");
            }
        }
        Ok(())
    }

    // ---- workloads ----------------------------------------------------------------------

    async fn deployments(&self) -> Result<(), CallError> {
        let deps = self
            .c
            .list(&path("apps", "v1", "deployments", None, None))
            .await?;
        let rss = self
            .c
            .list(&path("apps", "v1", "replicasets", None, None))
            .await?;
        for d in deps.iter().filter(|d| alive(d)) {
            let ns = obj::namespace(d);
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let min_ready = d["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
            let mut template = d["spec"]["template"].clone();
            let hash = template_hash(&template);
            let rs_name = format!("{}-{hash}", obj::name(d));
            template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let owned: Vec<&Value> = rss
                .iter()
                .filter(|r| owner_uid(r) == Some(obj::uid(d)))
                .collect();
            let current = owned.iter().find(|r| obj::name(r) == rs_name);
            let rs_path = path("apps", "v1", "replicasets", Some(ns), None);
            match current {
                None => {
                    let mut sel = d["spec"]["selector"].clone();
                    sel["matchLabels"]["pod-template-hash"] = json!(hash);
                    let revision = owned.len() + 1;
                    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": rs_name, "namespace": ns,
                        "labels": template["metadata"]["labels"], "ownerReferences": owner_ref(d, "apps/v1", "Deployment"),
                        "annotations": {"deployment.kubernetes.io/revision": revision.to_string(), "deployment.kubernetes.io/desired-replicas": replicas.to_string()}},
                        "spec": {"replicas": replicas, "minReadySeconds": min_ready, "selector": sel, "template": template}});
                    match self.c.create(&rs_path, &rs).await {
                        Ok(_) => {
                            let msg =
                                format!("Scaled up replica set {rs_name} from 0 to {replicas}");
                            self.c
                                .event(
                                    d,
                                    "Normal",
                                    "ScalingReplicaSet",
                                    &msg,
                                    "deployment-controller",
                                )
                                .await;
                        }
                        Err(CallError { code: 409, .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(rs) if rs["spec"]["replicas"].as_i64() != Some(replicas) => {
                    self.c
                        .merge_patch(
                            &format!("{rs_path}/{rs_name}"),
                            &json!({"spec": {"replicas": replicas}}),
                        )
                        .await?;
                    let from = rs["spec"]["replicas"].as_i64().unwrap_or(0);
                    let dir = if replicas > from { "up" } else { "down" };
                    let msg =
                        format!("Scaled {dir} replica set {rs_name} from {from} to {replicas}");
                    self.c
                        .event(
                            d,
                            "Normal",
                            "ScalingReplicaSet",
                            &msg,
                            "deployment-controller",
                        )
                        .await;
                }
                Some(rs) if rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0) != min_ready => {
                    self.c
                        .merge_patch(
                            &format!("{rs_path}/{rs_name}"),
                            &json!({"spec": {"minReadySeconds": min_ready}}),
                        )
                        .await?;
                }
                Some(_) => {}
            }
            for old in owned
                .iter()
                .filter(|r| obj::name(r) != rs_name && r["spec"]["replicas"].as_i64() != Some(0))
            {
                self.c
                    .merge_patch(
                        &format!("{rs_path}/{}", obj::name(old)),
                        &json!({"spec": {"replicas": 0}}),
                    )
                    .await?;
                let from = old["spec"]["replicas"].as_i64().unwrap_or(0);
                let msg = format!(
                    "Scaled down replica set {} from {from} to 0",
                    obj::name(old)
                );
                self.c
                    .event(
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        &msg,
                        "deployment-controller",
                    )
                    .await;
            }
            let sum = |f: &str| {
                owned
                    .iter()
                    .map(|r| r["status"][f].as_i64().unwrap_or(0))
                    .sum::<i64>()
            };
            let updated = current
                .map(|r| r["status"]["replicas"].as_i64().unwrap_or(0))
                .unwrap_or(0);
            let ready = sum("readyReplicas");
            let total = sum("replicas");
            let available = sum("availableReplicas");
            let avail_ok = available >= replicas - crate::workloads::max_unavailable(d);
            let complete = updated == replicas && total == replicas && available == replicas;
            let status = json!({
                "observedGeneration": d["metadata"]["generation"], "replicas": total, "updatedReplicas": updated,
                "readyReplicas": ready, "availableReplicas": available, "unavailableReplicas": (replicas - available).max(0),
                "conditions": [
                    {"type": "Available", "status": if avail_ok { "True" } else { "False" },
                     "reason": if avail_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                     "message": if avail_ok { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." }},
                    {"type": "Progressing", "status": "True",
                     "reason": if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                     "message": if complete { format!("ReplicaSet \"{rs_name}\" has successfully progressed.") } else { format!("ReplicaSet \"{rs_name}\" is progressing.") }},
                ],
            });
            self.put_status("apps", "deployments", d, status).await?;
        }
        Ok(())
    }

    /// Write status if it changed (ignoring condition timestamps, which are set here).
    async fn put_status(
        &self,
        group: &str,
        resource: &str,
        o: &Value,
        mut status: Value,
    ) -> Result<(), CallError> {
        let strip = |s: &Value| {
            let mut s = s.clone();
            if let Some(cs) = s["conditions"].as_array_mut() {
                for c in cs {
                    c.as_object_mut().map(|m| {
                        m.remove("lastUpdateTime");
                        m.remove("lastTransitionTime")
                    });
                }
            }
            s
        };
        if strip(&o["status"]) == strip(&status) {
            return Ok(());
        }
        let now = obj::now();
        let old_conds = o["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(cs) = status["conditions"].as_array_mut() {
            for c in cs {
                let prev = old_conds.iter().find(|p| p["type"] == c["type"]);
                let since = match prev {
                    Some(p) if p["status"] == c["status"] => p["lastTransitionTime"].clone(),
                    _ => json!(now),
                };
                c["lastTransitionTime"] = since;
                c["lastUpdateTime"] = json!(now);
            }
        }
        let mut upd = o.clone();
        upd["status"] = status;
        let ns = obj::namespace(o);
        let version = "v1";
        match self
            .c
            .update(
                &format!(
                    "{}/status",
                    path(group, version, resource, Some(ns), Some(obj::name(o)))
                ),
                &upd,
            )
            .await
        {
            Ok(_) | Err(CallError { code: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn replicasets(&self) -> Result<(), CallError> {
        let rss = self
            .c
            .list(&path("apps", "v1", "replicasets", None, None))
            .await?;
        let pods = self.c.list(&path("", "v1", "pods", None, None)).await?;
        for rs in rss.iter().filter(|r| alive(r)) {
            let ns = obj::namespace(rs);
            let want = rs["spec"]["replicas"].as_i64().unwrap_or(1);
            let mut mine: Vec<&Value> = pods
                .iter()
                .filter(|p| owner_uid(p) == Some(obj::uid(rs)) && alive(p))
                .collect();
            let have = mine.len() as i64;
            let pods_path = path("", "v1", "pods", Some(ns), None);
            if have < want {
                for _ in have..want {
                    let pod = pod_from_template(
                        &rs["spec"]["template"],
                        ns,
                        None,
                        Some(&format!("{}-", obj::name(rs))),
                        owner_ref(rs, "apps/v1", "ReplicaSet"),
                    );
                    let created = self.c.create(&pods_path, &pod).await?;
                    let msg = format!("Created pod: {}", obj::name(&created));
                    self.c
                        .event(
                            rs,
                            "Normal",
                            "SuccessfulCreate",
                            &msg,
                            "replicaset-controller",
                        )
                        .await;
                }
            } else if have > want {
                // Delete unscheduled, then not-ready pods first (like the real ranking).
                mine.sort_by_key(|p| (p["spec"]["nodeName"].as_str().is_some(), pod_ready(p)));
                for p in mine.iter().take((have - want) as usize) {
                    self.c
                        .delete(&format!("{pods_path}/{}", obj::name(p)))
                        .await?;
                    let msg = format!("Deleted pod: {}", obj::name(p));
                    self.c
                        .event(
                            rs,
                            "Normal",
                            "SuccessfulDelete",
                            &msg,
                            "replicaset-controller",
                        )
                        .await;
                }
            }
            let ready = mine.iter().filter(|p| pod_ready(p)).count() as i64;
            let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
            let now = time::OffsetDateTime::now_utc();
            let available = mine
                .iter()
                .filter(|p| pod_available(p, min_ready, now))
                .count() as i64;
            let status = json!({"replicas": have.min(want.max(have)), "fullyLabeledReplicas": have, "readyReplicas": ready,
                "availableReplicas": available, "observedGeneration": rs["metadata"]["generation"]});
            self.put_status("apps", "replicasets", rs, status).await?;
        }
        Ok(())
    }

    async fn daemonsets(&self) -> Result<(), CallError> {
        let dss = self
            .c
            .list(&path("apps", "v1", "daemonsets", None, None))
            .await?;
        if dss.is_empty() {
            return Ok(());
        }
        let nodes = self.c.list(&path("", "v1", "nodes", None, None)).await?;
        let pods = self.c.list(&path("", "v1", "pods", None, None)).await?;
        let now = time::OffsetDateTime::now_utc();
        for ds in dss.iter().filter(|d| alive(d)) {
            let ns = obj::namespace(ds);
            let hash = template_hash(&ds["spec"]["template"]);
            let mine: Vec<&Value> = pods
                .iter()
                .filter(|p| owner_uid(p) == Some(obj::uid(ds)) && alive(p))
                .collect();
            let plan = crate::daemonset::plan(ds, &hash, &nodes, &mine, now);
            let pods_path = path("", "v1", "pods", Some(ns), None);
            for node in &plan.create_on {
                let template = crate::daemonset::pod_template(ds, &hash, node);
                let pod = pod_from_template(
                    &template,
                    ns,
                    None,
                    Some(&format!("{}-", obj::name(ds))),
                    owner_ref(ds, "apps/v1", "DaemonSet"),
                );
                let created = self.c.create(&pods_path, &pod).await?;
                let msg = format!("Created pod: {}", obj::name(&created));
                self.c
                    .event(
                        ds,
                        "Normal",
                        "SuccessfulCreate",
                        &msg,
                        "daemonset-controller",
                    )
                    .await;
            }
            for (pod, why) in &plan.delete {
                eprintln!(
                    "daemonset {ns}/{}: deleting pod {pod}: {why}",
                    obj::name(ds)
                );
                match self.c.delete(&format!("{pods_path}/{pod}")).await {
                    Ok(_) | Err(CallError { code: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
                let msg = format!("Deleted pod: {pod}");
                self.c
                    .event(
                        ds,
                        "Normal",
                        "SuccessfulDelete",
                        &msg,
                        "daemonset-controller",
                    )
                    .await;
            }
            self.put_status("apps", "daemonsets", ds, plan.status)
                .await?;
        }
        Ok(())
    }

    async fn statefulsets(&self) -> Result<(), CallError> {
        let stss = self
            .c
            .list(&path("apps", "v1", "statefulsets", None, None))
            .await?;
        if stss.is_empty() {
            return Ok(());
        }
        let pods = self.c.list(&path("", "v1", "pods", None, None)).await?;
        for sts in stss.iter().filter(|s| alive(s)) {
            let ns = obj::namespace(sts);
            let name = obj::name(sts);
            let want = sts["spec"]["replicas"].as_i64().unwrap_or(1);
            let parallel = sts["spec"]["podManagementPolicy"] == "Parallel";
            let mine: HashMap<i64, &Value> = pods
                .iter()
                .filter(|p| owner_uid(p) == Some(obj::uid(sts)) && alive(p))
                .filter_map(|p| {
                    obj::name(p)
                        .strip_prefix(&format!("{name}-"))
                        .and_then(|i| i.parse().ok())
                        .map(|i| (i, p))
                })
                .collect();
            let pods_path = path("", "v1", "pods", Some(ns), None);
            for i in 0..want {
                if mine.contains_key(&i) {
                    continue;
                }
                if !parallel && !(0..i).all(|j| mine.get(&j).is_some_and(|p| pod_ready(p))) {
                    break;
                }
                let pname = format!("{name}-{i}");
                let mut template = sts["spec"]["template"].clone();
                template["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pname);
                template["metadata"]["labels"]["apps.kubernetes.io/pod-index"] =
                    json!(i.to_string());
                template["spec"]["hostname"] = json!(pname);
                if let Some(svc) = sts["spec"]["serviceName"].as_str() {
                    template["spec"]["subdomain"] = json!(svc);
                }
                let pod = pod_from_template(
                    &template,
                    ns,
                    Some(&pname),
                    None,
                    owner_ref(sts, "apps/v1", "StatefulSet"),
                );
                match self.c.create(&pods_path, &pod).await {
                    Ok(_) => {
                        let msg = format!("create Pod {pname} in StatefulSet {name} successful");
                        self.c
                            .event(
                                sts,
                                "Normal",
                                "SuccessfulCreate",
                                &msg,
                                "statefulset-controller",
                            )
                            .await;
                    }
                    Err(CallError { code: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
                if !parallel {
                    break;
                }
            }
            let mut extra: Vec<i64> = mine.keys().copied().filter(|i| *i >= want).collect();
            extra.sort_unstable_by(|a, b| b.cmp(a));
            for i in extra.iter().take(if parallel { usize::MAX } else { 1 }) {
                self.c.delete(&format!("{pods_path}/{name}-{i}")).await?;
            }
            let ready = mine.values().filter(|p| pod_ready(p)).count();
            let status = json!({"replicas": mine.len(), "readyReplicas": ready, "currentReplicas": mine.len(), "updatedReplicas": mine.len(),
                "availableReplicas": ready, "observedGeneration": sts["metadata"]["generation"]});
            self.put_status("apps", "statefulsets", sts, status).await?;
        }
        Ok(())
    }

    // ---- services and budgets ---------------------------------------------------------

    async fn endpoints(&self) -> Result<(), CallError> {
        let services = self.c.list(&path("", "v1", "services", None, None)).await?;
        let eps = self
            .c
            .list(&path("", "v1", "endpoints", None, None))
            .await?;
        let pods = self.c.list(&path("", "v1", "pods", None, None)).await?;
        const MANAGED: &str = "endpoints.kubernetes.io/last-change-trigger-time";
        for svc in &services {
            let Some(sel) = svc["spec"]["selector"]
                .as_object()
                .filter(|m| !m.is_empty())
            else {
                continue;
            };
            let ns = obj::namespace(svc);
            let name = obj::name(svc);
            let sel = LabelSelector::from_object(&json!({"matchLabels": sel}));
            let mut ready = vec![];
            let mut not_ready = vec![];
            let mut ports: Vec<Value> = vec![];
            for p in pods
                .iter()
                .filter(|p| obj::namespace(p) == ns && alive(p) && sel.matches(&obj::labels(p)))
            {
                let Some(ip) = p["status"]["podIP"].as_str().filter(|i| !i.is_empty()) else {
                    continue;
                };
                let addr = json!({"ip": ip, "nodeName": p["spec"]["nodeName"],
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": obj::name(p), "uid": p["metadata"]["uid"]}});
                if pod_ready(p) {
                    ready.push(addr)
                } else {
                    not_ready.push(addr)
                }
                for sp in svc["spec"]["ports"].as_array().into_iter().flatten() {
                    let target = match &sp["targetPort"] {
                        Value::String(named) => p["spec"]["containers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                            .find(|cp| cp["name"] == named.as_str())
                            .and_then(|cp| cp["containerPort"].as_i64()),
                        Value::Number(n) => n.as_i64(),
                        _ => sp["port"].as_i64(),
                    };
                    if let Some(t) = target {
                        let mut port = json!({"port": t, "protocol": sp["protocol"].as_str().unwrap_or("TCP")});
                        if let Some(n) = sp["name"].as_str() {
                            port["name"] = json!(n);
                        }
                        if !ports.contains(&port) {
                            ports.push(port);
                        }
                    }
                }
            }
            let mut subset = json!({});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            let subsets = if ready.is_empty() && not_ready.is_empty() {
                json!([])
            } else {
                subset["ports"] = json!(ports);
                json!([subset])
            };
            let existing = eps
                .iter()
                .find(|e| obj::namespace(e) == ns && obj::name(e) == name);
            if existing.is_some_and(|e| {
                e["subsets"].as_array().cloned().unwrap_or_default()
                    == subsets.as_array().cloned().unwrap_or_default()
            }) {
                continue;
            }
            let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": svc["metadata"]["labels"], "annotations": {MANAGED: obj::now()}},
                "subsets": subsets});
            let r = match existing {
                Some(_) => {
                    self.c
                        .update(&path("", "v1", "endpoints", Some(ns), Some(name)), &ep)
                        .await
                }
                None => {
                    self.c
                        .create(&path("", "v1", "endpoints", Some(ns), None), &ep)
                        .await
                }
            };
            match r {
                Ok(_)
                | Err(CallError {
                    code: 409 | 403 | 404,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        for ep in eps
            .iter()
            .filter(|e| e["metadata"]["annotations"][MANAGED].is_string())
        {
            let gone = !services
                .iter()
                .any(|s| obj::namespace(s) == obj::namespace(ep) && obj::name(s) == obj::name(ep));
            if gone {
                self.c
                    .delete(&path(
                        "",
                        "v1",
                        "endpoints",
                        Some(obj::namespace(ep)),
                        Some(obj::name(ep)),
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    async fn disruption(&self) -> Result<(), CallError> {
        let pdbs = self
            .c
            .list(&path("policy", "v1", "poddisruptionbudgets", None, None))
            .await?;
        if pdbs.is_empty() {
            return Ok(());
        }
        let pods = self.c.list(&path("", "v1", "pods", None, None)).await?;
        for pdb in &pdbs {
            let sel = LabelSelector::from_object(&pdb["spec"]["selector"]);
            let selected: Vec<Value> = pods
                .iter()
                .filter(|p| {
                    obj::namespace(p) == obj::namespace(pdb)
                        && alive(p)
                        && sel.matches(&obj::labels(p))
                })
                .cloned()
                .collect();
            let (allowed, desired, healthy) = crate::special::disruptions_allowed(pdb, &selected);
            let status = json!({"observedGeneration": pdb["metadata"]["generation"], "disruptionsAllowed": allowed,
                "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": selected.len(),
                "conditions": [{"type": "DisruptionAllowed", "status": if allowed > 0 { "True" } else { "False" },
                    "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" }, "message": ""}]});
            self.put_status("policy", "poddisruptionbudgets", pdb, status)
                .await?;
        }
        Ok(())
    }

    // ---- nodes --------------------------------------------------------------------------

    async fn node_lifecycle(&self) -> Result<(), CallError> {
        let nodes = self.c.list(&path("", "v1", "nodes", None, None)).await?;
        let leases = self
            .c
            .list(&path(
                "coordination.k8s.io",
                "v1",
                "leases",
                Some("kube-node-lease"),
                None,
            ))
            .await?;
        for node in &nodes {
            let n = obj::name(node);
            let conds = node["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ready = conds.iter().find(|c| c["type"] == "Ready");
            let mut last = ready
                .and_then(|c| c["lastHeartbeatTime"].as_str())
                .map(obj::age_seconds)
                .unwrap_or_else(|| {
                    obj::age_seconds(node["metadata"]["creationTimestamp"].as_str().unwrap_or(""))
                });
            if let Some(l) = leases
                .iter()
                .find(|l| obj::name(l) == n)
                .and_then(|l| l["spec"]["renewTime"].as_str())
            {
                last = last.min(obj::age_seconds(l));
            }
            let mut status = ready
                .and_then(|c| c["status"].as_str())
                .unwrap_or("Unknown")
                .to_owned();
            if last > self.s.node_grace.as_secs() as i64 && status != "Unknown" {
                let mut upd = node.clone();
                let now = obj::now();
                for c in upd["status"]["conditions"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if matches!(
                        c["type"].as_str(),
                        Some("Ready" | "MemoryPressure" | "DiskPressure" | "PIDPressure")
                    ) {
                        c["status"] = json!("Unknown");
                        c["reason"] = json!("NodeStatusUnknown");
                        c["message"] = json!("Kubelet stopped posting node status.");
                        c["lastTransitionTime"] = json!(now);
                    }
                }
                match self
                    .c
                    .update(
                        &format!("{}/status", path("", "v1", "nodes", None, Some(n))),
                        &upd,
                    )
                    .await
                {
                    Ok(_) => {
                        eprintln!("node {n}: kubelet stopped posting status; Ready=Unknown");
                        let msg = format!("Node {n} status is now: NodeNotReady");
                        self.c
                            .event(node, "Normal", "NodeNotReady", &msg, "node-controller")
                            .await;
                    }
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
                status = "Unknown".into();
            }
            self.condition_taints(node, &status).await?;
        }
        Ok(())
    }

    /// nodeipam: give each node a spec.podCIDR from the cluster CIDR (range allocator).
    async fn node_ipam(&self) -> Result<(), CallError> {
        let Some(((net, len), mask)) = self.s.node_cidrs else {
            return Ok(());
        };
        if mask < len || mask > 30 {
            return Ok(());
        }
        let nodes = self.c.list(&path("", "v1", "nodes", None, None)).await?;
        let mut used: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_owned))
            .collect();
        for node in nodes
            .iter()
            .filter(|n| n["spec"]["podCIDR"].as_str().unwrap_or("").is_empty())
        {
            let count = 1u64 << (mask - len);
            let free = (0..count)
                .map(|i| {
                    format!(
                        "{}/{mask}",
                        std::net::Ipv4Addr::from(
                            net.wrapping_add((i as u32) << (32 - mask as u32))
                        )
                    )
                })
                .find(|c| !used.contains(c));
            let Some(cidr) = free else {
                eprintln!("nodeipam: no CIDR left for node {}", obj::name(node));
                continue;
            };
            let mut upd = node.clone();
            upd["spec"]["podCIDR"] = json!(cidr);
            upd["spec"]["podCIDRs"] = json!([cidr]);
            match self
                .c
                .update(&path("", "v1", "nodes", None, Some(obj::name(node))), &upd)
                .await
            {
                Ok(_) => {
                    used.insert(cidr);
                }
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// TaintNodesByCondition / taint-based eviction taints for the Ready condition.
    async fn condition_taints(&self, node: &Value, ready: &str) -> Result<(), CallError> {
        let want: Vec<(&str, &str)> = match ready {
            "True" => vec![],
            "False" => vec![
                ("node.kubernetes.io/not-ready", "NoSchedule"),
                ("node.kubernetes.io/not-ready", "NoExecute"),
            ],
            _ => vec![
                ("node.kubernetes.io/unreachable", "NoSchedule"),
                ("node.kubernetes.io/unreachable", "NoExecute"),
            ],
        };
        let managed = |t: &Value| {
            matches!(
                t["key"].as_str(),
                Some("node.kubernetes.io/not-ready" | "node.kubernetes.io/unreachable")
            )
        };
        let taints = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut new: Vec<Value> = taints
            .iter()
            .filter(|t| {
                !managed(t)
                    || want
                        .iter()
                        .any(|(k, e)| t["key"] == *k && t["effect"] == *e)
            })
            .cloned()
            .collect();
        for (k, e) in &want {
            if !new.iter().any(|t| t["key"] == *k && t["effect"] == *e) {
                let mut t = json!({"key": k, "effect": e});
                if *e == "NoExecute" {
                    t["timeAdded"] = json!(obj::now());
                }
                new.push(t);
            }
        }
        if new.len() == taints.len() && new.iter().all(|t| taints.contains(t)) {
            return Ok(());
        }
        let mut upd = node.clone();
        upd["spec"]["taints"] = json!(new);
        match self
            .c
            .update(&path("", "v1", "nodes", None, Some(obj::name(node))), &upd)
            .await
        {
            Ok(_) | Err(CallError { code: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- garbage collection -------------------------------------------------------------

    async fn garbage_collect(&self) -> Result<(), CallError> {
        let cat = self.catalog().await?;
        const DEPENDENTS: &[(&str, &str)] = &[
            ("", "pods"),
            ("apps", "replicasets"),
            ("apps", "controllerrevisions"),
            ("batch", "jobs"),
            ("", "endpoints"),
            ("discovery.k8s.io", "endpointslices"),
            ("", "configmaps"),
            ("", "secrets"),
            ("", "services"),
            ("apps", "deployments"),
            ("apps", "daemonsets"),
            ("apps", "statefulsets"),
            ("", "persistentvolumeclaims"),
            ("", "serviceaccounts"),
        ];
        let mut owner_cache: HashMap<String, bool> = HashMap::new();
        for t in cat.types.iter().filter(|t| {
            t.stored
                && (DEPENDENTS.contains(&(t.group.as_str(), t.resource.as_str()))
                    || t.group.contains('.') && !t.group.ends_with("k8s.io"))
        }) {
            for o in self
                .c
                .list(&path(&t.group, &t.versions[0], &t.resource, None, None))
                .await?
            {
                let Some(refs) = o["metadata"]["ownerReferences"]
                    .as_array()
                    .filter(|r| !r.is_empty())
                else {
                    continue;
                };
                let mut any_alive = false;
                for r in refs {
                    let (group, version) =
                        match r["apiVersion"].as_str().unwrap_or("").split_once('/') {
                            Some((g, v)) => (g.to_owned(), v.to_owned()),
                            None => (
                                String::new(),
                                r["apiVersion"].as_str().unwrap_or("").to_owned(),
                            ),
                        };
                    let Some(ot) = cat.find_kind(&group, r["kind"].as_str().unwrap_or("")) else {
                        any_alive = true; // unknown owner kind: leave the dependent alone
                        break;
                    };
                    let ns = ot.namespaced.then(|| obj::namespace(&o));
                    let owner_path =
                        path(&ot.group, &version, &ot.resource, ns, r["name"].as_str());
                    let key = format!("{owner_path}#{}", r["uid"].as_str().unwrap_or(""));
                    let alive_now = match owner_cache.get(&key) {
                        Some(a) => *a,
                        None => {
                            let a = match self.c.get(&owner_path).await? {
                                Some(owner) => obj::uid(&owner) == r["uid"].as_str().unwrap_or(""),
                                None => false,
                            };
                            owner_cache.insert(key, a);
                            a
                        }
                    };
                    if alive_now {
                        any_alive = true;
                        break;
                    }
                }
                if !any_alive {
                    let ns = t.namespaced.then(|| obj::namespace(&o));
                    self.c
                        .delete(&path(
                            &t.group,
                            &t.versions[0],
                            &t.resource,
                            ns,
                            Some(obj::name(&o)),
                        ))
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// Detached JWS (HS256, key = token secret, kid = token id) over the cluster-info kubeconfig,
/// as the bootstrap signer publishes it: `header..signature`.
pub fn detached_jws(payload: &str, token_id: &str, token_secret: &str) -> String {
    let header = B64URL.encode(json!({"alg": "HS256", "kid": token_id}).to_string());
    let signing_input = format!("{header}.{}", B64URL.encode(payload));
    let key = jsonwebtoken::EncodingKey::from_secret(token_secret.as_bytes());
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap_or_default();
    format!("{header}..{sig}")
}

/// Verify a detached JWS as `kubeadm join` does (used by tests to pin the signer's output).
pub fn verify_detached_jws(jws: &str, payload: &str, token_secret: &str) -> bool {
    let Some((header, sig)) = jws.split_once("..") else {
        return false;
    };
    let signing_input = format!("{header}.{}", B64URL.encode(payload));
    let key = jsonwebtoken::DecodingKey::from_secret(token_secret.as_bytes());
    jsonwebtoken::crypto::verify(
        sig,
        signing_input.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_signer_jws_verifies_only_with_the_token_secret() {
        let jws = detached_jws(
            "apiVersion: v1\nkind: Config\n",
            "abcdef",
            "0123456789abcdef",
        );
        assert!(jws.contains(".."));
        assert!(verify_detached_jws(
            &jws,
            "apiVersion: v1\nkind: Config\n",
            "0123456789abcdef"
        ));
        assert!(!verify_detached_jws(
            &jws,
            "apiVersion: v1\nkind: Config\n",
            "0123456789abcdee"
        ));
        assert!(!verify_detached_jws(&jws, "tampered", "0123456789abcdef"));
    }

    #[test]
    fn controllers_flag_follows_the_real_defaults() {
        let s = |list: &[&str]| Settings {
            enabled: list.iter().map(|s| s.to_string()).collect(),
            signing_cert: None,
            signing_key: None,
            signing_duration: Duration::from_secs(1),
            root_ca: None,
            node_grace: Duration::from_secs(40),
            node_cidrs: None,
        };
        assert!(!s(&["*"]).enabled("bootstrapsigner"));
        assert!(s(&["*", "bootstrapsigner", "tokencleaner"]).enabled("tokencleaner"));
        assert!(!s(&["*", "-deployment"]).enabled("deployment"));
        assert!(s(&["*"]).enabled("csrsigning"));
    }

    #[test]
    fn template_hash_is_stable_and_label_safe() {
        let t = json!({"spec": {"containers": [{"name": "a", "image": "b"}]}});
        assert_eq!(template_hash(&t), template_hash(&t.clone()));
        assert!(crate::validate::dns_label(&template_hash(&t)).is_none());
    }
}
