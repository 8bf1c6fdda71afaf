//! The SSH transport against a real OpenSSH sshd (see tests/support/sshd.rs).
//! Every test needs root (sshd, test users); without it each prints SKIPPED and passes.

#[path = "support/sshd.rs"]
mod sshd;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use installer::ssh::{
    ConnectSpec, Connection, ExecRequest, HostKeyPolicy, SshError, Stream, UploadRequest,
};
use secrecy::SecretString;
use sshd::{PW_USER, Proxy, Sshd, TEST_USER};

async fn connect(spec: ConnectSpec) -> Connection {
    let label = spec.label.clone();
    Connection::connect(spec)
        .await
        .unwrap_or_else(|e| panic!("connect to {label}: {e}"))
}

async fn run(conn: &Connection, req: ExecRequest) -> installer::ssh::ExecOutput {
    let command = req.command.clone();
    conn.exec(req)
        .await
        .unwrap_or_else(|e| panic!("`{command}`: {e}"))
}

fn uid_of(user: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", user])
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric uid")
}

/// Waits up to 5 s for every process whose command line is exactly `cmdline` to end.
async fn process_ends(cmdline: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let found = std::process::Command::new("pgrep")
            .args(["-x", "-f", cmdline])
            .output()
            .expect("run pgrep");
        if !found.status.success() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A fresh directory under /tmp, removed on drop.
fn scratch_dir(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("installer-ssh-test-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
    dir
}

#[tokio::test]
async fn exec_returns_exit_code_and_both_streams_separately() {
    let Some(sshd) = Sshd::start("exec_returns_exit_code_and_both_streams_separately") else {
        return;
    };
    let conn = connect(sshd.spec("node-1")).await;
    let out = run(&conn, ExecRequest::new("echo out; echo err >&2; exit 3")).await;
    assert_eq!(out.exit_status, Some(3));
    assert!(!out.success());
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");

    let out = run(&conn, ExecRequest::new("id -un; cat").stdin("piped\n")).await;
    assert!(out.success());
    assert_eq!(out.stdout_str(), format!("{TEST_USER}\npiped\n"));
    assert_eq!(conn.label(), "node-1");
    conn.disconnect().await;
}

/// One streamed piece of output and when it arrived.
type Chunk = (Instant, Stream, Vec<u8>);

#[tokio::test]
async fn output_streams_through_on_output_while_the_command_runs() {
    let Some(sshd) = Sshd::start("output_streams_through_on_output_while_the_command_runs") else {
        return;
    };
    let conn = connect(sshd.spec("node-1")).await;
    let seen: Arc<Mutex<Vec<Chunk>>> = Arc::default();
    let sink_seen = seen.clone();
    let req = ExecRequest::new("for i in 1 2 3; do echo line$i; echo warn$i >&2; sleep 0.4; done")
        .on_output(Arc::new(move |stream, chunk: &[u8]| {
            if let Ok(mut seen) = sink_seen.lock() {
                seen.push((Instant::now(), stream, chunk.to_vec()));
            }
        }));
    let out = run(&conn, req).await;
    let finished = Instant::now();
    let seen = seen.lock().expect("sink lock").clone();
    let joined = |wanted: Stream| -> Vec<u8> {
        seen.iter()
            .filter(|(_, s, _)| *s == wanted)
            .flat_map(|(_, _, c)| c.clone())
            .collect()
    };
    assert_eq!(joined(Stream::Stdout), out.stdout);
    assert_eq!(joined(Stream::Stderr), out.stderr);
    assert_eq!(out.stdout_str(), "line1\nline2\nline3\n");
    assert_eq!(out.stderr_str(), "warn1\nwarn2\nwarn3\n");
    let first = seen.first().expect("some output was streamed").0;
    assert!(
        finished.duration_since(first) >= Duration::from_millis(600),
        "first chunk should arrive long before the command ends"
    );
}

#[tokio::test]
async fn sudo_runs_privileged_commands_as_root_for_a_non_root_user() {
    let Some(sshd) = Sshd::start("sudo_runs_privileged_commands_as_root_for_a_non_root_user")
    else {
        return;
    };
    let conn = connect(sshd.spec("node-1")).await;
    let plain = run(&conn, ExecRequest::new("id -u")).await;
    assert_ne!(plain.stdout_str().trim(), "0");

    // Quotes and pipes must survive the sudo wrapping, and stdin must reach the command.
    let req = ExecRequest::new("id -u; echo \"it's $(whoami)\" | tr a-z A-Z; cat")
        .stdin("from stdin")
        .privileged(None);
    let out = run(&conn, req).await;
    assert!(out.success(), "stderr: {}", out.stderr_str());
    assert_eq!(out.stdout_str(), "0\nIT'S ROOT\nfrom stdin");
}

#[tokio::test]
async fn sudo_password_goes_through_stdin_and_never_shows() {
    let Some(sshd) = Sshd::start("sudo_password_goes_through_stdin_and_never_shows") else {
        return;
    };
    let password = sshd.pw_password().to_string();
    // Password authentication, no key: installer-pw logs in with the same password.
    let mut spec = sshd.spec_for("node-pw", PW_USER);
    spec.identity_file = None;
    spec.password = Some(SecretString::from(password.clone()));
    let conn = connect(spec).await;
    let secret = || Some(SecretString::from(password.clone()));

    let mut shown = String::new();
    let out = run(&conn, ExecRequest::new("id -u").privileged(secret())).await;
    assert_eq!(out.stdout_str(), "0\n", "stderr: {}", out.stderr_str());
    shown += &format!("{out:?}");

    let req = ExecRequest::new("cat; echo; whoami")
        .stdin("line one\nline two")
        .privileged(secret());
    shown += &format!("{req:?}");
    let out = run(&conn, req).await;
    assert_eq!(out.stdout_str(), "line one\nline two\nroot\n");
    shown += &format!("{out:?}{}{}", out.stdout_str(), out.stderr_str());

    let err = conn
        .exec(
            ExecRequest::new("sleep 21")
                .privileged(secret())
                .timeout(Duration::from_millis(1500)),
        )
        .await
        .expect_err("timeout");
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    assert!(
        process_ends("sleep 21").await,
        "the timed-out root command still runs"
    );
    shown += &format!("{err}{err:?}");

    let wrong = ExecRequest::new("true").privileged(Some(SecretString::from("not-it".to_string())));
    let err = conn.exec(wrong).await.expect_err("wrong password");
    assert!(
        matches!(err, SshError::SudoPasswordRejected { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("node-pw"), "{err}");
    shown += &format!("{err}{err:?}");

    assert!(
        !shown.contains(&password),
        "the sudo password leaked: {shown}"
    );
}

#[tokio::test]
async fn sudo_without_password_when_one_is_required_says_what_to_set() {
    let Some(sshd) = Sshd::start("sudo_without_password_when_one_is_required_says_what_to_set")
    else {
        return;
    };
    let conn = connect(sshd.spec_for("master-1", PW_USER)).await;
    let err = conn
        .exec(ExecRequest::new("id -u").privileged(None))
        .await
        .expect_err("sudo needs a password");
    assert!(
        matches!(err, SshError::SudoPasswordRequired { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("sudo on master-1 asks for a password"),
        "{text}"
    );
    assert!(text.contains("ssh.sudoPasswordEnv"), "{text}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn upload_sets_contents_mode_and_owner() {
    let Some(sshd) = Sshd::start("upload_sets_contents_mode_and_owner") else {
        return;
    };
    let conn = connect(sshd.spec("node-1")).await;
    let root_dir = scratch_dir(0o755);
    let secret_path = root_dir.path().join("secret.key");
    let dest = secret_path.to_str().expect("utf-8 path").to_string();

    // The user cannot write into a root-owned directory: a plain upload fails cleanly.
    let err = conn
        .upload(UploadRequest::new(dest.clone(), b"x".to_vec(), 0o600))
        .await
        .expect_err("no permission");
    assert!(err.to_string().contains("node-1"), "{err}");
    assert!(!secret_path.exists());

    let contents: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let req = UploadRequest::new(dest.clone(), contents.clone(), 0o600)
        .owner("root")
        .group("root")
        .privileged(None);
    conn.upload(req).await.expect("privileged upload");
    let meta = std::fs::metadata(&secret_path).expect("uploaded file");
    assert_eq!(std::fs::read(&secret_path).expect("read back"), contents);
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    // Replacing an existing file, handing it to another owner.
    let req = UploadRequest::new(dest.clone(), b"second\n".to_vec(), 0o640)
        .owner(TEST_USER)
        .privileged(None);
    conn.upload(req).await.expect("privileged replace");
    let meta = std::fs::metadata(&secret_path).expect("replaced file");
    assert_eq!(std::fs::read(&secret_path).expect("read back"), b"second\n");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), uid_of(TEST_USER));

    // A user file in the user's home, no sudo.
    let user_file = format!("/home/{TEST_USER}/upload-{}.txt", std::process::id());
    let req = UploadRequest::new(user_file.clone(), b"hello\n".to_vec(), 0o644);
    conn.upload(req).await.expect("user upload");
    let meta = std::fs::metadata(&user_file).expect("user file");
    assert_eq!(std::fs::read(&user_file).expect("read back"), b"hello\n");
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(meta.uid(), uid_of(TEST_USER));
    std::fs::remove_file(&user_file).expect("clean up");

    let leftovers: Vec<_> = std::fs::read_dir(root_dir.path())
        .expect("list dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".installer-upload")
        })
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test]
async fn changed_host_key_is_refused_naming_the_known_hosts_line() {
    let Some(sshd) = Sshd::start("changed_host_key_is_refused_naming_the_known_hosts_line") else {
        return;
    };
    let other = sshd::generate_key(sshd.dir(), "impostor", "");
    let stale = format!("[127.0.0.1]:{} {}", sshd.port, sshd.public_key_of(&other));
    let known_hosts = sshd.write_known_hosts(
        "known_hosts-changed",
        &[
            "# hosts of the lab".to_string(),
            format!("[127.0.0.1]:1 {}", sshd.host_key()),
            stale,
        ],
    );
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let mut spec = sshd.spec("master-1");
        spec.known_hosts = known_hosts.clone();
        spec.host_key_policy = policy;
        spec.connect_attempts = 3;
        let err = Connection::connect(spec).await.expect_err("changed key");
        assert!(
            matches!(err, SshError::HostKeyChanged { line: 3, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("master-1"), "{text}");
        assert!(text.contains(&known_hosts.display().to_string()), "{text}");
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains(&sshd.host_key_fingerprint()), "{text}");
        assert!(!err.is_transient());
    }
    // The file is never rewritten for a changed key.
    let text = std::fs::read_to_string(&known_hosts).expect("read known_hosts");
    assert_eq!(text.lines().count(), 3);
}

#[tokio::test]
async fn unknown_host_is_refused_in_strict_mode() {
    let Some(sshd) = Sshd::start("unknown_host_is_refused_in_strict_mode") else {
        return;
    };
    let mut spec = sshd.spec("worker-1");
    spec.known_hosts = sshd.dir().join("no-such-known_hosts");
    let err = Connection::connect(spec.clone())
        .await
        .expect_err("unknown host");
    assert!(matches!(err, SshError::UnknownHostKey { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "worker-1",
        "127.0.0.1",
        "ssh-ed25519",
        &sshd.host_key_fingerprint(),
        "ssh-keyscan",
        "accept-new",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
    assert!(!err.is_transient());
    assert!(
        !spec.known_hosts.exists(),
        "strict mode must not create known_hosts"
    );
}

#[tokio::test]
async fn accept_new_records_the_host_and_strict_accepts_it_next_time() {
    let Some(sshd) = Sshd::start("accept_new_records_the_host_and_strict_accepts_it_next_time")
    else {
        return;
    };
    let known_hosts = sshd.dir().join("fresh").join("known_hosts");
    let mut spec = sshd.spec("worker-2");
    spec.known_hosts = known_hosts.clone();
    spec.host_key_policy = HostKeyPolicy::AcceptNew;
    let conn = connect(spec.clone()).await;
    assert!(run(&conn, ExecRequest::new("true")).await.success());
    conn.disconnect().await;

    let text = std::fs::read_to_string(&known_hosts).expect("known_hosts was created");
    assert!(text.contains(&sshd.known_hosts_line()), "{text}");
    let mode = std::fs::metadata(&known_hosts).expect("metadata").mode();
    assert_eq!(mode & 0o777, 0o600);

    spec.host_key_policy = HostKeyPolicy::Strict;
    let conn = connect(spec.clone()).await;
    assert!(run(&conn, ExecRequest::new("true")).await.success());
    // Known hosts are not recorded twice.
    let again = std::fs::read_to_string(&known_hosts).expect("read known_hosts");
    assert_eq!(again, text);
}

#[tokio::test]
async fn hashed_known_hosts_entry_is_accepted() {
    let Some(sshd) = Sshd::start("hashed_known_hosts_entry_is_accepted") else {
        return;
    };
    let known_hosts = sshd.write_known_hosts("known_hosts-hashed", &[sshd.known_hosts_line()]);
    let status = std::process::Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&known_hosts)
        .status()
        .expect("run ssh-keygen -H");
    assert!(status.success());
    let text = std::fs::read_to_string(&known_hosts).expect("read");
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let mut spec = sshd.spec("node-hashed");
    spec.known_hosts = known_hosts;
    let conn = connect(spec).await;
    assert!(run(&conn, ExecRequest::new("true")).await.success());
}

#[tokio::test]
async fn connection_dropped_mid_upload_leaves_old_file_and_no_temp_file() {
    let Some(sshd) = Sshd::start("connection_dropped_mid_upload_leaves_old_file_and_no_temp_file")
    else {
        return;
    };
    let dir = format!("/home/{TEST_USER}/drop-test-{}", std::process::id());
    let dest = format!("{dir}/config.yaml");
    let direct = connect(sshd.spec("node-1")).await;
    run(
        &direct,
        ExecRequest::new(format!("rm -rf {dir} && mkdir {dir}")),
    )
    .await;
    direct
        .upload(UploadRequest::new(
            dest.clone(),
            b"old contents\n".to_vec(),
            0o644,
        ))
        .await
        .expect("seed the old file");

    // Cut once the client has sent 1 MiB: handshake done, upload of 8 MiB under way.
    let proxy = Proxy::start(sshd.port, Some(1 << 20)).await;
    let mut spec = sshd.spec("node-1");
    spec.port = proxy.port;
    spec.known_hosts = sshd.write_known_hosts(
        "known_hosts-proxy",
        &[sshd.known_hosts_line_for_port(proxy.port)],
    );
    let cut = connect(spec).await;
    let big = vec![b'n'; 8 << 20];
    let err = cut
        .upload(UploadRequest::new(dest.clone(), big, 0o644))
        .await
        .expect_err("the connection was cut");
    assert!(err.to_string().contains("node-1"), "{err}");
    assert!(proxy.client_bytes() >= 1 << 20, "the proxy never cut");

    // The host notices the lost connection on its own; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    let listing = loop {
        let listing = std::fs::read_dir(&dir)
            .expect("list dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        if listing == ["config.yaml"] || Instant::now() > deadline {
            break listing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listing, ["config.yaml"], "temp file left behind");
    assert_eq!(std::fs::read(&dest).expect("old file"), b"old contents\n");
    run(&direct, ExecRequest::new(format!("rm -rf {dir}"))).await;
}

#[tokio::test]
async fn closed_port_fails_after_configured_attempts_with_transient_error() {
    let Some(sshd) =
        Sshd::start("closed_port_fails_after_configured_attempts_with_transient_error")
    else {
        return;
    };
    let mut spec = sshd.spec("worker-9");
    spec.port = sshd::free_port();
    spec.connect_attempts = 3;
    let started = Instant::now();
    let err = Connection::connect(spec)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(err, SshError::Connect { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("worker-9") && text.contains("after 3 attempt"),
        "{text}"
    );
    // Two backoff pauses of at least 0.5 s each (jitter only adds).
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn handshake_cut_by_the_network_is_retried_the_configured_times() {
    let Some(sshd) = Sshd::start("handshake_cut_by_the_network_is_retried_the_configured_times")
    else {
        return;
    };
    let proxy = Proxy::start(sshd.port, Some(0)).await;
    let mut spec = sshd.spec("worker-3");
    spec.port = proxy.port;
    spec.connect_attempts = 4;
    let err = Connection::connect(spec)
        .await
        .expect_err("every attempt is cut");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("worker-3"), "{err}");
    assert_eq!(proxy.connections(), 4);
}

#[tokio::test]
async fn auth_failure_is_not_retried_and_names_what_was_tried() {
    let Some(sshd) = Sshd::start("auth_failure_is_not_retried_and_names_what_was_tried") else {
        return;
    };
    let stranger = sshd::generate_key(sshd.dir(), "stranger", "");
    let proxy = Proxy::start(sshd.port, None).await;
    let mut spec = sshd.spec("worker-1");
    spec.user = "ops".to_string();
    spec.port = proxy.port;
    spec.known_hosts = sshd.write_known_hosts(
        "known_hosts-auth",
        &[sshd.known_hosts_line_for_port(proxy.port)],
    );
    spec.identity_file = Some(stranger.clone());
    spec.password = Some(SecretString::from("wrong-password".to_string()));
    spec.connect_attempts = 3;
    let err = Connection::connect(spec)
        .await
        .expect_err("nobody may log in");
    assert!(matches!(err, SshError::Auth { .. }), "{err:?}");
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("authentication as ops on worker-1 failed"),
        "{text}"
    );
    assert!(
        text.contains(&format!("key {}", stranger.display())),
        "{text}"
    );
    assert!(
        text.contains("password") && !text.contains("wrong-password"),
        "{text}"
    );
    assert_eq!(proxy.connections(), 1, "auth failures must not be retried");
}

#[tokio::test]
async fn private_key_readable_by_others_is_not_used() {
    let Some(sshd) = Sshd::start("private_key_readable_by_others_is_not_used") else {
        return;
    };
    let key = sshd::generate_key(sshd.dir(), "exposed", "");
    sshd.authorize_key(&sshd.public_key_of(&key));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut spec = sshd.spec("node-1");
    spec.identity_file = Some(key.clone());
    spec.use_agent = false;
    let err = Connection::connect(spec.clone())
        .await
        .expect_err("an unprotected key is refused");
    let text = err.to_string();
    assert!(
        text.contains("readable by others") && text.contains("chmod 600"),
        "{text}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conn = connect(spec).await;
    assert!(run(&conn, ExecRequest::new("true")).await.success());
}

#[tokio::test]
async fn passphrase_protected_identity_file_authenticates() {
    let Some(sshd) = Sshd::start("passphrase_protected_identity_file_authenticates") else {
        return;
    };
    let key = sshd::generate_key(sshd.dir(), "locked", "correct horse");
    sshd.authorize_key(&sshd.public_key_of(&key));
    let mut spec = sshd.spec("node-1");
    spec.identity_file = Some(key.clone());

    let err = Connection::connect(spec.clone())
        .await
        .expect_err("no passphrase");
    assert!(err.to_string().contains("passphrase"), "{err}");

    spec.identity_passphrase = Some(SecretString::from("correct horse".to_string()));
    let conn = connect(spec).await;
    assert!(run(&conn, ExecRequest::new("true")).await.success());
}

#[tokio::test]
async fn bastion_reaches_the_target_through_direct_tcpip() {
    let Some(sshd) = Sshd::start("bastion_reaches_the_target_through_direct_tcpip") else {
        return;
    };
    // The bastion is reached through a counting proxy, so the target's traffic is seen.
    let proxy = Proxy::start(sshd.port, None).await;
    let mut jump = sshd.spec("bastion");
    jump.port = proxy.port;
    jump.known_hosts = sshd.write_known_hosts(
        "known_hosts-jump",
        &[sshd.known_hosts_line_for_port(proxy.port)],
    );
    let mut target = sshd.spec("master-1");
    target.bastion = Some(Box::new(jump));
    let conn = connect(target).await;
    assert_eq!(proxy.connections(), 1);

    let before = proxy.server_bytes();
    let out = run(
        &conn,
        ExecRequest::new("head -c 300000 /dev/zero | base64 -w0"),
    )
    .await;
    assert!(out.success());
    assert_eq!(out.stdout.len(), 400_000);
    assert!(
        proxy.server_bytes() - before >= 300_000,
        "the target's output did not flow through the bastion"
    );
    conn.disconnect().await;
}

#[tokio::test]
async fn more_concurrent_execs_than_max_channels_all_succeed() {
    let Some(sshd) = Sshd::start("more_concurrent_execs_than_max_channels_all_succeed") else {
        return;
    };
    let spec = sshd.spec("node-1");
    assert_eq!(spec.max_channels, 8);
    let conn = connect(spec).await;
    let dir = format!("/home/{TEST_USER}/concurrency-{}", std::process::id());
    run(
        &conn,
        ExecRequest::new(format!("rm -rf {dir} && mkdir {dir}")),
    )
    .await;
    // 24 at once would overrun sshd's MaxSessions 10 without the channel bound. Each
    // command counts the commands running with it, so the bound itself is checked.
    let runs = (0..24).map(|i| {
        let conn = conn.clone();
        let command =
            format!("touch {dir}/{i}; sleep 0.4; ls {dir} | wc -l; sleep 0.2; rm {dir}/{i}");
        async move { conn.exec(ExecRequest::new(command)).await }
    });
    let results = futures::future::join_all(runs).await;
    let mut peak = 0;
    for (i, result) in results.into_iter().enumerate() {
        let out = result.unwrap_or_else(|e| panic!("exec {i}: {e}\nsshd log:\n{}", sshd.log()));
        assert!(out.success(), "exec {i}: {}", out.stderr_str());
        let running: usize = out.stdout_str().trim().parse().expect("a count");
        peak = peak.max(running);
    }
    assert!(peak <= 8, "{peak} commands ran at once; the bound is 8");
    assert!(peak >= 4, "commands did not run concurrently (peak {peak})");
    run(&conn, ExecRequest::new(format!("rm -rf {dir}"))).await;
}

#[tokio::test]
async fn long_command_times_out_with_an_error_naming_host_and_command() {
    let Some(sshd) = Sshd::start("long_command_times_out_with_an_error_naming_host_and_command")
    else {
        return;
    };
    let conn = connect(sshd.spec("worker-7")).await;
    let started = Instant::now();
    let err = conn
        .exec(ExecRequest::new("sleep 30").timeout(Duration::from_secs(1)))
        .await
        .expect_err("must time out");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("worker-7") && text.contains("sleep 30"),
        "{text}"
    );
    assert!(
        process_ends("sleep 30").await,
        "the timed-out command still runs"
    );
    let err = conn
        .exec(
            ExecRequest::new("sleep 32; echo never")
                .privileged(None)
                .timeout(Duration::from_secs(1)),
        )
        .await
        .expect_err("privileged command must time out too");
    assert!(err.to_string().contains("sleep 32; echo never"), "{err}");
    assert!(
        process_ends("sleep 32").await,
        "the timed-out root command still runs"
    );
    // The connection stays usable.
    assert!(run(&conn, ExecRequest::new("true")).await.success());
}
