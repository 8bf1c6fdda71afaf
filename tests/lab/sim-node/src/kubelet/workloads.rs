//! Pods the scheduler bound to this node, "run" the way the kubelet runs them, minus the
//! containers: hostPath volumes are checked and created as the kubelet and the runtime do,
//! pods off the host network wait for the CNI (and get an address from the node's podCIDR
//! once it works), init containers with a known effect on the host perform it (Weave Net's
//! init writes the CNI configuration through its hostPath mount), and readiness follows the
//! readiness probe's initial delay. Decisions are pure functions of the pod, the node's
//! network and the clock; `node.rs` lists the pods, applies the effects and posts status.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::util::{format_rfc3339, parse_rfc3339};

/// Images of Weave Net's `weave-kube` (the rajch/weave fork and the archived upstream).
pub const WEAVE_KUBE_IMAGES: &[&str] = &["rajchaudhuri/weave-kube", "weaveworks/weave-kube"];

/// The CNI network configuration Weave Net's `weave --local setup-cni` writes (plugin
/// `weave-net`, chained with `portmap`), as it appears on a node running Weave Net 2.x.
pub const WEAVE_CONFLIST: &str = r#"{
    "cniVersion": "0.3.0",
    "name": "weave",
    "plugins": [
        {
            "name": "weave",
            "type": "weave-net",
            "hairpinMode": true
        },
        {
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true
        }
    ]
}
"#;

/// Where weave-kube's init.sh puts the CNI configuration, below `$HOST_ROOT` (default `/host`).
const WEAVE_CONF_IN_CONTAINER: &str = "etc/cni/net.d/10-weave.conflist";

/// The node's pod network as the container runtime sees it.
#[derive(Debug, Clone)]
pub struct Network {
    /// The CNI configuration the runtime loads (the first file by name), or why there is
    /// none (the runtime's NetworkReady=false message).
    pub cni: Result<CniConfig, String>,
    /// `spec.podCIDR` of the Node.
    pub pod_cidr: Option<String>,
    /// A Weave Net router runs on this node (the `weave` container of a running weave-kube
    /// pod): the `weave-net` CNI plugin asks it for addresses on 127.0.0.1:6784.
    pub weave_router: bool,
}

/// The loaded CNI configuration: its file and the type of its first plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    pub file: String,
    pub plugin: String,
}

/// Reads the CNI configuration directory as libcni does: `*.conf`, `*.conflist`, `*.json`,
/// sorted by name, the first one loaded. The error is the runtime's NetworkReady message.
pub fn read_cni_config(dir: &Path) -> Result<CniConfig, String> {
    let not_ready = |why: &str| {
        format!(
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: {why}"
        )
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "conf" | "conflist" | "json"))
        })
        .collect();
    files.sort();
    let Some(first) = files.first() else {
        return Err(not_ready("cni plugin not initialized"));
    };
    let text = std::fs::read_to_string(first)
        .map_err(|e| not_ready(&format!("error reading {}: {e}", first.display())))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| not_ready(&format!("error parsing {}: {e}", first.display())))?;
    let plugin = if doc["plugins"].is_array() {
        doc["plugins"][0]["type"].as_str()
    } else {
        doc["type"].as_str()
    };
    Ok(CniConfig {
        file: first.display().to_string(),
        plugin: plugin.unwrap_or("").to_string(),
    })
}

/// `registry/owner/name:tag@digest` → `owner/name` (Docker Hub's `docker.io/` and
/// `library/` dropped), to recognise an image whatever its tag.
pub fn image_repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let repo = match no_digest[last_slash..].find(':') {
        Some(colon) => &no_digest[..last_slash + colon],
        None => no_digest,
    };
    let repo = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    repo.strip_prefix("library/").unwrap_or(repo).to_string()
}

fn is_weave_kube(c: &Value) -> bool {
    WEAVE_KUBE_IMAGES.contains(&image_repository(c["image"].as_str().unwrap_or("")).as_str())
}

fn env_value<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

fn script(c: &Value) -> String {
    c["command"][0]
        .as_str()
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or("")
        .to_string()
}

/// Does this container run weave-kube's init.sh? The init container does
/// (`command: [/home/weave/init.sh]`); the `weave` container's launch.sh (also the image's
/// entrypoint) runs it itself unless `INIT_CONTAINER=true` says an init container did.
pub fn runs_weave_init(c: &Value, init_container: bool) -> bool {
    if !is_weave_kube(c) {
        return false;
    }
    match script(c).as_str() {
        "init.sh" => true,
        "launch.sh" | "" => !init_container && env_value(c, "INIT_CONTAINER") != Some("true"),
        _ => false,
    }
}

