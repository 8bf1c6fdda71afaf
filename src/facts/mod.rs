//! What a host has, gathered once per run by the `facts` playbook and parsed into types.
//! Phases read facts; none of them re-probes a host for something facts already know.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub os_id: String,
    pub os_version: String,
    pub os_pretty: String,
    pub os_codename: String,
    /// `ID_LIKE`: the distributions this one derives from (finds its OS family).
    pub os_like: String,
    pub arch: String,
    pub hostname: String,
    pub cpus: u32,
    pub mem_mb: u64,
    pub swap_active: bool,
    pub machine_id: String,
    /// `None` when it could not be read (no root, or no DMI in a container).
    pub product_uuid: Option<String>,
    pub user: String,
    pub uid: u32,
    /// Root access works (directly or through sudo).
    pub root_ok: bool,
    /// Why root access failed, when it did.
    pub root_error: Option<String>,
    pub init: String,
    pub binaries: BTreeSet<String>,
    /// Interface name → MAC address.
    pub macs: BTreeMap<String, String>,
    pub addresses: Vec<InterfaceAddress>,
    pub listening_ports: BTreeSet<u16>,
    /// Installed package → version.
    pub packages: BTreeMap<String, String>,
    /// systemd unit → `is-active` answer.
    pub units: BTreeMap<String, String>,
    /// Filesystem type of /sys/fs/cgroup (`cgroup2fs` on a cgroup v2 host).
    pub cgroup_fs: String,
    pub cgroup_v2: bool,
    pub has_control_plane_manifests: bool,
    pub has_kubelet_conf: bool,
    /// The first certificate of /etc/kubernetes/pki/ca.crt (base64 DER), when there is one.
    pub ca_cert: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    pub address: IpAddr,
    pub prefix: u8,
}

impl Facts {
    /// Parses the `key=value` lines printed by playbooks/facts/gather.sh (and the root probe).
    pub fn parse(unprivileged: &str, root: Option<&str>) -> Facts {
        let mut f = Facts::default();
        for line in unprivileged.lines().chain(root.unwrap_or("").lines()) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key {
                "os_id" => f.os_id = value.into(),
                "os_version" => f.os_version = value.into(),
                "os_pretty" => f.os_pretty = value.into(),
                "os_codename" => f.os_codename = value.into(),
                "os_like" => f.os_like = value.into(),
                "arch" => f.arch = value.into(),
                "hostname" => f.hostname = value.into(),
                "cpus" => f.cpus = value.parse().unwrap_or(0),
                "mem_kb" => f.mem_mb = value.parse::<u64>().unwrap_or(0) / 1024,
                "swap_active" => f.swap_active = value.parse::<u32>().unwrap_or(0) > 0,
                "machine_id" => f.machine_id = value.into(),
                "product_uuid" if !value.is_empty() => f.product_uuid = Some(value.to_lowercase()),
                "user" => f.user = value.into(),
                "uid" => f.uid = value.parse().unwrap_or(u32::MAX),
                "root_uid" => f.root_ok = value == "0",
                "ca_cert" if !value.is_empty() => f.ca_cert = Some(value.into()),
                "init" => f.init = value.into(),
                "binary" => {
                    f.binaries.insert(value.into());
                }
                "mac" => {
                    if let Some((ifname, mac)) = value.split_once(' ') {
                        f.macs.insert(ifname.into(), mac.to_lowercase());
                    }
                }
                "addr" => {
                    if let Some(a) = parse_addr(value) {
                        f.addresses.push(a);
                    }
                }
                "listen" => {
                    if let Ok(p) = value.parse() {
                        f.listening_ports.insert(p);
                    }
                }
                "pkg" => {
                    if let Some((name, version)) = value.split_once(' ') {
                        f.packages.insert(name.into(), version.into());
                    }
                }
                "control_plane_manifests" => f.has_control_plane_manifests = value == "yes",
                "kubelet_conf" => f.has_kubelet_conf = value == "yes",
                "cgroup_fs" => {
                    f.cgroup_v2 = value == "cgroup2fs";
                    f.cgroup_fs = value.into();
                }
                _ => {
                    if let Some(unit) = key.strip_prefix("active_") {
                        f.units.insert(unit.into(), value.into());
                    }
                }
            }
        }
        f
    }

    pub fn has_address(&self, ip: IpAddr) -> bool {
        self.addresses.iter().any(|a| a.address == ip)
    }

    /// The host's cluster CA certificate as PEM, when it has one.
    pub fn ca_cert_pem(&self) -> Option<String> {
        let body = self.ca_cert.as_ref()?;
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        Some(format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        ))
    }

    /// A member of some cluster: kubeadm init or join has run here.
    pub fn is_cluster_member(&self) -> bool {
        self.has_kubelet_conf || self.has_control_plane_manifests
    }

    pub fn unit_active(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(|s| s == "active")
    }

    /// MACs of real interfaces (loopback has none; all-zero ones are ignored).
    pub fn real_macs(&self) -> impl Iterator<Item = (&String, &String)> {
        self.macs
            .iter()
            .filter(|(_, m)| m.as_str() != "00:00:00:00:00:00")
    }
}

