//! The `kubeadm` simulator: the CLI surface the installer uses, with kubeadm's phases,
//! files, API objects and error messages.

mod certs;
mod init;
mod join;
mod objects;
mod reset;
mod token_cmd;
mod upgrade;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::paths::{self, p};
use crate::util::{self, KubeVersion, write_file};

pub use certs::{SHARED_CA_FILES, kubelet_conf, missing_shared_files, write_kubelet_client};

#[derive(Parser, Debug)]
#[command(
    name = "kubeadm",
    about = "kubeadm: easily bootstrap a secure Kubernetes cluster (lab simulator)"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log verbosity (accepted for compatibility).
    #[arg(short = 'v', long = "v", global = true)]
    verbosity: Option<u8>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run this command in order to set up the Kubernetes control plane
    Init(init::InitArgs),
    /// Run this on any machine you wish to join an existing cluster
    Join(join::JoinArgs),
    /// Performs a best effort revert of changes made to this host by 'kubeadm init' or 'kubeadm join'
    Reset(reset::ResetArgs),
    /// Manage bootstrap tokens
    Token(token_cmd::TokenArgs),
    /// Commands related to handling kubernetes certificates
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Upgrade your cluster smoothly to a newer version with this command
    Upgrade(upgrade::UpgradeArgs),
    /// Manage configuration for a kubeadm cluster
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Print the version of kubeadm
    Version(VersionArgs),
}

#[derive(Subcommand, Debug)]
enum CertsCmd {
    /// Check certificates expiration for a Kubernetes cluster
    CheckExpiration {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long = "cert-dir")]
        cert_dir: Option<PathBuf>,
    },
    /// Renew certificates for a Kubernetes cluster
    Renew {
        /// all, apiserver, admin.conf, ...
        which: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long = "cert-dir")]
        cert_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Read a list of configuration API objects from a file and validate them
    Validate {
        #[arg(long)]
        config: PathBuf,
        #[arg(long = "allow-experimental-api")]
        allow_experimental_api: bool,
    },
    /// Interact with container images used by kubeadm
    Images {
        #[command(subcommand)]
        cmd: ImagesCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ImagesCmd {
    /// Print a list of images kubeadm will use
    List(ImagesArgs),
    /// Pull images used by kubeadm
    Pull(ImagesArgs),
}

#[derive(Args, Debug)]
struct ImagesArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long = "kubernetes-version")]
    kubernetes_version: Option<String>,
    #[arg(long = "image-repository")]
    image_repository: Option<String>,
    #[arg(long = "cri-socket")]
    cri_socket: Option<String>,
}

#[derive(Args, Debug)]
struct VersionArgs {
    /// Output format; available options are 'yaml', 'json' and 'short'
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
}

/// Entry point of the `kubeadm` binary; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Init(a) => init::run(a),
        Cmd::Join(a) => join::run(a),
        Cmd::Reset(a) => reset::run(a),
        Cmd::Token(a) => token_cmd::run(a),
        Cmd::Certs { cmd } => certs_cmd(cmd),
        Cmd::Upgrade(a) => upgrade::run(a),
        Cmd::Config { cmd } => config_cmd(cmd),
        Cmd::Version(a) => version(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e:#}");
            eprintln!("To see the stack trace of this error execute with --v=5 or higher");
            1
        }
    }
}

pub fn kubeadm_version() -> Result<KubeVersion> {
    util::package_version("kubeadm")
}

fn version(a: VersionArgs) -> Result<()> {
    let v = kubeadm_version()?;
    let info = serde_json::json!({
        "major": v.major.to_string(),
        "minor": v.minor.to_string(),
        "gitVersion": v.to_string(),
        "gitTreeState": "clean",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": format!("linux/{}", arch()),
    });
    match a.output.as_deref() {
        None | Some("") => println!(
            "kubeadm version: &version.Info{{Major:\"{}\", Minor:\"{}\", GitVersion:\"{v}\", GitTreeState:\"clean\", Compiler:\"gc\", Platform:\"linux/{}\"}}",
            v.major,
            v.minor,
            arch()
        ),
        Some("short") => println!("{v}"),
        Some("json") => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"clientVersion": info}))?
        ),
        Some("yaml") => print!(
            "{}",
            crate::manifests::to_yaml(&serde_json::json!({"clientVersion": info}))?
        ),
        Some(o) => bail!(
            "error: unable to match a printer suitable for the output format {o:?}, allowed formats are: json,yaml,short"
        ),
    }
    Ok(())
}

pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn config_cmd(cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Validate { config, .. } => {
            let text = util::read_to_string(&config)?;
            let v = kubeadm_version()?;
            let docs = crate::config::parse_documents_for(&text, v)?;
            for w in &docs.warnings {
                eprintln!("{w}");
            }
            if docs.join.is_some() && docs.init.is_none() && docs.cluster.is_none() {
                join::validate_join_config(
                    docs.join
                        .as_ref()
                        .ok_or_else(|| anyhow!("no JoinConfiguration"))?,
                )?;
            } else {
                crate::config::effective_init(docs, v)?;
            }
            println!("ok");
            Ok(())
        }
        ConfigCmd::Images { cmd } => images_cmd(cmd),
    }
}

/// The images kubeadm uses for a cluster configuration, with the simulator binary (if any)
/// that stands in for each in the kubelet package.
fn images(
    cfg: &crate::config::ClusterConfiguration,
    kubeadm: KubeVersion,
) -> Result<Vec<(String, Option<&'static str>)>> {
    let v = KubeVersion::parse(&cfg.kubernetes_version)?;
    Ok(crate::images::control_plane_images(cfg, v, kubeadm))
}

fn images_cmd(cmd: ImagesCmd) -> Result<()> {
    let (a, pull) = match cmd {
        ImagesCmd::List(a) => (a, false),
        ImagesCmd::Pull(a) => (a, true),
    };
    let kv = kubeadm_version()?;
    let (mut cluster, cri) = match &a.config {
        Some(path) => {
            let docs = crate::config::parse_documents_for(&util::read_to_string(path)?, kv)?;
            let cri = docs
                .init
                .as_ref()
                .and_then(|i| i.node_registration.cri_endpoint());
            (docs.cluster.unwrap_or_default(), cri)
        }
        None => (crate::config::ClusterConfiguration::default(), None),
    };
    if let Some(v) = &a.kubernetes_version {
        cluster.kubernetes_version = v.clone();
    }
    if let Some(r) = &a.image_repository {
        cluster.image_repository = r.clone();
    }
    cluster.default_fields(kv);
    cluster.validate(kv)?;
    let list = images(&cluster, kv)?;
    if !pull {
        for (img, _) in list {
            println!("{img}");
        }
        return Ok(());
    }
    let cri = match a.cri_socket.or(cri) {
        Some(c) => c,
        None => crate::cri::detect()?,
    };
    crate::cri::answers(&cri)
        .map_err(|e| anyhow!("failed to create new CRI image service: {e:#}"))?;
    for (img, binary) in list {
        // The lab's "images" are the simulator binaries the kubelet package ships.
        if let Some(b) = binary
            && !p(paths::IMAGES_DIR).join(b).exists()
        {
            bail!(
                "failed to pull image {img:?}: {} is missing (reinstall the kubelet package)",
                p(paths::IMAGES_DIR).join(b).display()
            );
        }
        println!("[config/images] Pulled {img}");
    }
    Ok(())
}

fn certs_cmd(cmd: CertsCmd) -> Result<()> {
    let dir = |d: Option<PathBuf>| d.unwrap_or_else(|| p(paths::PKI_DIR));
    match cmd {
        CertsCmd::CheckExpiration { cert_dir, .. } => certs::check_expiration(&dir(cert_dir)),
        CertsCmd::Renew {
            which, cert_dir, ..
        } => certs::renew(&dir(cert_dir), &which, crate::pki::YEAR),
    }
}

/// Phase selection for `--skip-phases`; skipping a parent skips its children.
pub struct Phases {
    skip: Vec<String>,
}

impl Phases {
    pub fn new(skip: &[String], known: &[&str]) -> Result<Self> {
        for s in skip {
            if !known
                .iter()
                .any(|k| k == s || k.starts_with(&format!("{s}/")))
            {
                bail!("invalid phase name: {s}");
            }
        }
        Ok(Self {
            skip: skip.to_vec(),
        })
    }

    pub fn run(&self, phase: &str) -> bool {
        !self
            .skip
            .iter()
            .any(|s| phase == s || phase.starts_with(&format!("{s}/")))
    }
}

