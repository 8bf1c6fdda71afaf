//! SSH transport (russh): one connection per host, verified against known_hosts,
//! optionally through a bastion; bounded concurrent `exec`s with streaming output and
//! sudo; atomic file `upload`s. Knows nothing about Kubernetes or inventories.
//!
//! ```no_run
//! # async fn demo() -> Result<(), installer::ssh::SshError> {
//! use installer::ssh::{ConnectSpec, Connection, ExecRequest};
//! let spec = ConnectSpec::new("master-1", "192.168.10.11", 22, "ops", "/home/ops/.ssh/known_hosts");
//! let conn = Connection::connect(spec).await?;
//! let out = conn.exec(ExecRequest::new("uname -r")).await?;
//! println!("{}", out.stdout_str());
//! # Ok(()) }
//! ```

mod connect;
mod error;
mod exec;
mod known_hosts;
pub mod stats;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::{OnceCell, Semaphore};

pub use error::SshError;
pub use exec::{ExecOutput, ExecRequest, OutputSink, Privilege, Stream};
pub use stats::SshStats;
pub use upload::UploadRequest;

/// What to do with a host key that known_hosts does not list yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts: the user adds them first.
    #[default]
    Strict,
    /// Record unknown hosts; still refuse changed keys.
    AcceptNew,
}

/// How to reach and log into one host.
#[derive(Clone)]
pub struct ConnectSpec {
    /// Host name used in every error message ("master-1").
    pub label: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private key; may be passphrase-protected.
    pub identity_file: Option<PathBuf>,
    pub identity_passphrase: Option<SecretString>,
    /// Try the keys of the agent at `SSH_AUTH_SOCK`.
    pub use_agent: bool,
    pub password: Option<SecretString>,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// Jump host; the target is reached through a direct-tcpip channel on it.
    pub bastion: Option<Box<ConnectSpec>>,
    /// Limit for one attempt (TCP connect, handshake and authentication).
    pub connect_timeout: Duration,
    /// Attempts in total; only transient failures are retried, with backoff.
    pub connect_attempts: u32,
    /// Concurrent channels on the connection; stay below sshd's MaxSessions (10).
    pub max_channels: usize,
    /// Interval of keepalive probes; zero turns them off.
    pub keepalive: Duration,
}

impl ConnectSpec {
    pub fn new(
        label: impl Into<String>,
        address: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        known_hosts: impl Into<PathBuf>,
    ) -> Self {
        ConnectSpec {
            label: label.into(),
            address: address.into(),
            port,
            user: user.into(),
            identity_file: None,
            identity_passphrase: None,
            use_agent: true,
            password: None,
            known_hosts: known_hosts.into(),
            host_key_policy: HostKeyPolicy::Strict,
            bastion: None,
            connect_timeout: Duration::from_secs(10),
            connect_attempts: 3,
            max_channels: 8,
            keepalive: Duration::from_secs(15),
        }
    }
}

impl std::fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets print only as whether they are set.
        f.debug_struct("ConnectSpec")
            .field("label", &self.label)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("identity_file", &self.identity_file)
            .field("identity_passphrase", &self.identity_passphrase.is_some())
            .field("use_agent", &self.use_agent)
            .field("password", &self.password.is_some())
            .field("known_hosts", &self.known_hosts)
            .field("host_key_policy", &self.host_key_policy)
            .field("bastion", &self.bastion)
            .field("connect_timeout", &self.connect_timeout)
            .field("connect_attempts", &self.connect_attempts)
            .field("max_channels", &self.max_channels)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

/// One SSH connection to a host; clones share it.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    label: String,
    user: String,
    handle: russh::client::Handle<connect::ClientHandler>,
    channels: Arc<Semaphore>,
    /// Whether `sudo -n` works for this user, probed once when a sudo password is at hand.
    sudo_without_password: OnceCell<bool>,
    /// Kept alive as long as the target connection tunnels through it.
    bastion: Option<Connection>,
}

impl Connection {
    /// Connects and authenticates, retrying transient failures as the spec says.
    pub async fn connect(spec: ConnectSpec) -> Result<Connection, SshError> {
        connect::connect(spec).await
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Runs a command; a non-zero exit is an `Ok` with that status.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, SshError> {
        exec::exec(self, req).await
    }

    /// Writes a file atomically: `dest` is either untouched or complete.
    pub async fn upload(&self, req: UploadRequest) -> Result<(), SshError> {
        upload::upload(self, req).await
    }

    /// Closes the connection (and its bastion hop). Later calls fail.
    pub async fn disconnect(&self) {
        let _ = self
            .inner
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        if let Some(bastion) = &self.inner.bastion {
            Box::pin(bastion.disconnect()).await;
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("label", &self.inner.label)
            .field("user", &self.inner.user)
            .finish_non_exhaustive()
    }
}
