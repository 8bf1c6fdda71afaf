//! What the engine needs from a host: run a command, lay down a file. Implemented over SSH
//! here; tests can implement it over a local shell.

use std::future::Future;
use std::time::Duration;

use secrecy::SecretString;

use crate::ssh::{Connection, ExecRequest, Privilege, UploadRequest};

#[derive(Debug, Clone, Default)]
pub struct RemoteOutput {
    /// Exit status; `None` when the command died on a signal.
    pub status: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

impl RemoteOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// Why a command or upload did not complete. `transient`: the connection dropped or timed
/// out at the transport level, so the same step may succeed when tried again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub message: String,
    pub transient: bool,
}

impl From<String> for RemoteError {
    fn from(message: String) -> Self {
        RemoteError {
            message,
            transient: false,
        }
    }
}

impl From<crate::ssh::SshError> for RemoteError {
    fn from(e: crate::ssh::SshError) -> Self {
        RemoteError {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

pub trait Remote: Clone + Send + Sync + 'static {
    /// Runs `command` (a shell command line) with optional stdin.
    fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        privileged: bool,
        timeout: Duration,
    ) -> impl Future<Output = Result<RemoteOutput, RemoteError>> + Send;

    /// Writes `contents` to `dest` atomically with the given mode and ownership.
    fn upload(
        &self,
        dest: &str,
        contents: Vec<u8>,
        mode: u32,
        owner: &str,
        group: &str,
        privileged: bool,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
}

/// A host reached over SSH, with the sudo password when the inventory names one.
#[derive(Clone)]
pub struct SshRemote {
    pub connection: Connection,
    pub sudo_password: Option<SecretString>,
}

impl SshRemote {
    fn privilege(&self, privileged: bool) -> Privilege {
        if privileged {
            Privilege::Root {
                sudo_password: self.sudo_password.clone(),
            }
        } else {
            Privilege::User
        }
    }
}

impl Remote for SshRemote {
    async fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        privileged: bool,
        timeout: Duration,
    ) -> Result<RemoteOutput, RemoteError> {
        let mut req = ExecRequest::new(command);
        req.stdin = stdin;
        req.privilege = self.privilege(privileged);
        req.timeout = Some(timeout);
        let out = self.connection.exec(req).await?;
        Ok(RemoteOutput {
            status: out.exit_status,
            stdout: out.stdout_str(),
            stderr: out.stderr_str(),
        })
    }

    async fn upload(
        &self,
        dest: &str,
        contents: Vec<u8>,
        mode: u32,
        owner: &str,
        group: &str,
        privileged: bool,
    ) -> Result<(), RemoteError> {
        let req = UploadRequest {
            dest: dest.to_string(),
            contents,
            mode,
            owner: Some(owner.to_string()),
            group: Some(group.to_string()),
            privilege: self.privilege(privileged),
        };
        self.connection.upload(req).await.map_err(RemoteError::from)
    }
}

/// Runs commands on this machine with `sh`; used by tests of the engine itself.
#[derive(Clone, Default)]
pub struct LocalShell;

impl Remote for LocalShell {
    async fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        _privileged: bool,
        timeout: Duration,
    ) -> Result<RemoteOutput, RemoteError> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(mut pipe) = child.stdin.take() {
            let data = stdin.unwrap_or_default();
            pipe.write_all(&data).await.map_err(|e| e.to_string())?;
        }
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| format!("`{command}` timed out after {}s", timeout.as_secs()))?
            .map_err(|e| e.to_string())?;
        Ok(RemoteOutput {
            status: out.status.code().map(|c| c as u32),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn upload(
        &self,
        dest: &str,
        contents: Vec<u8>,
        mode: u32,
        _owner: &str,
        _group: &str,
        _privileged: bool,
    ) -> Result<(), RemoteError> {
        crate::local_fs::write_atomic(std::path::Path::new(dest), &contents, mode)
            .map_err(|e| RemoteError::from(format!("cannot write {dest}: {e}")))
    }
}
