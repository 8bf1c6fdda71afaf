//! Test harness for the lab (`tests/lab/lab`): real Debian hosts booted by systemd-nspawn on
//! this machine, reachable over SSH as the non-root user `ops`.
//!
//! ```ignore
//! #[path = "support/lab.rs"]
//! mod lab;
//!
//! let Some(lab) = lab::Lab::up_or_skip("mytest", 3, 2) else { return };
//! let (status, out, _) = lab.exec("master-1", "sudo -n true");
//! ```
//!
//! `Lab::up` brings the lab up on fresh hosts, taking down a lab of that name left running by
//! an earlier run (with `LAB_KEEP=1` it reuses one of the right shape instead); the script
//! builds the image and the mirror on first use. The lab is taken down when the
//! `Lab` is dropped and, as a safety net, when the test process exits (a watchdog process),
//! unless `LAB_KEEP=1`. [`Lab::shared`] gives all tests of one binary the same lab.
//! [`Options`] picks the hosts' OS (Debian 12, 13 or mixed) and the busy-apt host.
//!
//! The lab needs root: [`Lab::up_or_skip`] and [`Lab::shared`] return `None` (after saying why)
//! when the tests do not run as root.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::Deserialize;

/// Where `tests/lab/lab` keeps a running lab's state (keys, known_hosts, inventory).
const RUN_DIR: &str = "/run/installer-lab";

/// One host of the lab as the inventory describes it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
}

impl Host {
    pub fn is_master(&self) -> bool {
        self.roles.iter().any(|r| r == "master")
    }
}

/// What went wrong while driving the lab script.
#[derive(Debug)]
pub struct LabError(String);

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabError {}

/// The result of a command run on a host: exit status (-1 when killed by a signal; 255 when
/// ssh itself failed), stdout and stderr.
pub type ExecOutput = (i32, String, String);

#[derive(Deserialize)]
struct Inventory {
    cluster: Cluster,
    ssh: Ssh,
    #[serde(default)]
    packages: Packages,
    hosts: Vec<Host>,
}

/// The package sources the inventory names (all served by the lab's mirror).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Packages {
    /// `http://<mirror>/kubernetes/core:/stable:/v{minor}/deb/` (`{format}` filled in)
    #[serde(default)]
    pub kubernetes_repo: String,
    /// `http://<mirror>/docker/linux/debian` (apt: `deb <it> <codename> stable`)
    #[serde(default)]
    pub docker_repo: String,
    /// `http://<mirror>/github/Mirantis/cri-dockerd/releases/download`
    #[serde(default)]
    pub cri_dockerd_repo: String,
    #[serde(default)]
    pub manifests_mirror: String,
}

/// How to bring a lab up beyond its size: `tests/lab/lab up --os ... --host-os ...
/// --busy-apt ...`. The defaults are the script's: Debian 12 everywhere, worker-1 (else the last
/// master) holding the dpkg lock for a while after each boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `debian12`, `debian13` or `mixed` (even-numbered hosts on Debian 13).
    pub os: Option<String>,
    /// Per-host OS overrides, e.g. `("worker-2", "debian13")`.
    pub host_os: Vec<(String, String)>,
    /// The busy-apt host, or `"none"`.
    pub busy_apt: Option<String>,
}

impl Options {
    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(os) = &self.os {
            a.extend(["--os".to_string(), os.clone()]);
        }
        for (h, os) in &self.host_os {
            a.extend(["--host-os".to_string(), format!("{h}={os}")]);
        }
        if let Some(b) = &self.busy_apt {
            a.extend(["--busy-apt".to_string(), b.clone()]);
        }
        a
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cluster {
    control_plane: ControlPlane,
}

#[derive(Deserialize)]
struct ControlPlane {
    vip: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ssh {
    user: String,
    identity_file: PathBuf,
    known_hosts: PathBuf,
}

/// A running lab.
pub struct Lab {
    name: String,
    masters: usize,
    workers: usize,
    options: Options,
    hosts: Vec<Host>,
    user: String,
    identity_file: PathBuf,
    known_hosts: PathBuf,
    vip: String,
    packages: Packages,
    keep: bool,
}

/// Without root the lab cannot run: fail, unless INSTALLER_SKIP_ROOT_TESTS asks to skip
/// (a skipped test must never look like a passed one).
fn skip_without_root() {
    assert!(
        std::env::var_os("INSTALLER_SKIP_ROOT_TESTS").is_some(),
        "the lab needs root: run the tests as root (sudo scripts/test), or set \
         INSTALLER_SKIP_ROOT_TESTS=1 to skip the tests that need root"
    );
    eprintln!("SKIPPED: the lab needs root; INSTALLER_SKIP_ROOT_TESTS is set");
}

/// True when this process runs as root (the lab needs it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The lab's entry point in this repository.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab")
}

fn keep() -> bool {
    std::env::var("LAB_KEEP").is_ok_and(|v| v == "1")
}

/// Runs the lab script; stderr is passed through so progress and failures show in test logs.
fn run_script(args: &[&str]) -> Result<String, LabError> {
    let out = Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| LabError(format!("cannot run {}: {e}", script().display())))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError(format!(
            "`tests/lab/lab {}` failed ({}); its messages are above",
            args.join(" "),
            out.status
        )))
    }
}

