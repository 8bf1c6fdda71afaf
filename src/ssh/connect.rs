//! Connecting: TCP (or a bastion tunnel), handshake with host-key verification,
//! authentication, and retries of transient failures.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use secrecy::ExposeSecret;
use tokio::sync::{OnceCell, Semaphore};

use super::error::russh_is_transient;
use super::known_hosts::{self, Verdict};
use super::{ConnectSpec, Connection, HostKeyPolicy, Inner, SshError};

/// Serialises known_hosts check-then-append, so parallel first connects to one host
/// record it once.
static KNOWN_HOSTS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Verifies the server's host key; everything else uses russh's defaults.
pub(crate) struct ClientHandler {
    label: String,
    address: String,
    port: u16,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
}

/// Lets a host-key refusal travel out of russh with all its detail.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Russh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandlerError {
    fn from(err: russh::Error) -> Self {
        HandlerError::Russh(err)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.verify(&server_public_key.public_key())
            .map(|()| true)
            .map_err(HandlerError::HostKey)
    }
}

impl ClientHandler {
    fn new(spec: &ConnectSpec) -> Self {
        ClientHandler {
            label: spec.label.clone(),
            address: spec.address.clone(),
            port: spec.port,
            known_hosts: spec.known_hosts.clone(),
            policy: spec.host_key_policy,
        }
    }

