//! `kubeadm upgrade plan|apply|node`: one minor version at a time, control plane first.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::time::Duration;

use super::join::fetch_cluster_config;
use super::kubeadm_version;
use crate::config::ClusterConfiguration;
use crate::kube::Kube;
use crate::paths::{self, p};
use crate::util::{KubeVersion, write_file};

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    #[command(subcommand)]
    cmd: UpgradeCmd,
}

#[derive(Subcommand, Debug)]
enum UpgradeCmd {
    /// Check which versions are available to upgrade to
    Plan {
        version: Option<String>,
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        #[arg(long = "ignore-preflight-errors", value_delimiter = ',')]
        ignore_preflight_errors: Vec<String>,
    },
    /// Upgrade your Kubernetes cluster to the specified version
    Apply {
        version: Option<String>,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        #[arg(short = 'f', long = "force")]
        force: bool,
        #[arg(long = "certificate-renewal", default_value_t = true, action = clap::ArgAction::Set)]
        certificate_renewal: bool,
        #[arg(long = "etcd-upgrade", default_value_t = true, action = clap::ArgAction::Set)]
        etcd_upgrade: bool,
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        #[arg(long = "ignore-preflight-errors", value_delimiter = ',')]
        ignore_preflight_errors: Vec<String>,
    },
    /// Upgrade commands for a node in the cluster
    Node {
        #[arg(long = "certificate-renewal", default_value_t = true, action = clap::ArgAction::Set)]
        certificate_renewal: bool,
        #[arg(long = "etcd-upgrade", default_value_t = true, action = clap::ArgAction::Set)]
        etcd_upgrade: bool,
        #[arg(long = "skip-phases", value_delimiter = ',')]
        skip_phases: Vec<String>,
        #[arg(long = "ignore-preflight-errors", value_delimiter = ',')]
        ignore_preflight_errors: Vec<String>,
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
}

/// Errors from kubeadm's version policy: mandatory ones cannot be forced.
#[derive(Debug, Default)]
pub struct Policy {
    pub mandatory: Vec<String>,
    pub skippable: Vec<String>,
}

/// kubeadm's EnforceVersionPolicies (cmd/kubeadm/app/phases/upgrade/policy.go), for released
/// versions: at most one minor up or down per run (mandatory), never a minor above kubeadm's
/// (mandatory), a patch above kubeadm's or a kubeadm of a newer minor than the target
/// (skippable with --force), kubelets more than MaximumAllowedMinorVersionKubeletSkew (3 since
/// 1.28) minors behind the target (skippable).
pub fn version_policy(
    target: KubeVersion,
    cluster: KubeVersion,
    kubeadm: KubeVersion,
    kubelets: &[KubeVersion],
) -> Policy {
    const UPGRADE_SKEW: u64 = 1;
    const DOWNGRADE_SKEW: u64 = 1;
    const KUBELET_SKEW: u64 = 3;
    let mut p = Policy::default();
    if target.minor > cluster.minor + UPGRADE_SKEW {
        p.mandatory.push(format!("Specified version to upgrade to {:?} is too high; kubeadm can upgrade only {UPGRADE_SKEW} minor version at a time", target.to_string()));
    }
    if target.minor + DOWNGRADE_SKEW < cluster.minor {
        p.mandatory.push(format!("Specified version to downgrade to {:?} is too low; kubeadm can downgrade only {DOWNGRADE_SKEW} minor version at a time", target.to_string()));
    }
    if kubeadm < target {
        if target.minor > kubeadm.minor {
            p.mandatory.push(format!("Specified version to upgrade to {:?} is at least one minor release higher than the kubeadm minor release ({} > {}). Such an upgrade is not supported", target.to_string(), target.minor, kubeadm.minor));
        } else {
            p.skippable.push(format!("Specified version to upgrade to {:?} is higher than the kubeadm version {:?}. Upgrade kubeadm first using the tool you used to install kubeadm", target.to_string(), kubeadm.to_string()));
        }
    }
    if kubeadm.major > target.major || kubeadm.minor > target.minor {
        p.skippable.push(format!(
            "Kubeadm version {} can only be used to upgrade to Kubernetes version {}.{}",
            kubeadm, kubeadm.major, kubeadm.minor
        ));
    }
    let too_old: Vec<String> = kubelets
        .iter()
        .filter(|k| target.minor > k.minor + KUBELET_SKEW)
        .map(|k| k.to_string())
        .collect();
    if !too_old.is_empty() {
        p.skippable.push(format!(
            "There are kubelets in this cluster that are too old that have these versions [{}]",
            too_old.join(" ")
        ));
    }
    p
}

/// Every node's kubelet version, as the API reports it.
fn kubelet_versions(kube: &Kube) -> Result<Vec<KubeVersion>> {
    let nodes = kube.get("/api/v1/nodes")?.into_result("listing nodes")?;
    Ok(nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["status"]["nodeInfo"]["kubeletVersion"].as_str())
        .filter_map(|v| KubeVersion::parse(v).ok())
        .collect())
}