/// `systemctl restart kubelet`, warning (not failing) like kubeadm when systemd refuses.
pub fn start_kubelet() {
    println!("[kubelet-start] Starting the kubelet");
    if let Err(e) = util::systemctl(&["restart", "kubelet"]) {
        eprintln!("[kubelet-start] WARNING: unable to start the kubelet service: [{e:#}]");
        eprintln!("[kubelet-start] Please ensure kubelet is reloaded and running manually.");
    }
}

/// Writes /var/lib/kubelet/config.yaml from the cluster-wide KubeletConfiguration.
pub fn write_kubelet_config(kubelet_cfg: &Map<String, Value>) -> Result<()> {
    let cfg = p(paths::KUBELET_CONFIG);
    let mut local = kubelet_cfg.clone();
    // The cluster-wide configuration names paths as every node sees them; SIM_ROOT (tests)
    // relocates them on this node.
    if let Some(Value::String(sp)) = local.get("staticPodPath").cloned() {
        local.insert("staticPodPath".into(), Value::String(paths::s(&sp)));
    }
    if let Some(Value::String(ca)) = local
        .get("authentication")
        .and_then(|a| a.pointer("/x509/clientCAFile"))
        .cloned()
        && let Some(x) = local
            .get_mut("authentication")
            .and_then(|a| a.pointer_mut("/x509/clientCAFile"))
    {
        *x = Value::String(paths::s(&ca));
    }
    println!(
        "[kubelet-start] Writing kubelet configuration to file {:?}",
        cfg.display().to_string()
    );
    write_file(
        &cfg,
        crate::manifests::to_yaml(&Value::Object(local))?,
        0o644,
    )
}

/// Writes /var/lib/kubelet/config.yaml and kubeadm-flags.env.
pub fn write_kubelet_files(kubelet_cfg: &Map<String, Value>, flags_env: &str) -> Result<()> {
    write_kubelet_config(kubelet_cfg)?;
    let env = p(paths::KUBELET_FLAGS_ENV);
    println!(
        "[kubelet-start] Writing kubelet environment file with flags to file {:?}",
        env.display().to_string()
    );
    write_file(&env, flags_env, 0o644)
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(every);
    }
}

pub fn kubelet_healthz_port(kubelet_cfg: &Map<String, Value>) -> u16 {
    kubelet_cfg
        .get("healthzPort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(10248)
}

/// kubeadm's wait for a healthy kubelet at http://127.0.0.1:10248/healthz.
pub fn wait_kubelet(port: u16, timeout: Duration) -> Result<()> {
    println!(
        "[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:{port}/healthz. This can take up to {}",
        fmt_duration(timeout)
    );
    let agent = crate::kube::agent(ureq::tls::TlsConfig::default(), Duration::from_secs(3));
    let start = Instant::now();
    let ok = wait_for(
        timeout,
        Duration::from_millis(500),
        || matches!(agent.get(&format!("http://127.0.0.1:{port}/healthz")).call(), Ok(r) if r.status().as_u16() == 200),
    );
    if !ok {
        bail!(
            "The kubelet is not healthy after {}\n\nUnfortunately, an error has occurred, likely caused by:\n\t- The kubelet is not running\n\t- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)\n\nIf you are on a systemd-powered system, you can try to troubleshoot the error with the following commands:\n\t- 'systemctl status kubelet'\n\t- 'journalctl -xeu kubelet'",
            fmt_duration(timeout)
        );
    }
    println!(
        "[kubelet-check] The kubelet is healthy after {}",
        fmt_duration(start.elapsed())
    );
    Ok(())
}

pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

pub fn timeout_of(
    t: Option<&crate::config::Timeouts>,
    pick: fn(&crate::config::Timeouts) -> &Option<String>,
    default: Duration,
) -> Result<Duration> {
    match t.and_then(|t| pick(t).as_deref()) {
        Some(s) => util::parse_duration(s),
        None => Ok(default),
    }
}

pub const FOUR_MINUTES: Duration = Duration::from_secs(240);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_phase_names_are_refused_and_parents_skip_children() {
        let known = ["preflight", "certs/ca", "certs/apiserver", "addon/coredns"];
        assert!(Phases::new(&["bogus".into()], &known).is_err());
        let p = Phases::new(&["certs".into(), "addon/coredns".into()], &known).unwrap();
        assert!(!p.run("certs/ca"));
        assert!(!p.run("addon/coredns"));
        assert!(p.run("preflight"));
    }
}
