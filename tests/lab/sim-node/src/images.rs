//! kubeadm's image tags, one table for every supported Kubernetes minor.
//!
//! In the real kubeadm the pause and CoreDNS tags are constants of the kubeadm binary
//! (`PauseVersion`, `CoreDNSVersion` in `cmd/kubeadm/app/constants/constants.go`), and the
//! etcd tag comes from the `SupportedEtcdVersion` map keyed by the *target* Kubernetes minor,
//! falling back to the nearest known minor. The simulator keeps the same split: pause and
//! CoreDNS follow kubeadm's own minor, etcd follows the cluster's. Where each value was
//! verified is in tests/lab/SIMULATORS.md ("Image tags").

use crate::config::ClusterConfiguration;
use crate::util::KubeVersion;

/// The default registry (`kubeadmapiv1.DefaultImageRepository`).
pub const DEFAULT_REPOSITORY: &str = "registry.k8s.io";

/// Image tags of one Kubernetes minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorImages {
    pub minor: u64,
    pub pause: &'static str,
    pub coredns: &'static str,
    pub etcd: &'static str,
}

/// Ordered by minor. Extend this table (only) when the lab gains a minor.
pub const TABLE: &[MinorImages] = &[
    MinorImages {
        minor: 35,
        pause: "3.10.1",
        coredns: "v1.13.1",
        etcd: "3.6.6-0",
    },
    MinorImages {
        minor: 36,
        pause: "3.10.2",
        coredns: "v1.14.2",
        etcd: "3.6.8-0",
    },
    MinorImages {
        minor: 37,
        pause: "3.10.2",
        coredns: "v1.14.6",
        etcd: "3.7.0-0",
    },
];

/// The table row for a minor, or the nearest one (kubeadm's `EtcdSupportedVersion` rule) and
/// whether it had to fall back.
fn nearest(minor: u64) -> (&'static MinorImages, bool) {
    if let Some(row) = TABLE.iter().find(|r| r.minor == minor) {
        return (row, false);
    }
    let first = &TABLE[0];
    let last = &TABLE[TABLE.len() - 1];
    if minor < first.minor {
        (first, true)
    } else {
        (last, true)
    }
}

/// The constants compiled into a kubeadm of this version (pause and CoreDNS tags).
pub fn kubeadm_constants(kubeadm: KubeVersion) -> &'static MinorImages {
    nearest(kubeadm.minor).0
}

/// The etcd tag kubeadm picks for a cluster of this version, with kubeadm's warning when the
/// minor is not in its table.
pub fn etcd_tag(kubernetes: KubeVersion) -> (&'static str, Option<String>) {
    let (row, fell_back) = nearest(kubernetes.minor);
    let warning = fell_back.then(|| {
        format!(
            "could not find officially supported version of etcd for Kubernetes {kubernetes}, falling back to the nearest etcd version ({})",
            row.etcd
        )
    });
    (row.etcd, warning)
}

fn repo(cfg: &ClusterConfiguration) -> &str {
    if cfg.image_repository.is_empty() {
        DEFAULT_REPOSITORY
    } else {
        &cfg.image_repository
    }
}

/// `registry.k8s.io/pause:<tag>` (always from the cluster repository, like GetPauseImage).
pub fn pause_image(cfg: &ClusterConfiguration, kubeadm: KubeVersion) -> String {
    format!("{}/pause:{}", repo(cfg), kubeadm_constants(kubeadm).pause)
}

/// GetDNSImage: the default registry keeps CoreDNS under `coredns/coredns`; any other
/// repository (cluster-wide or `dns.imageRepository`) gets `<repo>/coredns`.
pub fn coredns_image(cfg: &ClusterConfiguration, kubeadm: KubeVersion) -> String {
    let mut repository = if cfg.dns.image_repository.is_empty() {
        repo(cfg).to_string()
    } else {
        cfg.dns.image_repository.clone()
    };
    if repository == DEFAULT_REPOSITORY {
        repository = format!("{DEFAULT_REPOSITORY}/coredns");
    }
    let tag = if cfg.dns.image_tag.is_empty() {
        kubeadm_constants(kubeadm).coredns
    } else {
        &cfg.dns.image_tag
    };
    format!("{repository}/coredns:{tag}")
}

/// GetEtcdImageTag: the table's tag for the cluster's minor unless etcd.local.imageTag is set.
pub fn etcd_image_tag(cfg: &ClusterConfiguration, kubernetes: KubeVersion) -> String {
    match cfg.etcd.local.as_ref().map(|l| l.image_tag.as_str()) {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => etcd_tag(kubernetes).0.to_string(),
    }
}

/// GetEtcdImage.
pub fn etcd_image(cfg: &ClusterConfiguration, kubernetes: KubeVersion) -> String {
    let repository = match cfg.etcd.local.as_ref().map(|l| l.image_repository.as_str()) {
        Some(r) if !r.is_empty() => r,
        _ => repo(cfg),
    };
    format!("{repository}/etcd:{}", etcd_image_tag(cfg, kubernetes))
}

