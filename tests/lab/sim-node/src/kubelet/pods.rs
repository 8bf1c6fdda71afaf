//! Static pods as processes: one process per manifest in staticPodPath, restarted with
//! back-off when it exits, restarted when its manifest changes, stopped when it is removed.
//! A pid file per pod lets a restarted kubelet adopt running processes and lets
//! `kubeadm reset` stop them.

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::paths::{self, p};
use crate::util::{KubeVersion, now_rfc3339};

const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the node agent needs to know about one static pod.
#[derive(Debug, Clone)]
pub struct PodState {
    pub pod: Value,
    pub hash: String,
    pub running: bool,
    pub started_at: String,
    pub restarts: u32,
    pub last_error: Option<String>,
}

struct Entry {
    state: PodState,
    pid: Option<i32>,
    child: Option<Child>,
    next_start: Instant,
    failures: u32,
}

pub struct StaticPods {
    dir: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
}

fn pid_file(pod: &str) -> PathBuf {
    p(paths::RUN_DIR).join(format!("{pod}.pid"))
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// SIGTERM to the process group, SIGKILL after a grace period.
fn terminate(pid: i32, child: Option<&mut Child>) {
    let pg = Pid::from_raw(pid);
    let _ = killpg(pg, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut child = child;
    while Instant::now() < deadline {
        let gone = match child.as_deref_mut() {
            Some(c) => c.try_wait().map(|s| s.is_some()).unwrap_or(true),
            None => !alive(pid),
        };
        if gone {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = killpg(pg, Signal::SIGKILL);
    if let Some(c) = child {
        let _ = c.wait();
    }
}

/// Stops every static-pod process recorded in pid files (`kubeadm reset`).
pub fn stop_recorded() {
    let Ok(entries) = std::fs::read_dir(p(paths::RUN_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("pid") {
            continue;
        }
        if let Some((pid, _)) = read_pid_file(&path)
            && alive(pid)
        {
            terminate(pid, None);
        }
        let _ = std::fs::remove_file(&path);
    }
}

fn read_pid_file(path: &Path) -> Option<(i32, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    Some((
        it.next()?.parse().ok()?,
        it.next().unwrap_or_default().to_string(),
    ))
}

/// The Kubernetes version an image tag like `registry.k8s.io/kube-apiserver:v1.36.2` names.
pub fn image_version(image: &str) -> Option<KubeVersion> {
    let tag = image.rsplit_once(':')?.1;
    if !tag.starts_with('v') {
        return None;
    }
    KubeVersion::parse(tag).ok()
}

/// Parses a static pod manifest and checks what the kubelet needs from it.
pub fn parse_manifest(text: &str) -> Result<Value> {
    let pod: Value =
        serde_saphyr::from_str(text).map_err(|e| anyhow!("invalid pod manifest: {e}"))?;
    if pod["kind"] != "Pod" || pod["apiVersion"] != "v1" {
        bail!("invalid pod: kind must be Pod and apiVersion v1");
    }
    if pod["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        bail!("invalid pod: metadata.name: Required value: name or generateName is required");
    }
    if pod["spec"]["containers"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        bail!("invalid pod: spec.containers: Required value");
    }
    Ok(pod)
}

impl StaticPods {
    pub fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            dir,
            entries: Mutex::new(HashMap::new()),
        })
    }

    pub fn snapshot(&self) -> Vec<PodState> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(|e| e.state.clone()).collect()
    }

    /// Runs the sync loop forever.
    pub fn run(self: Arc<Self>) {
        loop {
            self.sync();
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn manifests(&self) -> HashMap<String, (String, Value)> {
        let mut out = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match parse_manifest(&text) {
                Ok(pod) => {
                    let hash = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
                    let pod_name = pod["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    out.insert(pod_name, (hash, pod));
                }
                Err(e) => eprintln!(
                    "kubelet: skipping static pod file {}: {e:#}",
                    path.display()
                ),
            }
        }
        out
    }

    pub fn sync(&self) {
        let wanted = self.manifests();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = map
            .keys()
            .filter(|k| wanted.get(*k).is_none_or(|(h, _)| *h != map[*k].state.hash))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut e) = map.remove(&name) {
                if let Some(pid) = e.pid {
                    eprintln!("kubelet: stopping static pod {name} (manifest changed or removed)");
                    terminate(pid, e.child.as_mut());
                }
                let _ = std::fs::remove_file(pid_file(&name));
            }
        }
        for (name, (hash, pod)) in wanted {
            let e = map
                .entry(name.clone())
                .or_insert_with(|| adopt_or_new(&name, &hash, pod));
            let exited = match (e.pid, e.child.as_mut()) {
                (Some(_), Some(c)) => c.try_wait().ok().flatten().map(|s| s.to_string()),
                (Some(pid), None) => (!alive(pid)).then(|| "adopted process ended".to_string()),
                (None, _) => None,
            };
            if let Some(status) = exited {
                e.failures += 1;
                e.state.restarts += 1;
                e.state.running = false;
                e.state.last_error = Some(format!("process exited: {status}"));
                e.pid = None;
                e.child = None;
                let backoff = Duration::from_secs(1 << e.failures.min(6)).min(MAX_BACKOFF);
                e.next_start = Instant::now() + backoff;
                eprintln!(
                    "kubelet: static pod {name} exited ({status}); restarting in {backoff:?}"
                );
            }
            if e.pid.is_none() && Instant::now() >= e.next_start {
                match start(&name, &hash, &e.state.pod) {
                    Ok(child) => {
                        e.pid = Some(child.id() as i32);
                        e.child = Some(child);
                        e.state.running = true;
                        e.state.started_at = now_rfc3339();
                        e.state.last_error = None;
                    }
                    Err(err) => {
                        e.failures += 1;
                        e.state.last_error = Some(format!("{err:#}"));
                        e.next_start = Instant::now()
                            + Duration::from_secs(1 << e.failures.min(6)).min(MAX_BACKOFF);
                        eprintln!("kubelet: cannot start static pod {name}: {err:#}");
                    }
                }
            }
            // A process that stayed up for a while resets the back-off, as the kubelet does.
            if e.state.running
                && e.failures > 0
                && e.next_start + Duration::from_secs(120) < Instant::now()
            {
                e.failures = 0;
            }
        }
    }
}

fn adopt_or_new(name: &str, hash: &str, pod: Value) -> Entry {
    let mut entry = Entry {
        state: PodState {
            pod,
            hash: hash.to_string(),
            running: false,
            started_at: String::new(),
            restarts: 0,
            last_error: None,
        },
        pid: None,
        child: None,
        next_start: Instant::now(),
        failures: 0,
    };
    if let Some((pid, recorded)) = read_pid_file(&pid_file(name))
        && alive(pid)
    {
        if recorded == hash {
            eprintln!("kubelet: adopting running static pod {name} (pid {pid})");
            entry.pid = Some(pid);
            entry.state.running = true;
            entry.state.started_at = now_rfc3339();
        } else {
            eprintln!("kubelet: stopping outdated static pod {name} (pid {pid})");
            terminate(pid, None);
        }
    }
    entry
}

fn start(name: &str, hash: &str, pod: &Value) -> Result<Child> {
    let c = &pod["spec"]["containers"][0];
    let mut argv: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if argv.is_empty() {
        bail!("container has no command: the simulator cannot run an image's entrypoint");
    }
    let exe_name = Path::new(&argv.remove(0))
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe = p(paths::IMAGES_DIR).join(&exe_name);
    if !exe.exists() {
        bail!(
            "image binary {} not found (is the kubelet package installed completely?)",
            exe.display()
        );
    }
    if exe_name == "etcd" {
        argv = etcd_args_for(&exe, c["image"].as_str().unwrap_or_default(), argv);
    }
    let log_dir = p(paths::LOG_DIR);
    std::fs::create_dir_all(&log_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(format!("{name}.log")))
        .with_context(|| format!("opening the log of {name}"))?;
    let mut cmd = Command::new(&exe);
    cmd.args(&argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    for env in c["env"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (env["name"].as_str(), env["value"].as_str()) {
            cmd.env(k, v);
        }
    }
    if let Some(v) = c["image"].as_str().and_then(image_version) {
        cmd.env(
            "SIM_KUBE_VERSION",
            format!("{}.{}.{}", v.major, v.minor, v.patch),
        );
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    crate::util::write_file(&pid_file(name), format!("{} {hash}\n", child.id()), 0o644)?;
    eprintln!(
        "kubelet: started static pod {name} (pid {}): {} {}",
        child.id(),
        exe.display(),
        argv.join(" ")
    );
    Ok(child)
}

/// The lab's etcd "image" is Debian's etcd 3.4, while kubeadm writes the flag names of the
/// etcd its image tag names (3.6+: `--feature-gates=InitialCorruptCheck=true`,
/// `--watch-progress-notify-interval`). A real image would carry a matching binary; here the
/// flags are translated to the 3.4 names when the binary is older than 3.6, and the image's
/// defaults that 3.4 lacks are given explicitly (`etcd_image_defaults`).
fn etcd_args_for(exe: &Path, image: &str, argv: Vec<String>) -> Vec<String> {
    let version = Command::new(exe)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_string))
        });
    let Some(binary) = version else {
        return argv;
    };
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
    let argv = etcd_image_defaults(&binary, tag, argv);
    if crate::images::etcd_tag_at_least_3_6(&binary) {
        argv
    } else {
        etcd_34_args(argv)
    }
}