/// CheckClusterHealth (cmd/kubeadm/app/phases/upgrade/health.go) without CreateJob (the
/// simulated cluster runs no Jobs): every control-plane Node Ready, every control-plane
/// static pod manifest on disk. Both honour --ignore-preflight-errors.
fn cluster_health(kube: &Kube, ignore: &[String]) -> Result<()> {
    use crate::preflight::{Check, Finding};
    println!("[upgrade] Running cluster health checks");
    let nodes = kube
        .get("/api/v1/nodes?labelSelector=node-role.kubernetes.io%2Fcontrol-plane")?
        .into_result(
            "could not list nodes labeled with \"node-role.kubernetes.io/control-plane\"",
        )?;
    let not_ready: Vec<String> = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] != "True")
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<String> = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .iter()
    .map(|c| p(paths::MANIFESTS_DIR).join(format!("{c}.yaml")))
    .filter(|f| !f.exists())
    .map(|f| f.display().to_string())
    .collect();
    let finding = |errors: Vec<String>| Finding {
        warnings: vec![],
        errors,
    };
    let nodes_finding = if not_ready.is_empty() {
        vec![]
    } else {
        vec![format!(
            "there are NotReady control-planes in the cluster: [{}]",
            not_ready.join(" ")
        )]
    };
    let manifests_finding = if missing.is_empty() {
        vec![]
    } else {
        vec![format!(
            "The control plane seems to be Static Pod-hosted, but some of the manifests don't seem to exist on disk. This probably means you're running 'kubeadm upgrade' on a remote machine, which is not supported for a Static Pod-hosted cluster. Manifest files not found: [{}]",
            missing.join(" ")
        )]
    };
    crate::preflight::run(
        vec![
            Check::new("ControlPlaneNodesReady", move || {
                finding(nodes_finding.clone())
            }),
            Check::new("StaticPodManifest", move || {
                finding(manifests_finding.clone())
            }),
        ],
        ignore,
    )
    .context("[upgrade/health] FATAL")
}

fn enforce(p: &Policy, force: bool) -> Result<()> {
    let mut errs = p.mandatory.clone();
    if !force {
        errs.extend(p.skippable.iter().cloned());
    }
    if errs.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = errs.iter().map(|e| format!("\t- {e}")).collect();
    let hint = if p.mandatory.is_empty() {
        "\n\nCan be bypassed if you pass the --force flag"
    } else {
        ""
    };
    bail!(
        "[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n{}{hint}",
        list.join("\n")
    )
}

pub fn run(a: UpgradeArgs) -> Result<()> {
    let kv = kubeadm_version()?;
    match a.cmd {
        UpgradeCmd::Plan {
            version,
            ignore_preflight_errors,
            ..
        } => plan(
            kv,
            version,
            &crate::preflight::ignore_set(&ignore_preflight_errors)?,
        ),
        UpgradeCmd::Apply {
            version,
            yes,
            force,
            certificate_renewal,
            etcd_upgrade,
            ignore_preflight_errors,
            ..
        } => {
            let v = version.ok_or_else(|| {
                anyhow!("missing one or more required arguments. Required arguments: [version]")
            })?;
            upgrade_preflight(&ignore_preflight_errors)?;
            let ignore = crate::preflight::ignore_set(&ignore_preflight_errors)?;
            apply(
                kv,
                &v,
                yes,
                force,
                certificate_renewal,
                etcd_upgrade,
                &ignore,
            )
        }
        UpgradeCmd::Node {
            certificate_renewal,
            etcd_upgrade,
            ignore_preflight_errors,
            ..
        } => {
            upgrade_preflight(&ignore_preflight_errors)?;
            node(kv, certificate_renewal, etcd_upgrade)
        }
    }
}

