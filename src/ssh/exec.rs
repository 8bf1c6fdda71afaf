//! Running commands: one session channel per command, stdin written while output is
//! read (so neither side can stall the other), sudo wrapping, timeouts.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{Connection, SshError};

/// Receives output chunks as they arrive.
pub type OutputSink = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Who runs the command on the host.
#[derive(Clone, Debug, Default)]
pub enum Privilege {
    /// The SSH user.
    #[default]
    User,
    /// root: as is when logged in as root, else through sudo (with this password if set).
    Root { sudo_password: Option<SecretString> },
}

/// A command line for the remote user's login shell, and how to run it.
#[derive(Clone)]
pub struct ExecRequest {
    pub command: String,
    pub stdin: Option<Vec<u8>>,
    pub privilege: Privilege,
    pub timeout: Option<Duration>,
    pub on_output: Option<OutputSink>,
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        ExecRequest {
            command: command.into(),
            stdin: None,
            privilege: Privilege::User,
            timeout: None,
            on_output: None,
        }
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Runs as root (sudo unless the SSH user is root).
    pub fn privileged(mut self, sudo_password: Option<SecretString>) -> Self {
        self.privilege = Privilege::Root { sudo_password };
        self
    }

    pub fn privilege(mut self, privilege: Privilege) -> Self {
        self.privilege = privilege;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn on_output(mut self, sink: OutputSink) -> Self {
        self.on_output = Some(sink);
        self
    }
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // stdin may hold secrets: show only its size.
        f.debug_struct("ExecRequest")
            .field("command", &self.command)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("privilege", &self.privilege)
            .field("timeout", &self.timeout)
            .field("on_output", &self.on_output.is_some())
            .finish()
    }
}

/// What a finished command left behind. A non-zero exit is not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_status: Option<u32>,
    /// Signal name ("KILL") when the command was killed.
    pub exit_signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// One command as the transport runs it: `shown` is what errors name (the caller's
/// command, never the sudo wrapping's stdin), `line` what the host executes.
pub(crate) struct Job<'a> {
    pub shown: &'a str,
    pub timeout: Option<Duration>,
    pub sink: Option<&'a OutputSink>,
}

pub(crate) async fn exec(conn: &Connection, req: ExecRequest) -> Result<ExecOutput, SshError> {
    let job = Job {
        shown: &req.command,
        timeout: req.timeout,
        sink: req.on_output.as_ref(),
    };
    let stdin = req.stdin.map(Zeroizing::new);
    run(conn, &job, &req.command, stdin, &req.privilege).await
}

/// Runs `command` with the given privilege.
pub(crate) async fn run(
    conn: &Connection,
    job: &Job<'_>,
    command: &str,
    stdin: Option<Zeroizing<Vec<u8>>>,
    privilege: &Privilege,
) -> Result<ExecOutput, SshError> {
    let via_sudo = matches!(privilege, Privilege::Root { .. }) && conn.inner.user != "root";
    if !via_sudo && job.timeout.is_none() {
        return raw(conn, job, command, stdin).await;
    }
    let quoted = shlex::try_quote(command).map_err(|_| SshError::Channel {
        label: conn.inner.label.clone(),
        command: job.shown.to_string(),
        reason: "the command contains a NUL byte".to_string(),
        transient: false,
    })?;
    let guard = job.timeout.map(remote_guard).unwrap_or_default();
    let sudo_password = match privilege {
        Privilege::Root { sudo_password } if via_sudo => sudo_password,
        _ => {
            // Same login shell as an unguarded command would get.
            let line = format!("{guard}\"${{SHELL:-/bin/sh}}\" -c {quoted}");
            return raw(conn, job, &line, stdin).await;
        }
    };
    let body = format!("{guard}sh -c {quoted}");
    let Some(password) = sudo_password else {
        let out = raw(conn, job, &format!("sudo -n -- {body}"), stdin).await?;
        return if sudo_wants_password(&out) {
            Err(sudo_password_required(conn))
        } else {
            Ok(out)
        };
    };
    // `sudo -S` feeds the first stdin line to sudo only when sudo asks for it; with
    // NOPASSWD it would reach the command. So use the password only where it is needed.
    if sudo_works_without_password(conn).await? {
        let out = raw(conn, job, &format!("sudo -n -- {body}"), stdin.clone()).await?;
        if !sudo_wants_password(&out) {
            return Ok(out);
        }
        // A cached sudo ticket made the probe pass and has expired since: sudo refused
        // before running anything, so running again with the password is safe.
    }
    let mut input = Zeroizing::new(Vec::new());
    input.extend_from_slice(password.expose_secret().as_bytes());
    input.push(b'\n');
    if let Some(stdin) = &stdin {
        input.extend_from_slice(stdin);
    }
    // -k: ignore cached tickets so sudo always consumes the password line; -p '': no prompt.
    let line = format!("sudo -S -k -p '' -- {body}");
    let out = raw(conn, job, &line, Some(input)).await?;
    if sudo_rejected_password(&out) {
        return Err(SshError::SudoPasswordRejected {
            label: conn.inner.label.clone(),
            user: conn.inner.user.clone(),
        });
    }
    Ok(out)
}

