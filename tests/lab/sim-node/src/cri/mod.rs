//! Container runtime sockets. A socket "answers" when it completes an HTTP/2 connection
//! preface (what a gRPC client sends first) — true for real containerd and for the lab's
//! cri-dockerd and containerd simulators — and, for a simulator, when it serves the CRI API.
//! The simulators additionally serve `GET /version`, `/info` and `/runtimeconfig` over HTTP/1.0
//! so that crictl and the kubelet simulator can read details (they do not implement the gRPC
//! CRI API).

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
pub const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

pub const KNOWN_ENDPOINTS: &[&str] = &[
    "unix:///var/run/containerd/containerd.sock",
    "unix:///var/run/crio/crio.sock",
    "unix:///var/run/cri-dockerd.sock",
];

/// The socket path of a `unix://` endpoint (a bare path is accepted too).
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    if let Some(p) = endpoint.strip_prefix("unix://") {
        return Ok(crate::paths::p(p));
    }
    if endpoint.starts_with('/') {
        return Ok(crate::paths::p(endpoint));
    }
    bail!("endpoint {endpoint:?}: only unix:// endpoints are supported on Linux")
}

fn connect(endpoint: &str) -> Result<UnixStream> {
    let path = socket_path(endpoint)?;
    let s = UnixStream::connect(&path).map_err(|e| {
        anyhow!(
            "validate CRI v1 runtime API for endpoint {endpoint:?}: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix {}: connect: {}\"",
            path.display(),
            e
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// Whether the runtime at `endpoint` answers an HTTP/2 (gRPC) connection preface and, when it
/// is one of the lab's simulators, serves the CRI API: containerd with its CRI plugin disabled
/// or failed completes the handshake yet has no `runtime.v1.RuntimeService`, and the kubelet,
/// kubeadm and crictl then fail with containerd's "unknown service" error, as they do for real.
pub fn answers(endpoint: &str) -> Result<()> {
    handshake(endpoint)?;
    if let Ok((501, body)) = sim_request(endpoint, "/version") {
        bail!(
            "validate CRI v1 runtime API for endpoint {endpoint:?}: {}",
            body["error"].as_str().unwrap_or(
                "rpc error: code = Unimplemented desc = unknown service runtime.v1.RuntimeService"
            )
        );
    }
    Ok(())
}

/// The HTTP/2 connection preface alone: true for any gRPC server on the socket.
pub fn handshake(endpoint: &str) -> Result<()> {
    let mut s = connect(endpoint)?;
    let mut hello = PREFACE.to_vec();
    hello.extend_from_slice(&EMPTY_SETTINGS);
    s.write_all(&hello)
        .with_context(|| format!("runtime at {endpoint:?} closed the connection"))?;
    let mut frame = [0u8; 9];
    s.read_exact(&mut frame).map_err(|e| {
        anyhow!("validate CRI v1 runtime API for endpoint {endpoint:?}: rpc error: code = Unavailable desc = connection closed before server preface received ({e})")
    })?;
    if frame[3] != 4 {
        bail!("runtime at {endpoint:?} did not answer with an HTTP/2 SETTINGS frame");
    }
    Ok(())
}

/// GET a path of a runtime simulator's details API (cri-dockerd, containerd).
pub fn sim_get(endpoint: &str, path: &str) -> Result<Value> {
    let (code, body) = sim_request(endpoint, path)?;
    if code != 200 {
        bail!(
            "runtime at {endpoint:?} answered {code}: {}",
            body["error"].as_str().unwrap_or_default()
        );
    }
    Ok(body)
}

/// Status code and JSON body of a GET on a runtime simulator's details API; an error when the
/// socket does not speak it (a real gRPC runtime).
pub fn sim_request(endpoint: &str, path: &str) -> Result<(u16, Value)> {
    let mut s = connect(endpoint)?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .with_context(|| format!("reading from {endpoint}"))?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or_else(|| {
        anyhow!(
            "runtime at {endpoint:?} does not serve runtime details (not the cri-dockerd simulator)"
        )
    })?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| head.starts_with("HTTP/1."))
        .ok_or_else(|| anyhow!("runtime at {endpoint:?} does not serve runtime details"))?;
    let body = serde_json::from_str(body)
        .with_context(|| format!("runtime at {endpoint:?} sent malformed JSON"))?;
    Ok((code, body))
}

/// Tells systemd (Type=notify units) about the service's state, e.g. `READY=1`.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let p = path.to_string_lossy().into_owned();
    let sent = if let Some(name) = p.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &p)
    };
    if let Err(e) = sent {
        eprintln!("sd_notify({state}) to {p}: {e}");
    }
}

/// kubeadm's runtime auto-detection: exactly one known socket must exist.
pub fn detect() -> Result<String> {
    let found: Vec<&str> = KNOWN_ENDPOINTS
        .iter()
        .copied()
        .filter(|e| {
            let path = crate::paths::p(e.trim_start_matches("unix://"));
            std::fs::metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false)
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(format!(
            "unix://{}",
            crate::paths::s(one.trim_start_matches("unix://"))
        )),
        [] => Ok(format!(
            "unix://{}",
            crate::paths::s("/var/run/containerd/containerd.sock")
        )),
        many => bail!(
            "found multiple CRI endpoints on the host. Please define which one do you wish to use by setting the 'criSocket' field in the kubeadm configuration file: {}",
            many.join(", ")
        ),
    }
}

/// Docker's API answers `GET /_ping` with `OK`.
pub fn docker_ping(docker_sock: &std::path::Path) -> Result<()> {
    let mut s = UnixStream::connect(docker_sock).with_context(|| {
        format!(
            "Cannot connect to the Docker daemon at unix://{}. Is the docker daemon running?",
            docker_sock.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        bail!(
            "Docker at unix://{} did not answer /_ping",
            docker_sock.display()
        )
    }
}

/// Docker's `/version` document.
pub fn docker_version(docker_sock: &std::path::Path) -> Result<Value> {
    let mut s = UnixStream::connect(docker_sock)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).context("docker sent a malformed /version")
}

pub mod containerd;
pub mod containerd_config;
pub mod crictl;
pub mod ctr;
pub mod dockerd;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unix_endpoints_are_supported() {
        assert!(socket_path("unix:///var/run/cri-dockerd.sock").is_ok());
        assert!(socket_path("tcp://127.0.0.1:1234").is_err());
    }

    #[test]
    fn a_socket_that_accepts_but_does_not_speak_http2_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mute.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                drop(s);
            }
        });
        let ep = format!("unix://{}", path.display());
        assert!(answers(&ep).is_err());
        assert!(
            answers(&format!(
                "unix://{}",
                dir.path().join("none.sock").display()
            ))
            .is_err()
        );
    }
}