/// RunRootCheckOnly and RunUpgradeChecks (SystemVerification). The cgroups validator is given
/// the installed kubelet's version with the minor raised by one: the kubelet is expected to be
/// upgraded next (kubernetes/kubernetes#134744).
fn upgrade_preflight(ignore: &[String]) -> Result<()> {
    let ignore = crate::preflight::ignore_set(ignore)?;
    println!("[upgrade/preflight] Running preflight checks");
    let next = crate::preflight::installed_kubelet_version()
        .ok()
        .map(|k| KubeVersion {
            minor: k.minor + 1,
            ..k
        });
    crate::preflight::run(
        vec![
            crate::preflight::privileged_user(),
            crate::preflight::system_verification(next),
        ],
        &ignore,
    )
    .context("error execution phase preflight")
}

fn admin() -> Result<Kube> {
    let conf = p(paths::ADMIN_CONF);
    Kube::from_kubeconfig(&conf).with_context(|| {
        format!(
            "couldn't create a Kubernetes client from file {:?}",
            conf.display().to_string()
        )
    })
}

fn plan(kv: KubeVersion, version: Option<String>, ignore: &[String]) -> Result<()> {
    let kube = admin()?;
    println!("[preflight] Running pre-flight checks.");
    cluster_health(&kube, ignore)?;
    println!(
        "[upgrade/config] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"..."
    );
    let (cluster, _) = fetch_cluster_config(&kube, kv)?;
    let current = KubeVersion::parse(&cluster.kubernetes_version)?;
    let target = match version {
        Some(v) => KubeVersion::parse(&v)?,
        None => kv,
    };
    println!("[upgrade] Fetching available versions to upgrade to");
    println!("[upgrade/versions] Cluster version: {current}");
    println!("[upgrade/versions] kubeadm version: {kv}");
    if target <= current {
        println!("\nAwesome, you're up-to-date! Enjoy!");
        return Ok(());
    }
    enforce(
        &version_policy(target, current, kv, &kubelet_versions(&kube)?),
        false,
    )?;
    println!("[upgrade/versions] Target version: {target}\n");
    let nodes = kube.get("/api/v1/nodes")?.into_result("listing nodes")?;
    println!(
        "Components that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':"
    );
    println!("{:<26}{:<20}{:<12}TARGET", "COMPONENT", "NODE", "CURRENT");
    for n in nodes["items"].as_array().into_iter().flatten() {
        let name = n["metadata"]["name"].as_str().unwrap_or_default();
        let kubelet = n["status"]["nodeInfo"]["kubeletVersion"]
            .as_str()
            .unwrap_or("unknown");
        println!("{:<26}{:<20}{:<12}{target}", "kubelet", name, kubelet);
    }
    println!(
        "\nUpgrade to the latest version in the v{}.{} series:\n",
        target.major, target.minor
    );
    println!("{:<26}{:<20}{:<12}TARGET", "COMPONENT", "NODE", "CURRENT");
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        println!("{:<26}{:<20}{:<12}{target}", c, "", current.to_string());
    }
    println!(
        "\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply {target}\n"
    );
    Ok(())
}

