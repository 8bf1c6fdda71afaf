//! The cri-dockerd simulator: serves the CRI socket only while Docker's API answers.

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{EMPTY_SETTINGS, PREFACE, docker_ping, docker_version, socket_path};

#[derive(Parser, Debug)]
#[command(
    name = "cri-dockerd",
    about = "CRI that connects to the Docker Daemon (lab simulator)"
)]
struct Args {
    /// Endpoint to serve the CRI on: unix:///path or fd:// (systemd socket activation)
    #[arg(
        long = "container-runtime-endpoint",
        default_value = "unix:///var/run/cri-dockerd.sock"
    )]
    container_runtime_endpoint: String,
    /// Docker's API endpoint
    #[arg(
        long = "docker-endpoint",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_endpoint: String,
    #[arg(long = "network-plugin")]
    network_plugin: Option<String>,
    #[arg(long = "pod-infra-container-image")]
    pod_infra_container_image: Option<String>,
    #[arg(long = "cri-dockerd-root-directory")]
    root_directory: Option<String>,
    #[arg(long = "cni-conf-dir")]
    cni_conf_dir: Option<String>,
    #[arg(long = "log-level")]
    log_level: Option<String>,
    #[arg(long = "cni-bin-dir")]
    cni_bin_dir: Option<String>,
    #[arg(long = "cni-cache-dir")]
    cni_cache_dir: Option<String>,
    #[arg(long = "hairpin-mode")]
    hairpin_mode: Option<String>,
    #[arg(long = "runtime-cgroups")]
    runtime_cgroups: Option<String>,
    #[arg(long = "image-pull-progress-deadline")]
    image_pull_progress_deadline: Option<String>,
    #[arg(long = "streaming-bind-addr")]
    streaming_bind_addr: Option<String>,
    #[arg(long = "ipv6-dual-stack")]
    ipv6_dual_stack: Option<bool>,
}

/// The version the package claims (`cri-dockerd.version`, written by the lab's packaging).
pub fn version() -> String {
    std::fs::read_to_string(crate::paths::p(
        "/usr/share/kubernetes-sim/cri-dockerd.version",
    ))
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .unwrap_or_else(|| "0.3.21".to_string())
}

pub fn main() -> i32 {
    if std::env::args()
        .skip(1)
        .any(|a| a == "--version" || a == "-v")
    {
        println!("cri-dockerd {} (lab-simulator)", version());
        return 0;
    }
    let a = Args::parse();
    match run(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("level=fatal msg=\"{e:#}\"");
            1
        }
    }
}

fn run(a: Args) -> Result<()> {
    let docker = socket_path(&a.docker_endpoint)?;
    docker_ping(&docker).context("Unable to connect to docker")?;
    let cni_dir = a
        .cni_conf_dir
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::p(crate::paths::CNI_CONF_DIR));
    let (listener, path) = listen(&a.container_runtime_endpoint)?;
    eprintln!(
        "level=info msg=\"Docker cri listening on {}\"",
        a.container_runtime_endpoint
    );
    super::sd_notify("READY=1");
    let watch_docker = docker.clone();
    let watch_path = path.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(2));
            if let Err(e) = docker_ping(&watch_docker) {
                // Stop serving: the socket must not answer while Docker does not.
                if let Some(p) = &watch_path {
                    let _ = std::fs::remove_file(p);
                }
                eprintln!("level=fatal msg=\"lost connection to docker: {e:#}\"");
                std::process::exit(1);
            }
        }
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let docker = docker.clone();
        let cni_dir = cni_dir.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &docker, &cni_dir) {
                eprintln!("level=debug msg=\"connection ended: {e:#}\"");
            }
        });
    }
    Ok(())
}

fn listen(endpoint: &str) -> Result<(UnixListener, Option<PathBuf>)> {
    if endpoint == "fd://" || endpoint.starts_with("fd://") {
        let fds: u32 = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if fds < 1 {
            bail!(
                "no sockets passed by systemd (LISTEN_FDS unset) for --container-runtime-endpoint {endpoint}"
            );
        }
        // SAFETY: systemd socket activation hands over fd 3 as a listening socket.
        let l = unsafe { UnixListener::from_raw_fd(3) };
        return Ok((l, None));
    }
    let path = socket_path(endpoint)?;
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            bail!(
                "listen unix {}: bind: address already in use",
                path.display()
            );
        }
        std::fs::remove_file(&path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let l = UnixListener::bind(&path).with_context(|| format!("listen unix {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    Ok((l, Some(path)))
}

fn serve(mut s: UnixStream, docker: &Path, cni_dir: &Path) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if &head == b"PRI " {
        let mut rest = vec![0u8; PREFACE.len() - 4];
        s.read_exact(&mut rest)?;
        if [&head[..], &rest[..]].concat() != PREFACE {
            bail!("bad HTTP/2 preface");
        }
        docker_ping(docker)?;
        s.write_all(&EMPTY_SETTINGS)?;
        return Ok(());
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
    let (code, body) = match path.as_str() {
        "/version" => {
            let v = docker_version(docker)?;
            (
                200,
                json!({"version": version(), "runtimeName": "docker", "runtimeVersion": v["Version"], "runtimeApiVersion": "v1"}),
            )
        }
        "/info" => {
            docker_ping(docker)?;
            let net = cni_ready(cni_dir);
            (
                200,
                json!({"status": {"conditions": [
                    {"type": "RuntimeReady", "status": true, "reason": "", "message": ""},
                    {"type": "NetworkReady", "status": net, "reason": if net { "" } else { "NetworkPluginNotReady" }, "message": if net { "" } else { "docker: network plugin is not ready: cni config uninitialized" }},
                ]}}),
            )
        }
        _ => (404, json!({"error": format!("unknown path {path}")})),
    };
    let body = body.to_string();
    let reason = if code == 200 { "OK" } else { "Not Found" };
    s.write_all(format!("HTTP/1.0 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .map_err(|e| anyhow!("writing the answer: {e}"))
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
