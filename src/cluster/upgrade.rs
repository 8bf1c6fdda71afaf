//! `installer upgrade --to VERSION`: the cluster to a newer Kubernetes, read top to bottom.
//! Preflight changes nothing and refuses an unsafe upgrade; a jump of several minors becomes
//! a chain of steps, one minor each, as kubeadm demands. Every task is guarded by what is on
//! the hosts (kubeadm's version, the static pods' tags, the kubelets' versions), so a run
//! that was interrupted is finished by running the same command again.

use semver::Version;

use super::phases::{
    Connect, GatherFacts, UpgradeControlPlane, UpgradeKubeadm, UpgradeKubelets, UpgradePreflight,
};
use super::{Ctx, Defaults, Phase, PhaseError, PlannedStep, plan_phases, run_phases};

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub to: Version,
    /// Workers drained at once.
    pub max_unavailable: usize,
    /// Seconds `kubectl drain` may take per node.
    pub drain_timeout: u64,
}

/// One step of the chain: its phases, in order.
fn step_phases(
    step: &Version,
    options: &UpgradeOptions,
) -> (UpgradeKubeadm, UpgradeControlPlane, UpgradeKubelets) {
    (
        UpgradeKubeadm {
            version: step.clone(),
        },
        UpgradeControlPlane {
            version: step.clone(),
        },
        UpgradeKubelets {
            version: step.clone(),
            max_unavailable: options.max_unavailable,
            drain_timeout: options.drain_timeout,
        },
    )
}

pub async fn upgrade(ctx: &mut Ctx, options: &UpgradeOptions) -> Result<(), PhaseError> {
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    let preflight = UpgradePreflight::new(options.to.clone());
    run_phases(ctx, &[&Connect, &GatherFacts, &preflight]).await?;
    for step in preflight.chain() {
        enter_step(ctx, &step)?;
        ctx.reporter.info(format!("step: Kubernetes {step}"));
        let (kubeadm, control_plane, kubelets) = step_phases(&step, options);
        run_phases(ctx, &[&kubeadm, &control_plane, &kubelets]).await?;
    }
    let to = &options.to;
    let changed = ctx.reporter.changed_count();
    let inventory = ctx.inventory.source.display().to_string();
    if changed == 0 {
        ctx.reporter.print(&format!(
            "the cluster runs Kubernetes {to}: nothing changed"
        ));
    } else {
        ctx.reporter.print(&format!(
            "cluster upgraded to Kubernetes {to} ({changed} change(s))"
        ));
    }
    ctx.reporter.print(&format!(
        "set `cluster.kubernetes: {to}` in {inventory}: `installer up` refuses a cluster whose version differs from the inventory's; its next run moves the container runtime's pause image to the new minor's"
    ));
    ctx.reporter.print_json(
        &serde_json::json!({"upgrade": "ok", "to": to.to_string(), "changed": changed}),
    );
    Ok(())
}

/// `installer plan upgrade --to VERSION`: the chain and, per step, what each host would do.
pub async fn plan_upgrade(ctx: &mut Ctx, options: &UpgradeOptions) -> Result<(), PhaseError> {
    let preflight = UpgradePreflight::new(options.to.clone());
    let mut steps: Vec<PlannedStep> =
        plan_phases(ctx, &[&Connect, &GatherFacts, &preflight]).await?;
    for step in preflight.chain() {
        enter_step(ctx, &step)?;
        let (kubeadm, control_plane, kubelets) = step_phases(&step, options);
        let phases: [&dyn Phase; 3] = [&kubeadm, &control_plane, &kubelets];
        for mut s in plan_phases(ctx, &phases).await? {
            s.step = format!("[{step}] {}", s.step);
            steps.push(s);
        }
    }
    ctx.reporter.print(&super::render_plan(&steps));
    ctx.reporter
        .print_json(&serde_json::json!({ "plan": steps }));
    Ok(())
}

/// From here on the playbooks see the step's version, its minor's package repository and
/// defaults (what `up` would use with the inventory at that version).
fn enter_step(ctx: &mut Ctx, step: &Version) -> Result<(), PhaseError> {
    let err = |m: String| PhaseError::new("Upgrade step", m);
    let from = ctx.inventory.cluster.kubernetes.minor_string();
    let to = format!("{}.{}", step.major, step.minor);
    ctx.inventory.packages.kubernetes_repo =
        switch_repo(&ctx.inventory.packages.kubernetes_repo, &from, &to).map_err(err)?;
    ctx.defaults = Defaults::load(&ctx.playbooks, &to).map_err(err)?;
    ctx.inventory.cluster.kubernetes = crate::inventory::KubeVersion(step.clone());
    Ok(())
}

/// The package repository of minor `to`, from the inventory's of minor `from`: pkgs.k8s.io
/// and its mirrors have one repository per minor, named `v1.36` in the URL.
fn switch_repo(url: &str, from: &str, to: &str) -> Result<String, String> {
    let old = format!("/v{from}/");
    if from == to {
        return Ok(url.to_string());
    }
    if !url.contains(&old) {
        return Err(format!(
            "packages.kubernetesRepo ({url}) does not name the minor as `/v{from}/`, so the upgrade cannot switch it to {to}: write it with `{{minor}}` (e.g. https://pkgs.k8s.io/core:/stable:/v{{minor}}/deb/)"
        ));
    }
    Ok(url.replacen(&old, &format!("/v{to}/"), 1))
}

#[cfg(test)]
mod tests {
    use super::switch_repo;

    #[test]
    fn the_package_repository_follows_the_step_minor() {
        assert_eq!(
            switch_repo(
                "https://pkgs.k8s.io/core:/stable:/v1.36/{format}/",
                "1.36",
                "1.37"
            )
            .unwrap(),
            "https://pkgs.k8s.io/core:/stable:/v1.37/{format}/"
        );
        assert_eq!(
            switch_repo(
                "http://m/kubernetes/core:/stable:/v1.35/deb/",
                "1.36",
                "1.36"
            )
            .unwrap(),
            "http://m/kubernetes/core:/stable:/v1.35/deb/"
        );
        let e = switch_repo("http://mirror/k8s/", "1.36", "1.37").unwrap_err();
        assert!(e.contains("{minor}"), "{e}");
    }
}