/// Is this (regular) container a running Weave Net router (weave-kube's launch.sh)?
pub fn is_weave_router(c: &Value) -> bool {
    is_weave_kube(c) && matches!(script(c).as_str(), "launch.sh" | "")
}

/// Where a path inside a container lands on the host: through the volumeMount that covers it
/// (the longest mountPath), which must be a hostPath volume. `Ok(None)`: no hostPath covers
/// it, so a write stays inside the container. `Err`: the mount is read-only.
pub fn host_path_of(pod: &Value, c: &Value, in_container: &str) -> Result<Option<PathBuf>, String> {
    let target = Path::new(in_container);
    let mut best: Option<(&Value, usize)> = None;
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let Some(mp) = m["mountPath"].as_str() else {
            continue;
        };
        let mount = Path::new(mp);
        if target.starts_with(mount) {
            let depth = mount.components().count();
            if best.is_none_or(|(_, d)| depth > d) {
                best = Some((m, depth));
            }
        }
    }
    let Some((m, _)) = best else {
        return Ok(None);
    };
    let name = m["name"].as_str().unwrap_or("");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name);
    let Some(host) = volume.and_then(|v| v["hostPath"]["path"].as_str()) else {
        return Ok(None);
    };
    if m["readOnly"] == true {
        return Err(format!(
            "{in_container}: Read-only file system (volume {name:?} is mounted read-only)"
        ));
    }
    let mount = Path::new(m["mountPath"].as_str().unwrap_or("/"));
    let rest = target.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut out = PathBuf::from(host);
    if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
        out.push(sub);
    }
    for part in rest.components() {
        if let Component::Normal(p) = part {
            out.push(p);
        }
    }
    Ok(Some(out))
}

/// A file an init container writes on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWrite {
    pub path: PathBuf,
    pub content: String,
}

/// What weave-kube's init does on the host when `c` runs it: the CNI configuration at
/// `$HOST_ROOT/etc/cni/net.d/10-weave.conflist`, through the container's mounts.
pub fn weave_init_writes(pod: &Value, c: &Value) -> Result<Vec<HostWrite>, String> {
    let root = env_value(c, "HOST_ROOT").unwrap_or("/host");
    let in_container = format!("{}/{WEAVE_CONF_IN_CONTAINER}", root.trim_end_matches('/'));
    Ok(host_path_of(pod, c, &in_container)?
        .map(|path| HostWrite {
            path,
            content: WEAVE_CONFLIST.to_string(),
        })
        .into_iter()
        .collect())
}

/// The host side of a hostPath volume before the pod starts (the kubelet's hostPath type
/// checks; for an unset type the runtime creates a missing directory as the bind source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPathPrep {
    CreateDir(PathBuf),
    CreateFile(PathBuf),
}

/// What a host path is, for the type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Dir,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

pub fn kind_of(path: &Path) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Err(_) => Kind::Missing,
        Ok(m) if m.is_dir() => Kind::Dir,
        Ok(m) if m.file_type().is_socket() => Kind::Socket,
        Ok(m) if m.file_type().is_char_device() => Kind::CharDevice,
        Ok(m) if m.file_type().is_block_device() => Kind::BlockDevice,
        Ok(_) => Kind::File,
    }
}

/// Checks every hostPath volume of the pod against its `type`; returns what to create, or the
/// FailedMount message (`MountVolume.SetUp failed for volume "x" : hostPath type check failed:
/// /p is not a directory`).
pub fn host_path_prep(
    pod: &Value,
    kind: impl Fn(&str) -> Kind,
) -> Result<Vec<HostPathPrep>, String> {
    let mut out = Vec::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let Some(path) = v["hostPath"]["path"].as_str() else {
            continue;
        };
        let name = v["name"].as_str().unwrap_or("");
        let have = kind(path);
        let fail = |what: &str| {
            Err(format!(
                "MountVolume.SetUp failed for volume {name:?} : hostPath type check failed: {path} is not {what}"
            ))
        };
        match v["hostPath"]["type"].as_str().unwrap_or("") {
            "" => {
                if have == Kind::Missing {
                    out.push(HostPathPrep::CreateDir(path.into()));
                }
            }
            "DirectoryOrCreate" => match have {
                Kind::Missing => out.push(HostPathPrep::CreateDir(path.into())),
                Kind::Dir => {}
                _ => return fail("a directory"),
            },
            "FileOrCreate" => match have {
                Kind::Missing => out.push(HostPathPrep::CreateFile(path.into())),
                Kind::Dir => return fail("a file"),
                _ => {}
            },
            "Directory" if have != Kind::Dir => return fail("a directory"),
            "File" if have != Kind::File => return fail("a file"),
            "Socket" if have != Kind::Socket => return fail("a socket file"),
            "CharDevice" if have != Kind::CharDevice => return fail("a character device"),
            "BlockDevice" if have != Kind::BlockDevice => return fail("a block device"),
            "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {}
            other => {
                return Err(format!(
                    "MountVolume.SetUp failed for volume {name:?} : invalid HostPathType {other:?}"
                ));
            }
        }
    }
    Ok(out)
}

