//! The containerd simulator (package `containerd.io`, `/usr/bin/containerd`): a containerd
//! 2.x as far as an installer and the kubelet can tell.
//!
//! - `containerd --version`, `containerd config default|dump|migrate`.
//! - The daemon reads `/etc/containerd/config.toml` like containerd 2.x (see
//!   [`super::containerd_config`]): refuses what it refuses, logs and drops what it drops,
//!   migrates version 1 and 2 files in memory, and records the settings in effect in
//!   `<state>/lab/config.json`.
//! - On its socket (`grpc.address`, default /run/containerd/containerd.sock) every HTTP/2
//!   connection is passed byte for byte to a real containerd (Debian's 1.6/1.7 binary, shipped
//!   in the same package under /usr/libexec/containerd-lab/), so Docker's dockerd and the real
//!   `ctr` get the real containerd API. That backend runs with its own CRI plugin disabled and
//!   private state; it is an implementation detail, started and stopped with this daemon.
//! - The CRI side is what the lab's kubelet/crictl/kubeadm simulators ask over HTTP/1.0 on the
//!   same socket (as for the cri-dockerd simulator): `/version`, `/info`, `/runtimeconfig`,
//!   answered only while the CRI plugins loaded; otherwise 501 with containerd's
//!   "unknown service runtime.v1.RuntimeService". `/lab/config`, `/lab/daemon` and
//!   `/lab/plugins` always answer (for `ctr` and tests).
//! - Type=notify: READY=1 once the socket listens. SIGTERM stops the backend and removes the
//!   socket.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value as Json, json};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::containerd_config::{self as cfg, Loaded};
use super::{EMPTY_SETTINGS, PREFACE};

pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";
/// Where the package puts the real containerd and ctr that serve the non-CRI API.
pub const BACKEND_DIR: &str = "/usr/libexec/containerd-lab";
const REVISION: &str = "lab-simulator";

/// The containerd version this package claims (`containerd.io.version` written by the lab's
/// packaging), e.g. "2.2.1".
pub fn version() -> String {
    let file = crate::paths::p("/usr/share/kubernetes-sim/containerd.io.version");
    std::fs::read_to_string(file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("SIM_CONTAINERD_VERSION").ok())
        .unwrap_or_else(|| "2.2.1".to_string())
}

fn usage() -> String {
    format!(
        "NAME:\n   containerd - \n                    __        _                     __\n  _________  ____  / /_____ _(_)___  ___  _________/ /\n / ___/ __ \\/ __ \\/ __/ __ `/ / __ \\/ _ \\/ ___/ __  /\n/ /__/ /_/ / / / / /_/ /_/ / / / / /  __/ /  / /_/ /\n\\___/\\____/_/ /_/\\__/\\__,_/_/_/ /_/\\___/_/   \\__,_/\n\nhigh performance container runtime (lab simulator)\n\nUSAGE:\n   containerd [global options] command [command options]\n\nVERSION:\n   v{}\n\nCOMMANDS:\n   config   Information on the containerd config\n   help, h  Shows a list of commands or help for one command\n\nGLOBAL OPTIONS:\n   --config value, -c value     Path to the configuration file (default: \"{DEFAULT_CONFIG}\")\n   --log-level value, -l value  Set the logging level [trace, debug, info, warn, error, fatal, panic]\n   --address value, -a value    Address for containerd's GRPC server\n   --root value                 containerd root directory\n   --state value                containerd state directory\n   --help, -h                   show help\n   --version, -v                print the version\n",
        version()
    )
}

struct Args {
    config: PathBuf,
    address: Option<String>,
    root: Option<String>,
    state: Option<String>,
    command: Vec<String>,
}