fn apply(
    kv: KubeVersion,
    version: &str,
    yes: bool,
    force: bool,
    renew: bool,
    etcd_upgrade: bool,
    ignore: &[String],
) -> Result<()> {
    let target = KubeVersion::parse(version)
        .map_err(|_| anyhow!("[upgrade/version] FATAL: invalid version {version:?}"))?;
    let kube = admin()?;
    println!(
        "[upgrade] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"..."
    );
    let (mut cluster, kubelet_cfg) = fetch_cluster_config(&kube, kv)?;
    cluster_health(&kube, ignore)?;
    let current = KubeVersion::parse(&cluster.kubernetes_version)?;
    println!(
        "[upgrade/version] You have chosen to change the cluster version to {target:?}",
        target = target.to_string()
    );
    println!("[upgrade/versions] Cluster version: {current}");
    println!("[upgrade/versions] kubeadm version: {kv}");
    enforce(
        &version_policy(target, current, kv, &kubelet_versions(&kube)?),
        force,
    )?;
    if !yes && !force {
        super::reset::confirm("[upgrade] Are you sure you want to proceed?")?;
    }
    upgrade_local_control_plane(&cluster, target, renew, etcd_upgrade)?;
    cluster.kubernetes_version = target.to_string();
    println!(
        "[upgrade/config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace"
    );
    let kubelet_yaml = crate::manifests::to_yaml(&Value::Object(kubelet_cfg.clone()))?;
    super::objects::apply_all(
        &kube,
        &super::objects::upload_config(&cluster.to_yaml()?, &kubelet_yaml),
    )?;
    write_local_kubelet_config(&kubelet_cfg)?;
    upgrade_kube_proxy(&kube, &cluster, target)?;
    println!(
        "\n[upgrade] SUCCESS! A control plane node of your cluster was upgraded to {:?}.\n",
        target.to_string()
    );
    println!(
        "[upgrade] Now please proceed with upgrading the rest of the nodes by following the right order."
    );
    Ok(())
}

fn node(kv: KubeVersion, renew: bool, etcd_upgrade: bool) -> Result<()> {
    let apiserver_manifest = p(paths::MANIFESTS_DIR).join("kube-apiserver.yaml");
    if apiserver_manifest.exists() {
        let kube = admin()?;
        println!(
            "[upgrade] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"..."
        );
        let (cluster, kubelet_cfg) = fetch_cluster_config(&kube, kv)?;
        let target = KubeVersion::parse(&cluster.kubernetes_version)?;
        if kv.minor < target.minor {
            bail!(
                "the kubeadm version {:?} is lower than the cluster version {:?}: upgrade the kubeadm package on this node first",
                kv.to_string(),
                target.to_string()
            );
        }
        println!(
            "[upgrade] Upgrading your Static Pod-hosted control plane instance to version {:?}...",
            target.to_string()
        );
        upgrade_local_control_plane(&cluster, target, renew, etcd_upgrade)?;
        write_local_kubelet_config(&kubelet_cfg)?;
    } else {
        let kube = Kube::from_kubeconfig(&p(paths::KUBELET_CONF))?;
        println!("[upgrade] Skipping phase. Not a control plane node.");
        let kcm = kube
            .get("/api/v1/namespaces/kube-system/configmaps/kubelet-config")?
            .into_result("unable to fetch the kubelet-config ConfigMap")?;
        let kyaml = kcm["data"]["kubelet"]
            .as_str()
            .ok_or_else(|| anyhow!("the kubelet-config ConfigMap has no \"kubelet\" key"))?;
        let cfg: serde_json::Map<String, Value> =
            serde_saphyr::from_str(kyaml).map_err(|e| anyhow!("invalid kubelet-config: {e}"))?;
        write_local_kubelet_config(&cfg)?;
    }
    println!("[upgrade] The configuration for this node was successfully upgraded!");
    println!(
        "[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager."
    );
    Ok(())
}

fn write_local_kubelet_config(cfg: &serde_json::Map<String, Value>) -> Result<()> {
    super::write_kubelet_config(cfg)
}

