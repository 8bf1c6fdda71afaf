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
    /// Show, per host, what `up` would do and what it would skip. Changes nothing.
    Plan,
    /// Bring up (or converge) the cluster described by the inventory. Safe to re-run.
    Up,
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
    /// Print the installer version.
    Version,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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
            eprintln!("{e}");
            return ExitCode::from(EXIT_INVALID);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let reporter = Reporter::new(cli.output, Redactor::new(), cli.verbose > 0);
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
            eprintln!("error: cannot create the state directory next to the inventory: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = runtime.block_on(dispatch(&cli.command, &mut ctx));
    reporter.finish();
    code
}

async fn dispatch(command: &Command, ctx: &mut Ctx) -> ExitCode {
    let reporter = ctx.reporter.clone();
    let result = match command {
        Command::Check => run_check(ctx).await,
        Command::Plan => run_plan(ctx).await,
        Command::Up => run_up(ctx).await,
        Command::Status => run_status(ctx).await,
        Command::Kubeconfig { output_file } => run_kubeconfig(ctx, output_file.as_deref()).await,
        Command::Reset { yes, purge } => run_reset(ctx, *yes, *purge).await,
        Command::Version | Command::Completions { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            reporter.finish();
            eprintln!(
                "{}",
                reporter.redactor().redact(&format!("error: {message}"))
            );
            eprintln!("logs: {}", ctx.logs.dir().display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn run_check(ctx: &mut Ctx) -> Result<(), String> {
    let verdicts = cluster::check(ctx).await.map_err(|e| e.to_string())?;
    ctx.reporter.print(&cluster::render_table(&verdicts));
    ctx.reporter
        .print_json(&serde_json::json!({"check": verdicts}));
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.verdict == cluster::phases::Verdict::Fail)
        .map(|v| v.host.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "preflight failed on {}; fix the reasons above and run check again",
            failed.join(", ")
        ))
    }
}

async fn run_plan(ctx: &mut Ctx) -> Result<(), String> {
    let planned = cluster::plan(ctx).await.map_err(|e| e.to_string())?;
    let rows: Vec<serde_json::Value> = planned
        .iter()
        .map(|p| serde_json::json!({"host": p.host, "phase": p.phase, "task": p.task, "run": p.skip.is_none(), "skip_reason": p.skip}))
        .collect();
    let mut text = String::new();
    let mut last_host = String::new();
    for p in &planned {
        if p.host != last_host {
            text.push_str(&format!("\n{}:\n", p.host));
            last_host = p.host.clone();
        }
        match &p.skip {
            None => text.push_str(&format!("  run   {}\n", p.task)),
            Some(why) => text.push_str(&format!("  skip  {} ({why})\n", p.task)),
        }
    }
    let would_run = planned.iter().filter(|p| p.skip.is_none()).count();
    text.push_str(&format!(
        "\n{would_run} task(s) would run, {} would be skipped. Nothing was changed.\n\
         (plan covers host preparation; the control-plane phases are not planned yet)",
        planned.len() - would_run
    ));
    ctx.reporter.print(text.trim_start());
    ctx.reporter.print_json(&serde_json::json!({"plan": rows}));
    Ok(())
}

/// One `up` or `reset` per cluster at a time: a lock file in the state directory.
fn lock_cluster(ctx: &Ctx) -> Result<std::fs::File, String> {
    let path = ctx.inventory.state_dir().join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another installer run holds {} for cluster {}; wait for it to finish",
            path.display(),
            ctx.inventory.cluster.name
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

async fn run_up(ctx: &mut Ctx) -> Result<(), String> {
    let _lock = lock_cluster(ctx)?;
    cluster::up(ctx).await.map_err(|e| e.to_string())?;
    let changed = ctx.reporter.changed_count();
    if changed == 0 {
        ctx.reporter.print("cluster is up to date: nothing changed");
    } else {
        ctx.reporter.print(&format!(
            "cluster is up ({changed} change(s)); kubeconfig: {}",
            ctx.inventory.state_dir().join("kubeconfig").display()
        ));
    }
    ctx.reporter
        .print_json(&serde_json::json!({"up": "ok", "changed": changed}));
    Ok(())
}

async fn run_status(ctx: &mut Ctx) -> Result<(), String> {
    let status = cluster::status(ctx).await.map_err(|e| e.to_string())?;
    ctx.reporter.print(&cluster::render_status(&status));
    ctx.reporter
        .print_json(&serde_json::json!({"status": status}));
    Ok(())
}

async fn run_kubeconfig(ctx: &mut Ctx, output: Option<&std::path::Path>) -> Result<(), String> {
    cluster::connect_to_leader(ctx)
        .await
        .map_err(|e| e.to_string())?;
    let path = cluster::phases::write_admin_kubeconfig(ctx).await?;
    match output {
        Some(dest) => {
            std::fs::copy(&path, dest)
                .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            ctx.reporter.print(&format!("wrote {}", dest.display()));
        }
        None => {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            // Printing credentials is what was asked for: bypass redaction deliberately.
            print!("{text}");
        }
    }
    Ok(())
}

async fn run_reset(ctx: &mut Ctx, yes: bool, purge: bool) -> Result<(), String> {
    if !yes {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            return Err(
                "reset destroys the cluster; run it on a terminal to confirm, or pass --yes".into(),
            );
        }
        eprint!(
            "This destroys cluster {} on {} host(s){}. Type the cluster name to confirm: ",
            ctx.inventory.cluster.name,
            ctx.inventory.hosts.len(),
            if purge {
                " and removes the Kubernetes packages"
            } else {
                ""
            }
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| e.to_string())?;
        if answer.trim() != ctx.inventory.cluster.name {
            return Err("not confirmed; nothing was changed".into());
        }
    }
    let _lock = lock_cluster(ctx)?;
    cluster::reset(ctx, purge)
        .await
        .map_err(|e| e.to_string())?;
    ctx.reporter
        .print("cluster reset; `installer up` builds it again");
    Ok(())
}
