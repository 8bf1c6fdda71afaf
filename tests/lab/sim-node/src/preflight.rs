//! kubeadm's preflight checks, with the real check names and messages.

use anyhow::{Result, bail};
use std::net::TcpListener;
use std::path::Path;

use crate::paths;
use crate::util::KubeVersion;

/// One check's findings.
#[derive(Debug, Default)]
pub struct Finding {
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

pub struct Check {
    pub name: String,
    pub run: Box<dyn Fn() -> Finding>,
}

impl Check {
    pub fn new(name: impl Into<String>, run: impl Fn() -> Finding + 'static) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

fn error(msg: String) -> Finding {
    Finding {
        warnings: vec![],
        errors: vec![msg],
    }
}

fn ok() -> Finding {
    Finding::default()
}

fn warning(msg: String) -> Finding {
    Finding {
        warnings: vec![msg],
        errors: vec![],
    }
}

/// Validates `--ignore-preflight-errors` values the way kubeadm does and lower-cases them.
pub fn ignore_set(values: &[String]) -> Result<Vec<String>> {
    let set: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_lowercase())
        .filter(|v| !v.is_empty())
        .collect();
    if set.iter().any(|v| v == "all") && set.len() > 1 {
        bail!(
            "ignore-preflight-errors: Invalid value: {values:?}: don't specify individual checks if 'all' is used"
        );
    }
    Ok(set)
}

/// Runs the checks; errors not ignored abort with kubeadm's report.
pub fn run(checks: Vec<Check>, ignore: &[String]) -> Result<()> {
    let mut fatal = vec![];
    for c in checks {
        let f = (c.run)();
        for w in f.warnings {
            eprintln!("\t[WARNING {}]: {w}", c.name);
        }
        let ignored = ignore
            .iter()
            .any(|i| i == "all" || *i == c.name.to_lowercase());
        for e in f.errors {
            if ignored {
                eprintln!("\t[WARNING {}]: {e}", c.name);
            } else {
                fatal.push(format!("\t[ERROR {}]: {e}", c.name));
            }
        }
    }
    if !fatal.is_empty() {
        bail!(
            "[preflight] Some fatal errors occurred:\n{}\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`",
            fatal.join("\n")
        );
    }
    Ok(())
}

pub fn privileged_user() -> Check {
    Check::new("IsPrivilegedUser", || {
        if nix::unistd::geteuid().is_root() {
            ok()
        } else {
            error("user is not running as root".into())
        }
    })
}

pub fn num_cpu() -> Check {
    Check::new("NumCPU", || {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if n < 2 {
            error(format!(
                "the number of available CPUs {n} is less than the required 2"
            ))
        } else {
            ok()
        }
    })
}

pub fn mem() -> Check {
    Check::new("Mem", || {
        let mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|k| k.parse::<u64>().ok())
                    })
            })
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        if mb < 1700 {
            error(format!(
                "the system RAM ({mb} MB) is less than the minimum 1700 MB"
            ))
        } else {
            ok()
        }
    })
}

fn check_name(prefix: &str, path: &str) -> String {
    format!(
        "{prefix}--{}",
        path.trim_start_matches('/').replace('/', "-")
    )
}

pub fn port(port: u16) -> Check {
    Check::new(format!("Port-{port}"), move || {
        match TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => ok(),
            Err(_) => error(format!("Port {port} is in use")),
        }
    })
}

pub fn file_available(path: impl Into<String>) -> Check {
    let path: String = path.into();
    Check::new(check_name("FileAvailable", &path), move || {
        if paths::p(&path).exists() {
            error(format!("{} already exists", paths::s(&path)))
        } else {
            ok()
        }
    })
}

pub fn dir_available(path: impl Into<String>) -> Check {
    let path: String = path.into();
    Check::new(check_name("DirAvailable", &path), move || {
        let p = paths::p(&path);
        let non_empty = std::fs::read_dir(&p)
            .map(|mut it| it.next().is_some())
            .unwrap_or(false);
        if non_empty {
            error(format!("{} is not empty", p.display()))
        } else {
            ok()
        }
    })
}

