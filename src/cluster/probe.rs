//! The one way Rust reads what a playbook found on a host. A probe playbook is read-only
//! (`check:` tasks only) and its last task registers `result`: raw text for `probe_text`, one
//! JSON document (its last line) for `probe`, parsed into the caller's type. A probe that
//! cannot read fails with the host named; it never reads as "nothing there".

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Ctx;
use crate::inventory::Host;
use crate::playbook::Mode;

/// The register name every probe playbook's answer goes to.
pub const RESULT: &str = "result";

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("{host} is not connected")]
    NotConnected { host: String },
    #[error("{host}: {why}")]
    Load { host: String, why: String },
    #[error("{host}: {playbook} failed: {why}")]
    Failed {
        host: String,
        playbook: String,
        why: String,
    },
    #[error("{host}: {playbook} registered no `{RESULT}`")]
    NoResult { host: String, playbook: String },
    #[error("{host}: {playbook} answered something unexpected ({error})")]
    Malformed {
        host: String,
        playbook: String,
        error: String,
    },
}

impl ProbeError {
    pub fn host(&self) -> &str {
        match self {
            ProbeError::NotConnected { host }
            | ProbeError::Load { host, .. }
            | ProbeError::Failed { host, .. }
            | ProbeError::NoResult { host, .. }
            | ProbeError::Malformed { host, .. } => host,
        }
    }
}

/// Runs probe playbook `name` on `hosts` in parallel; per host (in order), its raw `result`.
pub async fn probe_text_many(
    ctx: &Ctx,
    name: &str,
    hosts: &[&Host],
    vars: &Value,
) -> Vec<(String, Result<String, ProbeError>)> {
    let playbook = match ctx.playbooks.load(name) {
        Ok(p) => p,
        Err(source) => {
            return hosts
                .iter()
                .map(|h| {
                    let e = ProbeError::Load {
                        host: h.name.clone(),
                        why: source.to_string(),
                    };
                    (h.name.clone(), Err(e))
                })
                .collect();
        }
    };
    let targets = ctx.targets(hosts, vars);
    let reports = crate::playbook::run(&playbook, targets, &ctx.run_options(Mode::Probe)).await;
    hosts
        .iter()
        .map(|h| {
            let result = match reports.iter().find(|r| r.host == h.name) {
                None => Err(ProbeError::NotConnected {
                    host: h.name.clone(),
                }),
                Some(r) => read_result(name, r),
            };
            (h.name.clone(), result)
        })
        .collect()
}

fn read_result(playbook: &str, r: &crate::playbook::HostReport) -> Result<String, ProbeError> {
    if let Some(why) = &r.failure {
        return Err(ProbeError::Failed {
            host: r.host.clone(),
            playbook: playbook.into(),
            why: why.to_string(),
        });
    }
    r.registered
        .get(RESULT)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ProbeError::NoResult {
            host: r.host.clone(),
            playbook: playbook.into(),
        })
}

/// Runs probe playbook `name` on `hosts`; per host, its JSON answer parsed as `T`.
pub async fn probe_many<T: DeserializeOwned>(
    ctx: &Ctx,
    name: &str,
    hosts: &[&Host],
    vars: &Value,
) -> Vec<(String, Result<T, ProbeError>)> {
    probe_text_many(ctx, name, hosts, vars)
        .await
        .into_iter()
        .map(|(host, text)| {
            let parsed = text.and_then(|t| parse_json(name, &host, &t));
            (host, parsed)
        })
        .collect()
}

/// One host's raw `result`.
pub async fn probe_text(
    ctx: &Ctx,
    name: &str,
    host: &Host,
    vars: &Value,
) -> Result<String, ProbeError> {
    let mut answers = probe_text_many(ctx, name, &[host], vars).await;
    answers.pop().map(|(_, r)| r).unwrap_or_else(|| {
        Err(ProbeError::NotConnected {
            host: host.name.clone(),
        })
    })
}

/// One host's JSON answer parsed as `T`.
pub async fn probe<T: DeserializeOwned>(
    ctx: &Ctx,
    name: &str,
    host: &Host,
    vars: &Value,
) -> Result<T, ProbeError> {
    let text = probe_text(ctx, name, host, vars).await?;
    parse_json(name, &host.name, &text)
}

/// The answer is the last non-empty line (tools may print warnings before it).
pub fn parse_json<T: DeserializeOwned>(
    playbook: &str,
    host: &str,
    text: &str,
) -> Result<T, ProbeError> {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).map_err(|e| ProbeError::Malformed {
        host: host.into(),
        playbook: playbook.into(),
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Answer {
        holds_vip: bool,
    }

    #[test]
    fn answer_is_the_last_json_line() {
        let a: Answer =
            parse_json("vip-check", "m1", "warning: x\n{\"holds_vip\": true}\n\n").expect("parses");
        assert_eq!(a, Answer { holds_vip: true });
    }

    #[test]
    fn malformed_answer_names_host_and_playbook() {
        let e = parse_json::<Answer>("vip-check", "master-2", "yes").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("master-2") && text.contains("vip-check"),
            "{text}"
        );
        assert_eq!(e.host(), "master-2");
    }
}