    fn verify(&self, key: &PublicKey) -> Result<(), SshError> {
        let _guard = KNOWN_HOSTS_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let verdict = known_hosts::check(&self.known_hosts, &self.address, self.port, key)
            .map_err(|e| self.known_hosts_error(&e))?;
        match verdict {
            Verdict::Known => Ok(()),
            Verdict::Revoked { line } => Err(SshError::HostKeyRevoked {
                label: self.label.clone(),
                address: self.address.clone(),
                port: self.port,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            Verdict::Changed { line } => Err(SshError::HostKeyChanged {
                label: self.label.clone(),
                address: self.address.clone(),
                port: self.port,
                offered: describe_key(key),
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            Verdict::Unknown => match self.policy {
                HostKeyPolicy::Strict => Err(SshError::UnknownHostKey {
                    label: self.label.clone(),
                    address: self.address.clone(),
                    port: self.port,
                    offered: describe_key(key),
                    known_hosts: self.known_hosts.clone(),
                }),
                HostKeyPolicy::AcceptNew => {
                    known_hosts::learn(&self.known_hosts, &self.address, self.port, key)
                        .map_err(|e| self.known_hosts_error(&e))?;
                    tracing::info!(
                        host = %self.label,
                        "recorded new host key {} in {}",
                        describe_key(key),
                        self.known_hosts.display()
                    );
                    Ok(())
                }
            },
        }
    }

    fn known_hosts_error(&self, err: &std::io::Error) -> SshError {
        SshError::KnownHosts {
            label: self.label.clone(),
            path: self.known_hosts.clone(),
            reason: err.to_string(),
        }
    }
}

/// "ssh-ed25519 SHA256:…", the way `ssh-keygen -l` names a key.
fn describe_key(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

pub(crate) async fn connect(spec: ConnectSpec) -> Result<Connection, SshError> {
    // The bastion has its own spec, retries and errors (named after its own label).
    let bastion = match &spec.bastion {
        Some(hop) => Some(Box::pin(connect((**hop).clone())).await?),
        None => None,
    };
    let config = Arc::new(client_config(&spec));
    let attempts = spec.connect_attempts.max(1);
    let made = AtomicU32::new(0);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(attempts.saturating_sub(1) as usize)
        .with_jitter();
    let result = (|| async {
        made.fetch_add(1, Ordering::SeqCst);
        let _wait = super::stats::GLOBAL.start(super::stats::Kind::Connect);
        attempt(&spec, bastion.as_ref(), config.clone()).await
    })
    .retry(backoff)
    .sleep(tokio::time::sleep)
    .when(SshError::is_transient)
    .notify(|err: &SshError, delay: Duration| {
        tracing::warn!(host = %spec.label, "{err}; retrying in {:.1}s", delay.as_secs_f64());
    })
    .await;
    let handle = result.map_err(|mut err| {
        if let SshError::Connect { attempts, .. } = &mut err {
            *attempts = made.load(Ordering::SeqCst);
        }
        err
    })?;
    Ok(Connection {
        inner: Arc::new(Inner {
            label: spec.label.clone(),
            user: spec.user.clone(),
            handle,
            channels: Arc::new(Semaphore::new(spec.max_channels.max(1))),
            sudo_without_password: OnceCell::new(),
            bastion,
        }),
    })
}

fn client_config(spec: &ConnectSpec) -> client::Config {
    // Ask for a host key type known_hosts already has, like OpenSSH, so a host recorded
    // with (say) its ECDSA key is not reported unknown because it also has ed25519.
    let known = known_hosts::known_algorithms(&spec.known_hosts, &spec.address, spec.port);
    let mut keys: Vec<Algorithm> = russh::Preferred::DEFAULT.key.to_vec();
    keys.sort_by_key(|a| !known.iter().any(|k| same_family(a, k)));
    client::Config {
        keepalive_interval: (!spec.keepalive.is_zero()).then_some(spec.keepalive),
        keepalive_max: 3,
        nodelay: true,
        preferred: russh::Preferred {
            key: Cow::Owned(keys),
            ..russh::Preferred::default()
        },
        ..client::Config::default()
    }
}

fn same_family(a: &Algorithm, b: &Algorithm) -> bool {
    matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. })) || a == b
}

async fn attempt(
    spec: &ConnectSpec,
    bastion: Option<&Connection>,
    config: Arc<client::Config>,
) -> Result<Handle<ClientHandler>, SshError> {
    match tokio::time::timeout(spec.connect_timeout, attempt_once(spec, bastion, config)).await {
        Ok(result) => result,
        Err(_) => Err(connect_error(
            spec,
            format!("no answer within {}s", spec.connect_timeout.as_secs_f64()),
        )),
    }
}

async fn attempt_once(
    spec: &ConnectSpec,
    bastion: Option<&Connection>,
    config: Arc<client::Config>,
) -> Result<Handle<ClientHandler>, SshError> {
    let handler = ClientHandler::new(spec);
    let connected = match bastion {
        Some(hop) => {
            let tunnel = hop
                .inner
                .handle
                .channel_open_direct_tcpip(&spec.address, u32::from(spec.port), "127.0.0.1", 0)
                .await
                .map_err(|e| SshError::Bastion {
                    label: spec.label.clone(),
                    bastion: hop.label().to_string(),
                    reason: format!(
                        "it could not open a connection to {}:{} ({e}); check that the \
                         bastion can reach that address and allows TCP forwarding",
                        spec.address, spec.port
                    ),
                    transient: russh_is_transient(&e),
                })?;
            client::connect_stream(config, tunnel.into_stream(), handler).await
        }
        None => {
            let tcp = tokio::net::TcpStream::connect((spec.address.as_str(), spec.port))
                .await
                .map_err(|e| connect_error(spec, e.to_string()))?;
            // Small request/response packets: do not let Nagle delay them.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(host = %spec.label, "set_nodelay failed: {e}");
            }
            client::connect_stream(config, tcp, handler).await
        }
    };
    let mut handle = connected.map_err(|err| match err {
        HandlerError::HostKey(err) => err,
        HandlerError::Russh(err) if russh_is_transient(&err) => {
            connect_error(spec, describe_handshake_failure(&err))
        }
        HandlerError::Russh(err) => SshError::Handshake {
            label: spec.label.clone(),
            address: spec.address.clone(),
            port: spec.port,
            reason: err.to_string(),
        },
    })?;
    authenticate(&mut handle, spec).await?;
    Ok(handle)
}

fn describe_handshake_failure(err: &russh::Error) -> String {
    match err {
        russh::Error::IO(io) => io.to_string(),
        russh::Error::Disconnect | russh::Error::HUP => {
            "the server closed the connection during the handshake (sshd starting up or \
             too many unauthenticated connections)"
                .to_string()
        }
        other => other.to_string(),
    }
}

fn connect_error(spec: &ConnectSpec, reason: String) -> SshError {
    SshError::Connect {
        label: spec.label.clone(),
        address: spec.address.clone(),
        port: spec.port,
        attempts: 1,
        reason,
    }
}

/// Tries identity file, then agent, then password; the error lists what was tried.
async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    spec: &ConnectSpec,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    if let Some(path) = &spec.identity_file {
        if auth_with_identity(handle, spec, path, &mut tried).await? {
            return Ok(());
        }
        check_still_connected(handle, spec, &tried)?;
    }
    if spec.use_agent {
        if auth_with_agent(handle, spec, &mut tried).await? {
            return Ok(());
        }
        check_still_connected(handle, spec, &tried)?;
    }
    if let Some(password) = &spec.password {
        let result = handle
            .authenticate_password(&spec.user, password.expose_secret())
            .await
            .map_err(|e| lost_during_auth(spec, &e))?;
        if result.success() {
            return Ok(());
        }
        tried.push("password".to_string());
        check_still_connected(handle, spec, &tried)?;
    }
    if tried.is_empty() {
        tried.push("nothing: no identity file, agent or password is configured".to_string());
    }
    Err(SshError::Auth {
        label: spec.label.clone(),
        user: spec.user.clone(),
        tried,
    })
}

