//! The kubelet's conversation with the API server: TLS bootstrap, Node registration and
//! status, the node Lease, mirror pods for static pods and status of pods bound here.

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Settings;
use super::pods::StaticPods;
use super::workloads;
use crate::kube::Kube;
use crate::kubeconfig::KubeConfig;
use crate::paths::{self, p};
use crate::util::{KubeVersion, now_micro, now_rfc3339};

const LEASE_EVERY: Duration = Duration::from_secs(10);
const STATUS_EVERY: Duration = Duration::from_secs(10);

pub struct Agent {
    s: Settings,
    version: KubeVersion,
    pods: Arc<StaticPods>,
    kube: Option<Kube>,
    node_uid: String,
    registered: bool,
    last_lease: Option<Instant>,
    last_status: Option<Instant>,
    last_ready: Option<bool>,
    ready_since: String,
    mirrors: HashMap<String, String>,
    /// What was last reported per mirror pod (running, restarts) and when.
    mirror_status: HashMap<String, (bool, u32, Instant)>,
    /// Warning events already recorded per (pod uid, reason).
    pod_events: HashSet<(String, String)>,
}

impl Agent {
    pub fn new(s: Settings, version: KubeVersion, pods: Arc<StaticPods>) -> Self {
        Self {
            s,
            version,
            pods,
            kube: None,
            node_uid: String::new(),
            registered: false,
            last_lease: None,
            last_status: None,
            last_ready: None,
            ready_since: now_rfc3339(),
            mirrors: HashMap::new(),
            mirror_status: HashMap::new(),
            pod_events: HashSet::new(),
        }
    }

