//! The state of a rotation of the cluster's CAs (`installer certs rotate-ca`): the current CA
//! set in `.installer/<cluster>/pki/`, the next one (three new CAs, the same service-account
//! keys) in `pki/next/` while the rotation runs, and what each stage lays down. Each host records the
//! stages it finished (`playbooks/ca-rotation`); the phases read them back and skip what is done.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Ctx, PhaseError};
use crate::pki::{CaKind, ClusterCa, ca_bundle};

/// In order: the new CA trusted beside the old, then signing, then the old CA dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Trust,
    Sign,
    Drop,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Trust, Stage::Sign, Stage::Drop];

    pub fn word(self) -> &'static str {
        match self {
            Stage::Trust => "trust",
            Stage::Sign => "sign",
            Stage::Drop => "drop",
        }
    }

    fn parse(word: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.word() == word)
    }
}

/// The current CA set and the next one.
pub struct Rotation {
    pub old: ClusterCa,
    pub next: ClusterCa,
    /// SHA-256 over the new CA certificates: what hosts record with their stage.
    pub fingerprint: String,
}

pub fn pki_dir(ctx: &Ctx) -> PathBuf {
    ctx.inventory.state_dir().join("pki")
}

pub fn next_dir(ctx: &Ctx) -> PathBuf {
    pki_dir(ctx).join("next")
}

/// `Some(message)` when a rotation was started and not finished: verbs that lay down
/// certificates or manifests (`up`, `upgrade`, `certs renew`) refuse to run meanwhile.
pub fn refuse_while_rotating(ctx: &Ctx) -> Result<(), String> {
    let next = next_dir(ctx);
    if next.join("ca.crt").exists() {
        return Err(format!(
            "a rotation of the cluster's CAs is in progress ({} holds the new CA); finish it first with `installer certs rotate-ca`",
            next.display()
        ));
    }
    Ok(())
}

/// A rotation stopped in `phase`: what went wrong and how to go on.
pub fn interrupted(phase: &'static str, why: String) -> PhaseError {
    PhaseError::new(
        phase,
        format!("{why}; run `installer certs rotate-ca` again to go on from there"),
    )
}

impl Rotation {
    /// The rotation in progress, if any.
    pub fn load(ctx: &Ctx) -> Result<Option<Rotation>, String> {
        let next = next_dir(ctx);
        if !next.join("ca.crt").exists() {
            return Ok(None);
        }
        let old = ClusterCa::load(&pki_dir(ctx)).map_err(|e| e.to_string())?;
        let next = ClusterCa::load(&next).map_err(|e| e.to_string())?;
        let fingerprint = next.ca_fingerprint().map_err(|e| e.to_string())?;
        Ok(Some(Rotation {
            old,
            next,
            fingerprint,
        }))
    }

    /// The rotation in progress, or a new one: the next CA set made and saved before any host
    /// changes, so an interruption never loses the new key.
    pub fn load_or_begin(ctx: &Ctx) -> Result<(Rotation, bool), String> {
        if let Some(r) = Self::load(ctx)? {
            return Ok((r, false));
        }
        let old = ClusterCa::load(&pki_dir(ctx)).map_err(|e| {
            format!("{e}; the CA to rotate from must be in the state directory (run `installer up` once)")
        })?;
        let next = old.with_new_cas().map_err(|e| e.to_string())?;
        next.save(&next_dir(ctx)).map_err(|e| e.to_string())?;
        let fingerprint = next.ca_fingerprint().map_err(|e| e.to_string())?;
        Ok((
            Rotation {
                old,
                next,
                fingerprint,
            },
            true,
        ))
    }

    /// The state directory takes the new CA set; the rotation is over.
    pub fn finish(&self, ctx: &Ctx) -> Result<(), String> {
        self.next.save(&pki_dir(ctx)).map_err(|e| e.to_string())?;
        let next = next_dir(ctx);
        std::fs::remove_dir_all(&next).map_err(|e| format!("cannot remove {}: {e}", next.display()))
    }

    /// The certificates of CA `kind` hosts trust during `stage`: the one that signs first.
    pub fn trusted(&self, kind: CaKind, stage: Stage) -> String {
        let (old, new) = (self.old.cert_pem(kind), self.next.cert_pem(kind));
        match stage {
            Stage::Trust => ca_bundle(old, new),
            Stage::Sign => ca_bundle(new, old),
            Stage::Drop => new.to_string(),
        }
    }

    /// The CA set that signs during `stage`.
    pub fn signer(&self, stage: Stage) -> &ClusterCa {
        match stage {
            Stage::Trust => &self.old,
            Stage::Sign | Stage::Drop => &self.next,
        }
    }