/// The first configMap or secret volume whose object does not exist (`exists(kind, name)` asks
/// the API), as the FailedMount message the kubelet gives (`MountVolume.SetUp failed for volume
/// "v" : configmap "c" not found`); `optional: true` volumes never block.
pub fn missing_volume_source(
    pod: &Value,
    mut exists: impl FnMut(&str, &str) -> bool,
) -> Option<String> {
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let volume = v["name"].as_str().unwrap_or("");
        let (kind, source) = if v["configMap"].is_object() {
            ("configmap", &v["configMap"]["name"])
        } else if v["secret"].is_object() {
            ("secret", &v["secret"]["secretName"])
        } else {
            continue;
        };
        let optional = v["configMap"]["optional"] == true || v["secret"]["optional"] == true;
        let Some(name) = source.as_str() else {
            continue;
        };
        if !optional && !exists(kind, name) {
            return Some(format!(
                "MountVolume.SetUp failed for volume {volume:?} : {kind} {name:?} not found"
            ));
        }
    }
    None
}

/// A pod that cannot start because a volume cannot be set up: Pending, ContainerCreating.
pub fn blocked_on_mount(pod: &Value, node_ip: &str, now: OffsetDateTime, message: String) -> Sync {
    Sync::Blocked {
        reason: "FailedMount",
        message,
        status: pending_status(pod, node_ip, &format_rfc3339(now), "ContainerCreating"),
    }
}

/// The first free address of the node's podCIDR, from .2 (.0 is the network, .1 the bridge).
pub fn allocate_ip(cidr: &str, used: &HashSet<String>) -> Option<String> {
    let c = crate::config::Cidr::parse(cidr).ok()?;
    let size = c.range_size().min(1 << 16) as u32;
    (2..size.saturating_sub(1))
        .map(|i| c.nth(i))
        .map(|ip: IpAddr| ip.to_string())
        .find(|ip| !used.contains(ip))
}

fn seconds(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0).max(0)
}

/// When a container started at `started` turns ready: with a readiness probe, after its
/// initialDelaySeconds (the first probe; the simulated probe succeeds), and not before a
/// startup probe's delay; without one, at once.
pub fn ready_at(c: &Value, started: OffsetDateTime) -> OffsetDateTime {
    let delay = seconds(&c["readinessProbe"]["initialDelaySeconds"])
        .max(seconds(&c["startupProbe"]["initialDelaySeconds"]));
    started + time::Duration::seconds(delay)
}

