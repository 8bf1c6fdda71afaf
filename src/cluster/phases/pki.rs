//! PKI: the cluster's CAs and service-account keys are made once (or recovered from a master
//! when the local state directory was lost), kept in `.installer/<cluster>/pki/`, and the
//! eight shared files pushed to every master. A fresh bootstrap token is minted per run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::prepare_hosts::planned_tasks;
use crate::cluster::probe::{ProbeError, probe_many};
use crate::inventory::Host;
use crate::pki::{BootstrapToken, ClusterCa, SHARED_FILES};
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
            let reuse = Duration::from_secs(60 * ctx.defaults.bootstrap_token.reuse_minutes);
            let token = reuse_or_mint_token(&ctx.inventory.state_dir(), reuse).map_err(err)?;
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

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let err = |m: String| PhaseError::new(phase, m);
            let mut steps = Vec::new();
            match find_ca(ctx).await.map_err(err)? {
                CaSource::Local(ca) => ctx.ca = Some(ca),
                CaSource::Master(host, ca) => {
                    steps.push(PlannedStep::change(
                        phase,
                        &host,
                        "recover the cluster CAs from this master into the state directory",
                    ));
                    ctx.ca = Some(ca);
                }
                CaSource::None => {
                    for m in ctx.usable(Host::is_master) {
                        steps.push(PlannedStep::change(
                            phase,
                            &m.name,
                            "lay down the 8 shared CA files (new cluster CAs)",
                        ));
                    }
                    return Ok(steps);
                }
            }
            let files = ctx.shared_files_json().map_err(err)?;
            let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
            let targets = ctx.targets(&masters, &json!({"pki": files}));
            let playbook = ctx.playbooks.load("pki").map_err(|e| err(e.to_string()))?;
            let reports =
                crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Plan)).await;
            steps.extend(planned_tasks(phase, &reports));
            Ok(steps)
        })
    }
}

/// Where the cluster's CAs come from on this run.
enum CaSource {
    /// The state directory next to the inventory.
    Local(ClusterCa),
    /// A master (the state directory was lost).
    Master(String, ClusterCa),
    /// Nowhere yet: a new cluster.
    None,
}

async fn find_ca(ctx: &Ctx) -> Result<CaSource, String> {
    let dir = ctx.inventory.state_dir().join("pki");
    if dir.join("ca.crt").exists() {
        return ClusterCa::load(&dir)
            .map(CaSource::Local)
            .map_err(|e| e.to_string());
    }
    Ok(match recover_from_masters(ctx).await? {
        Some((host, ca)) => CaSource::Master(host, ca),
        None => CaSource::None,
    })
}