fn parse_args(argv: &[String]) -> std::result::Result<Args, i32> {
    let mut a = Args {
        config: crate::paths::p(DEFAULT_CONFIG),
        address: None,
        root: None,
        state: None,
        command: Vec::new(),
    };
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || -> std::result::Result<String, i32> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            argv.get(i).cloned().ok_or_else(|| {
                eprintln!("Incorrect Usage: flag needs an argument: {name}");
                1
            })
        };
        match name {
            "--version" | "-v" => {
                println!("containerd containerd.io v{} {REVISION}", version());
                return Err(0);
            }
            "--help" | "-h" => {
                print!("{}", usage());
                return Err(0);
            }
            "--config" | "-c" => a.config = PathBuf::from(value()?),
            "--address" | "-a" => a.address = Some(value()?),
            "--root" => a.root = Some(value()?),
            "--state" => a.state = Some(value()?),
            "--log-level" | "-l" | "--log-format" => {
                value()?;
            }
            _ if name.starts_with('-') => {
                eprintln!("Incorrect Usage: flag provided but not defined: {name}");
                return Err(1);
            }
            _ => {
                a.command = argv[i..].to_vec();
                break;
            }
        }
        i += 1;
    }
    Ok(a)
}

pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let result = match args.command.first().map(String::as_str) {
        None => daemon(&args),
        Some("config") => config_command(&args),
        Some("help" | "h") => {
            print!("{}", usage());
            Ok(())
        }
        Some(other) => Err(anyhow!("No help topic for '{other}'")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("containerd: {e:#}");
            1
        }
    }
}

fn load(args: &Args) -> Result<Loaded> {
    cfg::load(&args.config).map_err(|e| anyhow!("{e}"))
}

fn config_command(args: &Args) -> Result<()> {
    match args.command.get(1).map(String::as_str) {
        Some("default") => {
            print!("{}", cfg::default_config());
            Ok(())
        }
        Some("dump") | Some("migrate") => {
            let l = load(args)?;
            for line in &l.log {
                eprintln!("{}", line.render());
            }
            print!("{}", l.to_v3_toml(&args.config));
            Ok(())
        }
        _ => bail!(
            "config: a subcommand is needed: default (see the default config), dump (see the effective config), migrate (migrate an old config to the current version)"
        ),
    }
}

fn log_line(level: &str, msg: &str, fields: &[(&str, &str)]) {
    let mut s = format!(
        "time=\"{}\" level={level} msg={msg:?}",
        crate::util::now_rfc3339()
    );
    for (k, v) in fields {
        s.push_str(&format!(" {k}={v:?}"));
    }
    eprintln!("{s}");
}

/// The daemon's shared state.
struct Daemon {
    loaded: Loaded,
    started: String,
    uuid: String,
    backend_socket: Option<PathBuf>,
}