/// What the kubelet does with a pod bound here this round.
#[derive(Debug, Clone, PartialEq)]
pub enum Sync {
    /// Nothing to post.
    Unchanged,
    /// The pod cannot start yet: a warning event (reason, message) and a Pending status.
    Blocked {
        reason: &'static str,
        message: String,
        status: Value,
    },
    /// Start it: prepare the hostPath volumes, perform the init containers' host writes, post
    /// the status.
    Start {
        prep: Vec<HostPathPrep>,
        writes: Vec<HostWrite>,
        status: Value,
    },
    /// An init container failed (its host write was refused): event and status.
    InitFailed { message: String, status: Value },
    /// Already running: readiness changed.
    Refresh { status: Value },
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn cond(t: &str, status: bool, at: &str, reason: Option<(&str, String)>) -> Value {
    let mut c = json!({"type": t, "status": if status { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": at});
    if let Some((r, m)) = reason {
        c["reason"] = json!(r);
        if !m.is_empty() {
            c["message"] = json!(m);
        }
    }
    c
}

/// The conditions of a pod that has not started: the sandbox is not there, init containers
/// (if any) have not run, no container is ready.
fn pending_status(pod: &Value, host_ip: &str, now: &str, waiting: &str) -> Value {
    let containers = names(&pod["spec"]["containers"]);
    let inits = names(&pod["spec"]["initContainers"]);
    let unready = format!("containers with unready status: [{}]", containers.join(" "));
    let initialized = if inits.is_empty() {
        cond("Initialized", true, now, None)
    } else {
        cond(
            "Initialized",
            false,
            now,
            Some((
                "ContainersNotInitialized",
                format!("containers with incomplete status: [{}]", inits.join(" ")),
            )),
        )
    };
    let image = |c: &Value| c["image"].clone();
    let statuses = |list: &Value, reason: &str| -> Vec<Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"name": c["name"], "image": image(c), "imageID": "", "ready": false, "started": false,
                "restartCount": 0, "state": {"waiting": {"reason": reason}}}))
            .collect()
    };
    let mut status = json!({
        "phase": "Pending",
        "conditions": [
            cond("PodReadyToStartContainers", false, now, None),
            initialized,
            cond("Ready", false, now, Some(("ContainersNotReady", unready.clone()))),
            cond("ContainersReady", false, now, Some(("ContainersNotReady", unready))),
            cond("PodScheduled", true, now, None),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": pod["status"]["startTime"].as_str().unwrap_or(now),
        "qosClass": qos_class(pod),
        "containerStatuses": statuses(&pod["spec"]["containers"], if inits.is_empty() { waiting } else { "PodInitializing" }),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(statuses(&pod["spec"]["initContainers"], waiting));
    }
    status
}

/// BestEffort without requests or limits, Guaranteed when every container's limits equal
/// its requests for cpu and memory, else Burstable.
pub fn qos_class(pod: &Value) -> &'static str {
    let all: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten())
        .collect();
    let empty = |v: &Value| v.as_object().is_none_or(|m| m.is_empty());
    if all
        .iter()
        .all(|c| empty(&c["resources"]["requests"]) && empty(&c["resources"]["limits"]))
    {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let l = &c["resources"]["limits"][*r];
            !l.is_null()
                && (c["resources"]["requests"][*r].is_null()
                    || c["resources"]["requests"][*r] == *l)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The status of a started pod at `now`: init containers completed, containers running since
/// their start, ready per [`ready_at`].
fn running_status(
    pod: &Value,
    host_ip: &str,
    pod_ip: &str,
    started: OffsetDateTime,
    now: OffsetDateTime,
    previous: &Value,
) -> Value {
    let start = format_rfc3339(started);
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let ready = now >= ready_at(c, started);
            json!({"name": c["name"], "image": c["image"], "imageID": "",
                "containerID": format!("sim://{uid}/{}", c["name"].as_str().unwrap_or("")),
                "ready": ready, "started": true, "restartCount": 0, "state": {"running": {"startedAt": start}}})
        })
        .collect();
    let unready: Vec<String> = containers
        .iter()
        .filter(|c| c["ready"] != true)
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let all_ready = unready.is_empty();
    // A condition keeps its transition time while its status stays the same.
    let since = |t: &str, status: bool| -> String {
        previous["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t && c["status"] == if status { "True" } else { "False" })
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                if status && (t == "Ready" || t == "ContainersReady") {
                    // Ready since the moment the last container turned ready.
                    let at = pod["spec"]["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| ready_at(c, started))
                        .max()
                        .unwrap_or(started);
                    format_rfc3339(at)
                } else {
                    format_rfc3339(now)
                }
            })
    };
    let why = (!all_ready).then(|| {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    });
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            cond("PodReadyToStartContainers", true, &start, None),
            cond("Initialized", true, &start, None),
            cond("Ready", all_ready, &since("Ready", all_ready), why.clone()),
            cond("ContainersReady", all_ready, &since("ContainersReady", all_ready), why),
            cond("PodScheduled", true, &start, None),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": pod["status"]["startTime"].as_str().map(str::to_string).unwrap_or_else(|| start.clone()),
        "qosClass": qos_class(pod),
        "containerStatuses": containers,
    });
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": "",
                "containerID": format!("sim://{uid}/{}", c["name"].as_str().unwrap_or("")),
                "ready": true, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": start, "finishedAt": start}}})
        })
        .collect();
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    status
}

/// The weave-net plugin cannot add a pod while no Weave Net router runs on the node; other
/// plugins are taken to work.
fn plugin_problem(pod: &Value, net: &Network, cni: &CniConfig) -> Option<String> {
    if cni.plugin == "weave-net" && !net.weave_router {
        let sandbox = pod["metadata"]["uid"].as_str().unwrap_or("");
        return Some(format!(
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"{sandbox}\": plugin type=\"weave-net\" name=\"weave\" failed (add): unable to allocate IP address: Post \"http://127.0.0.1:6784/ip/{sandbox}\": dial tcp 127.0.0.1:6784: connect: connection refused"
        ));
    }
    None
}