/// Rewrites the control-plane manifests' image tags, then waits for the kubelet to restart
/// the API server at the new version.
fn upgrade_local_control_plane(
    cluster: &ClusterConfiguration,
    target: KubeVersion,
    renew: bool,
    etcd_upgrade: bool,
) -> Result<()> {
    let dir = p(paths::MANIFESTS_DIR);
    if renew {
        println!("[upgrade/staticpods] Renewing the control-plane certificates");
        super::certs::renew(&cluster.cert_dir(), "all", crate::pki::YEAR)?;
    }
    if etcd_upgrade && dir.join("etcd.yaml").exists() {
        upgrade_etcd(cluster, target, &dir.join("etcd.yaml"))?;
    }
    let mut endpoint = None;
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let file = dir.join(format!("{c}.yaml"));
        let text = crate::util::read_to_string(&file)?;
        let mut pod: Value = serde_saphyr::from_str(&text)
            .map_err(|e| anyhow!("parsing {}: {e}", file.display()))?;
        let image = pod["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let repo = image
            .rsplit_once(':')
            .map(|(r, _)| r.to_string())
            .unwrap_or(image);
        pod["spec"]["containers"][0]["image"] = Value::String(format!("{repo}:{target}"));
        if c == "kube-apiserver" {
            endpoint = pod["metadata"]["annotations"]["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"]
                .as_str()
                .map(str::to_string);
        }
        println!(
            "[upgrade/staticpods] Moving new manifest to {:?}",
            file.display().to_string()
        );
        write_file(&file, crate::manifests::to_yaml(&pod)?, 0o600)?;
    }
    let endpoint = endpoint.ok_or_else(|| {
        anyhow!("kube-apiserver.yaml has no advertise-address endpoint annotation")
    })?;
    let kube = admin()?.with_server(&format!("https://{endpoint}"));
    println!("[upgrade/staticpods] Waiting for the kubelet to restart the component");
    let want = target.to_string();
    let ok = super::wait_for(
        Duration::from_secs(300),
        Duration::from_secs(1),
        || matches!(kube.get("/version"), Ok(r) if r.body["gitVersion"].as_str() == Some(want.as_str())),
    );
    if !ok {
        bail!(
            "[upgrade/staticpods] the kube-apiserver at {endpoint} did not come back at version {want} within 5m0s; the previous manifests are not restored by the simulator"
        );
    }
    println!("[upgrade/staticpods] Component \"kube-apiserver\" upgraded successfully!");
    Ok(())
}

/// The etcd image tag moves to the table's tag for the target minor (never backwards), then
/// the member must answer again.
fn upgrade_etcd(
    cluster: &ClusterConfiguration,
    target: KubeVersion,
    file: &std::path::Path,
) -> Result<()> {
    let text = crate::util::read_to_string(file)?;
    let mut pod: Value =
        serde_saphyr::from_str(&text).map_err(|e| anyhow!("parsing {}: {e}", file.display()))?;
    let image = pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some((repo, current)) = image.rsplit_once(':') else {
        return Ok(());
    };
    let desired = crate::images::etcd_image_tag(cluster, target);
    if desired == current || tag_older(&desired, current) {
        println!(
            "[upgrade/etcd] Etcd does not need an upgrade: the image tag {current} is current"
        );
        return Ok(());
    }
    println!("[upgrade/staticpods] Preparing for \"etcd\" upgrade");
    pod["spec"]["containers"][0]["image"] = Value::String(format!("{repo}:{desired}"));
    println!(
        "[upgrade/staticpods] Moving new manifest to {:?}",
        file.display().to_string()
    );
    write_file(file, crate::manifests::to_yaml(&pod)?, 0o600)?;
    println!("[upgrade/etcd] Waiting for etcd to become available");
    let etcd = crate::etcd::Etcd::new(
        vec!["https://127.0.0.1:2379".into()],
        &cluster.cert_dir(),
        "etcd/healthcheck-client",
    )?;
    // Let the kubelet notice the change and restart the member first.
    std::thread::sleep(Duration::from_secs(2));
    if !super::wait_for(Duration::from_secs(120), Duration::from_secs(1), || {
        etcd.healthy("https://127.0.0.1:2379")
    }) {
        bail!("[upgrade/etcd] failed to upgrade etcd: etcd did not become available within 2m0s");
    }
    Ok(())
}

