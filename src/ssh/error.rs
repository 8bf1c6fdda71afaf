use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to a host. Every variant names the host (its
/// inventory label) and says what to do next; none ever carries a password or stdin.
#[derive(thiserror::Error, Debug)]
pub enum SshError {
    #[error(
        "cannot connect to {label} ({address}:{port}) after {attempts} attempt(s): {reason}; \
         check that the host is up and sshd listens on port {port}"
    )]
    Connect {
        label: String,
        address: String,
        port: u16,
        attempts: u32,
        reason: String,
    },

    #[error(
        "SSH handshake with {label} ({address}:{port}) failed: {reason}; \
         check that port {port} is an SSH server this client can talk to"
    )]
    Handshake {
        label: String,
        address: String,
        port: u16,
        reason: String,
    },

    #[error(
        "host key of {label} ({address}:{port}) is not in {known_hosts}: the host offered \
         {offered}. Check that fingerprint on the host (ssh-keygen -lf \
         /etc/ssh/ssh_host_*_key.pub), then add it (ssh-keyscan -p {port} {address} >> \
         {known_hosts}) or set ssh.hostKeyPolicy: accept-new",
        known_hosts = .known_hosts.display()
    )]
    UnknownHostKey {
        label: String,
        address: String,
        port: u16,
        /// Key type and SHA256 fingerprint ("ssh-ed25519 SHA256:…").
        offered: String,
        known_hosts: PathBuf,
    },

    #[error(
        "HOST KEY OF {label} ({address}:{port}) HAS CHANGED: it now offers {offered}, but \
         line {line} of {known_hosts} records a different key. This may be a \
         man-in-the-middle attack. If the host was reinstalled, verify the new fingerprint, \
         remove the old entry (ssh-keygen -R '{lookup}' -f {known_hosts}) and run again",
        known_hosts = .known_hosts.display(),
        lookup = super::known_hosts::lookup_name(.address, *.port)
    )]
    HostKeyChanged {
        label: String,
        address: String,
        port: u16,
        /// Key type and SHA256 fingerprint ("ssh-ed25519 SHA256:…").
        offered: String,
        known_hosts: PathBuf,
        line: usize,
    },

    #[error(
        "host key of {label} ({address}:{port}) is marked @revoked at line {line} of \
         {known_hosts}; the host must get a new host key before it can be used",
        known_hosts = .known_hosts.display()
    )]
    HostKeyRevoked {
        label: String,
        address: String,
        port: u16,
        known_hosts: PathBuf,
        line: usize,
    },

    #[error(
        "cannot use known_hosts file {path} for {label}: {reason}; check that it exists \
         (or can be created) and is readable/writable by this user",
        path = .path.display()
    )]
    KnownHosts {
        label: String,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "authentication as {user} on {label} failed (tried: {tried}); check ssh.user / \
         ssh.identityFile",
        tried = .tried.join(", ")
    )]
    Auth {
        label: String,
        user: String,
        tried: Vec<String>,
    },

    #[error("cannot reach {label} through bastion {bastion}: {reason}")]
    Bastion {
        label: String,
        bastion: String,
        reason: String,
        transient: bool,
    },

    #[error("cannot run `{command}` on {label}: {reason}")]
    Channel {
        label: String,
        command: String,
        reason: String,
        transient: bool,
    },

    #[error(
        "connection to {label} was lost while running `{command}`; the command may or may \
         not have completed there"
    )]
    ConnectionLost { label: String, command: String },

    #[error(
        "`{command}` on {label} did not finish within {}s; it was stopped (raise the \
         timeout if the host is just slow)",
        .timeout.as_secs_f64()
    )]
    Timeout {
        label: String,
        command: String,
        timeout: Duration,
    },

    #[error(
        "sudo on {label} asks for a password: set ssh.sudoPasswordEnv to the name of an \
         environment variable holding {user}'s sudo password, or give {user} passwordless sudo"
    )]
    SudoPasswordRequired { label: String, user: String },

    #[error(
        "sudo on {label} rejected the sudo password for {user}; check the variable named by \
         ssh.sudoPasswordEnv"
    )]
    SudoPasswordRejected { label: String, user: String },

    #[error("upload of {dest} to {label} failed: {reason}")]
    Upload {
        label: String,
        dest: String,
        reason: String,
    },
}

impl SshError {
    /// True for failures that may go away by themselves (host booting, network blip,
    /// sshd busy): worth another attempt. Auth, host-key and usage errors never are.
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::Connect { .. } | SshError::ConnectionLost { .. } => true,
            SshError::Bastion { transient, .. } | SshError::Channel { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The host label this error is about.
    pub fn label(&self) -> &str {
        match self {
            SshError::Connect { label, .. }
            | SshError::Handshake { label, .. }
            | SshError::UnknownHostKey { label, .. }
            | SshError::HostKeyChanged { label, .. }
            | SshError::HostKeyRevoked { label, .. }
            | SshError::KnownHosts { label, .. }
            | SshError::Auth { label, .. }
            | SshError::Bastion { label, .. }
            | SshError::Channel { label, .. }
            | SshError::ConnectionLost { label, .. }
            | SshError::Timeout { label, .. }
            | SshError::SudoPasswordRequired { label, .. }
            | SshError::SudoPasswordRejected { label, .. }
            | SshError::Upload { label, .. } => label,
        }
    }
}

/// Whether a russh error is the kind of network trouble a retry can cure.
pub(crate) fn russh_is_transient(err: &russh::Error) -> bool {
    use std::io::ErrorKind;
    match err {
        russh::Error::IO(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::TimedOut
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::NotConnected
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::AddrNotAvailable
        ),
        russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::ConnectionTimeout
        | russh::Error::KeepaliveTimeout
        | russh::Error::Elapsed(_)
        | russh::Error::SendError
        | russh::Error::RecvError => true,
        russh::Error::ChannelOpenFailure(reason) => matches!(
            reason,
            russh::ChannelOpenFailure::ConnectFailed | russh::ChannelOpenFailure::ResourceShortage
        ),
        _ => false,
    }
}
