//! The admin kubeconfig, written to the state directory (0600) with the server set to the
//! control-plane endpoint, so it keeps working when any one master is down.

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::probe::probe_text;

pub struct Kubeconfig;

impl Phase for Kubeconfig {
    fn title(&self) -> &'static str {
        "Kubeconfig"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let path = write_admin_kubeconfig(ctx)
                .await
                .map_err(|m| PhaseError::new(self.title(), m))?;
            ctx.reporter
                .info(format!("admin kubeconfig: {}", path.display()));
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let path = ctx.inventory.state_dir().join("kubeconfig");
            let step = format!("write the admin kubeconfig to {}", path.display());
            let current = match ctx.leader() {
                Ok(_) => fetch_admin_kubeconfig(ctx).await.ok(),
                Err(_) => None,
            };
            let local = std::fs::read_to_string(&path).ok();
            Ok(vec![match (current, local) {
                (Some(want), Some(have)) if want == have => {
                    PlannedStep::skip(phase, "-", step, "up to date")
                }
                _ => PlannedStep::change(phase, "-", step),
            }])
        })
    }
}

/// admin.conf from the leader, pointed at the control-plane endpoint.
async fn fetch_admin_kubeconfig(ctx: &Ctx) -> Result<String, String> {
    let leader = ctx.leader()?;
    let admin = probe_text(ctx, "admin-kubeconfig", &leader, &json!({}))
        .await
        .map_err(|e| format!("cannot read admin.conf: {e}"))?;
    let server = format!("https://{}", ctx.inventory.cluster.control_plane.endpoint());
    point_at(&admin, &server)
        .ok_or_else(|| format!("admin.conf on {} has no server line", leader.name))
}

/// Fetches admin.conf from the leader, points it at the endpoint, writes it if it differs.
pub async fn write_admin_kubeconfig(ctx: &Ctx) -> Result<std::path::PathBuf, String> {
    let text = fetch_admin_kubeconfig(ctx).await?;
    let path = ctx.inventory.state_dir().join("kubeconfig");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(path);
    }
    crate::local_fs::write_atomic(&path, text.as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Replaces every cluster's `server:` with `server`.
fn point_at(kubeconfig: &str, server: &str) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = kubeconfig
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server:") {
            Some(_) => {
                found = true;
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}server: {server}")
            }
            None => l.to_string(),
        })
        .collect();
    found.then(|| lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_is_pointed_at_the_endpoint() {
        let conf = "clusters:\n- cluster:\n    certificate-authority-data: AAA\n    server: https://10.0.0.11:6443\n  name: c\n";
        let out = super::point_at(conf, "https://10.0.0.100:8443").unwrap();
        assert!(
            out.contains("    server: https://10.0.0.100:8443\n"),
            "{out}"
        );
        assert!(!out.contains("10.0.0.11:6443"));
        assert!(super::point_at("clusters: []\n", "x").is_none());
    }
}
