//! The admin kubeconfig, written to the state directory (0600) with the server set to the
//! control-plane endpoint, so it keeps working when any one master is down.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::playbook::Mode;

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
}

/// Fetches admin.conf from the leader, points it at the endpoint, writes it if it differs.
pub async fn write_admin_kubeconfig(ctx: &Ctx) -> Result<std::path::PathBuf, String> {
    let leader = ctx.leader()?;
    let playbook = ctx
        .playbooks
        .load("admin-kubeconfig")
        .map_err(|e| e.to_string())?;
    let mut reports = crate::playbook::run(
        &playbook,
        ctx.targets(&[&leader], &json!({})),
        &ctx.run_options(Mode::Plan),
    )
    .await;
    let report = reports.pop().ok_or("no report")?;
    if let Some(why) = report.failure {
        return Err(format!("cannot read admin.conf on {}: {why}", leader.name));
    }
    let admin = report
        .registered
        .get("admin")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let server = format!("https://{}", ctx.inventory.cluster.control_plane.endpoint());
    let text = point_at(admin, &server)
        .ok_or_else(|| format!("admin.conf on {} has no server line", leader.name))?;
    let path = ctx.inventory.state_dir().join("kubeconfig");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(path);
    }
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, &text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
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
