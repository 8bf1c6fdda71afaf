//! The addon catalog (Weave Net, Rook-Ceph, Headlamp / Kubernetes Dashboard): pinned versions
//! and manifest checksums from `playbooks/defaults/addons.yaml`, the structural patches the
//! installer applies to upstream manifests (never string replacement), the objects it renders
//! from the inventory, and the readiness checks that read the API's JSON.
//! Knows nothing of SSH or hosts: the cluster layer fetches, applies and waits.

mod manifests;
mod readiness;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::playbook::Playbooks;

pub use manifests::{RookNode, dashboard_admin, headlamp, rook_cluster, weave};
pub use readiness::{
    CRD_ESTABLISHED_JSONPATH, CephHealth, ceph_health, crds_established, daemonset_ready,
    deployment_ready,
};

/// One release of one addon: where its files are and what they must hash to.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// Path of the release under a manifests mirror (`weave-net/v2.9.0`).
    pub mirror_path: String,
    pub files: Vec<ManifestFile>,
    /// Rook: the Ceph image the CephCluster runs.
    #[serde(default)]
    pub ceph_image: Option<String>,
    /// Headlamp: the image its `:latest` is pinned to.
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    pub url: String,
    pub sha256: String,
}

impl ManifestFile {
    /// Upstream, or `<mirror>/<mirrorPath>/<name>` when the inventory names a mirror.
    pub fn source(&self, release: &Release, mirror: Option<&str>) -> String {
        match mirror {
            Some(base) => format!(
                "{}/{}/{}",
                base.trim_end_matches('/'),
                release.mirror_path.trim_matches('/'),
                self.name
            ),
            None => self.url.clone(),
        }
    }
}

/// Addon name → version → release.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog(BTreeMap<String, BTreeMap<String, Release>>);

impl Catalog {
    pub fn load(playbooks: &Playbooks) -> Result<Catalog, String> {
        let text = playbooks
            .read("defaults/addons.yaml")
            .map_err(|e| e.to_string())?;
        serde_saphyr::from_str(&text).map_err(|e| format!("playbooks/defaults/addons.yaml: {e}"))
    }

    /// The release of `addon` at `version` (the only one listed when `version` is `None`).
    pub fn release(&self, addon: &str, version: Option<&str>) -> Result<&Release, String> {
        let releases = self
            .0
            .get(addon)
            .ok_or_else(|| format!("no addon {addon} in playbooks/defaults/addons.yaml"))?;
        let known = || releases.keys().cloned().collect::<Vec<_>>().join(", ");
        match version {
            Some(v) => releases.get(v).ok_or_else(|| {
                format!(
                    "{addon} {v} is not pinned (known: {}); pick one of those",
                    known()
                )
            }),
            None => releases
                .values()
                .next_back()
                .ok_or_else(|| format!("{addon} has no release pinned")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::load(&Playbooks::Embedded).expect("catalog loads")
    }

    #[test]
    fn inventory_default_versions_are_pinned_in_the_catalog() {
        let c = catalog();
        use crate::inventory::defaults as d;
        c.release("weave", Some(d::WEAVE_VERSION)).unwrap();
        c.release("rook", Some(d::ROOK_VERSION)).unwrap();
        assert!(c.release("headlamp", None).unwrap().image.is_some());
        c.release("kubernetes-dashboard", None).unwrap();
        let e = c.release("weave", Some("2.8.9")).unwrap_err();
        assert!(e.contains("2.9.0"), "{e}");
    }

    #[test]
    fn files_come_from_the_mirror_when_one_is_set() {
        let c = catalog();
        let r = c.release("rook", Some("v1.20.6")).unwrap();
        let crds = &r.files[0];
        assert_eq!(crds.source(r, None), crds.url);
        assert_eq!(
            crds.source(r, Some("http://10.0.0.1/addons/")),
            "http://10.0.0.1/addons/rook-ceph/v1.20.6/crds.yaml"
        );
    }

    /// The pinned sums are those of the files in ../shared/upstream (SOURCES.md), and for
    /// Weave the release asset derived from its template as upstream's release script does.
    #[test]
    fn pinned_sums_match_the_upstream_files() {
        use sha2::{Digest, Sha256};
        let upstream = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/upstream");
        let c = catalog();
        for (addon, version) in [
            ("rook", "v1.20.6"),
            ("headlamp", "v0.45.0"),
            ("kubernetes-dashboard", "v2.7.0"),
        ] {
            let r = c.release(addon, Some(version)).unwrap();
            for f in &r.files {
                let path = upstream.join(&r.mirror_path).join(&f.name);
                let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!(
                        "{}: {e} (../shared must sit beside the project)",
                        path.display()
                    )
                });
                assert_eq!(
                    hex::encode(Sha256::digest(&bytes)),
                    f.sha256,
                    "{}",
                    path.display()
                );
            }
        }
        let r = c.release("weave", Some("2.9.0")).unwrap();
        let template =
            std::fs::read_to_string(upstream.join(&r.mirror_path).join(&r.files[0].name)).unwrap();
        let asset: String = template
            .replace(":latest", ":2.9.0")
            .lines()
            .filter(|l| !l.contains("imagePullPolicy: Always"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            hex::encode(Sha256::digest(asset.as_bytes())),
            r.files[0].sha256
        );
    }
}