pub fn file_content(path: &'static str, want: &'static str) -> Check {
    Check::new(check_name("FileContent", path), move || {
        let p = paths::p(path);
        match std::fs::read_to_string(&p) {
            Ok(s) if s.trim() == want => ok(),
            Ok(_) => error(format!("{path} contents are not set to {want}")),
            Err(_) => error(format!("{path} does not exist")),
        }
    })
}

/// SwapCheck: swap on is a warning only (since kubeadm 1.28 swap is supported on cgroup v2;
/// the kubelet itself refuses to start with swap on unless failSwapOn is false).
pub fn swap() -> Check {
    Check::new("Swap", || {
        if !swap_on(&paths::p("/proc/swaps")) {
            return ok();
        }
        warning("swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node".into())
    })
}

pub fn swap_on(proc_swaps: &Path) -> bool {
    std::fs::read_to_string(proc_swaps)
        .map(|s| s.lines().skip(1).any(|l| !l.trim().is_empty()))
        .unwrap_or(false)
}

pub fn cri(endpoint: String) -> Check {
    Check::new("CRI", move || match crate::cri::answers(&endpoint) {
        Ok(()) => ok(),
        Err(e) => error(format!(
            "container runtime is not running: output: , error: {e:#}"
        )),
    })
}

pub fn kubelet_service() -> Check {
    Check::new("Service-Kubelet", || {
        let enabled = std::process::Command::new("systemctl")
            .args(["is-enabled", "kubelet.service"])
            .output()
            .map(|o| o.status.success());
        match enabled {
            Ok(false) => Finding {
                warnings: vec![
                    "kubelet service is not enabled, please run 'systemctl enable kubelet.service'"
                        .into(),
                ],
                errors: vec![],
            },
            _ => ok(),
        }
    })
}

/// Where an executable is on `PATH`, like Go's exec.LookPath.
pub fn look_path(executable: &str, path_var: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(executable))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// InPathCheck: a missing mandatory executable is an error, any other a warning.
pub fn in_path(executable: &'static str, mandatory: bool) -> Check {
    in_path_of(executable, mandatory, None)
}

/// [`in_path`] against a given `PATH` (tests) instead of the process's.
pub fn in_path_of(executable: &'static str, mandatory: bool, path: Option<String>) -> Check {
    Check::new(format!("FileExisting-{executable}"), move || {
        let path_var = path
            .clone()
            .unwrap_or_else(|| std::env::var("PATH").unwrap_or_default());
        if look_path(executable, &path_var).is_some() {
            return ok();
        }
        let msg = format!("{executable} not found in system path");
        if mandatory { error(msg) } else { warning(msg) }
    })
}

/// addExecChecks (checks_linux.go): conntrack only for Kubernetes older than 1.32 (kube-proxy
/// no longer needs it), then ip, iptables, mount, nsenter (errors) and ebtables, ethtool,
/// socat, tc, touch (warnings). kubeadm passes no version on join, so join never checks
/// conntrack. crictl has not been checked since kubeadm talks to the CRI itself.
pub fn exec_checks(kubernetes: Option<KubeVersion>) -> Vec<Check> {
    let mut c = vec![];
    if kubernetes.is_some_and(|v| (v.major, v.minor) < (1, 32)) {
        c.push(in_path("conntrack", true));
    }
    for exe in ["ip", "iptables", "mount", "nsenter"] {
        c.push(in_path(exe, true));
    }
    for exe in ["ebtables", "ethtool", "socat", "tc", "touch"] {
        c.push(in_path(exe, false));
    }
    c
}