/// A value of the lab NAME's state file (`lab.env`, shell-quoted values), if the lab is up.
fn state_value(name: &str, key: &str) -> Option<String> {
    let env = std::fs::read_to_string(Path::new(RUN_DIR).join(name).join("lab.env")).ok()?;
    let raw = env
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))?
        .trim();
    // printf %q: either plain, '...' / $'...' quoted, or backslash-escaped spaces.
    let v = raw
        .strip_prefix("$'")
        .or_else(|| raw.strip_prefix('\''))
        .map(|r| r.trim_end_matches('\'').to_string())
        .unwrap_or_else(|| raw.replace("\\ ", " "));
    Some(v)
}

/// Masters and workers of the lab NAME if its state says it is up.
fn running_shape(name: &str) -> Option<(usize, usize)> {
    let n = |key: &str| state_value(name, key).and_then(|v| v.parse().ok());
    Some((n("LAB_MASTERS")?, n("LAB_WORKERS")?))
}

/// A process that takes the lab down once this test process is gone, whatever the reason
/// (end of the test binary, panic, Ctrl-C). Statics are never dropped, so shared labs rely on it.
fn spawn_watchdog(name: &str) {
    use std::os::unix::process::CommandExt;
    let watcher = r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done; exec "$1" down --name "$2""#;
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(watcher)
        .arg(std::process::id().to_string())
        .arg(script())
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!("lab: cannot start the teardown watchdog for lab {name}: {e}");
    }
}

impl Lab {
    /// Brings the lab NAME up with that many masters and workers on fresh hosts (a lab of that
    /// name still running is taken down first, unless `LAB_KEEP=1` and it has that shape).
    pub fn up(name: &str, masters: usize, workers: usize) -> Result<Lab, LabError> {
        Lab::up_with(name, masters, workers, &Options::default())
    }

