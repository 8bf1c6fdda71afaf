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
    // A control-plane node whose join died before the etcd manifest was written still has its
    // (learner) member in etcd: kubeadm finds it by this node's peer URL, which the API
    // server's manifest gives.
    let apiserver_host = read_apiserver_host(&p(paths::MANIFESTS_DIR).join("kube-apiserver.yaml"));
    let peer = etcd_flags
        .as_ref()
        .and_then(|f| f.peer_url.clone())
        .or_else(|| {
            apiserver_host
                .as_ref()
                .map(|h| format!("https://{}", crate::config::host_port(h, 2380)))
        });
    let data_dir = etcd_flags
        .as_ref()
        .map(|f| f.data_dir.clone())
        .or_else(|| apiserver_host.as_ref().map(|_| s(paths::ETCD_DATA_DIR)));
    if phases.run("remove-etcd-member")
        && (etcd_flags.is_some() || peer.is_some())
        && let Err(e) = remove_member(
            &pki,
            etcd_flags.as_ref().map(|f| f.name.as_str()),
            peer.as_deref(),
            etcd_flags.is_some(),
        )
    {
        eprintln!(
            "[reset] Failed to remove etcd member: {e:#}. Please manually remove this etcd member using etcdctl"
        );
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
        if let Some(data_dir) = &data_dir {
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

/// What reset needs from the local etcd static pod.
struct EtcdFlags {
    name: String,
    data_dir: String,
    peer_url: Option<String>,
}

fn container_command(manifest: &Path) -> Option<(serde_json::Value, Vec<String>)> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let pod: serde_json::Value = serde_saphyr::from_str(&text).ok()?;
    let cmd = pod["spec"]["containers"][0]["command"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Some((pod, cmd))
}

/// `--name`, `--data-dir` and the peer URL of the local etcd static pod.
fn read_etcd_flags(manifest: &Path) -> Option<EtcdFlags> {
    let (_, cmd) = container_command(manifest)?;
    let flag = |n: &str| {
        cmd.iter()
            .find_map(|a| a.strip_prefix(&format!("--{n}=")).map(str::to_string))
    };
    Some(EtcdFlags {
        name: flag("name")?,
        data_dir: flag("data-dir").unwrap_or_else(|| s(paths::ETCD_DATA_DIR)),
        peer_url: flag("initial-advertise-peer-urls")
            .map(|u| u.split(',').next().unwrap_or_default().to_string()),
    })
}

/// This node's advertise address, from the API server manifest's kubeadm annotation.
fn read_apiserver_host(manifest: &Path) -> Option<String> {
    let (pod, _) = container_command(manifest)?;
    let ep = pod["metadata"]["annotations"]
        ["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"]
        .as_str()?;
    crate::config::split_host_port(ep, 6443)
        .ok()
        .map(|(h, _)| h)
}

/// RemoveStackedEtcdMemberFromCluster: find this node's member by peer URL (else by name) and
/// remove it, unless it is the only member.
fn remove_member(pki: &Path, name: Option<&str>, peer: Option<&str>, local: bool) -> Result<()> {
    let mut endpoints = vec![];
    if local {
        endpoints.push("https://127.0.0.1:2379".to_string());
    }
    // The other members, through the API (the etcd pods' annotations), as kubeadm does.
    if let Ok(admin) = crate::kube::Kube::from_kubeconfig(&p(paths::ADMIN_CONF))
        && let Ok(eps) = super::join::etcd_endpoints(&admin)
    {
        endpoints.extend(eps);
    }
    if endpoints.is_empty() {
        bail!("no etcd endpoint known: neither a local etcd manifest nor admin.conf");
    }
    let etcd = Etcd::new(endpoints.clone(), pki, "etcd/healthcheck-client")?;
    let members = etcd.member_list()?;
    let me = members
        .iter()
        .find(|m| peer.is_some_and(|p| m.peer_urls.iter().any(|u| u == p)))
        .or_else(|| name.and_then(|n| members.iter().find(|m| m.name == n)));
    let Some(me) = me else {
        println!("[reset] No etcd member for this node found; nothing to remove");
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
    others.extend(endpoints);
    let etcd = Etcd::new(others, pki, "etcd/healthcheck-client")?;
    etcd.member_remove(me.id)?;
    println!(
        "[reset] Removed etcd member {:x}{} from the cluster",
        me.id,
        if me.is_learner { " (a learner)" } else { "" }
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