/// Decides what to do with `pod` (bound to this node, not being deleted) at `now`. `used` holds
/// the addresses of the node's other pods.
pub fn decide(
    pod: &Value,
    net: &Network,
    node_ip: &str,
    used: &HashSet<String>,
    now: OffsetDateTime,
    kind: impl Fn(&str) -> Kind,
) -> Sync {
    let now_s = format_rfc3339(now);
    let status = &pod["status"];
    if status["phase"] == "Running" {
        let started = status["containerStatuses"][0]["state"]["running"]["startedAt"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(now);
        let ip = status["podIP"].as_str().unwrap_or(node_ip);
        let new = running_status(pod, node_ip, ip, started, now, status);
        let ready = |s: &Value| -> Vec<Value> {
            s["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["ready"].clone())
                .collect()
        };
        if ready(&new) == ready(status) {
            return Sync::Unchanged;
        }
        return Sync::Refresh { status: new };
    }
    if matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return Sync::Unchanged;
    }
    let host_network = pod["spec"]["hostNetwork"] == true;
    let blocked = |reason: &'static str, message: String, waiting: &str| Sync::Blocked {
        reason,
        message,
        status: pending_status(pod, node_ip, &now_s, waiting),
    };
    let prep = match host_path_prep(pod, &kind) {
        Ok(p) => p,
        Err(e) => return blocked("FailedMount", e, "ContainerCreating"),
    };
    let ip = if host_network {
        node_ip.to_string()
    } else {
        // kubelet.go SyncPod: only host-network pods start while the network is not ready.
        let cni = match &net.cni {
            Ok(c) => c,
            Err(e) => {
                return blocked(
                    "NetworkNotReady",
                    format!("network is not ready: {e}"),
                    "ContainerCreating",
                );
            }
        };
        if let Some(problem) = plugin_problem(pod, net, cni) {
            return blocked("FailedCreatePodSandBox", problem, "ContainerCreating");
        }
        let Some(ip) = net
            .pod_cidr
            .as_deref()
            .and_then(|cidr| allocate_ip(cidr, used))
        else {
            return blocked(
                "FailedCreatePodSandBox",
                format!(
                    "Failed to create pod sandbox: no address left for the pod (the simulated CNI assigns from the node's podCIDR, {})",
                    net.pod_cidr.as_deref().unwrap_or("not set yet")
                ),
                "ContainerCreating",
            );
        };
        ip
    };
    let mut writes = Vec::new();
    let inits = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mains = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let runs = inits
        .iter()
        .map(|c| (c, true))
        .chain(mains.iter().map(|c| (c, false)));
    for (c, init) in runs {
        if runs_weave_init(c, init) {
            match weave_init_writes(pod, c) {
                Ok(w) => writes.extend(w),
                Err(e) => {
                    let name = c["name"].as_str().unwrap_or("");
                    let mut status = pending_status(pod, node_ip, &now_s, "PodInitializing");
                    let failed =
                        json!({"terminated": {"exitCode": 1, "reason": "Error", "message": e}});
                    let list = if init {
                        "initContainerStatuses"
                    } else {
                        "containerStatuses"
                    };
                    for s in status[list].as_array_mut().into_iter().flatten() {
                        if s["name"] == name {
                            s["state"] = failed.clone();
                        }
                    }
                    return Sync::InitFailed {
                        message: format!("container {name} failed: {e}"),
                        status,
                    };
                }
            }
        }
    }
    Sync::Start {
        prep,
        writes,
        status: running_status(pod, node_ip, &ip, now, now, &json!({})),
    }
}

