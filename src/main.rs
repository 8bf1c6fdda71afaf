//! The `installer` command line: parse, load the inventory, dispatch to a pipeline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use installer::cluster::{self, Ctx, Options};
use installer::inventory::{self, LoadError};
use installer::ui::{OutputMode, Redactor, Reporter};

/// Brings up a highly available Kubernetes cluster on bare-metal hosts over SSH.
#[derive(Parser)]
#[command(name = "installer", version, about, propagate_version = true)]
struct Cli {
    /// The inventory file (see inventory/hosts.yaml).
    #[arg(short, long, global = true, env = "INSTALLER_INVENTORY")]
    inventory: Option<PathBuf>,
    /// Output format: progress and tables, or one JSON event per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: OutputMode,
    /// Show every task, not only changes and failures.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Use playbooks from this directory instead of the embedded ones.
    #[arg(long, global = true, value_name = "DIR")]
    playbooks: Option<PathBuf>,
    /// How many hosts to work on at once.
    #[arg(long, global = true, default_value_t = 10)]
    forks: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Preflight every host (root, OS, CPU/RAM, swap, ports, unique identities, network,
    /// VIP); prints one row per host. Changes nothing.
    Check,
    /// Show, per host, what `up` (or another verb) would do and what it would skip.
    /// Changes nothing.
    Plan {
        #[command(subcommand)]
        verb: Option<PlanVerb>,
    },
    /// Bring up (or converge) the cluster described by the inventory. Safe to re-run.
    Up {
        /// Remove addons the inventory switched off (without it they are only reported).
        #[arg(long)]
        prune: bool,
    },
    /// Check the running cluster (nodes, etcd, the API through the endpoint and on every
    /// master), then deploy a small test workload, check it runs on workers only, remove it.
    Verify,
    /// Nodes, etcd members and health, the VIP holder and API health per master.
    Status,
    /// Write the admin kubeconfig (server = the VIP) to FILE, or print it.
    Kubeconfig {
        #[arg(short, long, value_name = "FILE")]
        output_file: Option<PathBuf>,
    },
    /// Tear the cluster down on every host (kubeadm reset, VIP, load balancer, CNI config).
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Also remove the Kubernetes packages.
        #[arg(long)]
        purge: bool,
    },
    /// Take one node out of the cluster: drain it, remove its etcd member (a master), reset
    /// its host, update haproxy/keepalived on the other masters, delete the Node. Refuses what
    /// would lose etcd's quorum or the last master. Safe to re-run.
    RemoveNode(RemoveNodeArgs),
    /// Addons (Weave Net, Rook-Ceph, the dashboard) on a running cluster.
    Addons {
        #[command(subcommand)]
        action: AddonsAction,
    },
    /// Upgrade the cluster to a newer Kubernetes: preflight (skew rules, etcd, nodes Ready),
    /// then one minor per step, control plane first, nodes drained and upgraded in turn.
    /// Resumes where an interrupted run stopped.
    Upgrade {
        /// The exact version to reach, e.g. 1.37.1.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to: semver::Version,
        /// Workers drained and upgraded at once (masters always go one at a time).
        #[arg(long, default_value_t = 1, value_name = "N")]
        max_unavailable: usize,
        /// Seconds `kubectl drain` may take per node before the upgrade stops.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        drain_timeout: u64,
    },
    /// A short-lived login token for the dashboard and the port-forward command to reach it.
    Dashboard,
    /// etcd snapshots: back up, restore (disaster recovery).
    Etcd {
        #[command(subcommand)]
        action: EtcdAction,
    },
    /// Certificates kubeadm manages: expiry, renewal, rotation of the cluster's CAs.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
    /// Print the installer version.
    Version,
    /// Run one playbook (a directory holding main.yaml, or that file) on every host, with no
    /// facts gathered; used by bench/ to time the SSH and playbook engine.
    #[command(hide = true)]
    RunPlaybook {
        #[arg(value_name = "PLAYBOOK")]
        playbook: PathBuf,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The verbs `plan` can dry-run; `installer plan` alone plans `up`.
#[derive(Subcommand)]
enum PlanVerb {
    /// What `up` would do (the default).
    Up {
        /// Plan `up --prune`: addons the inventory switched off would be removed.
        #[arg(long)]
        prune: bool,
    },
    /// What `upgrade --to VERSION` would do: the chain of steps and, per host, each task.
    Upgrade {
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to: semver::Version,
        #[arg(long, default_value_t = 1, value_name = "N")]
        max_unavailable: usize,
    },
    /// What `remove-node NODE` would do.
    RemoveNode(RemoveNodeArgs),
    /// What `etcd backup` would do.
    EtcdBackup {
        #[arg(short, long, value_name = "FILE")]
        output_file: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        keep: usize,
    },
    /// What `etcd restore FILE` would do (checks the file and reads every master's member).
    EtcdRestore { file: PathBuf },
    /// What `certs renew` would do.
    CertsRenew,
    /// What `certs rotate-ca` would do (and, for an interrupted rotation, what is left).
    CertsRotateCa,
    /// What `run-playbook PLAYBOOK` would do.
    #[command(hide = true)]
    RunPlaybook {
        #[arg(value_name = "PLAYBOOK")]
        playbook: PathBuf,
    },
}

fn parse_version(text: &str) -> Result<semver::Version, String> {
    cluster::phases::parse_upgrade_target(text)
}

#[derive(clap::Args)]
struct RemoveNodeArgs {
    /// The node's name (it may already be deleted from the inventory).
    node: String,
    /// Go on when the drain times out or the host cannot be reached (then it is not reset).
    #[arg(long)]
    force: bool,
    /// Seconds the drain may take (PodDisruptionBudgets can hold evictions back).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    drain_timeout: u64,
}

impl RemoveNodeArgs {
    fn options(&self) -> cluster::RemoveNodeOptions {
        cluster::RemoveNodeOptions {
            node: self.node.clone(),
            force: self.force,
            drain_timeout_secs: self.drain_timeout,
        }
    }
}

#[derive(Subcommand)]
enum EtcdAction {
    /// Snapshot etcd from a healthy member, verify it, keep it (with its sha256) in the state
    /// directory's etcd-backups/ (the newest --keep), and copy it to -o FILE.
    Backup {
        #[arg(short, long, value_name = "FILE")]
        output_file: Option<PathBuf>,
        /// How many backups the state directory keeps.
        #[arg(long, default_value_t = 5)]
        keep: usize,
    },
    /// Rebuild etcd on every master from FILE (FILE.sha256 must be beside it): control plane
    /// stopped, data directories set aside and restored, control plane started, waited for.
    Restore {
        file: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum CertsAction {
    /// Expiry of every kubeadm certificate and kubeconfig per master; exit 1 when one
    /// expires within --warn-days.
    Check {
        #[arg(long, default_value_t = 30)]
        warn_days: i64,
    },
    /// kubeadm certs renew all, one master at a time, its control plane restarted before
    /// the next; the admin kubeconfig refreshed.
    Renew,
    /// Rotate the cluster's CAs (Kubernetes, front-proxy, etcd): new CAs trusted beside the
    /// old ones everywhere, then signing every certificate (kubeadm's, the kubelets'), then
    /// trusted alone; masters one at a time with the API up through the VIP; every
    /// Deployment, DaemonSet and StatefulSet restarted once both CAs are trusted. Run it
    /// again to finish an interrupted rotation.
    RotateCa,
}

#[derive(Subcommand)]
enum AddonsAction {
    /// Apply the inventory's addons (pinned, checksummed) and wait until they are ready.
    Apply {
        /// Remove addons the inventory switched off (without it they are only reported).
        #[arg(long)]
        prune: bool,
    },
}

const EXIT_FAILED: u8 = 1;
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Version => {
            println!("installer {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "installer",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let Some(path) = cli.inventory.clone() else {
        eprintln!("error: this command needs an inventory: installer -i inventory/hosts.yaml ...");
        return ExitCode::from(EXIT_INVALID);
    };
    let loaded = match inventory::load(&path) {
        Ok(l) => l,
        Err(LoadError::Invalid(e)) => {
            match cli.output {
                OutputMode::Json => println!("{}", e.json_lines()),
                OutputMode::Text => eprintln!("{e}"),
            }
            return ExitCode::from(EXIT_INVALID);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let redactor = Redactor::new();
    installer::ui::diagnostics::init(cli.verbose, redactor.clone());
    let reporter = Reporter::new(cli.output, redactor, cli.verbose > 0);
    for w in &loaded.warnings {
        reporter.warn(w.clone());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let options = Options {
        forks: cli.forks,
        playbooks: cli.playbooks.clone(),
    };
    let mut ctx = match Ctx::new(loaded.inventory, reporter.clone(), &options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let started = std::time::Instant::now();
    let code = runtime.block_on(dispatch(&cli.command, &mut ctx));
    reporter.finish();
    reporter.end_run(started.elapsed());
    code
}

async fn dispatch(command: &Command, ctx: &mut Ctx) -> ExitCode {
    let result = match command {
        Command::Check => cluster::check(ctx).await,
        Command::Plan { verb } => match verb {
            None => cluster::plan(ctx, false).await,
            Some(PlanVerb::Up { prune }) => cluster::plan(ctx, *prune).await,
            Some(PlanVerb::Upgrade {
                to,
                max_unavailable,
            }) => {
                let options = cluster::UpgradeOptions {
                    to: to.clone(),
                    max_unavailable: *max_unavailable,
                    drain_timeout: 0,
                };
                cluster::plan_upgrade(ctx, &options).await
            }
            Some(PlanVerb::RemoveNode(args)) => {
                cluster::plan_remove_node(ctx, &args.options()).await
            }
            Some(PlanVerb::EtcdBackup { output_file, keep }) => {
                cluster::plan_etcd_backup(ctx, output_file.as_deref(), *keep).await
            }
            Some(PlanVerb::EtcdRestore { file }) => cluster::plan_etcd_restore(ctx, file).await,
            Some(PlanVerb::CertsRenew) => cluster::plan_certs_renew(ctx).await,
            Some(PlanVerb::CertsRotateCa) => cluster::plan_certs_rotate_ca(ctx).await,
            Some(PlanVerb::RunPlaybook { playbook }) => plan_run_playbook(ctx, playbook).await,
        },
        Command::Up { prune } => cluster::up(ctx, *prune).await,
        Command::Verify => cluster::verify(ctx).await,
        Command::Status => cluster::status(ctx).await,
        Command::Kubeconfig { output_file } => {
            cluster::kubeconfig(ctx, output_file.as_deref()).await
        }
        Command::Reset { yes, purge } => cluster::reset(ctx, *yes, *purge).await,
        Command::RemoveNode(args) => cluster::remove_node(ctx, &args.options()).await,
        Command::Dashboard => cluster::dashboard(ctx).await,
        Command::Upgrade {
            to,
            max_unavailable,
            drain_timeout,
        } => {
            let options = cluster::UpgradeOptions {
                to: to.clone(),
                max_unavailable: *max_unavailable,
                drain_timeout: *drain_timeout,
            };
            cluster::upgrade(ctx, &options).await
        }
        Command::Addons {
            action: AddonsAction::Apply { prune },
        } => cluster::addons::apply(ctx, *prune).await,
        Command::Etcd { action } => match action {
            EtcdAction::Backup { output_file, keep } => {
                cluster::etcd_backup(ctx, output_file.as_deref(), *keep).await
            }
            EtcdAction::Restore { file, yes } => cluster::etcd_restore(ctx, file, *yes).await,
        },
        Command::Certs { action } => match action {
            CertsAction::Check { warn_days } => cluster::certs_check(ctx, *warn_days).await,
            CertsAction::Renew => cluster::certs_renew(ctx).await,
            CertsAction::RotateCa => cluster::certs_rotate_ca(ctx).await,
        },
        Command::RunPlaybook { playbook } => cluster::run_playbook(ctx, playbook).await,
        Command::Version | Command::Completions { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ctx.reporter.finish();
            let message = format!("error: {e}");
            eprintln!("{}", ctx.reporter.redactor().redact(&message));
            eprintln!("logs: {}", ctx.logs.dir().display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn plan_run_playbook(
    ctx: &mut Ctx,
    playbook: &std::path::Path,
) -> Result<(), cluster::PhaseError> {
    use cluster::phases::RunPlaybook;
    let phase = RunPlaybook::new(playbook).map_err(|m| cluster::PhaseError::new("Plan", m))?;
    cluster::plan_verb(ctx, &cluster::run_playbook::phases(&phase)).await
}