/// KubernetesVersionCheck: a control plane newer than kubeadm's minor is only a warning.
pub fn kubernetes_version(kubernetes: KubeVersion, kubeadm: KubeVersion) -> Check {
    Check::new("KubernetesVersion", move || {
        if (kubernetes.major, kubernetes.minor) > (kubeadm.major, kubeadm.minor) {
            warning(format!(
                "Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes version: {kubernetes}. Kubeadm version: {}.{}.x",
                kubeadm.major, kubeadm.minor
            ))
        } else {
            ok()
        }
    })
}

/// KubeletVersionCheck: the installed kubelet at least MinimumKubeletVersion (kubeadm's
/// minor - 3) and, when the control-plane version is known (init), not of a newer minor.
pub fn kubelet_version(
    kubelet: Result<KubeVersion, String>,
    kubernetes: Option<KubeVersion>,
    kubeadm: KubeVersion,
) -> Check {
    Check::new("KubeletVersion", move || {
        let kubelet = match &kubelet {
            Ok(v) => *v,
            Err(e) => return error(format!("couldn't get kubelet version: {e}")),
        };
        let min_minor = kubeadm.minor.saturating_sub(MINIMUM_KUBELET_SKEW);
        if (kubelet.major, kubelet.minor) < (kubeadm.major, min_minor) {
            return error(format!(
                "Kubelet version {:?} is lower than kubeadm can support. Please upgrade kubelet",
                kubelet.to_string()
            ));
        }
        if let Some(k8s) = kubernetes
            && (kubelet.major > k8s.major || kubelet.minor > k8s.minor)
        {
            return error(format!(
                "the kubelet version is higher than the control plane version. This is not a supported version skew and may lead to a malfunctional cluster. Kubelet version: {:?} Control plane version: {:?}",
                kubelet.to_string(),
                k8s.to_string()
            ));
        }
        ok()
    })
}

/// constants.MinimumKubeletVersion is kubeadm's version with the minor lowered by 3.
pub const MINIMUM_KUBELET_SKEW: u64 = 3;

/// The installed kubelet's version, as `kubelet --version` reports it.
pub fn installed_kubelet_version() -> Result<KubeVersion, String> {
    crate::util::package_version("kubelet").map_err(|e| format!("{e:#}"))
}

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// `/sys/fs/cgroup` is a cgroup2 filesystem.
    V2,
    /// Anything else (legacy or hybrid: a tmpfs holding v1 hierarchies).
    V1,
}

/// CGROUP2_SUPER_MAGIC.
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// The cgroup mode from `statfs(/sys/fs/cgroup)`, as the kubelet and the system validators
/// decide it (relocated under `SIM_ROOT` in tests, where it is never cgroup2).
pub fn cgroup_mode() -> Result<CgroupMode, String> {
    let path = paths::p("/sys/fs/cgroup");
    let st = nix::sys::statfs::statfs(&path)
        .map_err(|e| format!("cannot statfs the cgroupv2 root: {e}"))?;
    Ok(cgroup_mode_of(st.filesystem_type().0 as i64))
}

pub fn cgroup_mode_of(fs_magic: i64) -> CgroupMode {
    if fs_magic == CGROUP2_MAGIC {
        CgroupMode::V2
    } else {
        CgroupMode::V1
    }
}

/// The error the system validators (v1.12.1, kubeadm 1.35+) give on a cgroup v1 host for a
/// kubelet of 1.35 or newer; older kubelets get the maintenance-mode warning.
pub const CGROUP_V1_ERROR: &str = "cgroups v1 support is deprecated and will be removed in a future release. Please migrate to cgroups v2. To explicitly enable cgroups v1 support for kubelet v1.35 or newer, you must set the kubelet configuration option 'FailCgroupV1' to 'false'. You must also explicitly skip this validation. For more information, see https://git.k8s.io/enhancements/keps/sig-node/5573-remove-cgroup-v1";
pub const CGROUP_V1_WARNING: &str =
    "cgroups v1 support is in maintenance mode, please migrate to cgroups v2";

