//! Test harness: a real OpenSSH sshd on 127.0.0.1 with its own host key, client key and
//! test users, plus a loopback TCP proxy that can cut connections.
//!
//! Include it with `#[path = "support/sshd.rs"] mod sshd;`. Starting sshd and creating
//! users needs root; `Sshd::start` prints why and returns `None` otherwise, so tests
//! can `let Some(sshd) = Sshd::start("name") else { return };`.
//!
//! Users (created idempotently): `installer-test` with passwordless sudo, and
//! `installer-pw` whose sudo asks for a password (`Sshd::pw_password`). Both accept the
//! harness client key; `installer-pw` also accepts its password over SSH.
#![allow(dead_code)] // every test file uses a different part of it

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use installer::ssh::ConnectSpec;
use rand::Rng;

/// Non-root user with passwordless sudo.
pub const TEST_USER: &str = "installer-test";
/// Non-root user whose sudo requires its password.
pub const PW_USER: &str = "installer-pw";

const SUDOERS_FILE: &str = "/etc/sudoers.d/installer-test";

/// True when running as root; otherwise prints that `test` is skipped and why.
pub fn root_or_skip(test: &str) -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid == "0" {
        return true;
    }
    // A test that cannot run must not look like a test that passed.
    assert!(
        std::env::var_os("INSTALLER_SKIP_ROOT_TESTS").is_some(),
        "{test} needs root (it starts sshd and creates the test users {TEST_USER} and \
         {PW_USER}): run the tests as root (sudo scripts/test), or set \
         INSTALLER_SKIP_ROOT_TESTS=1 to skip the tests that need root"
    );
    eprintln!("SKIPPED {test}: needs root; INSTALLER_SKIP_ROOT_TESTS is set");
    false
}

/// Runs a setup command and panics with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (install openssh-server and sudo)"));
    assert!(
        out.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn random_word(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates the test users and sudo rules once per process; returns installer-pw's
/// password (fresh each run).
fn ensure_users() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| {
        for user in [TEST_USER, PW_USER] {
            if !user_exists(user) {
                run(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", user]));
            }
        }
        // useradd leaves the password "!" (locked); without PAM sshd refuses locked
        // accounts even for key logins. "*" means "no password" but not locked.
        run(Command::new("usermod").args(["-p", "*", TEST_USER]));
        let password = format!("pw-{}", random_word(20));
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        chpasswd
            .stdin
            .take()
            .expect("chpasswd stdin")
            .write_all(format!("{PW_USER}:{password}\n").as_bytes())
            .expect("write to chpasswd");
        assert!(
            chpasswd.wait().expect("chpasswd").success(),
            "chpasswd failed"
        );

        let rules = format!(
            "# Written by the installer test suite (tests/support/sshd.rs).\n\
             Defaults:{PW_USER} lecture=never\n\
             {TEST_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n\
             {PW_USER} ALL=(ALL:ALL) ALL\n"
        );
        let staged = format!("{SUDOERS_FILE}.new");
        std::fs::write(&staged, rules).expect("write sudoers rule");
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o440))
            .expect("chmod sudoers rule");
        run(Command::new("visudo").args(["-c", "-q", "-f", &staged]));
        std::fs::rename(&staged, SUDOERS_FILE).expect("install sudoers rule");
        password
    })
}

fn keygen(path: &Path, passphrase: &str) {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            "installer-test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(path));
}

/// Public key line ("ssh-ed25519 AAAA…") of a key pair made by `keygen`.
fn public_key_of(private: &Path) -> String {
    let text = std::fs::read_to_string(private.with_extension("pub")).expect("read public key");
    let mut fields = text.split_whitespace();
    format!(
        "{} {}",
        fields.next().expect("key type"),
        fields.next().expect("key blob")
    )
}

/// A generated ed25519 key pair in `dir`; returns the private key path.
pub fn generate_key(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    keygen(&path, passphrase);
    path
}

/// A running sshd; killed on drop.
pub struct Sshd {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
    /// Harness client private key, accepted for every user.
    pub client_key: PathBuf,
    host_key: String,
    password: &'static str,
}