    pub fn run(mut self) -> Result<()> {
        loop {
            if let Err(e) = self.tick() {
                eprintln!("kubelet: {e:#}");
                // A lost API server or a rejected credential: start over with a fresh client.
                if self.kube.is_some() && !self.s.kubeconfig.exists() {
                    self.kube = None;
                }
                self.registered = false;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn tick(&mut self) -> Result<()> {
        if self.kube.is_none() {
            self.kube = self.client()?;
        }
        let Some(kube) = self.kube.clone() else {
            return Ok(());
        };
        if !self.registered {
            self.register(&kube)?;
        }
        if self.last_lease.is_none_or(|t| t.elapsed() >= LEASE_EVERY) {
            self.renew_lease(&kube)?;
            self.last_lease = Some(Instant::now());
        }
        let ready = self.network_ready().is_ok() && crate::cri::answers(&self.s.cri).is_ok();
        if self.last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY)
            || self.last_ready != Some(ready)
        {
            self.post_status(&kube)?;
            self.last_status = Some(Instant::now());
        }
        self.sync_mirrors(&kube)?;
        self.sync_bound_pods(&kube)?;
        Ok(())
    }

    /// kubelet.conf if usable; else the TLS bootstrap with bootstrap-kubelet.conf; else none
    /// (standalone: static pods only, until a kubeconfig appears).
    fn client(&self) -> Result<Option<Kube>> {
        if let Ok(kc) = KubeConfig::load(&self.s.kubeconfig)
            && let Ok(creds) = kc.credentials()
            && creds.cert_pem.is_some()
        {
            return Ok(Some(Kube::from_credentials(&creds)?));
        }
        let Some(boot) = self.s.bootstrap_kubeconfig.as_ref().filter(|b| b.exists()) else {
            return Ok(None);
        };
        eprintln!(
            "kubelet: no valid client certificate in {}; bootstrapping with {}",
            self.s.kubeconfig.display(),
            boot.display()
        );
        let kc = KubeConfig::load(boot)?;
        let creds = kc.credentials()?;
        let bootstrap = Kube::from_credentials(&creds)?;
        let (cert, key) = self.tls_bootstrap(&bootstrap)?;
        crate::kubeadm::write_kubelet_client(&cert, &key)?;
        let cluster = kc
            .clusters
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "kubernetes".into());
        crate::kubeadm::kubelet_conf(&cluster, &creds.server, &creds.ca_pem, &self.s.node_name)?;
        eprintln!(
            "kubelet: TLS bootstrap done; wrote {}",
            self.s.kubeconfig.display()
        );
        let creds = KubeConfig::load(&p(paths::KUBELET_CONF))?.credentials()?;
        Ok(Some(Kube::from_credentials(&creds)?))
    }

    /// Creates a CSR for `system:node:<name>` and waits for the signed certificate.
    fn tls_bootstrap(&self, kube: &Kube) -> Result<(String, String)> {
        let key = crate::pki::KeyAlgo::EcdsaP256.generate()?;
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("system:node:{}", self.s.node_name),
        );
        let csr = params.serialize_request(&key)?.pem()?;
        let suffix: u32 = rand::random();
        let name = format!("csr-{:08x}", suffix);
        let obj = json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(csr),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
            },
        });
        let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
        kube.post(path, &obj)?
            .into_result("creating the kubelet's CertificateSigningRequest")?;
        eprintln!("kubelet: created CSR {name}; waiting for approval");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(900) {
            let csr = kube
                .get(&format!("{path}/{name}"))?
                .into_result("reading the CSR")?;
            for c in csr["status"]["conditions"].as_array().into_iter().flatten() {
                if c["type"] == "Denied" || c["type"] == "Failed" {
                    bail!(
                        "certificate signing request {name} was {}: {}",
                        c["type"],
                        c["message"]
                    );
                }
            }
            if let Some(cert) = csr["status"]["certificate"]
                .as_str()
                .filter(|c| !c.is_empty())
            {
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(cert)
                    .context("CSR status.certificate is not base64")?;
                return Ok((
                    String::from_utf8_lossy(&pem).into_owned(),
                    key.serialize_pem(),
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        bail!("timed out waiting for CSR {name} to be signed")
    }

    fn register(&mut self, kube: &Kube) -> Result<()> {
        let mut labels = serde_json::Map::new();
        let arch = crate::kubeadm::arch();
        for (k, v) in [
            ("beta.kubernetes.io/arch", arch),
            ("beta.kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", arch),
            ("kubernetes.io/hostname", self.s.node_name.as_str()),
            ("kubernetes.io/os", "linux"),
        ] {
            labels.insert(k.into(), Value::String(v.into()));
        }
        for (k, v) in &self.s.labels {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.s.node_name,
                "labels": labels,
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": if self.s.taints.is_empty() { json!({}) } else { json!({"taints": self.s.taints}) },
            "status": self.node_status(),
        });
        let r = kube.post("/api/v1/nodes", &node)?;
        let body = if r.status == 409 {
            kube.get(&format!("/api/v1/nodes/{}", self.s.node_name))?
                .into_result("reading the existing Node")?
        } else {
            let b = r.into_result(&format!(
                "Unable to register node {:?} with API server",
                self.s.node_name
            ))?;
            eprintln!("kubelet: successfully registered node {}", self.s.node_name);
            b
        };
        self.node_uid = body["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.registered = true;
        self.last_status = None;
        self.mirrors.clear();
        self.mirror_status.clear();
        Ok(())
    }

    fn renew_lease(&self, kube: &Kube) -> Result<()> {
        let path = format!(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{}",
            self.s.node_name
        );
        let r = kube.get(&path)?;
        if r.status == 404 {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.s.node_name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.s.node_name, "uid": self.node_uid}],
                },
                "spec": {"holderIdentity": self.s.node_name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
            });
            kube.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                &lease,
            )?
            .into_result("creating the node Lease")?;
            return Ok(());
        }
        let mut lease = r.into_result("reading the node Lease")?;
        lease["spec"]["holderIdentity"] = json!(self.s.node_name);
        lease["spec"]["leaseDurationSeconds"] = json!(40);
        lease["spec"]["renewTime"] = json!(now_micro());
        kube.put(&path, &lease)?
            .into_result("renewing the node Lease")?;
        Ok(())
    }

    /// Ready needs a CNI configuration, as with the real kubelet and a CNI-based runtime.
    fn network_ready(&self) -> Result<()> {
        let dir = p(paths::CNI_CONF_DIR);
        let found = std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json")
            });
        if found {
            Ok(())
        } else {
            bail!(
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
            )
        }
    }

    fn post_status(&mut self, kube: &Kube) -> Result<()> {
        let status = self.node_status();
        let body = json!({"status": status});
        let path = format!("/api/v1/nodes/{}/status", self.s.node_name);
        let r = kube.merge_patch(&path, &body)?;
        if r.status == 404 && r.message().contains("not found") && !r.message().contains("status") {
            // The Node itself is gone (deleted by an operator): register again.
            self.registered = false;
            bail!(
                "node {} was deleted from the API; registering again",
                self.s.node_name
            );
        }
        r.into_result("updating node status")?;
        Ok(())
    }

    /// The Node's status as the kubelet computes it (also sent with the registration, as the
    /// real kubelet's `initialNode` does: a new Node is NotReady from its first moment).
    fn node_status(&mut self) -> Value {
        let now = now_rfc3339();
        let (ready, reason, message) =
            match (crate::cri::answers(&self.s.cri), self.network_ready()) {
                (Err(e), _) => (
                    false,
                    "KubeletNotReady",
                    format!("container runtime is down: {e:#}"),
                ),
                (Ok(()), Err(e)) => (false, "KubeletNotReady", e.to_string()),
                (Ok(()), Ok(())) => (
                    true,
                    "KubeletReady",
                    "kubelet is posting ready status".to_string(),
                ),
            };
        if self.last_ready != Some(ready) {
            self.ready_since = now.clone();
            self.last_ready = Some(ready);
        }
        let cond = |t: &str, status: &str, reason: &str, msg: &str, since: &str| json!({"type": t, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": since});
        let (cpu, mem_ki) = capacity();
        let status = json!({
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", &self.ready_since),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", &self.ready_since),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", &self.ready_since),
                cond("Ready", if ready { "True" } else { "False" }, reason, &message, &self.ready_since),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.s.node_ip},
                {"type": "Hostname", "address": self.s.node_name},
            ],
            "capacity": {"cpu": cpu.to_string(), "memory": format!("{mem_ki}Ki"), "pods": "110", "ephemeral-storage": "20Gi"},
            "allocatable": {"cpu": cpu.to_string(), "memory": format!("{}Ki", mem_ki.saturating_sub(100 * 1024)), "pods": "110", "ephemeral-storage": "18Gi"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": node_info(&self.s.cri, self.version),
        });
        status
    }

    fn mirror_name(&self, pod: &Value) -> String {
        format!(
            "{}-{}",
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            self.s.node_name
        )
    }

    /// Posts a mirror pod per static pod and keeps its status current.
    fn sync_mirrors(&mut self, kube: &Kube) -> Result<()> {
        for st in self.pods.snapshot() {
            let ns = st.pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            let name = self.mirror_name(&st.pod);
            let key = format!("{ns}/{name}");
            let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
            if self.mirrors.get(&key) != Some(&st.hash) {
                let r = kube.get(&path)?;
                if r.ok()
                    && r.body["metadata"]["annotations"]["kubernetes.io/config.mirror"]
                        != st.hash.as_str()
                {
                    kube.request("DELETE", &path, Some(&json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})), "application/json")?;
                }
                if !r.ok()
                    || r.body["metadata"]["annotations"]["kubernetes.io/config.mirror"]
                        != st.hash.as_str()
                {
                    let mut m = st.pod.clone();
                    m["metadata"]["name"] = json!(name);
                    m["metadata"]["namespace"] = json!(ns);
                    let ann = m["metadata"]["annotations"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    let mut ann = ann;
                    for (k, v) in [
                        ("kubernetes.io/config.hash", st.hash.as_str()),
                        ("kubernetes.io/config.mirror", st.hash.as_str()),
                        ("kubernetes.io/config.source", "file"),
                    ] {
                        ann.insert(k.into(), json!(v));
                    }
                    ann.insert("kubernetes.io/config.seen".into(), json!(now_rfc3339()));
                    m["metadata"]["annotations"] = Value::Object(ann);
                    m["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": self.s.node_name, "uid": self.node_uid, "controller": true}]);
                    m["spec"]["nodeName"] = json!(self.s.node_name);
                    if let Some(o) = m.as_object_mut() {
                        o.remove("status");
                    }
                    let r = kube.post(&format!("/api/v1/namespaces/{ns}/pods"), &m)?;
                    if r.status != 409 {
                        r.into_result(&format!("creating mirror pod {key}"))?;
                    }
                }
                self.mirrors.insert(key.clone(), st.hash.clone());
                self.mirror_status.remove(&key);
            }
            // Report a change at once, an unchanged state now and then.
            let fresh = self.mirror_status.get(&key).is_some_and(|(r, n, t)| {
                *r == st.running && *n == st.restarts && t.elapsed() < STATUS_EVERY * 3
            });
            if fresh {
                continue;
            }
            let started = if st.started_at.is_empty() {
                now_rfc3339()
            } else {
                st.started_at.clone()
            };
            let state = if st.running {
                json!({"running": {"startedAt": started}})
            } else {
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": st.last_error.clone().unwrap_or_default()}})
            };
            let c = &st.pod["spec"]["containers"][0];
            let status = pod_status(
                st.running,
                &self.s.node_ip,
                &self.s.node_ip,
                &started,
                &[json!({
                    "name": c["name"], "image": c["image"], "imageID": "", "containerID": format!("sim://{}", st.hash),
                    "ready": st.running, "started": st.running, "restartCount": st.restarts, "state": state,
                })],
            );
            kube.merge_patch(&format!("{path}/status"), &json!({"status": status}))?
                .into_result(&format!("updating status of mirror pod {key}"))?;
            self.mirror_status
                .insert(key, (st.running, st.restarts, Instant::now()));
        }
        Ok(())
    }

    /// Pods scheduled here are "run" (simulated, see `workloads`): started once their volumes
    /// and (off the host network) the pod network allow, reported Running and, per their
    /// readiness probe's delay, Ready; pods being deleted are confirmed gone, as the kubelet
    /// does once their containers stopped.
    fn sync_bound_pods(&mut self, kube: &Kube) -> Result<()> {
        let list = kube
            .get(&format!(
                "/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
                self.s.node_name
            ))?
            .into_result("listing pods bound to this node")?;
        let pod_cidr = kube
            .get(&format!("/api/v1/nodes/{}", self.s.node_name))
            .ok()
            .and_then(|r| r.body["spec"]["podCIDR"].as_str().map(str::to_string));
        let pods: Vec<&Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["spec"]["nodeName"] == self.s.node_name.as_str())
            .filter(|p| !p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string())
            .collect();
        let mut net = workloads::Network {
            cni: workloads::read_cni_config(&p(paths::CNI_CONF_DIR)),
            pod_cidr,
            weave_router: workloads::weave_router_running(&pods),
        };
        let mut used: HashSet<String> = pods
            .iter()
            .filter(|p| p["spec"]["hostNetwork"] != true)
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect();
        let mut seen = HashSet::new();
        for pod in pods {
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
            if pod["metadata"]["deletionTimestamp"].is_string() {
                kube.request("DELETE", &path, Some(&json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})), "application/json")?;
                continue;
            }
            seen.insert(uid.clone());
            let now = time::OffsetDateTime::now_utc();
            // pkg/volume/configmap and secret: a pod whose non-optional source does not exist
            // stays ContainerCreating with FailedMount until it is created.
            let missing = (pod["status"]["phase"] != "Running")
                .then(|| {
                    workloads::missing_volume_source(pod, |kind, source| {
                        let path = format!("/api/v1/namespaces/{ns}/{kind}s/{source}");
                        !matches!(kube.request("GET", &path, None, ""), Ok(r) if r.status == 404)
                    })
                })
                .flatten();
            let decision = match missing {
                Some(message) => workloads::blocked_on_mount(pod, &self.s.node_ip, now, message),
                None => workloads::decide(pod, &net, &self.s.node_ip, &used, now, |h| {
                    workloads::kind_of(&p(h))
                }),
            };
            let status = match decision {
                workloads::Sync::Unchanged => continue,
                workloads::Sync::Refresh { status } => status,
                workloads::Sync::Blocked {
                    reason,
                    message,
                    status,
                } => {
                    self.pod_event(kube, pod, "Warning", reason, &message);
                    let pending = pod["status"]["phase"] == "Pending"
                        && pod["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == "PodReadyToStartContainers");
                    if pending {
                        continue;
                    }
                    status
                }
                workloads::Sync::InitFailed { message, status } => {
                    self.pod_event(kube, pod, "Warning", "BackOff", &message);
                    if pod["status"]["initContainerStatuses"] == status["initContainerStatuses"] {
                        continue;
                    }
                    status
                }
                workloads::Sync::Start {
                    prep,
                    writes,
                    status,
                } => {
                    if let Err(e) = prepare_and_write(&prep, &writes) {
                        self.pod_event(kube, pod, "Warning", "Failed", &format!("{e:#}"));
                        continue;
                    }
                    for w in &writes {
                        eprintln!(
                            "kubelet: pod {ns}/{name}: init wrote {} on the host",
                            w.path.display()
                        );
                    }
                    if !writes.is_empty() {
                        net.cni = workloads::read_cni_config(&p(paths::CNI_CONF_DIR));
                    }
                    if let Some(ip) = status["podIP"].as_str()
                        && pod["spec"]["hostNetwork"] != true
                    {
                        used.insert(ip.to_string());
                    }
                    self.pod_events.retain(|(u, _)| *u != uid);
                    status
                }
            };
            kube.merge_patch(&format!("{path}/status"), &json!({"status": status}))?
                .into_result(&format!("updating status of pod {ns}/{name}"))?;
        }
        self.pod_events.retain(|(u, _)| seen.contains(u));
        Ok(())
    }

    /// Records an event on a pod once per reason while the pod is stuck (the real kubelet
    /// repeats them with a count; one is enough to read why).
    fn pod_event(&mut self, kube: &Kube, pod: &Value, kind: &str, reason: &str, message: &str) {
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !self.pod_events.insert((uid.clone(), reason.to_string())) {
            return;
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        eprintln!("kubelet: pod {ns}/{name}: {reason}: {message}");
        let now = now_rfc3339();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{name}."), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns, "uid": uid},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": self.s.node_name},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": "kubelet", "reportingInstance": self.s.node_name,
        });
        if let Err(e) = kube.post(&format!("/api/v1/namespaces/{ns}/events"), &event) {
            eprintln!("kubelet: cannot record event on {ns}/{name}: {e:#}");
        }
    }
}

