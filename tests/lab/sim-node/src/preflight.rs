//! kubeadm's preflight checks, with the real check names and messages.

use anyhow::{Result, bail};
use std::net::TcpListener;
use std::path::Path;

use crate::paths;

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

pub fn file_available(path: &'static str) -> Check {
    Check::new(check_name("FileAvailable", path), move || {
        if paths::p(path).exists() {
            error(format!("{} already exists", paths::s(path)))
        } else {
            ok()
        }
    })
}

pub fn dir_available(path: &'static str) -> Check {
    Check::new(check_name("DirAvailable", path), move || {
        let p = paths::p(path);
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

/// Swap must be off unless the kubelet is configured with failSwapOn: false.
pub fn swap(fail_swap_on: bool) -> Check {
    Check::new("Swap", move || {
        if !swap_on(&paths::p("/proc/swaps")) {
            return ok();
        }
        if fail_swap_on {
            error("running with swap on is not supported. Please disable swap or set failSwapOn: false in the KubeletConfiguration".into())
        } else {
            Finding {
                warnings: vec!["swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node".into()],
                errors: vec![],
            }
        }
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