/// Subsystems the cgroups validator requires / wants (system-validators types_unix.go).
const CGROUPS_V1: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids",
];
const CGROUPS_V1_OPTIONAL: &[&str] = &["hugetlb", "blkio"];
const CGROUPS_V2: &[&str] = &["cpu", "cpuset", "devices", "freezer", "memory", "pids"];
const CGROUPS_V2_OPTIONAL: &[&str] = &["hugetlb", "io"];

/// The cgroups validator: (warnings, errors) for a host's mode and enabled subsystems.
pub fn cgroups_findings(
    mode: CgroupMode,
    subsystems: &[String],
    kubelet: Option<KubeVersion>,
) -> Finding {
    let mut f = Finding::default();
    let (required, optional) = match mode {
        CgroupMode::V2 => (CGROUPS_V2, CGROUPS_V2_OPTIONAL),
        CgroupMode::V1 => {
            if kubelet.is_none_or(|k| (k.major, k.minor) >= (1, 35)) {
                f.errors.push(CGROUP_V1_ERROR.to_string());
            } else {
                f.warnings.push(CGROUP_V1_WARNING.to_string());
            }
            (CGROUPS_V1, CGROUPS_V1_OPTIONAL)
        }
    };
    let missing = |want: &[&str]| -> Vec<String> {
        want.iter()
            .filter(|w| !subsystems.iter().any(|s| s == *w))
            .map(|w| w.to_string())
            .collect()
    };
    let req = missing(required);
    if !req.is_empty() {
        f.errors
            .push(format!("missing required cgroups: {}", req.join(" ")));
    }
    let opt = missing(optional);
    if !opt.is_empty() {
        f.warnings
            .push(format!("missing optional cgroups: {}", opt.join(" ")));
    }
    f
}

/// Enabled subsystems: /proc/cgroups for v1, cgroup.controllers (plus the implicit devices
/// and freezer) for v2.
fn cgroup_subsystems(mode: CgroupMode) -> Result<Vec<String>, String> {
    match mode {
        CgroupMode::V1 => {
            let text = std::fs::read_to_string("/proc/cgroups")
                .map_err(|e| format!("failed to get cgroups v1 subsystems: {e}"))?;
            Ok(text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 4 && f[3] != "0").then(|| f[0].to_string())
                })
                .collect())
        }
        CgroupMode::V2 => {
            let text = std::fs::read_to_string(paths::p("/sys/fs/cgroup/cgroup.controllers"))
                .map_err(|e| format!("failed to get cgroups v2 subsystems: {e}"))?;
            let mut s = vec!["devices".to_string(), "freezer".to_string()];
            s.extend(text.split_whitespace().map(str::to_string));
            Ok(s)
        }
    }
}

/// DefaultSysSpec's kernel versions: 5.4, 5.10, 5.15 or any 6+.
pub fn kernel_release_supported(release: &str) -> bool {
    let mut it = release.split(['.', '-']);
    let major: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    major >= 6 || (major == 5 && matches!(minor, 4 | 10 | 15))
}

/// Kernel options every node needs (DefaultSysSpec.KernelSpec.Required; an alias in brackets).
const KERNEL_REQUIRED: &[(&str, Option<&str>)] = &[
    ("NAMESPACES", None),
    ("NET_NS", None),
    ("PID_NS", None),
    ("IPC_NS", None),
    ("UTS_NS", None),
    ("CPUSETS", None),
    ("MEMCG", None),
    ("INET", None),
    ("EXT4_FS", None),
    ("PROC_FS", None),
    (
        "NETFILTER_XT_TARGET_REDIRECT",
        Some("IP_NF_TARGET_REDIRECT"),
    ),
    ("NETFILTER_XT_MATCH_COMMENT", None),
    ("FAIR_GROUP_SCHED", None),
];