async fn auth_with_identity(
    handle: &mut Handle<ClientHandler>,
    spec: &ConnectSpec,
    path: &Path,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    let shown = display_path(path);
    // Like OpenSSH: a private key others can read is not used.
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tried.push(format!(
                "key {shown} (readable by others, mode {mode:04o}: run chmod 600 {shown}; an unprotected private key is not used)"
            ));
            return Ok(false);
        }
    }
    let passphrase = spec.identity_passphrase.as_ref().map(|p| p.expose_secret());
    let key = match russh::keys::load_secret_key(path, passphrase) {
        Ok(key) => key,
        Err(err) => {
            tried.push(format!(
                "key {shown} ({})",
                unusable_key_reason(&err, passphrase)
            ));
            return Ok(false);
        }
    };
    let hash = rsa_hash(handle, key.algorithm()).await;
    let result = handle
        .authenticate_publickey(&spec.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
        .await
        .map_err(|e| lost_during_auth(spec, &e))?;
    if !result.success() {
        tried.push(format!("key {shown}"));
    }
    Ok(result.success())
}

fn unusable_key_reason(err: &russh::keys::Error, passphrase: Option<&str>) -> String {
    match err {
        russh::keys::Error::KeyIsEncrypted => {
            "it is passphrase-protected and no passphrase was given".to_string()
        }
        russh::keys::Error::IO(io) => format!("cannot read it: {io}"),
        _ if passphrase.is_some() => {
            "cannot decrypt it: wrong passphrase or unsupported key format".to_string()
        }
        other => format!("cannot parse it: {other}"),
    }
}

async fn auth_with_agent(
    handle: &mut Handle<ClientHandler>,
    spec: &ConnectSpec,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    let mut agent = match AgentClient::connect_env().await {
        Ok(agent) => agent,
        Err(_) => {
            tried.push("agent (SSH_AUTH_SOCK unset or unreachable)".to_string());
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(identities) => identities,
        Err(err) => {
            tried.push(format!("agent (cannot list its keys: {err})"));
            return Ok(false);
        }
    };
    let mut offered = 0;
    for identity in identities {
        let AgentIdentity::PublicKey { key, .. } = identity else {
            continue;
        };
        offered += 1;
        let hash = rsa_hash(handle, key.algorithm()).await;
        match handle
            .authenticate_publickey_with(&spec.user, key, hash, &mut agent)
            .await
        {
            Ok(result) if result.success() => return Ok(true),
            Ok(_) => {}
            Err(err) => tracing::debug!(host = %spec.label, "agent could not sign: {err}"),
        }
        if handle.is_closed() {
            break;
        }
    }
    tried.push(match offered {
        0 => "agent (no keys)".to_string(),
        n => format!("agent ({n} key{})", if n == 1 { "" } else { "s" }),
    });
    Ok(false)
}

async fn rsa_hash(handle: &Handle<ClientHandler>, algorithm: Algorithm) -> Option<HashAlg> {
    if !matches!(algorithm, Algorithm::Rsa { .. }) {
        return None;
    }
    // Servers that do not announce their signature algorithms still take rsa-sha2-256.
    match handle.best_supported_rsa_hash().await {
        Ok(Some(hash)) => hash,
        _ => Some(HashAlg::Sha256),
    }
}

/// russh reports a connection lost during authentication as a plain failure; tell them
/// apart so a dropped connection is retried and a real refusal is not.
fn check_still_connected(
    handle: &Handle<ClientHandler>,
    spec: &ConnectSpec,
    tried: &[String],
) -> Result<(), SshError> {
    if !handle.is_closed() {
        return Ok(());
    }
    if tried.is_empty() {
        return Err(connect_error(
            spec,
            "the server closed the connection before authentication".to_string(),
        ));
    }
    let mut tried = tried.to_vec();
    tried.push("then the server closed the connection (too many keys offered?)".to_string());
    Err(SshError::Auth {
        label: spec.label.clone(),
        user: spec.user.clone(),
        tried,
    })
}

fn lost_during_auth(spec: &ConnectSpec, err: &russh::Error) -> SshError {
    connect_error(
        spec,
        format!("connection lost during authentication: {err}"),
    )
}

/// Shows paths under the home directory as `~/…`, the way users write them.
fn display_path(path: &Path) -> String {
    if let Some(home) = std::env::home_dir()
        && let Ok(rest) = path.strip_prefix(&home)
        && !home.as_os_str().is_empty()
        && home != Path::new("/")
    {
        return format!("~/{}", rest.display());
    }
    path.display().to_string()
}
