//! `kubeadm reset`: leave etcd, stop the kubelet and the static pods, and remove what
//! init/join wrote.

use anyhow::{Result, bail};
use clap::Args;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::etcd::Etcd;
use crate::paths::{self, p, s};

#[derive(Args, Debug)]
pub struct ResetArgs {
    /// Reset the node without prompting for confirmation.
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(long = "cri-socket")]
    cri_socket: Option<String>,
    #[arg(long = "cert-dir")]
    cert_dir: Option<PathBuf>,
    #[arg(long = "cleanup-tmp-dir")]
    cleanup_tmp_dir: bool,
    #[arg(long = "skip-phases", value_delimiter = ',')]
    skip_phases: Vec<String>,
    #[arg(long = "ignore-preflight-errors", value_delimiter = ',')]
    ignore_preflight_errors: Vec<String>,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// Asks `question [y/N]` on the terminal; anything but y/Y aborts.
pub fn confirm(question: &str) -> Result<()> {
    eprint!("{question} [y/N]: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y") {
        bail!("won't proceed; the user didn't answer (Y|y) in order to continue");
    }
    Ok(())
}

pub fn run(a: ResetArgs) -> Result<()> {
    if a.dry_run {
        bail!("--dry-run is not implemented by the lab simulator");
    }
    let phases = super::Phases::new(
        &a.skip_phases,
        &["preflight", "remove-etcd-member", "cleanup-node"],
    )?;
    let pki = a.cert_dir.clone().unwrap_or_else(|| p(paths::PKI_DIR));
    if !a.force {
        println!(
            "[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted."
        );
        confirm("[reset] Are you sure you want to proceed?")
            .map_err(|_| anyhow::anyhow!("aborted reset operation"))?;
    }
    let etcd_manifest = p(paths::MANIFESTS_DIR).join("etcd.yaml");
    let etcd_flags = read_etcd_flags(&etcd_manifest);
    if phases.run("remove-etcd-member")
        && let Some((name, data_dir)) = &etcd_flags
    {
        if let Err(e) = remove_member(&pki, name) {
            eprintln!(
                "[reset] Failed to remove etcd member: {e:#}. Please manually remove this etcd member using etcdctl"
            );
        }
        let _ = data_dir;
    }
    if phases.run("cleanup-node") {
        println!("[reset] Stopping the kubelet service");
        if let Err(e) = crate::util::systemctl(&["stop", "kubelet"]) {
            eprintln!("[reset] WARNING: {e:#}");
        }
        println!(
            "[reset] Unmounting mounted directories in {:?}",
            s(paths::KUBELET_DIR)
        );
        crate::kubelet::pods::stop_recorded();
        if let Some((_, data_dir)) = &etcd_flags {
            println!("[reset] Deleting contents of the stacked etcd data directory: {data_dir}");
            clean_dir(Path::new(data_dir));
        }
        let dirs = [p(paths::MANIFESTS_DIR), p(paths::KUBELET_DIR), pki.clone()];
        println!(
            "[reset] Deleting contents of directories: [{}]",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        for d in &dirs {
            clean_dir(d);
        }
        let files = [
            paths::ADMIN_CONF,
            paths::SUPER_ADMIN_CONF,
            paths::KUBELET_CONF,
            paths::BOOTSTRAP_KUBELET_CONF,
            paths::CONTROLLER_MANAGER_CONF,
            paths::SCHEDULER_CONF,
        ];
        println!(
            "[reset] Deleting files: [{}]",
            files.iter().map(|f| s(f)).collect::<Vec<_>>().join(" ")
        );
        for f in files {
            let _ = std::fs::remove_file(p(f));
        }
    }
    println!(
        "\nThe reset process does not perform cleanup of CNI plugin configuration,\nnetwork filtering rules and kubeconfig files.\n\nFor information on how to perform this cleanup manually, please see:\n    https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/\n"
    );
    Ok(())
}

/// `--name` and `--data-dir` of the local etcd static pod.
fn read_etcd_flags(manifest: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let pod: serde_json::Value = serde_saphyr::from_str(&text).ok()?;
    let cmd = pod["spec"]["containers"][0]["command"].as_array()?;
    let flag = |n: &str| {
        cmd.iter()
            .filter_map(|v| v.as_str())
            .find_map(|a| a.strip_prefix(&format!("--{n}=")).map(str::to_string))
    };
    Some((
        flag("name")?,
        flag("data-dir").unwrap_or_else(|| s(paths::ETCD_DATA_DIR)),
    ))
}

fn remove_member(pki: &Path, name: &str) -> Result<()> {
    let local = Etcd::new(
        vec!["https://127.0.0.1:2379".into()],
        pki,
        "etcd/healthcheck-client",
    )?;
    let members = local.member_list()?;
    let Some(me) = members.iter().find(|m| m.name == name) else {
        println!("[reset] No etcd member named {name:?} found; nothing to remove");
        return Ok(());
    };
    if members.len() == 1 {
        println!("[reset] This is the only member of the etcd cluster: not removing it");
        return Ok(());
    }
    // Ask the other members first: they stay in the cluster and can commit the removal.
    let mut others: Vec<String> = members
        .iter()
        .filter(|m| m.id != me.id)
        .flat_map(|m| m.client_urls.clone())
        .collect();
    others.push("https://127.0.0.1:2379".into());
    let etcd = Etcd::new(others, pki, "etcd/healthcheck-client")?;
    etcd.member_remove(me.id)?;
    println!(
        "[reset] Removed etcd member {name:?} ({:x}) from the cluster",
        me.id
    );
    Ok(())
}

fn clean_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let _ = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}