/// GetControlPlaneImages, in kubeadm's order, each with the simulator binary (if any) that
/// stands in for the image in the kubelet package.
pub fn control_plane_images(
    cfg: &ClusterConfiguration,
    kubernetes: KubeVersion,
    kubeadm: KubeVersion,
) -> Vec<(String, Option<&'static str>)> {
    let mut out: Vec<(String, Option<&'static str>)> = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .into_iter()
    .map(|c| (format!("{}/{c}:{kubernetes}", repo(cfg)), Some(c)))
    .collect();
    if !cfg.proxy.disabled {
        out.push((format!("{}/kube-proxy:{kubernetes}", repo(cfg)), None));
    }
    if !cfg.dns.disabled {
        out.push((coredns_image(cfg, kubeadm), None));
    }
    out.push((pause_image(cfg, kubeadm), None));
    if cfg.etcd.local.is_some() {
        out.push((etcd_image(cfg, kubernetes), Some("etcd")));
    }
    out
}

/// Whether an etcd image tag is 3.6.0 or newer (kubeadm then writes the 3.6 flag names).
pub fn etcd_tag_at_least_3_6(tag: &str) -> bool {
    let core = tag.trim_start_matches('v');
    let mut it = core.split(['.', '-']);
    let major: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= (3, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u64, patch: u64) -> KubeVersion {
        KubeVersion {
            major: 1,
            minor,
            patch,
        }
    }

    fn cluster() -> ClusterConfiguration {
        let mut c = ClusterConfiguration::default();
        c.default_fields(v(36, 2));
        c
    }

    #[test]
    fn pause_is_3_10_1_for_1_35_and_3_10_2_for_1_36_and_1_37() {
        assert_eq!(kubeadm_constants(v(35, 0)).pause, "3.10.1");
        assert_eq!(kubeadm_constants(v(36, 2)).pause, "3.10.2");
        assert_eq!(kubeadm_constants(v(37, 1)).pause, "3.10.2");
    }

    #[test]
    fn etcd_for_an_unknown_minor_falls_back_to_the_nearest_with_kubeadms_warning() {
        assert_eq!(etcd_tag(v(36, 1)), ("3.6.8-0", None));
        let (tag, warning) = etcd_tag(v(38, 0));
        assert_eq!(tag, "3.7.0-0");
        assert!(
            warning
                .unwrap()
                .contains("falling back to the nearest etcd version (3.7.0-0)")
        );
        assert_eq!(etcd_tag(v(33, 0)).0, "3.6.6-0");
    }

    #[test]
    fn images_list_in_kubeadms_order_for_the_default_registry() {
        let imgs: Vec<String> = control_plane_images(&cluster(), v(36, 2), v(36, 2))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            imgs,
            [
                "registry.k8s.io/kube-apiserver:v1.36.2",
                "registry.k8s.io/kube-controller-manager:v1.36.2",
                "registry.k8s.io/kube-scheduler:v1.36.2",
                "registry.k8s.io/kube-proxy:v1.36.2",
                "registry.k8s.io/coredns/coredns:v1.14.2",
                "registry.k8s.io/pause:3.10.2",
                "registry.k8s.io/etcd:3.6.8-0",
            ]
        );
    }

    #[test]
    fn a_custom_repository_drops_the_coredns_subpath() {
        let mut c = cluster();
        c.image_repository = "mirror.lab:5000/k8s".into();
        assert_eq!(
            coredns_image(&c, v(37, 0)),
            "mirror.lab:5000/k8s/coredns:v1.14.6"
        );
        assert_eq!(
            pause_image(&c, v(37, 0)),
            "mirror.lab:5000/k8s/pause:3.10.2"
        );
    }

    #[test]
    fn disabled_addons_and_external_etcd_leave_their_images_out() {
        let mut c = cluster();
        c.dns.disabled = true;
        c.proxy.disabled = true;
        c.etcd.local = None;
        let imgs = control_plane_images(&c, v(35, 0), v(35, 0));
        assert_eq!(imgs.len(), 4);
        assert!(
            imgs.iter()
                .any(|(i, _)| i == "registry.k8s.io/pause:3.10.1")
        );
    }

    #[test]
    fn etcd_3_6_tags_are_recognised() {
        assert!(etcd_tag_at_least_3_6("3.6.8-0"));
        assert!(etcd_tag_at_least_3_6("3.7.0-0"));
        assert!(!etcd_tag_at_least_3_6("3.5.24-0"));
    }

    /// The installer's per-minor defaults (playbooks/defaults/v1.X.yaml) must name the images
    /// this kubeadm expects: a mismatch is a pause-image warning or a wrong etcd on real hosts.
    #[test]
    fn installer_defaults_tables_match_kubeadms_images() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../playbooks/defaults");
        for row in TABLE {
            let path = root.join(format!("v1.{}.yaml", row.minor));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            let images = &doc["images"];
            assert_eq!(images["pause"], row.pause, "{}: pause", path.display());
            assert_eq!(images["etcd"], row.etcd, "{}: etcd", path.display());
            assert_eq!(
                images["coredns"],
                row.coredns,
                "{}: coredns",
                path.display()
            );
        }
    }
}