/// A running Weave Net router among the node's pods: a running weave-kube pod whose `weave`
/// container (launch.sh) runs.
pub fn weave_router_running(pods: &[&Value]) -> bool {
    pods.iter().any(|p| {
        p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["phase"] == "Running"
            && p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    is_weave_router(c)
                        && p["status"]["containerStatuses"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|s| s["name"] == c["name"] && s["state"]["running"].is_object())
                })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weave-net DaemonSet's pod as the controller creates it from the v2.9.0 release
    /// asset (init container, hostPath volumes, INIT_CONTAINER=true on the router).
    fn weave_pod() -> Value {
        json!({"metadata": {"name": "weave-net-x", "uid": "u-weave"},
            "spec": {"hostNetwork": true, "nodeName": "master-1",
            "initContainers": [{"name": "weave-init", "image": "rajchaudhuri/weave-kube:2.9.0",
                "command": ["/home/weave/init.sh"],
                "volumeMounts": [{"name": "cni-bin", "mountPath": "/host/opt"}, {"name": "cni-bin2", "mountPath": "/host/home"},
                    {"name": "cni-conf", "mountPath": "/host/etc"}, {"name": "lib-modules", "mountPath": "/lib/modules"},
                    {"name": "xtables-lock", "mountPath": "/run/xtables.lock", "readOnly": false}]}],
            "containers": [
                {"name": "weave", "image": "rajchaudhuri/weave-kube:2.9.0", "command": ["/home/weave/launch.sh"],
                 "env": [{"name": "INIT_CONTAINER", "value": "true"}, {"name": "IPALLOC_RANGE", "value": "10.244.0.0/16"}],
                 "readinessProbe": {"httpGet": {"host": "127.0.0.1", "path": "/status", "port": 6784}},
                 "volumeMounts": [{"name": "weavedb", "mountPath": "/weavedb"}, {"name": "cni-machine-id", "mountPath": "/host/etc/machine-id", "readOnly": true}]},
                {"name": "weave-npc", "image": "rajchaudhuri/weave-npc:2.9.0"}],
            "volumes": [{"name": "weavedb", "hostPath": {"path": "/var/lib/weave"}},
                {"name": "cni-bin", "hostPath": {"path": "/opt"}}, {"name": "cni-bin2", "hostPath": {"path": "/home"}},
                {"name": "cni-conf", "hostPath": {"path": "/etc"}}, {"name": "cni-machine-id", "hostPath": {"path": "/etc/machine-id"}},
                {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}]},
            "status": {"phase": "Pending"}})
    }

    fn headlamp_pod() -> Value {
        json!({"metadata": {"name": "headlamp-x", "uid": "u-headlamp"},
            "spec": {"nodeName": "worker-1", "containers": [{"name": "headlamp", "image": "ghcr.io/headlamp-k8s/headlamp:v0.45.0",
                "readinessProbe": {"httpGet": {"path": "/", "port": 4466}, "initialDelaySeconds": 30}}]},
            "status": {"phase": "Pending"}})
    }

    fn t(s: &str) -> OffsetDateTime {
        parse_rfc3339(s).unwrap()
    }

    fn existing(p: &str) -> Kind {
        match p {
            "/run/xtables.lock" | "/var/lib/weave" => Kind::Missing,
            "/etc/machine-id" => Kind::File,
            _ => Kind::Dir,
        }
    }

    #[test]
    fn a_missing_configmap_or_secret_blocks_the_pod_unless_optional() {
        let pod = json!({"spec": {"volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "conf", "configMap": {"name": "app"}},
            {"name": "creds", "secret": {"secretName": "token", "optional": true}},
        ]}});
        assert_eq!(
            missing_volume_source(&pod, |_, _| false).unwrap(),
            "MountVolume.SetUp failed for volume \"conf\" : configmap \"app\" not found"
        );
        assert_eq!(
            missing_volume_source(&pod, |kind, _| kind == "configmap"),
            None
        );
        let secret = json!({"spec": {"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}});
        assert!(
            missing_volume_source(&secret, |_, _| false)
                .unwrap()
                .contains("secret \"x\" not found")
        );
    }

    fn net(cni: Option<&str>, weave_router: bool) -> Network {
        Network {
            cni: cni
                .map(|plugin| CniConfig {
                    file: "/etc/cni/net.d/10-weave.conflist".into(),
                    plugin: plugin.into(),
                })
                .ok_or_else(|| "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".to_string()),
            pod_cidr: Some("10.244.1.0/24".into()),
            weave_router,
        }
    }

    #[test]
    fn images_are_recognised_whatever_their_registry_and_tag() {
        assert_eq!(
            image_repository("rajchaudhuri/weave-kube:2.9.0"),
            "rajchaudhuri/weave-kube"
        );
        assert_eq!(
            image_repository("docker.io/weaveworks/weave-kube:2.8.1@sha256:abc"),
            "weaveworks/weave-kube"
        );
        assert_eq!(
            image_repository("localhost:5000/x/weave-kube"),
            "localhost:5000/x/weave-kube"
        );
        assert_eq!(image_repository("busybox"), "busybox");
    }

    #[test]
    fn weave_init_writes_the_conflist_through_its_host_etc_mount() {
        let pod = weave_pod();
        let init = &pod["spec"]["initContainers"][0];
        assert!(runs_weave_init(init, true));
        // The router does not run init.sh again: INIT_CONTAINER=true.
        assert!(!runs_weave_init(&pod["spec"]["containers"][0], false));
        assert!(!runs_weave_init(&pod["spec"]["containers"][1], false));
        let w = weave_init_writes(&pod, init).unwrap();
        assert_eq!(
            w,
            [HostWrite {
                path: "/etc/cni/net.d/10-weave.conflist".into(),
                content: WEAVE_CONFLIST.into()
            }]
        );
        let doc: Value = serde_json::from_str(WEAVE_CONFLIST).unwrap();
        assert_eq!(doc["plugins"][0]["type"], "weave-net");
    }

    #[test]
    fn the_mounts_decide_where_the_conflist_lands_or_whether_it_does() {
        let mut pod = weave_pod();
        // A narrower mount of /etc/cni/net.d wins.
        pod["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "cni-netd", "hostPath": {"path": "/srv/cni"}}));
        pod["spec"]["initContainers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "cni-netd", "mountPath": "/host/etc/cni/net.d"}));
        let init = pod["spec"]["initContainers"][0].clone();
        assert_eq!(
            weave_init_writes(&pod, &init).unwrap()[0].path,
            PathBuf::from("/srv/cni/10-weave.conflist")
        );
        // Without a hostPath mount the file stays inside the container: nothing on the host.
        let mut pod = weave_pod();
        pod["spec"]["initContainers"][0]["volumeMounts"] = json!([]);
        let init = pod["spec"]["initContainers"][0].clone();
        assert!(weave_init_writes(&pod, &init).unwrap().is_empty());
        // A non-hostPath volume (emptyDir) does not reach the host either.
        let mut pod = weave_pod();
        pod["spec"]["volumes"][3] = json!({"name": "cni-conf", "emptyDir": {}});
        let init = pod["spec"]["initContainers"][0].clone();
        assert!(weave_init_writes(&pod, &init).unwrap().is_empty());
        // A read-only mount makes init.sh fail.
        let mut pod = weave_pod();
        pod["spec"]["initContainers"][0]["volumeMounts"][2]["readOnly"] = json!(true);
        let init = pod["spec"]["initContainers"][0].clone();
        assert!(
            weave_init_writes(&pod, &init)
                .unwrap_err()
                .contains("Read-only")
        );
        // An old manifest without the init container: launch.sh runs init.sh itself.
        let mut pod = weave_pod();
        pod["spec"]["containers"][0]["env"] = json!([]);
        pod["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "cni-conf", "mountPath": "/host/etc"}]);
        let router = pod["spec"]["containers"][0].clone();
        assert!(runs_weave_init(&router, false));
        assert_eq!(weave_init_writes(&pod, &router).unwrap().len(), 1);
    }

    #[test]
    fn host_network_weave_starts_before_the_network_and_writes_its_config() {
        let pod = weave_pod();
        match decide(
            &pod,
            &net(None, false),
            "10.0.0.11",
            &HashSet::new(),
            t("2026-01-01T00:00:00Z"),
            existing,
        ) {
            Sync::Start {
                prep,
                writes,
                status,
            } => {
                assert_eq!(
                    prep,
                    [
                        HostPathPrep::CreateDir("/var/lib/weave".into()),
                        HostPathPrep::CreateFile("/run/xtables.lock".into())
                    ]
                );
                assert_eq!(writes.len(), 1);
                assert_eq!(status["phase"], "Running");
                assert_eq!(status["podIP"], "10.0.0.11");
                assert_eq!(
                    status["initContainerStatuses"][0]["state"]["terminated"]["reason"],
                    "Completed"
                );
                // No initial delay on weave's readiness probe: ready at once.
                assert_eq!(status["containerStatuses"][0]["ready"], true);
                assert_eq!(status["conditions"][2]["status"], "True");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_pods_wait_for_the_network_then_get_a_pod_cidr_address() {
        let pod = headlamp_pod();
        let now = t("2026-01-01T00:00:00Z");
        match decide(
            &pod,
            &net(None, false),
            "10.0.0.21",
            &HashSet::new(),
            now,
            existing,
        ) {
            Sync::Blocked {
                reason,
                message,
                status,
            } => {
                assert_eq!(reason, "NetworkNotReady");
                assert!(
                    message
                        .starts_with("network is not ready: container runtime network not ready"),
                    "{message}"
                );
                assert_eq!(status["phase"], "Pending");
                assert!(status["podIP"].is_null());
                assert_eq!(
                    status["containerStatuses"][0]["state"]["waiting"]["reason"],
                    "ContainerCreating"
                );
            }
            other => panic!("{other:?}"),
        }
        // Weave's config is there but no router runs on the node (its pod was deleted).
        match decide(
            &pod,
            &net(Some("weave-net"), false),
            "10.0.0.21",
            &HashSet::new(),
            now,
            existing,
        ) {
            Sync::Blocked {
                reason, message, ..
            } => {
                assert_eq!(reason, "FailedCreatePodSandBox");
                assert!(message.contains("127.0.0.1:6784"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let used: HashSet<String> = ["10.244.1.2".to_string()].into();
        match decide(
            &pod,
            &net(Some("weave-net"), true),
            "10.0.0.21",
            &used,
            now,
            existing,
        ) {
            Sync::Start { status, .. } => {
                assert_eq!(status["podIP"], "10.244.1.3");
                assert_eq!(status["hostIP"], "10.0.0.21");
                // Readiness probe with a 30 s initial delay: running, not ready yet.
                assert_eq!(status["phase"], "Running");
                assert_eq!(status["containerStatuses"][0]["ready"], false);
                assert_eq!(status["conditions"][2]["reason"], "ContainersNotReady");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn readiness_follows_the_probe_delay() {
        let mut pod = headlamp_pod();
        let started = t("2026-01-01T00:00:00Z");
        pod["status"] = running_status(
            &pod,
            "10.0.0.21",
            "10.244.1.2",
            started,
            started,
            &json!({}),
        );
        let at = |s| {
            decide(
                &pod,
                &net(Some("weave-net"), true),
                "10.0.0.21",
                &HashSet::new(),
                t(s),
                existing,
            )
        };
        assert_eq!(at("2026-01-01T00:00:29Z"), Sync::Unchanged);
        match at("2026-01-01T00:00:31Z") {
            Sync::Refresh { status } => {
                assert_eq!(status["containerStatuses"][0]["ready"], true);
                assert_eq!(status["podIP"], "10.244.1.2");
                let ready = &status["conditions"][2];
                assert_eq!(ready["status"], "True");
                // Ready since the probe's first success, for minReadySeconds to count from.
                assert_eq!(ready["lastTransitionTime"], "2026-01-01T00:00:30Z");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_path_types_are_checked_like_the_kubelet() {
        let pod = |ty: &str| json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x", "type": ty}}]}});
        assert_eq!(
            host_path_prep(&pod("Directory"), |_| Kind::Missing).unwrap_err(),
            "MountVolume.SetUp failed for volume \"v\" : hostPath type check failed: /x is not a directory"
        );
        assert!(
            host_path_prep(&pod("Directory"), |_| Kind::Dir)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            host_path_prep(&pod("DirectoryOrCreate"), |_| Kind::Missing).unwrap(),
            [HostPathPrep::CreateDir("/x".into())]
        );
        assert!(host_path_prep(&pod("FileOrCreate"), |_| Kind::Dir).is_err());
        assert!(host_path_prep(&pod("BlockDevice"), |_| Kind::File).is_err());
        assert!(host_path_prep(&pod("Bogus"), |_| Kind::Dir).is_err());
        // A failed mount keeps the pod in ContainerCreating.
        let mut p = headlamp_pod();
        p["spec"]["volumes"] = json!([{"name": "dev", "hostPath": {"path": "/dev/nonexistent", "type": "BlockDevice"}}]);
        let s = decide(
            &p,
            &net(Some("weave-net"), true),
            "10.0.0.21",
            &HashSet::new(),
            t("2026-01-01T00:00:00Z"),
            |_| Kind::Missing,
        );
        assert!(
            matches!(
                s,
                Sync::Blocked {
                    reason: "FailedMount",
                    ..
                }
            ),
            "{s:?}"
        );
    }

    #[test]
    fn a_read_only_mount_fails_weaves_init() {
        let mut pod = weave_pod();
        pod["spec"]["initContainers"][0]["volumeMounts"][2]["readOnly"] = json!(true);
        match decide(
            &pod,
            &net(None, false),
            "10.0.0.11",
            &HashSet::new(),
            t("2026-01-01T00:00:00Z"),
            existing,
        ) {
            Sync::InitFailed { message, status } => {
                assert!(message.contains("weave-init"), "{message}");
                assert_eq!(status["phase"], "Pending");
                assert_eq!(
                    status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
                    1
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addresses_are_unique_within_the_pod_cidr() {
        let mut used = HashSet::new();
        for i in 2..=254 {
            let ip = allocate_ip("10.244.3.0/24", &used).unwrap();
            assert_eq!(ip, format!("10.244.3.{i}"));
            used.insert(ip);
        }
        assert_eq!(allocate_ip("10.244.3.0/24", &used), None);
    }

    #[test]
    fn the_first_cni_file_by_name_is_the_network() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_cni_config(dir.path())
                .unwrap_err()
                .contains("cni plugin not initialized")
        );
        std::fs::write(dir.path().join("10-weave.conflist"), WEAVE_CONFLIST).unwrap();
        std::fs::write(dir.path().join("20-bridge.conf"), r#"{"type": "bridge"}"#).unwrap();
        std::fs::write(dir.path().join("05-notes.txt"), "not a config").unwrap();
        assert_eq!(read_cni_config(dir.path()).unwrap().plugin, "weave-net");
        std::fs::write(dir.path().join("00-broken.conf"), "{").unwrap();
        assert!(
            read_cni_config(dir.path())
                .unwrap_err()
                .contains("00-broken.conf")
        );
    }

    #[test]
    fn the_weave_router_counts_only_while_its_pod_runs() {
        let mut pod = weave_pod();
        assert!(!weave_router_running(&[&pod]));
        pod["status"] = running_status(
            &pod,
            "10.0.0.11",
            "10.0.0.11",
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T00:00:00Z"),
            &json!({}),
        );
        assert!(weave_router_running(&[&pod]));
        pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        assert!(!weave_router_running(&[&pod]));
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&headlamp_pod()), "BestEffort");
        assert_eq!(
            qos_class(
                &json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "50m"}}}]}})
            ),
            "Burstable"
        );
        assert_eq!(
            qos_class(
                &json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}})
            ),
            "Guaranteed"
        );
    }
}
