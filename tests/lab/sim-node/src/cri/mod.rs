//! Container runtime sockets. A socket "answers" when it completes an HTTP/2 connection
//! preface (what a gRPC client sends first) — true for real containerd and for the
//! cri-dockerd simulator. The simulator additionally serves `GET /version` and `GET /info`
//! over HTTP/1.0 so that crictl can print details (it does not implement the gRPC CRI API).

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

/// Whether the runtime at `endpoint` answers an HTTP/2 (gRPC) connection preface.
pub fn answers(endpoint: &str) -> Result<()> {
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

/// GET a path of the cri-dockerd simulator's details API.
pub fn sim_get(endpoint: &str, path: &str) -> Result<Value> {
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
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!(
            "runtime at {endpoint:?} answered: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    serde_json::from_str(body)
        .with_context(|| format!("runtime at {endpoint:?} sent malformed JSON"))
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

pub mod crictl;
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