    /// Variables of `playbooks/ca-rotation` common to every host of `stage`.
    /// `trusted` (the Kubernetes CA's bundle: ca.crt, kubeconfigs, kubelets),
    /// `front_proxy_trusted`, `etcd_trusted`; in the sign stage, to masters, the new keys.
    pub fn vars(&self, stage: Stage, step: &str) -> Value {
        let trusted = self.trusted(CaKind::Kubernetes, stage);
        let signer = self.signer(stage);
        let mut vars = json!({
            "step": step,
            "stage": stage.word(),
            "fingerprint": self.fingerprint,
            "trusted": trusted,
            "trusted_b64": base64::engine::general_purpose::STANDARD.encode(&trusted),
            "front_proxy_trusted": self.trusted(CaKind::FrontProxy, stage),
            "etcd_trusted": self.trusted(CaKind::Etcd, stage),
            "signer": signer.cert_pem(CaKind::Kubernetes),
            "manifest_dirs": ["/etc/kubernetes/manifests", super::phases::STOPPED_MANIFESTS],
            "control_plane": false,
        });
        if stage == Stage::Sign && step == "control-plane" {
            vars["ca_key"] = json!(signer.key_pem(CaKind::Kubernetes));
            vars["front_proxy_key"] = json!(signer.key_pem(CaKind::FrontProxy));
            vars["etcd_key"] = json!(signer.key_pem(CaKind::Etcd));
        }
        vars
    }
}

/// What one host recorded: the last stage it finished for its control plane and its kubelet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Marks {
    pub control_plane: Option<Stage>,
    pub kubelet: Option<Stage>,
}

impl Marks {
    /// Parses the `read` step's answer, counting only records of this rotation.
    pub fn parse(text: &str, fingerprint: &str) -> Marks {
        let mut marks = Marks::default();
        for line in text.lines() {
            let Some((part, record)) = line.split_once('=') else {
                continue;
            };
            let mut words = record.split_whitespace();
            let (Some(stage), Some(fp)) = (words.next(), words.next()) else {
                continue;
            };
            let stage = Stage::parse(stage).filter(|_| fp == fingerprint);
            match part.trim() {
                "control-plane" => marks.control_plane = stage,
                "kubelet" => marks.kubelet = stage,
                _ => {}
            }
        }
        marks
    }
}

pub type HostMarks = BTreeMap<String, Marks>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_of_another_rotation_do_not_count() {
        let text = "control-plane=sign abc\nkubelet=trust def\n";
        assert_eq!(
            Marks::parse(text, "abc"),
            Marks {
                control_plane: Some(Stage::Sign),
                kubelet: None
            }
        );
        assert_eq!(
            Marks::parse("control-plane=\nkubelet=\n", "abc"),
            Marks::default()
        );
        assert_eq!(Marks::parse("kubelet=bogus abc", "abc"), Marks::default());
    }

    #[test]
    fn stages_are_ordered() {
        assert!(Stage::Trust < Stage::Sign && Stage::Sign < Stage::Drop);
        assert!(Some(Stage::Trust) < Some(Stage::Sign));
        assert!(None < Some(Stage::Trust));
    }

    fn rotation() -> Rotation {
        let old = ClusterCa::generate().unwrap();
        let next = old.with_new_cas().unwrap();
        let fingerprint = next.ca_fingerprint().unwrap();
        Rotation {
            old,
            next,
            fingerprint,
        }
    }

    #[test]
    fn the_signing_ca_comes_first_in_what_is_trusted() {
        let r = rotation();
        for kind in CaKind::ALL {
            let (old, new) = (
                r.old.cert_pem(kind).trim().to_string(),
                r.next.cert_pem(kind).trim().to_string(),
            );
            assert!(r.trusted(kind, Stage::Trust).starts_with(&old));
            assert!(r.trusted(kind, Stage::Trust).contains(&new));
            assert!(r.trusted(kind, Stage::Sign).starts_with(&new));
            assert!(r.trusted(kind, Stage::Sign).contains(&old));
            assert_eq!(r.trusted(kind, Stage::Drop).trim(), new);
            assert_eq!(r.signer(Stage::Trust).cert_pem(kind).trim(), old);
            assert_eq!(r.signer(Stage::Sign).cert_pem(kind).trim(), new);
        }
    }

    #[test]
    fn only_the_sign_stage_carries_the_new_keys_and_only_to_masters() {
        let r = rotation();
        let keys = [
            ("ca_key", CaKind::Kubernetes),
            ("front_proxy_key", CaKind::FrontProxy),
            ("etcd_key", CaKind::Etcd),
        ];
        for (var, kind) in keys {
            assert!(r.vars(Stage::Trust, "control-plane").get(var).is_none());
            assert!(r.vars(Stage::Drop, "control-plane").get(var).is_none());
            assert!(r.vars(Stage::Sign, "kubelet").get(var).is_none());
            let vars = r.vars(Stage::Sign, "control-plane");
            assert_eq!(vars[var].as_str().unwrap(), r.next.key_pem(kind));
            assert_ne!(vars[var].as_str().unwrap(), r.old.key_pem(kind));
        }
    }
}