    /// Like [`Lab::up`], with the hosts' OS and the busy-apt host chosen by OPTIONS.
    pub fn up_with(
        name: &str,
        masters: usize,
        workers: usize,
        options: &Options,
    ) -> Result<Lab, LabError> {
        let keep = keep();
        let mut was_running = running_shape(name);
        // A test proves something only on fresh hosts: a lab left running by an earlier run
        // (killed test, ended session) may hold a cluster, a VIP and old packages. LAB_KEEP=1
        // is the developer's explicit wish to reuse one.
        if let Some(shape) = was_running
            && (!keep || shape != (masters, workers))
        {
            eprintln!(
                "lab: {name} was left running by an earlier run; taking it down to start from fresh hosts"
            );
            run_script(&["down", "--name", name])?;
            was_running = None;
        }
        if !keep {
            spawn_watchdog(name);
        }
        let started = Instant::now();
        let (m, w) = (masters.to_string(), workers.to_string());
        let mut args: Vec<String> = ["up", "--name", name, "--masters", &m, "--workers", &w]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(options.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut up = run_script(&args);
        if up.is_err() && was_running == Some((masters, workers)) {
            // Same size, other OS or busy-apt host: the script refuses; start afresh.
            eprintln!("lab: {name} runs with other options; taking it down and up again");
            run_script(&["down", "--name", name])?;
            up = run_script(&args);
        }
        if let Err(e) = up {
            if !keep {
                let _ = run_script(&["down", "--name", name]);
            }
            return Err(e);
        }
        eprintln!(
            "lab: {name} ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let mut lab = Lab {
            name: name.to_string(),
            masters,
            workers,
            options: options.clone(),
            hosts: Vec::new(),
            user: String::new(),
            identity_file: PathBuf::new(),
            known_hosts: PathBuf::new(),
            vip: String::new(),
            packages: Packages::default(),
            keep,
        };
        lab.load_inventory()?;
        Ok(lab)
    }

    /// Like [`Lab::up`], but `None` (with a message) when not running as root; panics when the
    /// lab cannot be brought up, since every test using it would fail anyway.
    pub fn up_or_skip(name: &str, masters: usize, workers: usize) -> Option<Lab> {
        Lab::up_or_skip_with(name, masters, workers, &Options::default())
    }

    /// [`Lab::up_or_skip`] with [`Options`].
    pub fn up_or_skip_with(
        name: &str,
        masters: usize,
        workers: usize,
        options: &Options,
    ) -> Option<Lab> {
        if !is_root() {
            skip_without_root();
            return None;
        }
        match Lab::up_with(name, masters, workers, options) {
            Ok(lab) => Some(lab),
            Err(e) => panic!("the lab did not come up: {e}"),
        }
    }

    /// One lab for all tests of a test binary, and a guard that runs those tests one at a time
    /// (they share hosts). Torn down by the watchdog when the binary exits.
    pub fn shared(
        name: &str,
        masters: usize,
        workers: usize,
    ) -> Option<(&'static Lab, MutexGuard<'static, ()>)> {
        Lab::shared_with(name, masters, workers, &Options::default())
    }

    /// [`Lab::shared`] with [`Options`].
    pub fn shared_with(
        name: &str,
        masters: usize,
        workers: usize,
        options: &Options,
    ) -> Option<(&'static Lab, MutexGuard<'static, ()>)> {
        static SERIAL: Mutex<()> = Mutex::new(());
        static SHARED: OnceLock<Lab> = OnceLock::new();
        if !is_root() {
            skip_without_root();
            return None;
        }
        // A failed test poisons the mutex; the next one still gets the lab.
        let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        // Statics are never dropped: the watchdog takes this lab down.
        let lab = SHARED.get_or_init(|| match Lab::up_with(name, masters, workers, options) {
            Ok(lab) => lab,
            Err(e) => panic!("the lab did not come up: {e}"),
        });
        assert_eq!(
            (lab.name.as_str(), lab.masters, lab.workers, &lab.options),
            (name, masters, workers, options),
            "Lab::shared is called with different shapes in one test binary"
        );
        Some((lab, guard))
    }

    fn load_inventory(&mut self) -> Result<(), LabError> {
        let path = self.inventory_path();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LabError(format!("cannot read {}: {e}", path.display())))?;
        let inv: Inventory = serde_saphyr::from_str(&text)
            .map_err(|e| LabError(format!("{} is not an inventory: {e}", path.display())))?;
        self.hosts = inv.hosts;
        self.user = inv.ssh.user;
        self.identity_file = inv.ssh.identity_file;
        self.known_hosts = inv.ssh.known_hosts;
        self.vip = inv.cluster.control_plane.vip;
        self.packages = inv.packages;
        // The inventory lets the installer fill these per host; the lab's hosts are Debian.
        for url in [
            &mut self.packages.kubernetes_repo,
            &mut self.packages.docker_repo,
        ] {
            *url = url.replace("{format}", "deb").replace("{distro}", "debian");
        }
        Ok(())
    }

    /// The package sources of the inventory (Kubernetes, Docker, cri-dockerd releases).
    pub fn packages(&self) -> &Packages {
        &self.packages
    }

    /// `http://<bridge address>:<port>`, the mirror as the machine and the hosts reach it.
    pub fn mirror_url(&self) -> String {
        self.packages
            .kubernetes_repo
            .split("/kubernetes/")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The OS HOST runs: `debian12` or `debian13`.
    pub fn host_os(&self, host: &str) -> String {
        self.host(host);
        state_value(&self.name, "LAB_HOST_OS")
            .unwrap_or_default()
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{host}=")).map(str::to_string))
            .unwrap_or_else(|| "debian12".to_string())
    }

    /// The Debian codename of HOST's OS (`bookworm`, `trixie`).
    pub fn host_codename(&self, host: &str) -> &'static str {
        match self.host_os(host).as_str() {
            "debian13" => "trixie",
            _ => "bookworm",
        }
    }

