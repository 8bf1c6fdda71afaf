//! PKI: the cluster's CAs and service-account keys are made once (or recovered from a master
//! when the local state directory was lost), kept in `.installer/<cluster>/pki/`, and the
//! eight shared files pushed to every master. A fresh bootstrap token is minted per run.

use secrecy::ExposeSecret;
use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::inventory::Host;
use crate::pki::{BootstrapToken, ClusterCa};
use crate::playbook::Mode;

pub struct Pki;

impl Phase for Pki {
    fn title(&self) -> &'static str {
        "Cluster PKI"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let ca = obtain(ctx).await.map_err(err)?;
            ctx.ca = Some(ca);
            let files = ctx.shared_files_json().map_err(err)?;
            let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
            let targets = ctx.targets(&masters, &json!({"pki": files}));
            ctx.apply("pki", targets).await.map_err(err)?;
            let token = reuse_or_mint_token(&ctx.inventory.state_dir()).map_err(err)?;
            ctx.reporter
                .redactor()
                .add_secret(token.to_secret_string().expose_secret());
            let hash = ctx
                .ca
                .as_ref()
                .map(|ca| ca.discovery_hash())
                .transpose()
                .map_err(|e| err(e.to_string()))?;
            ctx.discovery_hash = hash;
            ctx.token = Some(token);
            Ok(())
        })
    }
}

/// Tokens live 2h in the cluster; reuse ours for most of that, so re-runs create nothing.
const TOKEN_REUSE: std::time::Duration = std::time::Duration::from_secs(90 * 60);

fn reuse_or_mint_token(state_dir: &std::path::Path) -> Result<BootstrapToken, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join("bootstrap-token");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < TOKEN_REUSE);
    if fresh
        && let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(token) = BootstrapToken::parse(&text)
    {
        return Ok(token);
    }
    let token = BootstrapToken::generate();
    let tmp = path.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    file.write_all(token.to_secret_string().expose_secret().as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

/// The local copy if there is one, else the masters' (a lost state directory), else new CAs.
async fn obtain(ctx: &Ctx) -> Result<ClusterCa, String> {
    let dir = ctx.inventory.state_dir().join("pki");
    if dir.join("ca.crt").exists() {
        return ClusterCa::load(&dir).map_err(|e| e.to_string());
    }
    if let Some((master, ca)) = recover_from_masters(ctx).await? {
        ca.save(&dir).map_err(|e| e.to_string())?;
        ctx.reporter.info(format!(
            "recovered the cluster CAs from {master} into {}",
            dir.display()
        ));
        return Ok(ca);
    }
    let ca = ClusterCa::generate().map_err(|e| e.to_string())?;
    ca.save(&dir).map_err(|e| e.to_string())?;
    ctx.reporter
        .info(format!("generated the cluster CAs in {}", dir.display()));
    Ok(ca)
}

async fn recover_from_masters(ctx: &Ctx) -> Result<Option<(String, ClusterCa)>, String> {
    let playbook = ctx
        .playbooks
        .load("pki-recover")
        .map_err(|e| e.to_string())?;
    let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
    let reports = crate::playbook::run(
        &playbook,
        ctx.targets(&masters, &json!({})),
        &ctx.run_options(Mode::Plan),
    )
    .await;
    let mut partial = Vec::new();
    for r in reports {
        let text = r
            .registered
            .get("shared")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let files = split_files(text);
        match files.len() {
            0 => continue,
            8 => {
                return match ClusterCa::from_files(files) {
                    Ok(ca) => Ok(Some((r.host, ca))),
                    Err(e) => Err(format!("the CA files on {} are unusable: {e}", r.host)),
                };
            }
            n => partial.push(format!("{} has {n} of the 8", r.host)),
        }
    }
    if partial.is_empty() {
        Ok(None)
    } else {
        // Generating new CAs next to a half-present old cluster would split it in two.
        Err(format!(
            "some masters hold part of an existing cluster's CA files ({}); restore them or run `installer reset`",
            partial.join(", ")
        ))
    }
}

/// Parses `==> path` headers followed by file contents.
fn split_files(text: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("==> ") {
            files.push((path.trim().to_string(), String::new()));
        } else if let Some((_, body)) = files.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    files
}

#[cfg(test)]
mod tests {
    #[test]
    fn recovered_output_splits_into_files() {
        let files = super::split_files(
            "==> ca.crt\n-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n==> sa.pub\nB\n",
        );
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "ca.crt");
        assert!(files[0].1.ends_with("-----END CERTIFICATE-----\n"));
        assert_eq!(files[1], ("sa.pub".to_string(), "B\n".to_string()));
    }
}
