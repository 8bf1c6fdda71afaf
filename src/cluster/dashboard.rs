//! `installer dashboard`: a short-lived login token for the dashboard's admin account and the
//! port-forward command that reaches the dashboard through the admin kubeconfig.

use super::{Ctx, PhaseError, connect_to_leader, kube};
use crate::inventory::DashboardKind;

/// How long a printed login token is valid.
const TOKEN_DURATION: &str = "1h";

pub async fn dashboard(ctx: &mut Ctx) -> Result<(), PhaseError> {
    let err = |m: String| PhaseError::new("Dashboard", m);
    let d = ctx.inventory.addons.dashboard.clone();
    if !d.enabled {
        return Err(err(
            "the dashboard is off in the inventory (addons.dashboard.enabled)".into(),
        ));
    }
    if !d.admin {
        return Err(err("no admin account for the dashboard: set addons.dashboard.admin: true and run `installer addons apply`, or log in with a token of your own ServiceAccount".into()));
    }
    let (namespace, forward) = match d.kind {
        DashboardKind::Headlamp => ("kube-system", "service/headlamp 8080:80"),
        DashboardKind::KubernetesDashboard => (
            "kubernetes-dashboard",
            "service/kubernetes-dashboard 8443:443",
        ),
    };
    let leader = connect_to_leader(ctx).await?;
    let token = kube::kubectl(
        ctx,
        &leader,
        &[
            "-n",
            namespace,
            "create",
            "token",
            "installer-dashboard-admin",
            "--duration",
            TOKEN_DURATION,
        ],
    )
    .await
    .map_err(err)?;
    let kubeconfig = ctx.inventory.state_dir().join("kubeconfig");
    // Printing the token is what was asked for: deliberately not redacted.
    println!("login token (valid {TOKEN_DURATION}):\n{}\n", token.trim());
    println!(
        "reach the dashboard with:\n  kubectl --kubeconfig {} -n {namespace} port-forward {forward}\nthen open {}",
        kubeconfig.display(),
        if d.kind == DashboardKind::Headlamp {
            "http://localhost:8080/"
        } else {
            "https://localhost:8443/"
        }
    );
    Ok(())
}
