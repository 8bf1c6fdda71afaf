//! Small helpers shared by the simulators: files, versions, host identity, time.

use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::paths;

/// Writes a file atomically (temp file + rename) with the given mode, creating parents.
pub fn write_file(path: &Path, content: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(content.as_ref())?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A Kubernetes release version `MAJOR.MINOR.PATCH` (a leading `v` is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl KubeVersion {
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let core = t.split(['-', '+']).next().unwrap_or(t);
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 {
            bail!("version {s:?} is not of the form vMAJOR.MINOR.PATCH");
        }
        let n = |x: &str| -> Result<u64> {
            x.parse::<u64>()
                .with_context(|| format!("version {s:?} is not of the form vMAJOR.MINOR.PATCH"))
        };
        Ok(Self {
            major: n(parts[0])?,
            minor: n(parts[1])?,
            patch: n(parts[2])?,
        })
    }
}

impl std::fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version of an installed simulator package: its version file, else `SIM_KUBE_VERSION`.
pub fn package_version(package: &str) -> Result<KubeVersion> {
    let file = paths::p(&format!("{}/{package}.version", paths::VERSION_DIR));
    if let Ok(s) = fs::read_to_string(&file) {
        return KubeVersion::parse(&s).with_context(|| format!("reading {}", file.display()));
    }
    match std::env::var("SIM_KUBE_VERSION") {
        Ok(v) => KubeVersion::parse(&v).context("reading SIM_KUBE_VERSION"),
        Err(_) => bail!(
            "cannot tell the {package} version: {} is missing and SIM_KUBE_VERSION is unset; reinstall the {package} package",
            file.display()
        ),
    }
}

/// The node name the real tools default to: the lower-cased host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// The address kubeadm and the kubelet pick when none is configured, like the real ones: the
/// host name's address when it is assigned here (the lab's /etc/hosts names every host), else
/// the address of the default route's interface, else the first address of a physical-looking
/// interface (bridges such as docker0 are skipped).
pub fn default_ipv4() -> Option<std::net::Ipv4Addr> {
    let local = local_ipv4s();
    let by_name = std::net::ToSocketAddrs::to_socket_addrs(&(hostname().as_str(), 0))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_loopback() => Some(ip),
            _ => None,
        })
        .find(|ip| local.iter().any(|(_, l)| l == ip));
    if by_name.is_some() {
        return by_name;
    }
    let default_iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| {
            t.lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[1] == "00000000")
                .map(|f| f[0].to_string())
        });
    if let Some(iface) = default_iface
        && let Some((_, ip)) = local.iter().find(|(n, _)| *n == iface)
    {
        return Some(*ip);
    }
    const VIRTUAL: &[&str] = &[
        "docker", "br-", "veth", "cni", "flannel", "cali", "weave", "virbr", "kube", "vxlan",
    ];
    local
        .into_iter()
        .find(|(n, _)| !VIRTUAL.iter().any(|v| n.starts_with(v)))
        .map(|(_, ip)| ip)
}

/// IPv4 addresses of interfaces that are up, except loopback, sorted by interface name.
fn local_ipv4s() -> Vec<(String, std::net::Ipv4Addr)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return vec![];
    };
    let mut found = Vec::new();
    for ifa in addrs {
        let up = ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
        let lo = ifa
            .flags
            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK);
        if !up || lo {
            continue;
        }
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            found.push((ifa.interface_name.clone(), sin.ip()));
        }
    }
    found.sort();
    found
}

pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Kubernetes MicroTime (leases): RFC 3339 with microseconds.
pub fn now_micro() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{}.{:06}Z",
        format_rfc3339(t).trim_end_matches('Z'),
        t.microsecond()
    )
}

pub fn parse_rfc3339(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Parses a Go duration such as `24h`, `1h30m`, `90s`, `0s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    if s.trim().is_empty() {
        bail!("invalid duration {s:?}");
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => bail!("invalid duration {s:?}: unknown unit {unit:?}"),
        };
    }
    if !num.is_empty() {
        if num == "0" {
            return Ok(std::time::Duration::ZERO);
        }
        bail!("invalid duration {s:?}: missing unit");
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// Runs `systemctl ARGS`, failing with the command's own output.
pub fn systemctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .context("running systemctl (is systemd installed?)")?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// YAML the way Go's yaml writes it for our documents: long tokens (certificate data) stay on
/// one plain line instead of becoming folded block scalars.
pub fn to_yaml<T: serde::Serialize>(v: &T) -> Result<String> {
    let mut o = serde_saphyr::SerializerOptions::default();
    o.folded_wrap_chars = usize::MAX / 2;
    serde_saphyr::to_string_with_options(v, o).map_err(|e| anyhow::anyhow!("serializing YAML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        assert_eq!(parse_duration("24h").unwrap().as_secs(), 86400);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("0").unwrap().as_secs(), 0);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn versions_compare_numerically_and_accept_a_v_prefix() {
        let a = KubeVersion::parse("v1.9.0").unwrap();
        let b = KubeVersion::parse("1.10.0").unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "v1.10.0");
        assert!(KubeVersion::parse("1.36").is_err());
    }
}