/// The kernel config as text: /proc/config.gz or /boot/config-<release>.
fn kernel_config(release: &str) -> Result<String, String> {
    if Path::new("/proc/config.gz").exists() {
        let out = std::process::Command::new("gzip")
            .args(["-dc", "/proc/config.gz"])
            .output()
            .map_err(|e| format!("failed to parse kernel config: {e}"))?;
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    for p in [
        format!("/boot/config-{release}"),
        format!("/usr/lib/modules/{release}/config"),
        format!("/lib/modules/{release}/build/.config"),
    ] {
        if let Ok(t) = std::fs::read_to_string(&p) {
            return Ok(t);
        }
    }
    Err(format!(
        "failed to parse kernel config: no config path for kernel {release} is available and the \"configs\" kernel module could not be loaded"
    ))
}

/// Required kernel options missing from a config text.
pub fn missing_kernel_options(config: &str) -> Vec<String> {
    let set = |name: &str| {
        config.lines().any(|l| {
            l.strip_prefix(&format!("CONFIG_{name}="))
                .is_some_and(|v| v.starts_with('y') || v.starts_with('m'))
        })
    };
    KERNEL_REQUIRED
        .iter()
        .filter(|(n, alias)| !set(n) && !alias.is_some_and(set))
        .map(|(n, _)| format!("CONFIG_{n}"))
        .collect()
}

/// SystemVerificationCheck: the kernel (release and required options), and the cgroups
/// validator given the installed kubelet's version.
pub fn system_verification(kubelet: Option<KubeVersion>) -> Check {
    Check::new("SystemVerification", move || {
        let mut f = Finding::default();
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        if !kernel_release_supported(&release) {
            f.errors
                .push(format!("unsupported kernel release: {release}"));
        }
        match kernel_config(&release) {
            Ok(cfg) => {
                let missing = missing_kernel_options(&cfg);
                if !missing.is_empty() {
                    f.errors
                        .push(format!("unexpected kernel config: {}", missing.join(" ")));
                }
            }
            Err(e) => f.errors.push(e),
        }
        match cgroup_mode().and_then(|m| Ok((m, cgroup_subsystems(m)?))) {
            Ok((mode, subsystems)) => {
                let c = cgroups_findings(mode, &subsystems, kubelet);
                f.warnings.extend(c.warnings);
                f.errors.extend(c.errors);
            }
            Err(e) => f.errors.push(e),
        }
        if !f.errors.is_empty() {
            println!(
                "[preflight] The system verification failed. Printing the output from the verification:"
            );
            println!("KERNEL_VERSION: {release}");
            println!("OS: Linux");
        }
        f
    })
}

/// FileContent--proc-sys-net-ipv4-ip_forward.
pub fn ip_forward() -> Check {
    file_content("/proc/sys/net/ipv4/ip_forward", "1")
}

/// The sandbox image the container runtime reports, like kubeadm's `SandboxImage()`: the
/// `sandboxImage` of the `config` object in the CRI status info. A runtime without a `config`
/// (cri-dockerd before it exported one) gives `None` and no warning; a `config` without the
/// field (containerd 2.0, kubernetes/kubeadm#3146) gives `""`, which kubeadm then warns about.
pub fn cri_sandbox_image(endpoint: &str) -> Option<String> {
    let info = crate::cri::sim_get(endpoint, "/info").ok()?;
    sandbox_image_of_info(&info)
}

pub fn sandbox_image_of_info(info: &serde_json::Value) -> Option<String> {
    let config = info.get("config").filter(|c| c.is_object())?;
    Some(
        config
            .get("sandboxImage")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
    )
}

/// The sandbox-image warning of ImagePullCheck (a klog warning, not a check finding).
pub fn sandbox_image_warning(cri_image: Option<&str>, kubeadm_pause: &str) -> Option<String> {
    let cri = cri_image?;
    (cri != kubeadm_pause).then(|| {
        format!(
            "detected that the sandbox image {cri:?} of the container runtime is inconsistent with that used by kubeadm. It is recommended to use {kubeadm_pause:?} as the CRI sandbox image."
        )
    })
}

/// ImagePullCheck: policy Never skips; otherwise the sandbox image is compared with kubeadm's
/// pause image (a warning) and every image "pulled" — in the lab an image is present when
/// the simulator binary standing in for it is installed.
pub fn image_pull(
    endpoint: String,
    images: Vec<(String, Option<&'static str>)>,
    pause: String,
    policy: String,
) -> Check {
    Check::new("ImagePull", move || {
        let mut f = Finding::default();
        match policy.as_str() {
            "" | "IfNotPresent" | "Always" => {}
            "Never" => return f,
            other => {
                f.errors.push(format!("unsupported pull policy {other:?}"));
                return f;
            }
        }
        if let Some(w) = sandbox_image_warning(cri_sandbox_image(&endpoint).as_deref(), &pause) {
            eprintln!("W {w}");
        }
        for (img, binary) in &images {
            if let Some(b) = binary
                && !paths::p(paths::IMAGES_DIR).join(b).exists()
            {
                f.errors.push(format!(
                    "failed to pull image {img}: {} is missing (reinstall the kubelet package)",
                    paths::p(paths::IMAGES_DIR).join(b).display()
                ));
            }
        }
        f
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_errors_can_be_ignored_by_lowercase_name() {
        let checks = || {
            vec![Check::new("Port-6443", || {
                error("Port 6443 is in use".into())
            })]
        };
        let e = run(checks(), &[]).unwrap_err().to_string();
        assert!(e.contains("[ERROR Port-6443]: Port 6443 is in use"), "{e}");
        assert!(run(checks(), &ignore_set(&["port-6443".into()]).unwrap()).is_ok());
        assert!(run(checks(), &ignore_set(&["all".into()]).unwrap()).is_ok());
    }

    #[test]
    fn all_cannot_be_mixed_with_individual_checks() {
        assert!(ignore_set(&["all,Swap".into()]).is_err());
    }

    #[test]
    fn check_names_follow_kubeadm_path_naming() {
        assert_eq!(
            file_content("/proc/sys/net/ipv4/ip_forward", "1").name,
            "FileContent--proc-sys-net-ipv4-ip_forward"
        );
        assert_eq!(
            dir_available("/etc/kubernetes/manifests").name,
            "DirAvailable--etc-kubernetes-manifests"
        );
    }

    #[test]
    fn port_in_use_is_an_error() {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let p = l.local_addr().unwrap().port();
        let f = (port(p).run)();
        assert_eq!(f.errors, vec![format!("Port {p} is in use")]);
    }

    fn v(minor: u64) -> KubeVersion {
        KubeVersion {
            major: 1,
            minor,
            patch: 0,
        }
    }

    #[test]
    fn missing_mandatory_executable_is_a_file_existing_error() {
        let d = tempfile::tempdir().unwrap();
        let path = Some(d.path().display().to_string());
        let c = in_path_of("iptables", true, path.clone());
        assert_eq!(c.name, "FileExisting-iptables");
        assert_eq!((c.run)().errors, ["iptables not found in system path"]);
        let e = run(vec![in_path_of("iptables", true, path.clone())], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[ERROR FileExisting-iptables]: iptables not found in system path"),
            "{e}"
        );
    }

    #[test]
    fn missing_optional_executable_is_only_a_warning() {
        let d = tempfile::tempdir().unwrap();
        let f = (in_path_of("socat", false, Some(d.path().display().to_string())).run)();
        assert!(f.errors.is_empty());
        assert_eq!(f.warnings, ["socat not found in system path"]);
    }

    #[test]
    fn executable_found_on_path_passes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("nsenter");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = (in_path_of("nsenter", true, Some(d.path().display().to_string())).run)();
        assert!(f.errors.is_empty() && f.warnings.is_empty());
    }

    #[test]
    fn exec_checks_follow_upstreams_list_and_conntrack_only_before_1_32() {
        let names = |c: Vec<Check>| c.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(exec_checks(Some(v(36)))),
            [
                "FileExisting-ip",
                "FileExisting-iptables",
                "FileExisting-mount",
                "FileExisting-nsenter",
                "FileExisting-ebtables",
                "FileExisting-ethtool",
                "FileExisting-socat",
                "FileExisting-tc",
                "FileExisting-touch"
            ]
        );
        assert_eq!(names(exec_checks(Some(v(31))))[0], "FileExisting-conntrack");
        assert!(!names(exec_checks(None)).contains(&"FileExisting-conntrack".to_string()));
        assert!(!names(exec_checks(Some(v(36)))).contains(&"FileExisting-crictl".to_string()));
    }

    #[test]
    fn cgroup_v1_is_a_system_verification_error_for_kubelet_1_35_and_later() {
        let all: Vec<String> = CGROUPS_V1
            .iter()
            .chain(CGROUPS_V1_OPTIONAL)
            .map(|s| s.to_string())
            .collect();
        let f = cgroups_findings(CgroupMode::V1, &all, Some(v(36)));
        assert_eq!(f.errors, [CGROUP_V1_ERROR]);
        let f = cgroups_findings(CgroupMode::V1, &all, Some(v(34)));
        assert!(f.errors.is_empty());
        assert_eq!(f.warnings, [CGROUP_V1_WARNING]);
        let e = run(
            vec![Check::new("SystemVerification", move || {
                cgroups_findings(CgroupMode::V1, &all, Some(v(37)))
            })],
            &ignore_set(&["SystemVerification".into()]).unwrap(),
        );
        assert!(e.is_ok(), "ignoring SystemVerification makes it a warning");
    }

    #[test]
    fn cgroup_v2_without_the_memory_controller_is_refused() {
        let subs: Vec<String> = [
            "devices", "freezer", "cpu", "cpuset", "pids", "io", "hugetlb",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = cgroups_findings(CgroupMode::V2, &subs, Some(v(36)));
        assert_eq!(f.errors, ["missing required cgroups: memory"]);
        assert_eq!(cgroup_mode_of(0x6367_7270), CgroupMode::V2);
        assert_eq!(cgroup_mode_of(0x0102_1994), CgroupMode::V1);
    }

    #[test]
    fn kubelet_more_than_three_minors_older_than_kubeadm_is_refused() {
        let f = (kubelet_version(Ok(v(32)), None, v(36)).run)();
        assert_eq!(
            f.errors,
            [
                "Kubelet version \"v1.32.0\" is lower than kubeadm can support. Please upgrade kubelet"
            ]
        );
        assert!(
            (kubelet_version(Ok(v(33)), None, v(36)).run)()
                .errors
                .is_empty()
        );
    }

    #[test]
    fn kubelet_newer_than_the_control_plane_is_refused_on_init() {
        let f = (kubelet_version(Ok(v(37)), Some(v(36)), v(37)).run)();
        assert!(
            f.errors[0].starts_with("the kubelet version is higher than the control plane version"),
            "{f:?}"
        );
        // join knows no control-plane version yet: only the lower bound applies
        assert!(
            (kubelet_version(Ok(v(37)), None, v(36)).run)()
                .errors
                .is_empty()
        );
        let f = (kubelet_version(Err("no kubelet".into()), None, v(36)).run)();
        assert_eq!(f.errors, ["couldn't get kubelet version: no kubelet"]);
    }

    #[test]
    fn kubernetes_version_newer_than_kubeadm_is_a_warning() {
        let f = (kubernetes_version(v(37), v(36)).run)();
        assert!(f.errors.is_empty() && f.warnings[0].contains("Kubeadm version: 1.36.x"));
    }

    #[test]
    fn sandbox_image_differing_from_kubeadms_pause_is_warned_about() {
        let w = sandbox_image_warning(
            Some("registry.k8s.io/pause:3.6"),
            "registry.k8s.io/pause:3.10.2",
        )
        .unwrap();
        assert_eq!(
            w,
            "detected that the sandbox image \"registry.k8s.io/pause:3.6\" of the container runtime is inconsistent with that used by kubeadm. It is recommended to use \"registry.k8s.io/pause:3.10.2\" as the CRI sandbox image."
        );
        assert!(
            sandbox_image_warning(
                Some("registry.k8s.io/pause:3.10.2"),
                "registry.k8s.io/pause:3.10.2"
            )
            .is_none()
        );
        assert!(sandbox_image_warning(None, "registry.k8s.io/pause:3.10.2").is_none());
    }

    #[test]
    fn sandbox_image_is_read_from_the_cri_info_config_like_kubeadm() {
        let info = serde_json::json!({"config": {"sandboxImage": "registry.k8s.io/pause:3.9"}});
        assert_eq!(
            sandbox_image_of_info(&info).as_deref(),
            Some("registry.k8s.io/pause:3.9")
        );
        // containerd 2.0: a config without the field is "" (and kubeadm warns about "")
        let info = serde_json::json!({"config": {"containerd": {}}});
        assert_eq!(sandbox_image_of_info(&info).as_deref(), Some(""));
        assert!(sandbox_image_warning(Some(""), "registry.k8s.io/pause:3.10.2").is_some());
        // no config at all: kubeadm cannot tell and says nothing
        let info = serde_json::json!({"status": {}});
        assert_eq!(sandbox_image_of_info(&info), None);
    }

    #[test]
    fn image_pull_policy_never_skips_and_unknown_policies_fail() {
        let f = (image_pull(
            "unix:///nonexistent.sock".into(),
            vec![],
            String::new(),
            "Never".into(),
        )
        .run)();
        assert!(f.errors.is_empty());
        let f = (image_pull(
            "unix:///nonexistent.sock".into(),
            vec![],
            String::new(),
            "Sometimes".into(),
        )
        .run)();
        assert_eq!(f.errors, ["unsupported pull policy \"Sometimes\""]);
    }

    #[test]
    fn kernel_release_and_required_options_follow_the_default_sys_spec() {
        assert!(kernel_release_supported("6.18.44-fc-v1252"));
        assert!(kernel_release_supported("5.15.0-91-generic"));
        assert!(!kernel_release_supported("5.8.0"));
        assert!(!kernel_release_supported("4.19.0"));
        let mut cfg: String = KERNEL_REQUIRED
            .iter()
            .map(|(n, _)| format!("CONFIG_{n}=y\n"))
            .collect();
        assert!(missing_kernel_options(&cfg).is_empty());
        cfg = cfg.replace(
            "CONFIG_NETFILTER_XT_TARGET_REDIRECT=y",
            "CONFIG_IP_NF_TARGET_REDIRECT=m",
        );
        assert!(missing_kernel_options(&cfg).is_empty(), "aliases count");
        cfg = cfg.replace("CONFIG_MEMCG=y", "# CONFIG_MEMCG is not set");
        assert_eq!(missing_kernel_options(&cfg), ["CONFIG_MEMCG"]);
    }

    #[test]
    fn swap_on_is_only_a_warning_like_upstream() {
        // The check reads the real (or SIM_ROOT) /proc/swaps; whatever it finds, it never errors.
        assert!((swap().run)().errors.is_empty());
    }

    #[test]
    fn swap_listed_in_proc_swaps_counts_as_on() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("swaps");
        std::fs::write(&f, "Filename Type Size Used Priority\n").unwrap();
        assert!(!swap_on(&f));
        std::fs::write(
            &f,
            "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n",
        )
        .unwrap();
        assert!(swap_on(&f));
    }
}