impl Sshd {
    /// Starts sshd, or prints why `test` is skipped and returns `None` when not root.
    pub fn start(test: &str) -> Option<Sshd> {
        if !root_or_skip(test) {
            return None;
        }
        let password = ensure_users();
        let dir = tempfile::Builder::new()
            .prefix("installer-sshd-")
            .tempdir()
            .expect("tempdir");
        // sshd reads authorized_keys as the logging-in user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let host_key_path = generate_key(dir.path(), "host_ed25519", "");
        let client_key = generate_key(dir.path(), "id_ed25519", "");
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", public_key_of(&client_key)))
            .expect("write authorized_keys");
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644))
            .expect("chmod authorized_keys");
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");

        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(&config, sshd_config(port, &host_key_path, &authorized))
                .expect("write sshd_config");
            let log_path = dir.path().join(format!("sshd-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("create sshd log");
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start /usr/sbin/sshd (install openssh-server)");
            if wait_for_banner(port, &mut child) {
                return Some(Sshd {
                    port,
                    dir,
                    child,
                    client_key,
                    host_key: public_key_of(&host_key_path),
                    password,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            // A port taken between picking and binding is the one failure worth a retry.
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start:\n{last_log}");
    }

    /// The scratch directory of this server (keys, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// "ssh-ed25519 AAAA…" of the server's host key.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// The known_hosts line for this server as reached directly.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    /// known_hosts line for this server when reached on another port (a proxy).
    pub fn known_hosts_line_for_port(&self, port: u16) -> String {
        format!("[127.0.0.1]:{port} {}", self.host_key)
    }

    /// A known_hosts file (in the scratch dir) holding `lines`.
    pub fn write_known_hosts(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.dir.path().join(name);
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).expect("write known_hosts");
        path
    }

    /// SHA256 fingerprint of the host key as ssh-keygen prints it ("SHA256:…").
    pub fn host_key_fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_ed25519.pub")));
        out.split_whitespace()
            .nth(1)
            .expect("fingerprint field")
            .to_string()
    }

    /// Spec for `installer-test` with the harness key and a known_hosts that knows us.
    pub fn spec(&self, label: &str) -> ConnectSpec {
        self.spec_for(label, TEST_USER)
    }

    /// Like `spec`, for any user.
    pub fn spec_for(&self, label: &str, user: &str) -> ConnectSpec {
        let known_hosts =
            self.write_known_hosts(&format!("known_hosts-{label}"), &[self.known_hosts_line()]);
        let mut spec = ConnectSpec::new(label, "127.0.0.1", self.port, user, known_hosts);
        spec.identity_file = Some(self.client_key.clone());
        spec.use_agent = false;
        spec.connect_timeout = Duration::from_secs(10);
        spec.connect_attempts = 1;
        spec
    }

    /// Current sudo (and SSH) password of `installer-pw`.
    pub fn pw_password(&self) -> &str {
        self.password
    }

    /// Accepts one more public key ("ssh-ed25519 AAAA…") for every user.
    pub fn authorize_key(&self, public_key: &str) {
        let path = self.dir.path().join("authorized_keys");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open authorized_keys");
        writeln!(file, "{public_key}").expect("append authorized key");
    }

    /// The public key line of a key pair made by `generate_key`.
    pub fn public_key_of(&self, private: &Path) -> String {
        public_key_of(private)
    }

    /// What sshd logged so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("sshd-{}.log", self.port)))
            .unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd_config(port: u16, host_key: &Path, authorized: &Path) -> String {
    format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {authorized}\n\
         PidFile none\n\
         UsePAM no\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         AllowTcpForwarding yes\n\
         MaxSessions 10\n\
         UseDNS no\n\
         PrintMotd no\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        authorized = authorized.display(),
    )
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

fn wait_for_banner(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut banner = [0u8; 8];
            if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0-") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Byte and connection counts of a [`Proxy`].
#[derive(Default)]
pub struct ProxyStats {
    pub connections: AtomicUsize,
    pub client_bytes: AtomicU64,
    pub server_bytes: AtomicU64,
}

/// Loopback TCP proxy to `127.0.0.1:target`. With `cut_after`, each connection is torn
/// down once the client has sent that many bytes (a network failure mid-transfer).
pub struct Proxy {
    pub port: u16,
    stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16, cut_after: Option<u64>) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let stats = Arc::new(ProxyStats::default());
        let counters = stats.clone();
        let task = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                counters.connections.fetch_add(1, Ordering::SeqCst);
                let target: SocketAddr = ([127, 0, 0, 1], target).into();
                links.spawn(forward(client, target, cut_after, counters.clone()));
            }
        });
        Proxy { port, stats, task }
    }

    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    pub fn client_bytes(&self) -> u64 {
        self.stats.client_bytes.load(Ordering::SeqCst)
    }

    pub fn server_bytes(&self) -> u64 {
        self.stats.server_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every link.
        self.task.abort();
    }
}

async fn forward(
    client: tokio::net::TcpStream,
    target: SocketAddr,
    cut_after: Option<u64>,
    stats: Arc<ProxyStats>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let allowed = cut_after.map_or(n as u64, |limit| (limit - sent).min(n as u64));
            let allowed = usize::try_from(allowed).unwrap_or(n);
            if server_tx.write_all(&buf[..allowed]).await.is_err() {
                return;
            }
            sent += allowed as u64;
            stats
                .client_bytes
                .fetch_add(allowed as u64, Ordering::SeqCst);
            if allowed < n || cut_after.is_some_and(|limit| sent >= limit) {
                return; // the cut: both sockets are dropped below
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
            stats.server_bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
