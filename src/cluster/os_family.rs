//! The OS-family seam: what differs between distributions (package manager, repository
//! setup, package names) lives in `playbooks/os-family/<family>/`, and templates reach it as
//! `os`. A host's family comes from its facts (`ID`, then `ID_LIKE`); adding a family is
//! adding its directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::facts::Facts;
use crate::playbook::Playbooks;

const ROOT: &str = "os-family";

/// One family's `vars.yaml`, plus where its snippets are (`dir`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsFamily {
    pub family: String,
    /// Distribution ids (`/etc/os-release` ID) of this family.
    pub ids: Vec<String>,
    /// Commands the family's snippets need before anything is installed.
    pub commands: Vec<String>,
    /// Package repository format on pkgs.k8s.io: `deb` or `rpm`.
    pub repo_format: String,
    /// What kubeadm's preflight requires on every node.
    pub host_tools: Vec<String>,
    /// What adding a signed package repository needs.
    pub repo_tools: Vec<String>,
    /// Package names that differ between families, by a neutral name.
    pub packages: BTreeMap<String, String>,
    #[serde(default)]
    pub dir: String,
}

#[derive(Debug, Clone, Default)]
pub struct OsFamilies {
    families: Vec<OsFamily>,
}

impl OsFamilies {
    pub fn load(playbooks: &Playbooks) -> Result<OsFamilies, String> {
        let mut families = Vec::new();
        let mut dirs = playbooks.dirs_holding("vars.yaml");
        dirs.retain(|d| d.starts_with(&format!("{ROOT}/")));
        dirs.sort();
        for dir in dirs {
            let path = format!("{dir}/vars.yaml");
            let text = playbooks.read(&path).map_err(|e| e.to_string())?;
            let mut family: OsFamily =
                serde_saphyr::from_str(&text).map_err(|e| format!("playbooks/{path}: {e}"))?;
            family.dir = dir;
            families.push(family);
        }
        if families.is_empty() {
            return Err(format!("no OS family found under playbooks/{ROOT}/"));
        }
        Ok(OsFamilies { families })
    }

    /// The family of a host: its own id first, then the ids it says it is like.
    pub fn of(&self, facts: &Facts) -> Option<&OsFamily> {
        std::iter::once(facts.os_id.as_str())
            .chain(facts.os_like.split_whitespace())
            .find_map(|id| self.families.iter().find(|f| f.ids.iter().any(|i| i == id)))
    }

    pub fn names(&self) -> Vec<&str> {
        self.families.iter().map(|f| f.family.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::playbook::Renderer;

    fn families() -> OsFamilies {
        OsFamilies::load(&Playbooks::Embedded).expect("families load")
    }

    fn facts(id: &str, like: &str) -> Facts {
        Facts {
            os_id: id.into(),
            os_like: like.into(),
            os_codename: "bookworm".into(),
            ..Facts::default()
        }
    }

    #[test]
    fn debian_ubuntu_and_rhel_rebuilds_find_their_family() {
        let f = families();
        assert_eq!(f.of(&facts("debian", "")).unwrap().family, "debian");
        assert_eq!(f.of(&facts("ubuntu", "debian")).unwrap().family, "debian");
        assert_eq!(
            f.of(&facts("rocky", "rhel centos fedora")).unwrap().family,
            "rhel"
        );
        assert_eq!(
            f.of(&facts("linuxmint", "ubuntu debian")).unwrap().family,
            "debian"
        );
        assert!(f.of(&facts("arch", "")).is_none());
    }

    /// Renders `snippet` of `family` the way playbooks include it.
    fn render(family: &str, snippet: &str, extra: serde_json::Value) -> String {
        let f = families();
        let os = f.families.iter().find(|x| x.family == family).unwrap();
        let mut ctx = json!({
            "os": os,
            "facts": {"os_id": os.ids[0], "os_codename": "bookworm"},
            "inventory": {"packages": {
                "kubernetesRepo": "https://pkgs.k8s.io/core:/stable:/v1.36/{format}/",
                "dockerRepo": "https://download.docker.com/linux/{distro}",
            }},
        });
        for (k, v) in extra.as_object().unwrap() {
            ctx[k] = v.clone();
        }
        let source = format!("{{% include os.dir ~ \"/{snippet}\" %}}");
        Renderer::with_playbooks(Playbooks::Embedded)
            .render(snippet, &source, &ctx)
            .unwrap_or_else(|e| panic!("{family}/{snippet}: {e}"))
    }

    #[test]
    fn every_family_has_every_snippet_and_they_render() {
        let snippets = [
            "refresh.sh",
            "installed.sh",
            "install.sh",
            "pinned.sh",
            "hold.sh",
            "held.sh",
            "unhold.sh",
            "purge.sh",
            "kubernetes-repo.sh",
            "kubernetes-repo-present.sh",
            "docker-repo.sh",
            "docker-repo-present.sh",
            "install-local.sh",
        ];
        let vars = json!({"packages": ["kubelet=1.36.2-*", "kubeadm"], "version": "1.36.2", "package_file": "/tmp/x.pkg"});
        for family in families().names() {
            for s in snippets {
                assert!(
                    !render(family, s, vars.clone()).trim().is_empty(),
                    "{family}/{s}"
                );
            }
        }
    }

    #[test]
    fn debian_waits_for_the_dpkg_lock_and_skips_recommends() {
        let out = render(
            "debian",
            "install.sh",
            json!({"packages": ["iptables", "kubelet=1.36.2-*"]}),
        );
        assert!(out.contains("DPkg::Lock::Timeout="), "{out}");
        assert!(out.contains("--no-install-recommends"), "{out}");
        assert!(out.contains("'kubelet=1.36.2-*'"), "{out}");
    }

    #[test]
    fn repositories_follow_the_family_and_distribution() {
        let deb = render("debian", "kubernetes-repo.sh", json!({}));
        assert!(deb.contains("v1.36/deb/"), "{deb}");
        let rpm = render("rhel", "kubernetes-repo.sh", json!({}));
        assert!(
            rpm.contains("v1.36/rpm/") && rpm.contains("exclude=kubelet"),
            "{rpm}"
        );
        let docker = render(
            "debian",
            "docker-repo.sh",
            json!({"facts": {"os_id": "ubuntu", "os_codename": "noble"}}),
        );
        assert!(
            docker.contains("linux/ubuntu") && docker.contains(" noble stable"),
            "{docker}"
        );
    }

    #[test]
    fn rhel_pins_with_dnf_syntax_and_no_weak_deps() {
        let out = render(
            "rhel",
            "install.sh",
            json!({"packages": ["kubelet=1.36.2-*"]}),
        );
        assert!(
            out.contains("'kubelet-1.36.2-*'") && out.contains("install_weak_deps=False"),
            "{out}"
        );
    }
}