fn daemon(args: &Args) -> Result<()> {
    let mut loaded = load(args)?;
    if let Some(a) = &args.address {
        loaded.address = a.clone();
    }
    if let Some(r) = &args.root {
        loaded.root = r.clone();
    }
    if let Some(s) = &args.state {
        loaded.state = s.clone();
    }
    log_line(
        "info",
        "starting containerd",
        &[
            ("revision", REVISION),
            ("version", &format!("v{}", version())),
        ],
    );
    for line in &loaded.log {
        let mut fields: Vec<(&str, &str)> = Vec::new();
        for (k, v) in &line.fields {
            fields.push((k, v));
        }
        log_line(line.level, &line.msg, &fields);
    }
    match &loaded.cri.unavailable {
        None => log_line(
            "info",
            "CRI plugins loaded",
            &[
                ("sandboxImage", &loaded.cri.sandbox_image),
                (
                    "systemdCgroup",
                    &match &loaded.cri.systemd_cgroup {
                        Ok(b) => b.to_string(),
                        Err(e) => e.clone(),
                    },
                ),
            ],
        ),
        Some(why) => log_line(
            "warning",
            "the CRI service is not served",
            &[("reason", why)],
        ),
    }

    let state = crate::paths::p(&loaded.state);
    let lab_dir = state.join("lab");
    std::fs::create_dir_all(&lab_dir).with_context(|| format!("creating {}", lab_dir.display()))?;
    crate::util::write_file(
        &lab_dir.join("config.json"),
        serde_json::to_vec_pretty(&loaded.to_json())?,
        0o644,
    )?;

    // Signals are taken by one thread; block them everywhere else before any thread starts.
    let mut sigs = nix::sys::signal::SigSet::empty();
    sigs.add(nix::sys::signal::Signal::SIGTERM);
    sigs.add(nix::sys::signal::Signal::SIGINT);
    sigs.thread_block().context("blocking signals")?;

    let address = crate::paths::p(&loaded.address);
    let backend = start_backend(&lab_dir, &crate::paths::p(&loaded.root))?;
    let backend_socket = backend.as_ref().map(|b| b.socket.clone());
    let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(backend.map(|b| b.child)));

    let listener = listen(&address)?;
    let d = Arc::new(Daemon {
        loaded,
        started: crate::util::now_rfc3339(),
        uuid: uuid(),
        backend_socket,
    });
    log_line(
        "info",
        "serving...",
        &[("address", &address.display().to_string())],
    );
    super::sd_notify("READY=1");

    // Stop: SIGTERM/SIGINT, or the backend dying (systemd restarts the unit).
    {
        let address = address.clone();
        let child = child.clone();
        std::thread::spawn(move || {
            let sig = sigs.wait();
            log_line(
                "info",
                "Stopping containerd",
                &[("signal", &format!("{sig:?}"))],
            );
            let _ = std::fs::remove_file(&address);
            stop_backend(&child);
            std::process::exit(0);
        });
    }
    {
        let address = address.clone();
        let child = child.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let mut guard = child.lock().unwrap_or_else(|p| p.into_inner());
                let Some(c) = guard.as_mut() else { return };
                if let Ok(Some(status)) = c.try_wait() {
                    let _ = std::fs::remove_file(&address);
                    log_line(
                        "fatal",
                        "containerd backend exited",
                        &[("status", &status.to_string())],
                    );
                    std::process::exit(1);
                }
            }
        });
    }

    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let d = d.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &d) {
                log_line("debug", "connection ended", &[("error", &format!("{e:#}"))]);
            }
        });
    }
    Ok(())
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn listen(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).ok();
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "failed to get listener for main endpoint: listen unix {}: bind: address already in use",
                path.display()
            );
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path).with_context(|| {
        format!(
            "failed to get listener for main endpoint: listen unix {}",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

struct Backend {
    child: Child,
    socket: PathBuf,
}

/// Starts the real containerd that serves the non-CRI API (for dockerd and ctr), with its own
/// state under `<state>/lab/backend` and its CRI plugin disabled. Without the binary (a
/// development machine), HTTP/2 connections are answered here: the handshake completes, the
/// API does not exist.
fn start_backend(lab_dir: &Path, root: &Path) -> Result<Option<Backend>> {
    let bin = crate::paths::p(&format!("{BACKEND_DIR}/containerd"));
    if std::env::var("SIM_CONTAINERD_BACKEND").is_ok_and(|v| v == "none") || !bin.exists() {
        log_line(
            "warning",
            "no containerd backend: the containerd API beyond the handshake is not served",
            &[("binary", &bin.display().to_string())],
        );
        return Ok(None);
    }
    let dir = lab_dir.join("backend");
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("containerd.sock");
    let _ = std::fs::remove_file(&socket);
    let config = dir.join("config.toml");
    let text = format!(
        "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.tracing.processor.v1.otlp\", \"io.containerd.internal.v1.tracing\"]\n\n[grpc]\n  address = {:?}\n\n[ttrpc]\n  address = {:?}\n",
        root.display().to_string(),
        dir.join("state").display().to_string(),
        socket.display().to_string(),
        dir.join("containerd.sock.ttrpc").display().to_string(),
    );
    std::fs::write(&config, text)?;
    let log = std::fs::File::create(dir.join("backend.log"))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(dir.join("backend.log")).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "the containerd backend exited ({status}): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the containerd backend did not listen on {} within 20s",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(Backend { child, socket }))
}

fn stop_backend(child: &Mutex<Option<Child>>) {
    let mut guard = child.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = guard.as_mut() {
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                *guard = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    *guard = None;
}

fn serve(mut s: UnixStream, d: &Daemon) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if &head == b"PRI " {
        return match &d.backend_socket {
            Some(sock) => proxy(s, &head, sock),
            None => {
                let mut rest = vec![0u8; PREFACE.len() - 4];
                s.read_exact(&mut rest)?;
                s.write_all(&EMPTY_SETTINGS)?;
                Ok(())
            }
        };
    }
    let mut req = head.to_vec();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (code, body) = answer(&path, d);
    let body = body.to_string();
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        501 => "Not Implemented",
        _ => "Internal Server Error",
    };
    s.write_all(
        format!(
            "HTTP/1.0 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )?;
    Ok(())
}

/// The CRI-side answers; `unknown service` while the CRI plugins did not load.
fn answer(path: &str, d: &Daemon) -> (u16, Json) {
    let l = &d.loaded;
    let v = format!("v{}", version());
    match path {
        "/lab/config" => return (200, l.to_json()),
        "/lab/daemon" => {
            return (
                200,
                json!({"version": v, "revision": REVISION, "uuid": d.uuid, "started": d.started}),
            );
        }
        "/lab/plugins" => {
            let list: Vec<Json> = cfg::PLUGINS
                .iter()
                .map(|(t, id)| {
                    let uri = format!("{t}.{id}");
                    json!({"type": t, "id": id, "status": l.plugin_status(&uri), "error": l.failed.get(&uri)})
                })
                .collect();
            return (200, json!(list));
        }
        _ => {}
    }
    if l.cri.unavailable.is_some() {
        let service = if path == "/imagefs" {
            "runtime.v1.ImageService"
        } else {
            "runtime.v1.RuntimeService"
        };
        return (
            501,
            json!({"error": format!("rpc error: code = Unimplemented desc = unknown service {service}")}),
        );
    }
    match path {
        "/version" => (
            200,
            json!({"version": "0.1.0", "runtimeName": "containerd", "runtimeVersion": v, "runtimeApiVersion": "v1"}),
        ),
        "/runtimeconfig" => match l.cgroup_driver() {
            Ok(driver) => (200, json!({"linux": {"cgroupDriver": driver}})),
            Err(e) => (
                500,
                json!({"error": format!("rpc error: code = Unknown desc = {e:#}")}),
            ),
        },
        "/info" => {
            let net = cni_ready(&crate::paths::p(&l.cri.cni_conf_dir));
            (
                200,
                json!({
                    "status": {"conditions": [
                        {"type": "RuntimeReady", "status": true, "reason": "", "message": ""},
                        {"type": "NetworkReady", "status": net,
                         "reason": if net { "" } else { "NetworkPluginNotReady" },
                         "message": if net { "" } else { "Network plugin returns error: cni plugin not initialized" }},
                    ]},
                    "config": {
                        "containerd": {
                            "defaultRuntimeName": l.cri.default_runtime,
                            "runtimes": {
                                l.cri.default_runtime.clone(): {
                                    "runtimeType": l.cri.runtime_type,
                                    "options": {"SystemdCgroup": l.cri.systemd_cgroup.as_ref().ok()},
                                }
                            }
                        },
                        "cni": {"binDirs": l.cri.cni_bin_dirs, "confDir": l.cri.cni_conf_dir},
                        "containerdRootDir": l.root,
                        "containerdEndpoint": l.address,
                    },
                    "lab": l.to_json()["cri"],
                    "lastCNILoadStatus": if net { "OK" } else { "cni config load failed: no network config found in /etc/cni/net.d: cni plugin not initialized: failed to load cni config" },
                }),
            )
        }
        _ => (404, json!({"error": format!("unknown path {path}")})),
    }
}

fn cni_ready(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json")
        })
}

/// Passes an HTTP/2 connection to the backend, byte for byte, both ways.
fn proxy(client: UnixStream, head: &[u8], backend: &Path) -> Result<()> {
    client.set_read_timeout(None)?;
    let mut up = UnixStream::connect(backend)
        .with_context(|| format!("connecting to the backend at {}", backend.display()))?;
    up.write_all(head)?;
    let mut c_read = client.try_clone()?;
    let mut u_write = up.try_clone()?;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let mut u_read = up;
    let mut c_write = client;
    let _ = std::io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Both);
    let _ = t.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_subcommands_parse_like_urfave_cli() {
        let a = parse_args(&[
            "--config".into(),
            "/x.toml".into(),
            "config".into(),
            "dump".into(),
        ])
        .unwrap_or_else(|_| panic!());
        assert_eq!(a.config, PathBuf::from("/x.toml"));
        assert_eq!(a.command, vec!["config", "dump"]);
        assert!(parse_args(&["--bogus".into()]).is_err());
    }
}