/// Reuses our token while it has a safe margin of its cluster lifetime left, so re-runs
/// create nothing; else mints a new one (kept 0600).
fn reuse_or_mint_token(state_dir: &Path, reuse: Duration) -> Result<BootstrapToken, String> {
    let path = state_dir.join("bootstrap-token");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < reuse);
    if fresh
        && let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(token) = BootstrapToken::parse(&text)
    {
        return Ok(token);
    }
    let token = BootstrapToken::generate();
    let secret = token.to_secret_string();
    crate::local_fs::write_atomic(&path, secret.expose_secret().as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

/// The local copy if there is one, else the masters' (a lost state directory), else new CAs.
async fn obtain(ctx: &Ctx) -> Result<ClusterCa, String> {
    let dir = ctx.inventory.state_dir().join("pki");
    match find_ca(ctx).await? {
        CaSource::Local(ca) => Ok(ca),
        CaSource::Master(master, ca) => {
            ca.save(&dir).map_err(|e| e.to_string())?;
            ctx.reporter.info(format!(
                "recovered the cluster CAs from {master} into {}",
                dir.display()
            ));
            Ok(ca)
        }
        CaSource::None => {
            let ca = ClusterCa::generate().map_err(|e| e.to_string())?;
            ca.save(&dir).map_err(|e| e.to_string())?;
            ctx.reporter
                .info(format!("generated the cluster CAs in {}", dir.display()));
            Ok(ca)
        }
    }
}

/// Shared CA files read back from a master: base64 contents by path.
type CaFiles = BTreeMap<String, String>;
type DecodedFile = (String, Zeroizing<Vec<u8>>);

/// The `pki-recover` probe's answer: shared files present on a master, base64 by path.
#[derive(Debug, Deserialize)]
struct MasterCaFiles {
    files: BTreeMap<String, String>,
}

async fn recover_from_masters(ctx: &Ctx) -> Result<Option<(String, ClusterCa)>, String> {
    let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
    let vars = json!({"shared_files": SHARED_FILES});
    let answers = probe_many::<MasterCaFiles>(ctx, "pki-recover", &masters, &vars).await;
    let found = answers
        .into_iter()
        .map(|(host, answer)| (host, answer.map(|a| a.files)))
        .collect();
    choose_recovery(found)
}

/// What the masters hold decides: one master with all eight files is the source; none with
/// any means a new cluster; a master we could not read, or one with only some of the files,
/// stops the run — new CAs beside an old cluster would split it in two.
fn choose_recovery(
    found: Vec<(String, Result<CaFiles, ProbeError>)>,
) -> Result<Option<(String, ClusterCa)>, String> {
    let mut partial = Vec::new();
    for (host, files) in found {
        let files = files.map_err(|e| {
            format!("cannot tell whether the masters already hold cluster CAs: {e}; fix access to that master and run again")
        })?;
        match files.len() {
            0 => continue,
            n if n == SHARED_FILES.len() => {
                let decoded = decode_files(&host, files)?;
                return match ClusterCa::from_files(decoded) {
                    Ok(ca) => Ok(Some((host, ca))),
                    Err(e) => Err(format!("the CA files on {host} are unusable: {e}")),
                };
            }
            n => partial.push(format!("{host} has {n} of the {}", SHARED_FILES.len())),
        }
    }
    if partial.is_empty() {
        Ok(None)
    } else {
        Err(format!(
            "some masters hold part of an existing cluster's CA files ({}); restore them or run `installer reset`",
            partial.join(", ")
        ))
    }
}

fn decode_files(host: &str, files: BTreeMap<String, String>) -> Result<Vec<DecodedFile>, String> {
    use base64::Engine;
    files
        .into_iter()
        .map(|(path, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map(|bytes| (path.clone(), Zeroizing::new(bytes)))
                .map_err(|e| format!("{path} read from {host} is not base64: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(host: &str) -> Result<CaFiles, ProbeError> {
        Err(ProbeError::Failed {
            host: host.into(),
            playbook: "pki-recover".into(),
            why: "task 'Read the shared CA files' failed: exit 1: sudo: a password is required"
                .into(),
        })
    }

    #[test]
    fn unreadable_master_stops_pki_with_that_host_named() {
        let found = vec![
            ("master-1".into(), Ok(BTreeMap::new())),
            ("master-2".into(), unreadable("master-2")),
        ];
        let e = choose_recovery(found).unwrap_err();
        assert!(e.contains("master-2") && e.contains("sudo"), "{e}");
    }

    #[test]
    fn masters_without_ca_files_mean_a_new_cluster() {
        let found = vec![("master-1".into(), Ok(BTreeMap::new()))];
        assert!(choose_recovery(found).unwrap().is_none());
    }

    #[test]
    fn partial_ca_files_refuse_to_generate_new_ones() {
        let mut some = BTreeMap::new();
        some.insert("ca.crt".to_string(), "AAAA".to_string());
        let e = choose_recovery(vec![("master-3".into(), Ok(some))]).unwrap_err();
        assert!(e.contains("master-3 has 1 of the 8"), "{e}");
    }

    #[test]
    fn complete_ca_files_are_recovered() {
        let ca = ClusterCa::generate().unwrap();
        use base64::Engine;
        let files: BTreeMap<String, String> = ca
            .files()
            .iter()
            .map(|f| {
                (
                    f.path.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(f.contents()),
                )
            })
            .collect();
        let (host, back) = choose_recovery(vec![("master-1".into(), Ok(files))])
            .unwrap()
            .unwrap();
        assert_eq!(host, "master-1");
        assert_eq!(back.discovery_hash().unwrap(), ca.discovery_hash().unwrap());
    }
}