    /// The base images the lab's hosts boot on, as (Debian suite, root file system).
    pub fn images(&self) -> Vec<(String, PathBuf)> {
        state_value(&self.name, "LAB_IMAGES")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.split_once(':'))
            .map(|(suite, dir)| (suite.to_string(), PathBuf::from(dir)))
            .collect()
    }

    /// The host that holds the dpkg lock for a while after each boot, if any.
    pub fn busy_apt_host(&self) -> Option<String> {
        state_value(&self.name, "LAB_BUSY_APT").filter(|h| h != "none" && !h.is_empty())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn masters(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_master())
    }

    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| !h.is_master())
    }

    /// The host called NAME; panics with the list of hosts when there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| {
                let names: Vec<_> = self.hosts.iter().map(|h| h.name.as_str()).collect();
                panic!("lab {} has no host {name}; hosts: {names:?}", self.name)
            })
    }

    /// The lab's state directory (keys, known_hosts, inventory).
    pub fn state_dir(&self) -> PathBuf {
        Path::new(RUN_DIR).join(&self.name)
    }

    /// The installer inventory `tests/lab/lab inventory` writes for this lab.
    pub fn inventory_path(&self) -> PathBuf {
        self.state_dir().join("inventory.yaml")
    }

    pub fn identity_file(&self) -> &Path {
        &self.identity_file
    }

    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The address reserved for the control-plane VIP (the lab never assigns it).
    pub fn vip(&self) -> &str {
        &self.vip
    }

    /// SSH options that authenticate with the lab key and check host keys strictly.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.identity_file.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// Runs CMD (a shell command line) on HOST as the lab user over SSH.
    pub fn exec(&self, host: &str, cmd: &str) -> ExecOutput {
        let address = self.host(host).address.clone();
        let out = Command::new("ssh")
            .args(self.ssh_args())
            .arg("--")
            .arg(format!("{}@{address}", self.user))
            .arg(cmd)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) => (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
            Err(e) => (-1, String::new(), format!("cannot run ssh: {e}")),
        }
    }

    /// Like [`Lab::exec`], but panics (with the host, command and output) unless CMD succeeds;
    /// returns its stdout.
    pub fn exec_ok(&self, host: &str, cmd: &str) -> String {
        let (status, out, err) = self.exec(host, cmd);
        assert_eq!(
            status, 0,
            "`{cmd}` on {host} failed with {status}\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// Hard crash: the host's init is SIGKILLed.
    pub fn kill(&self, host: &str) -> Result<(), LabError> {
        self.host_verb("kill", host)
    }

    /// Clean shutdown.
    pub fn stop(&self, host: &str) -> Result<(), LabError> {
        self.host_verb("stop", host)
    }

    /// Boots a stopped or killed host and waits for its sshd.
    pub fn start(&self, host: &str) -> Result<(), LabError> {
        self.host_verb("start", host)
    }

    /// Cuts the host off the lab network (its link stays up; nothing gets through).
    pub fn partition(&self, host: &str) -> Result<(), LabError> {
        self.host_verb("partition", host)
    }

    /// Reconnects a partitioned host.
    pub fn heal(&self, host: &str) -> Result<(), LabError> {
        self.host_verb("heal", host)
    }

    /// Gives the host a raw disk of `mb` MB at `dev` (a loop device on this machine), empty or
    /// with an ext4 filesystem (`content`: "empty" or "ext4"). Returns the loop device.
    pub fn add_disk(&self, host: &str, dev: &str, mb: u32, content: &str) -> String {
        self.host(host);
        let mb = mb.to_string();
        run_script(&["disk", "--name", &self.name, host, dev, &mb, content])
            .unwrap_or_else(|e| panic!("{e}"))
            .trim()
            .to_string()
    }

    /// Kills every SSH session on the host and the commands they ran (sshd keeps listening):
    /// the server side of a connection that broke mid-command.
    pub fn drop_ssh(&self, host: &str) -> Result<(), LabError> {
        self.host_verb("drop-ssh", host)
    }

    fn host_verb(&self, verb: &str, host: &str) -> Result<(), LabError> {
        self.host(host);
        run_script(&[verb, "--name", &self.name, host]).map(|_| ())
    }

    /// Takes the lab down now (also done on drop unless `LAB_KEEP=1`).
    pub fn down(&self) -> Result<(), LabError> {
        run_script(&["down", "--name", &self.name]).map(|_| ())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "lab: keeping {} (LAB_KEEP=1); take it down with: {} down --name {}",
                self.name,
                script().display(),
                self.name
            );
            return;
        }
        if let Err(e) = self.down() {
            eprintln!("lab: teardown of {} failed: {e}", self.name);
        }
    }
}

/// The lab's inventory for the installer with `runtime` and only the hosts named in `hosts`,
/// addons off (the control plane is what most lab tests prove; addons have their own test).
pub fn write_inventory(lab: &Lab, dir: &Path, runtime: &str, hosts: &[&str]) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).expect("lab inventory");
    let mut out = String::new();
    let mut named = false;
    for line in text.lines() {
        let mut line = line.replace("runtime: docker", &format!("runtime: {runtime}"));
        // A fixed cluster name keeps the state directory (and kubeconfig) path predictable.
        if !named && line.starts_with("  name: ") {
            line = "  name: lab".into();
            named = true;
        }
        if line.trim_start().starts_with("- {name:")
            && !hosts.iter().any(|h| line.contains(&format!("name: {h},")))
        {
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    // The control plane is what these tests prove; the addons have a lab test of their own.
    out.push_str("addons:\n  weave: {enabled: false}\n  rook: {enabled: false}\n  dashboard: {enabled: false}\n");
    let path = dir.join("hosts.yaml");
    std::fs::write(&path, out).unwrap();
    path
}

/// stdout then stderr of a finished command.
pub fn all_output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