/// etcd 3.5 turned `--pre-vote` on by default (server/embed/config.go `NewConfig`: `PreVote:
/// true`); 3.4 defaults it to false. Without pre-vote a member that restarts and misses the
/// leader's first heartbeats campaigns with a higher term and deposes a healthy leader, so
/// every member's linearizable reads (the API servers' /readyz) fail for a moment. An image
/// of 3.5 or newer run by the 3.4 binary gets `--pre-vote=true` unless the manifest sets it.
pub fn etcd_image_defaults(binary: &str, image_tag: &str, mut argv: Vec<String>) -> Vec<String> {
    let minor = |v: &str| {
        let mut it = v.trim_start_matches('v').split(['.', '-']);
        let major: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let minor: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        (major, minor)
    };
    let set = argv
        .iter()
        .any(|a| a == "--pre-vote" || a.starts_with("--pre-vote="));
    if minor(binary) < (3, 5) && minor(image_tag) >= (3, 5) && !set {
        argv.push("--pre-vote=true".into());
    }
    argv
}

/// Renames etcd 3.6 flags to their etcd 3.4 (`--experimental-*`) names.
pub fn etcd_34_args(argv: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for a in argv {
        if let Some(v) = a.strip_prefix("--watch-progress-notify-interval=") {
            out.push(format!("--experimental-watch-progress-notify-interval={v}"));
        } else if let Some(gates) = a.strip_prefix("--feature-gates=") {
            let mut rest = Vec::new();
            for g in gates.split(',').filter(|g| !g.is_empty()) {
                match g.split_once('=') {
                    Some(("InitialCorruptCheck", v)) => {
                        out.push(format!("--experimental-initial-corrupt-check={v}"))
                    }
                    _ => rest.push(g.to_string()),
                }
            }
            if !rest.is_empty() {
                out.push(format!("--feature-gates={}", rest.join(",")));
            }
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_3_6_flags_are_renamed_for_debians_etcd_3_4() {
        let a = etcd_34_args(vec![
            "--name=m1".into(),
            "--feature-gates=InitialCorruptCheck=true".into(),
            "--watch-progress-notify-interval=5s".into(),
        ]);
        assert_eq!(
            a,
            [
                "--name=m1",
                "--experimental-initial-corrupt-check=true",
                "--experimental-watch-progress-notify-interval=5s"
            ]
        );
    }

    #[test]
    fn an_etcd_3_5_or_newer_image_run_by_etcd_3_4_gets_pre_vote_as_its_default() {
        let argv = vec!["--name=m1".to_string()];
        assert_eq!(
            etcd_image_defaults("3.4.23", "3.6.8-0", argv.clone()),
            ["--name=m1", "--pre-vote=true"]
        );
        // The manifest's own choice stands; a 3.4 image keeps 3.4's default.
        let off = vec!["--pre-vote=false".to_string()];
        assert_eq!(etcd_image_defaults("3.4.23", "3.6.8-0", off.clone()), off);
        assert_eq!(
            etcd_image_defaults("3.4.23", "3.4.13-0", argv.clone()),
            argv
        );
        assert_eq!(etcd_image_defaults("3.6.8", "3.6.8-0", argv.clone()), argv);
    }

    #[test]
    fn image_tag_gives_the_component_version() {
        assert_eq!(
            image_version("registry.k8s.io/kube-apiserver:v1.36.2").map(|v| v.minor),
            Some(36)
        );
        assert_eq!(image_version("registry.k8s.io/etcd:3.5.21-0"), None);
    }

    #[test]
    fn manifests_that_are_not_pods_are_refused() {
        assert!(parse_manifest("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n").is_err());
        assert!(
            parse_manifest(
                "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n"
            )
            .is_err()
        );
        assert!(parse_manifest("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, command: [etcd]}]}\n").is_ok());
    }
}