fn parse_addr(value: &str) -> Option<InterfaceAddress> {
    let (ifname, cidr) = value.split_once(' ')?;
    let (addr, prefix) = cidr.split_once('/')?;
    Some(InterfaceAddress {
        interface: ifname.into(),
        address: addr.parse().ok()?,
        prefix: prefix.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "os_id=debian\nos_version=12\narch=x86_64\nhostname=master-1\ncpus=2\nmem_kb=2048000\nswap_kb=1048572\nswap_active=1\n\
uid=1000\nuser=ops\ninit=systemd\npackage_manager=apt-get\nbinary=systemctl\nbinary=apt-get\nmac=eth0 AA:BB:CC:00:11:22\nmac=lo 00:00:00:00:00:00\n\
addr=lo 127.0.0.1/8\naddr=eth0 10.213.4.11/24\naddr=eth0 fe80::1/64\nlisten=22\nlisten=6443\nip_forward=0\n\
pkg=kubelet 1.36.2-1.1\nheld=kubelet\nactive_kubelet=active\nactive_haproxy=inactive\ncontrol_plane_manifests=yes\n";

    #[test]
    fn gathered_lines_become_typed_facts() {
        let f = Facts::parse(SAMPLE, Some("root_uid=0\nproduct_uuid=4C4C4544-0042\n"));
        assert_eq!((f.os_id.as_str(), f.os_version.as_str()), ("debian", "12"));
        assert_eq!(f.cpus, 2);
        assert_eq!(f.mem_mb, 2000);
        assert!(f.swap_active);
        assert!(f.root_ok);
        assert_eq!(f.product_uuid.as_deref(), Some("4c4c4544-0042"));
        assert!(f.has_address("10.213.4.11".parse().unwrap()));
        assert_eq!(f.addresses[1].interface, "eth0");
        assert_eq!(f.real_macs().count(), 1);
        assert!(f.listening_ports.contains(&6443));
        assert_eq!(
            f.packages.get("kubelet").map(String::as_str),
            Some("1.36.2-1.1")
        );
        assert!(f.unit_active("kubelet") && !f.unit_active("haproxy"));
        assert!(f.has_control_plane_manifests && !f.has_kubelet_conf);
    }

    #[test]
    fn failed_root_probe_means_no_root() {
        let f = Facts::parse(SAMPLE, None);
        assert!(!f.root_ok);
        assert_eq!(f.product_uuid, None);
    }

    #[test]
    fn gather_script_runs_here_and_parses() {
        let script = include_str!("../../playbooks/facts/gather.sh");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(out.status.success());
        let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), None);
        assert!(f.cpus >= 1 && f.mem_mb > 0, "{f:?}");
        assert!(!f.hostname.is_empty() && !f.os_id.is_empty());
        assert!(f.binaries.contains("sh"));
    }
}