/// `timeout` on the host, a little after the local limit: it runs the command in its
/// own process group and signals the whole group, so a stopped command leaves no
/// orphans, even as root under sudo where our own signal cannot reach past sudo's shell.
fn remote_guard(limit: Duration) -> String {
    let secs = limit.as_secs() + u64::from(limit.subsec_nanos() > 0) + 1;
    format!("timeout -k 5 {secs} ")
}

async fn sudo_works_without_password(conn: &Connection) -> Result<bool, SshError> {
    const PROBE: &str = "sudo -n -- sh -c true";
    let job = Job {
        shown: PROBE,
        timeout: Some(Duration::from_secs(60)),
        sink: None,
    };
    conn.inner
        .sudo_without_password
        .get_or_try_init(|| async { Ok(raw(conn, &job, PROBE, None).await?.success()) })
        .await
        .copied()
}

fn sudo_wants_password(out: &ExecOutput) -> bool {
    out.exit_status == Some(1) && out.stderr_str().contains("sudo: a password is required")
}

fn sudo_rejected_password(out: &ExecOutput) -> bool {
    let stderr = out.stderr_str();
    out.exit_status == Some(1)
        && stderr.starts_with("Sorry, try again.")
        && stderr.contains("incorrect password attempt")
}

fn sudo_password_required(conn: &Connection) -> SshError {
    SshError::SudoPasswordRequired {
        label: conn.inner.label.clone(),
        user: conn.inner.user.clone(),
    }
}

/// Runs one line on one channel, holding a channel permit throughout.
async fn raw(
    conn: &Connection,
    job: &Job<'_>,
    line: &str,
    stdin: Option<Zeroizing<Vec<u8>>>,
) -> Result<ExecOutput, SshError> {
    let channel_error = |reason: String, transient: bool| SshError::Channel {
        label: conn.inner.label.clone(),
        command: job.shown.to_string(),
        reason,
        transient,
    };
    let _permit = conn
        .inner
        .channels
        .acquire()
        .await
        .map_err(|_| channel_error("the connection is closed".to_string(), true))?;
    // Counted from the channel open: waiting for a free channel is our own queueing.
    let _wait = super::stats::GLOBAL.start(super::stats::Kind::Command);
    let channel = open_session(conn).await.map_err(|e| {
        channel_error(
            format!("the host refused a new session ({e})"),
            super::error::russh_is_transient(&e),
        )
    })?;
    let (mut reader, writer) = channel.split();
    writer
        .exec(true, line)
        .await
        .map_err(|e| channel_error(format!("cannot send the command ({e})"), true))?;

    let pumped = pump(&mut reader, &writer, stdin, job.sink);
    let result = match job.timeout {
        None => pumped.await,
        Some(limit) => match tokio::time::timeout(limit, pumped).await {
            Ok(result) => result,
            Err(_) => {
                // Ask the process to stop, then drop the channel either way.
                let _ = writer.signal(Sig::TERM).await;
                let _ = writer.close().await;
                return Err(SshError::Timeout {
                    label: conn.inner.label.clone(),
                    command: job.shown.to_string(),
                    timeout: limit,
                });
            }
        },
    };
    match result {
        Pumped::Finished(out) => Ok(out),
        Pumped::Refused => {
            let _ = writer.close().await;
            Err(channel_error(
                "the host refused to execute it".to_string(),
                false,
            ))
        }
        Pumped::Lost => Err(SshError::ConnectionLost {
            label: conn.inner.label.clone(),
            command: job.shown.to_string(),
        }),
    }
}