/// The host side of starting a pod: hostPath sources created, init containers' files written.
fn prepare_and_write(
    prep: &[workloads::HostPathPrep],
    writes: &[workloads::HostWrite],
) -> Result<()> {
    for step in prep {
        match step {
            workloads::HostPathPrep::CreateDir(d) => {
                std::fs::create_dir_all(p(&d.to_string_lossy()))
                    .with_context(|| format!("creating hostPath directory {}", d.display()))?
            }
            workloads::HostPathPrep::CreateFile(f) => {
                let f = p(&f.to_string_lossy());
                if let Some(dir) = f.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&f)
                    .with_context(|| format!("creating hostPath file {}", f.display()))?;
            }
        }
    }
    for w in writes {
        crate::util::write_file(&p(&w.path.to_string_lossy()), &w.content, 0o644)?;
    }
    Ok(())
}

fn pod_status(
    running: bool,
    host_ip: &str,
    pod_ip: &str,
    started: &str,
    containers: &[Value],
) -> Value {
    let t = if running { "True" } else { "False" };
    let cond = |ty: &str, st: &str| json!({"type": ty, "status": st, "lastTransitionTime": started, "lastProbeTime": null});
    json!({
        "phase": if running { "Running" } else { "Pending" },
        "conditions": [
            cond("PodReadyToStartContainers", "True"),
            cond("Initialized", "True"),
            cond("Ready", t),
            cond("ContainersReady", t),
            cond("PodScheduled", "True"),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "qosClass": "Burstable",
        "containerStatuses": containers,
    })
}

fn capacity() -> (usize, u64) {
    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse().ok()))
        })
        .unwrap_or(0);
    (cpu, mem)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn node_info(cri: &str, version: KubeVersion) -> Value {
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let runtime = match crate::cri::sim_get(cri, "/version") {
        Ok(v) => format!(
            "{}://{}",
            v["runtimeName"].as_str().unwrap_or("docker"),
            v["runtimeVersion"].as_str().unwrap_or("unknown")
        ),
        Err(_) => "containerd://unknown".into(),
    };
    let machine_id = read_trim("/etc/machine-id");
    let uuid = read_trim("/sys/class/dmi/id/product_uuid");
    let system_uuid = if uuid.is_empty() {
        machine_id.clone()
    } else {
        uuid
    };
    json!({
        "machineID": machine_id,
        "systemUUID": system_uuid,
        "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": kernel,
        "osImage": os_image,
        "containerRuntimeVersion": runtime,
        "kubeletVersion": version.to_string(),
        "operatingSystem": "linux",
        "architecture": crate::kubeadm::arch(),
    })
}
