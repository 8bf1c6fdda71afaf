//! `installer certs check` (expiry of every kubeadm certificate and kubeconfig per master,
//! one table; exit 1 when one expires within --warn-days) and `installer certs renew`
//! (kubeadm certs renew all, one master at a time, control plane restarted before the next;
//! the admin kubeconfig in the state directory refreshed) and `installer certs rotate-ca`
//! (new Kubernetes, front-proxy and etcd CAs: trusted beside the old ones, then signing, then
//! alone).

use super::ca_rotation::Stage;
use super::phases::{
    CaRotationStage, CertRow, CertsCheck, CertsRenew, Connect, FinishCaRotation, GatherFacts,
    Kubeconfig, RestartWorkloads, StartCaRotation, cert_residual,
};
use super::{Ctx, Phase, PhaseError, connect_to_leader, plan_verb, run_phases};

pub async fn certs_check(ctx: &mut Ctx, warn_days: i64) -> Result<(), PhaseError> {
    run_phases(ctx, &[&Connect, &GatherFacts]).await?;
    let check = CertsCheck::default();
    run_phases(ctx, &[&check]).await?;
    let rows = check.rows();
    ctx.reporter.print(&render(&rows));
    ctx.reporter
        .print_json(&serde_json::json!({"certs": rows, "warn_days": warn_days}));
    let soon = expiring(&rows, warn_days);
    let unreachable = ctx.failed_hosts();
    if !soon.is_empty() {
        return Err(PhaseError::new(
            "Certificate expiry",
            format!(
                "{} expire(s) within {warn_days} days: {}; run `installer certs renew` (a CA: `installer certs rotate-ca`)",
                soon.len(),
                soon.join(", ")
            ),
        ));
    }
    if !unreachable.is_empty() {
        let names: Vec<String> = unreachable.into_iter().map(|(h, _)| h).collect();
        return Err(PhaseError::new(
            "Certificate expiry",
            format!("not read: {} (unreachable)", names.join(", ")),
        ));
    }
    Ok(())
}

/// `host/cert` of every row expiring within `warn_days` days.
fn expiring(rows: &[CertRow], warn_days: i64) -> Vec<String> {
    rows.iter()
        .filter(|r| r.days_left < warn_days)
        .map(|r| format!("{}/{}", r.host, r.cert))
        .collect()
}

fn render(rows: &[CertRow]) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.cert.clone(),
                r.expires.clone(),
                cert_residual(r.days_left),
            ]
        })
        .collect();
    super::table::render(&["HOST", "CERT", "EXPIRES", "RESIDUAL"], &cells)
}

fn renew_phases() -> [&'static dyn Phase; 2] {
    [&CertsRenew, &Kubeconfig]
}

pub async fn certs_renew(ctx: &mut Ctx) -> Result<(), PhaseError> {
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    connect_to_leader(ctx).await?;
    run_phases(ctx, &renew_phases()).await?;
    ctx.reporter.print(
        "certificates renewed on every master; `installer certs check` shows the new expiry",
    );
    ctx.reporter
        .print_json(&serde_json::json!({"certs_renew": "ok"}));
    Ok(())
}

pub async fn plan_certs_renew(ctx: &mut Ctx) -> Result<(), PhaseError> {
    connect_to_leader(ctx).await?;
    plan_verb(ctx, &renew_phases()).await
}

/// The rotation of the cluster's CAs, in order. Each stage visits the masters one at a time (control
/// plane restarted out of haproxy's rotation, then the kubelet), then the workers' kubelets.
/// The admin kubeconfig is refreshed after each stage: it must trust both CAs before any API
/// server serves a certificate of the new one, and carry a new client certificate before the
/// old CA is dropped.
fn rotate_ca_phases() -> [&'static dyn Phase; 9] {
    [
        &StartCaRotation,
        &CaRotationStage(Stage::Trust),
        &Kubeconfig,
        &RestartWorkloads,
        &CaRotationStage(Stage::Sign),
        &Kubeconfig,
        &CaRotationStage(Stage::Drop),
        &FinishCaRotation,
        &Kubeconfig,
    ]
}

pub async fn certs_rotate_ca(ctx: &mut Ctx) -> Result<(), PhaseError> {
    let _lock = super::lock::lock_cluster(ctx).map_err(|m| PhaseError::new("Lock", m))?;
    connect_to_leader(ctx).await?;
    run_phases(ctx, &rotate_ca_phases()).await?;
    ctx.reporter.print(
        "the cluster's CAs are rotated: every certificate and kubeconfig is signed by and trusts the new CAs alone; `installer certs check` shows the new expiry",
    );
    ctx.reporter
        .print_json(&serde_json::json!({"certs_rotate_ca": "ok"}));
    Ok(())
}

pub async fn plan_certs_rotate_ca(ctx: &mut Ctx) -> Result<(), PhaseError> {
    connect_to_leader(ctx).await?;
    plan_verb(ctx, &rotate_ca_phases()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cert: &str, days: i64) -> CertRow {
        CertRow {
            host: "master-1".into(),
            cert: cert.into(),
            expires: "-".into(),
            days_left: days,
        }
    }

    #[test]
    fn only_rows_inside_the_window_are_named() {
        let rows = [
            row("apiserver", 364),
            row("admin.conf", 29),
            row("ca (CA)", 3650),
        ];
        assert_eq!(expiring(&rows, 30), ["master-1/admin.conf"]);
        assert!(expiring(&rows, 0).is_empty());
        assert_eq!(expiring(&rows, 100000).len(), 3);
    }
}