/// Opens a session channel. sshd frees a finished session's slot only after it has
/// read our close, possibly after our next open in the same batch: a brief refusal
/// near MaxSessions is expected and waited out.
async fn open_session(conn: &Connection) -> Result<russh::Channel<Msg>, russh::Error> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(500))
        .with_max_times(10);
    (|| conn.inner.handle.channel_open_session())
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| {
            matches!(
                e,
                russh::Error::ChannelOpenFailure(
                    russh::ChannelOpenFailure::ConnectFailed
                        | russh::ChannelOpenFailure::ResourceShortage
                )
            )
        })
        .await
}

enum Pumped {
    Finished(ExecOutput),
    Refused,
    Lost,
}

async fn pump(
    reader: &mut ChannelReadHalf,
    writer: &ChannelWriteHalf<Msg>,
    stdin: Option<Zeroizing<Vec<u8>>>,
    sink: Option<&OutputSink>,
) -> Pumped {
    let feed = async {
        if let Some(input) = stdin.as_deref()
            && !input.is_empty()
        {
            writer.data(&input[..]).await?;
        }
        writer.eof().await
    };
    let collect = collect_output(reader, sink);
    tokio::pin!(feed, collect);
    let mut fed = false;
    loop {
        tokio::select! {
            sent = &mut feed, if !fed => {
                fed = true;
                // The command may exit without reading all its input; its output decides.
                if let Err(e) = sent {
                    tracing::debug!("stdin not fully delivered: {e}");
                }
            }
            done = &mut collect => return done,
        }
    }
}

async fn collect_output(reader: &mut ChannelReadHalf, sink: Option<&OutputSink>) -> Pumped {
    let mut out = ExecOutput::default();
    while let Some(msg) = reader.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if let Some(sink) = sink {
                    sink(Stream::Stdout, &data);
                }
                out.stdout.extend_from_slice(&data);
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                if let Some(sink) = sink {
                    sink(Stream::Stderr, &data);
                }
                out.stderr.extend_from_slice(&data);
            }
            ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                out.exit_signal = Some(signal_text(&signal_name));
            }
            ChannelMsg::Failure => return Pumped::Refused,
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    // sshd always reports how the command ended; silence means the connection went away.
    if out.exit_status.is_none() && out.exit_signal.is_none() {
        return Pumped::Lost;
    }
    Pumped::Finished(out)
}

fn signal_text(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: u32, stderr: &str) -> ExecOutput {
        ExecOutput {
            exit_status: Some(status),
            stderr: stderr.as_bytes().to_vec(),
            ..ExecOutput::default()
        }
    }

    #[test]
    fn remote_guard_fires_after_the_local_limit() {
        assert_eq!(remote_guard(Duration::from_secs(10)), "timeout -k 5 11 ");
        assert_eq!(remote_guard(Duration::from_millis(1500)), "timeout -k 5 3 ");
    }

    #[test]
    fn sudo_refusals_are_told_apart_from_command_failures() {
        assert!(sudo_wants_password(&finished(
            1,
            "sudo: a password is required\n"
        )));
        assert!(!sudo_wants_password(&finished(
            2,
            "sudo: a password is required\n"
        )));
        assert!(!sudo_wants_password(&finished(1, "grep: no match\n")));
        let rejected = "Sorry, try again.\nsudo: 1 incorrect password attempt\n";
        assert!(sudo_rejected_password(&finished(1, rejected)));
        assert!(!sudo_rejected_password(&finished(
            1,
            "incorrect password attempt\n"
        )));
    }

    #[test]
    fn request_debug_hides_stdin() {
        let req = ExecRequest::new("cat").stdin("top secret");
        let shown = format!("{req:?}");
        assert!(!shown.contains("top secret"), "{shown}");
        assert!(shown.contains("stdin_bytes: Some(10)"), "{shown}");
    }
}