/// Whether etcd image tag `a` is older than `b` (numeric major.minor.patch).
fn tag_older(a: &str, b: &str) -> bool {
    let parse = |t: &str| -> Vec<u64> {
        t.split('-')
            .next()
            .unwrap_or(t)
            .split('.')
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    parse(a) < parse(b)
}

fn upgrade_kube_proxy(
    kube: &Kube,
    cluster: &ClusterConfiguration,
    target: KubeVersion,
) -> Result<()> {
    if cluster.proxy.disabled {
        return Ok(());
    }
    let path = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy";
    let r = kube.get(path)?;
    if r.status == 404 {
        return Ok(());
    }
    let mut ds = r.into_result("reading the kube-proxy DaemonSet")?;
    ds["spec"]["template"]["spec"]["containers"][0]["image"] =
        Value::String(format!("{}/kube-proxy:{target}", cluster.image_repository));
    kube.put(path, &ds)?
        .into_result("updating the kube-proxy DaemonSet")?;
    println!("[addons] Applied essential addon: kube-proxy");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    #[test]
    fn skipping_a_minor_version_is_refused_even_with_force() {
        let p = version_policy(v("1.38.0"), v("1.36.2"), v("1.38.0"), &[]);
        assert!(
            p.mandatory
                .iter()
                .any(|e| e.contains("only 1 minor version at a time")),
            "{p:?}"
        );
        assert!(enforce(&p, true).is_err());
    }

    #[test]
    fn upgrading_past_the_kubeadm_minor_is_refused_even_with_force() {
        let p = version_policy(v("1.37.1"), v("1.36.2"), v("1.36.2"), &[]);
        assert!(
            p.mandatory.iter().any(|e| e.contains(
                "at least one minor release higher than the kubeadm minor release (37 > 36)"
            )),
            "{p:?}"
        );
        assert!(enforce(&p, true).is_err());
    }

    #[test]
    fn a_two_minor_downgrade_is_refused_and_a_one_minor_one_needs_force_with_a_newer_kubeadm() {
        let p = version_policy(v("1.34.0"), v("1.36.2"), v("1.36.2"), &[]);
        assert!(
            enforce(&p, true)
                .unwrap_err()
                .to_string()
                .contains("kubeadm can downgrade only 1 minor version at a time")
        );
        let p = version_policy(v("1.35.0"), v("1.36.2"), v("1.36.2"), &[]);
        let e = enforce(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("can only be used to upgrade to Kubernetes version 1.36"),
            "{e}"
        );
        assert!(enforce(&p, true).is_ok());
    }

    #[test]
    fn a_kubeadm_of_a_newer_minor_than_the_target_needs_force() {
        // Upstream compares kubeadm's minor with the target's, not with the target's + 1.
        let p = version_policy(v("1.36.2"), v("1.36.1"), v("1.37.1"), &[]);
        assert!(enforce(&p, false).is_err(), "{p:?}");
        assert!(enforce(&p, true).is_ok());
    }

    #[test]
    fn kubelets_more_than_three_minors_behind_the_target_need_force() {
        let p = version_policy(
            v("1.37.1"),
            v("1.36.2"),
            v("1.37.1"),
            &[v("1.33.0"), v("1.36.2")],
        );
        assert_eq!(
            p.skippable,
            [
                "There are kubelets in this cluster that are too old that have these versions [v1.33.0]"
            ]
        );
        let p = version_policy(v("1.37.1"), v("1.36.2"), v("1.37.1"), &[v("1.34.0")]);
        assert!(enforce(&p, false).is_ok(), "{p:?}");
    }

    #[test]
    fn next_minor_within_the_kubeadm_version_is_allowed() {
        let p = version_policy(v("1.37.1"), v("1.36.2"), v("1.37.1"), &[v("1.36.2")]);
        assert!(enforce(&p, false).is_ok(), "{p:?}");
    }

    #[test]
    fn patch_newer_than_kubeadm_needs_force() {
        let p = version_policy(v("1.37.2"), v("1.37.0"), v("1.37.1"), &[]);
        assert!(enforce(&p, false).is_err());
        assert!(enforce(&p, true).is_ok());
    }
}
