//! Preflight: judge every host before anything changes. Each host gets PASS, WARN or FAIL
//! with reasons; `up` stops on any FAIL, `check` prints the table.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cluster::Ctx;
use crate::cluster::OsFamilies;
use crate::cluster::ca_rotation;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::cluster::probe::probe_many;
use crate::facts::Facts;
use crate::inventory::{ControlPlane, Host, Runtime};

const MIN_MASTER_CPUS: u32 = 2;
const MIN_MASTER_MEM_MB: u64 = 1700;
const SUPPORTED_OS: &[(&str, &str)] = &[
    ("debian", "12"),
    ("debian", "13"),
    ("ubuntu", "22.04"),
    ("ubuntu", "24.04"),
];
/// Needed on every host before anything is installed (the OS family adds its own).
const REQUIRED_BINARIES: &[&str] = &["sh", "systemctl", "ip", "modprobe", "sysctl"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostVerdict {
    pub host: String,
    pub roles: String,
    pub address: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

impl HostVerdict {
    fn warn(&mut self, why: impl Into<String>) {
        self.verdict = self.verdict.max(Verdict::Warn);
        self.reasons.push(why.into());
    }
    fn fail(&mut self, why: impl Into<String>) {
        self.verdict = Verdict::Fail;
        self.reasons.push(why.into());
    }
}

/// Preflight records its verdicts; `fatal` makes any FAIL stop the pipeline (for `up`).
pub struct Preflight {
    pub fatal: bool,
    pub verdicts: std::sync::Mutex<Vec<HostVerdict>>,
}

impl Preflight {
    pub const fn new(fatal: bool) -> Self {
        Preflight {
            fatal,
            verdicts: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn verdicts(&self) -> Vec<HostVerdict> {
        self.verdicts.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Phase for Preflight {
    fn title(&self) -> &'static str {
        "Preflight checks"
    }

    fn read_only(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let network = network_probes(ctx).await;
            let storage = storage_probes(ctx).await;
            let mut verdicts = judge(ctx, &network);
            for v in &mut verdicts {
                for why in storage.get(&v.host).into_iter().flatten() {
                    v.fail(why.clone());
                }
            }
            let failed: Vec<String> = verdicts
                .iter()
                .filter(|v| v.verdict == Verdict::Fail)
                .map(|v| format!("{} ({})", v.host, v.reasons.join("; ")))
                .collect();
            if let Ok(mut store) = self.verdicts.lock() {
                *store = verdicts;
            }
            if self.fatal && !failed.is_empty() {
                return Err(PhaseError::new(
                    self.title(),
                    format!(
                        "nothing was changed; fix these hosts first (details: installer check): {}",
                        failed.join(", ")
                    ),
                ));
            }
            Ok(())
        })
    }
}

/// What the hosts saw of each other and of the VIP.
#[derive(Default)]
struct NetworkProbes {
    unreachable: HashMap<String, Vec<String>>,
    /// Weave's UDP ports that neither answered nor were refused: probably filtered.
    udp_silent: HashMap<String, Vec<String>>,
    vip_answers: Option<bool>,
    /// What answered on the VIP ("port 22 accepts connections, MAC ..."), to find the squatter.
    vip_seen: String,
    probe_errors: HashMap<String, String>,
}

/// One host's answer to the `preflight` probe.
#[derive(Debug, Deserialize)]
struct NetworkView {
    unreachable: Vec<String>,
    #[serde(default)]
    udp_silent: Vec<String>,
    vip_answers: Option<bool>,
    #[serde(default)]
    vip_seen: String,
}

async fn network_probes(ctx: &Ctx) -> NetworkProbes {
    let hosts: Vec<&Host> = ctx
        .usable(|h| ctx.hosts.get(&h.name).is_some_and(|s| s.facts.is_some()))
        .collect();
    let vars = network_vars(ctx, &hosts);
    let mut probes = NetworkProbes::default();
    for (host, answer) in probe_many::<NetworkView>(ctx, "preflight", &hosts, &vars).await {
        match answer {
            Ok(view) => {
                probes.unreachable.insert(host.clone(), view.unreachable);
                probes.udp_silent.insert(host, view.udp_silent);
                if view.vip_answers.is_some() {
                    probes.vip_answers = view.vip_answers;
                    probes.vip_seen = view.vip_seen;
                }
            }
            Err(e) => {
                probes.probe_errors.insert(host, e.to_string());
            }
        }
    }
    probes
}

/// What the `preflight` probe needs: the masters and their ports, the VIP and who probes it,
/// and Weave's peers when Weave is on (`null` when off: the playbook tests it).
pub(crate) fn network_vars(ctx: &Ctx, hosts: &[&Host]) -> Value {
    let vip_held = vip_holder(ctx).is_some();
    let first_master = ctx.usable(Host::is_master).next().map(|h| h.name.clone());
    // Only one host probes the VIP: every probe sends traffic to it.
    let vip_prober = if vip_held { None } else { first_master };
    let masters: Vec<&str> = ctx.inventory.masters().map(|m| m.name.as_str()).collect();
    let mut master_ports = vec![
        ctx.defaults.ports.apiserver,
        ctx.defaults.ports.etcd_client,
        ctx.defaults.ports.etcd_peer,
        ctx.defaults.ports.kubelet,
    ];
    let mut vars = json!({"vip_prober": null, "masters": masters, "weave": null});
    if let ControlPlane::Vip { vip, port, .. } = &ctx.inventory.cluster.control_plane {
        master_ports.push(*port);
        vars["vip_prober"] = json!(vip_prober);
        vars["vip"] = json!(vip);
        vars["vip_port"] = json!(port);
    }
    vars["master_ports"] = json!(master_ports);
    if ctx.inventory.addons.weave.enabled {
        let peers: Vec<_> = hosts
            .iter()
            .map(|h| json!({"name": h.name, "address": h.address}))
            .collect();
        vars["weave"] = json!({
            "peers": peers,
            "tcp": ctx.defaults.ports.weave_tcp,
            "udp": ctx.defaults.ports.weave_udp,
        });
    }
    vars
}

/// One raw disk the inventory gives Rook, as the `storage-devices` probe saw it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StorageDevice {
    pub device: String,
    pub exists: bool,
    pub block: bool,
    /// Filesystem or partition-table signature found on it ("" when none).
    pub signature: String,
    pub partitions: u32,
}

/// Why Rook may not have `d`; `None` when it is an empty block device. Never wiped for the user.
pub(crate) fn storage_problem(d: &StorageDevice) -> Option<String> {
    let dev = &d.device;
    if !d.exists {
        return Some(format!("storage device {dev} does not exist"));
    }
    if !d.block {
        return Some(format!("storage device {dev} is not a block device"));
    }
    if !d.signature.is_empty() || d.partitions > 0 {
        return Some(format!(
            "storage device {dev} is not empty ({}); Rook needs a raw disk: wipe it yourself (wipefs -a {dev}) if its data may go, nothing is wiped for you",
            if d.signature.is_empty() {
                format!("{} partition(s)", d.partitions)
            } else {
                format!("{} signature", d.signature)
            }
        ));
    }
    None
}

/// Storage problems per host, for hosts that list disks while Rook is enabled.
async fn storage_probes(ctx: &Ctx) -> HashMap<String, Vec<String>> {
    let mut problems: HashMap<String, Vec<String>> = HashMap::new();
    if !ctx.inventory.addons.rook.enabled {
        return problems;
    }
    let hosts: Vec<&Host> = ctx.usable(|h| !h.storage.is_empty()).collect();
    for (host, answer) in
        probe_many::<Vec<StorageDevice>>(ctx, "storage-devices", &hosts, &json!({})).await
    {
        let list = problems.entry(host).or_default();
        match answer {
            Ok(devices) => list.extend(devices.iter().filter_map(storage_problem)),
            Err(e) => list.push(format!("cannot inspect its storage devices: {e}")),
        }
    }
    problems
}

/// The master currently holding the VIP, if any.
fn vip_holder(ctx: &Ctx) -> Option<String> {
    let ControlPlane::Vip { vip, .. } = ctx.inventory.cluster.control_plane else {
        return None;
    };
    ctx.inventory
        .masters()
        .find(|m| {
            ctx.hosts
                .get(&m.name)
                .and_then(|s| s.facts.as_ref())
                .is_some_and(|f| f.has_address(vip))
        })
        .map(|m| m.name.clone())
}

fn judge(ctx: &Ctx, net: &NetworkProbes) -> Vec<HostVerdict> {
    let rules = Rules::from_ctx(ctx);
    let mut verdicts = Vec::new();
    for host in &ctx.inventory.hosts {
        let roles: Vec<String> = host.roles.iter().map(|r| r.to_string()).collect();
        let mut v = HostVerdict {
            host: host.name.clone(),
            roles: roles.join(","),
            address: host.address.to_string(),
            verdict: Verdict::Pass,
            reasons: Vec::new(),
        };
        let state = ctx.hosts.get(&host.name);
        match (
            state.and_then(|s| s.error.as_ref()),
            state.and_then(|s| s.facts.as_ref()),
        ) {
            (Some(why), _) => v.fail(why.clone()),
            (None, None) => v.fail("no facts gathered"),
            (None, Some(f)) => judge_host(&rules, host, f, &mut v),
        }
        if let Some(list) = net.unreachable.get(&host.name)
            && !list.is_empty()
        {
            let weave = if ctx.inventory.addons.weave.enabled {
                "; Weave Net's 6783/tcp and 6783-6784/udp between all nodes"
            } else {
                ""
            };
            v.fail(format!(
                "cannot reach {}; open these ports between the nodes (SSH to every master; 6443, 2379-2380, 10250 and the VIP port between masters{weave})",
                list.join(", ")
            ));
        }
        if let Some(list) = net.udp_silent.get(&host.name)
            && !list.is_empty()
        {
            v.warn(format!(
                "no answer from {} (not even \"port unreachable\"): a firewall probably drops Weave Net's UDP; pods on different nodes would not reach each other",
                list.join(", ")
            ));
        }
        if let Some(why) = net.probe_errors.get(&host.name) {
            v.warn(format!("network probe failed: {why}"));
        }
        verdicts.push(v);
    }
    cross_host_checks(ctx, &mut verdicts);
    if net.vip_answers == Some(true)
        && let ControlPlane::Vip { vip, .. } = ctx.inventory.cluster.control_plane
        && let Some(first) = verdicts.iter_mut().find(|v| v.roles.contains("master"))
    {
        first.fail(vip_taken_message(vip, &net.vip_seen));
    }
    if let Some(holder) = vip_holder(ctx)
        && let Some(v) = verdicts.iter_mut().find(|v| v.host == holder)
    {
        v.reasons.push("holds the VIP".into());
    }
    verdicts
}

/// The refusal when another machine answers on the VIP, naming what answered.
fn vip_taken_message(vip: impl std::fmt::Display, seen: &str) -> String {
    let seen = if seen.is_empty() {
        String::new()
    } else {
        format!(" ({seen})")
    };
    format!(
        "VIP {vip} already answers on the network{seen} but no master holds it; pick a free address, or stop what holds it (a keepalived left from an earlier cluster, say)"
    )
}

/// What preflight judges a host against: the run's settings, gathered before any host is
/// looked at, so the judgment itself is a pure function of facts (and unit-tested).
pub(crate) struct Rules<'a> {
    pub master_ports: Vec<u16>,
    pub worker_ports: Vec<u16>,
    /// haproxy's port on the masters, when keepalived + haproxy hold a VIP.
    pub vip_port: Option<u16>,
    pub families: &'a OsFamilies,
    pub runtime: Runtime,
    pub containerd_minimum: &'a semver::Version,
    pub kubernetes_minor: String,
    /// The inventory's exact version: a cluster member at another one needs `installer upgrade`.
    pub kubernetes: String,
    /// `cluster.kubeadm.KubeletConfiguration.failCgroupV1: false` (kubelet's own escape hatch).
    pub allow_cgroup_v1: bool,
    /// The cluster CA of the state directory (its discovery hash, and where it is), when there
    /// is one and no CA rotation is under way: a cluster member must trust that same CA.
    pub state_ca: Option<(String, String)>,
}

impl<'a> Rules<'a> {
    fn from_ctx(ctx: &'a Ctx) -> Rules<'a> {
        let allow_cgroup_v1 = ctx
            .kubeadm_setting("KubeletConfiguration", "failCgroupV1")
            .and_then(serde_json::Value::as_bool)
            == Some(false);
        Rules {
            master_ports: ctx.defaults.ports.master(),
            worker_ports: ctx.defaults.ports.worker(),
            vip_port: match ctx.inventory.cluster.control_plane {
                ControlPlane::Vip { port, .. } => Some(port),
                ControlPlane::LoadBalancer { .. } => None,
            },
            families: &ctx.os_families,
            runtime: ctx.inventory.cluster.runtime,
            containerd_minimum: &ctx.defaults.containerd.minimum,
            kubernetes_minor: ctx.inventory.cluster.kubernetes.minor_string(),
            kubernetes: ctx.inventory.cluster.kubernetes.to_string(),
            allow_cgroup_v1,
            state_ca: state_ca(ctx),
        }
    }
}

/// Without a state directory, the CAs are recovered from the first master that holds them
/// and laid down on every master: members that trust another CA than that master's belong to
/// another cluster, and would be broken or counted as ours. `members`: (host, CA hash).
fn mixed_clusters(hosts: &[Host], members: &[(String, String)]) -> Vec<(String, String)> {
    let first_master = hosts
        .iter()
        .filter(|h| h.is_master())
        .find_map(|h| members.iter().find(|(name, _)| *name == h.name));
    let Some((source, ours)) = first_master else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|(_, hash)| hash != ours)
        .map(|(name, hash)| {
            (
                name.clone(),
                format!(
                    "this host is a member of another cluster: it trusts the CA {hash}, {source} (where the CAs would be recovered from) trusts {ours}; take it out of the inventory or `installer reset` it"
                ),
            )
        })
        .collect()
}

/// The state directory's cluster CA, unless a rotation has the hosts trusting two CAs.
fn state_ca(ctx: &Ctx) -> Option<(String, String)> {
    ca_rotation::refuse_while_rotating(ctx).ok()?;
    let path = ca_rotation::pki_dir(ctx).join("ca.crt");
    let pem = std::fs::read_to_string(&path).ok()?;
    let hash = crate::pki::discovery_hash(&pem).ok()?;
    Some((hash, path.display().to_string()))
}

/// A cluster member whose CA is not the state directory's: it belongs to another cluster (or
/// this state directory does). `up` would overwrite a master's CA files and break its control
/// plane, or count a worker of another cluster as joined.
fn foreign_cluster(rules: &Rules, f: &Facts) -> Option<String> {
    let (ours, path) = rules.state_ca.as_ref()?;
    if !f.is_cluster_member() {
        return None;
    }
    let theirs = crate::pki::discovery_hash(&f.ca_cert_pem()?).ok()?;
    if &theirs == ours {
        return None;
    }
    Some(format!(
        "this host is a member of another cluster: it trusts the CA {theirs}, the state directory's ({path}) is {ours}; run from the directory that holds this cluster's state, or move that pki directory aside (the CAs are then recovered from the masters), or `installer reset` the host to make it ours"
    ))
}

/// A cluster member whose kubelet is at another version than the inventory's: `up` never
/// changes a member's version (that is `installer upgrade`, one minor at a time).
fn version_change(rules: &Rules, f: &Facts) -> Option<String> {
    let installed = f.packages.get("kubelet")?;
    let version = installed.split('-').next().unwrap_or(installed);
    if !f.has_kubelet_conf || version == rules.kubernetes {
        return None;
    }
    Some(format!(
        "a cluster member with kubelet {version}, the inventory says {}: up never changes a member's version; to upgrade run `installer upgrade -i INVENTORY --to {}`, or, after an upgrade, set cluster.kubernetes: {version} in the inventory",
        rules.kubernetes, rules.kubernetes
    ))
}

fn judge_host(rules: &Rules, host: &Host, f: &Facts, v: &mut HostVerdict) {
    if !f.root_ok {
        let why = f
            .root_error
            .clone()
            .unwrap_or_else(|| "no root access".into());
        v.fail(format!(
            "root access failed ({why}); allow passwordless sudo for {} or set ssh.sudoPasswordEnv",
            f.user
        ));
    }
    if !SUPPORTED_OS.contains(&(f.os_id.as_str(), f.os_version.as_str())) {
        v.fail(format!(
            "unsupported OS {} {} ({}); supported: Debian 12/13, Ubuntu 22.04/24.04",
            f.os_id, f.os_version, f.os_pretty
        ));
    }
    if f.init != "systemd" {
        v.fail("systemd is not running; kubelet and the runtime need it");
    }
    if let Some(why) = version_change(rules, f) {
        v.fail(why);
    }
    if let Some(why) = foreign_cluster(rules, f) {
        v.fail(why);
    }
    let family_commands: Vec<String> = rules
        .families
        .of(f)
        .map(|fam| fam.commands.clone())
        .unwrap_or_default();
    let missing: Vec<&str> = REQUIRED_BINARIES
        .iter()
        .copied()
        .chain(family_commands.iter().map(String::as_str))
        .filter(|b| !f.binaries.contains(*b))
        .collect();
    if !missing.is_empty() {
        v.fail(format!("missing commands: {}", missing.join(", ")));
    }
    if f.uid != 0 && !f.binaries.contains("sudo") {
        v.fail(format!("{} is not root and sudo is not installed", f.user));
    }
    if !f.has_address(host.address) {
        let why = format!(
            "{} is not on any interface of this host (NAT?); use the host's own address",
            host.address
        );
        if host.is_master() {
            v.fail(why)
        } else {
            v.warn(why)
        }
    }
    if host.is_master() {
        if f.cpus < MIN_MASTER_CPUS {
            v.fail(format!(
                "{} CPU(s); a master needs at least {MIN_MASTER_CPUS}",
                f.cpus
            ));
        }
        if f.mem_mb < MIN_MASTER_MEM_MB {
            v.fail(format!(
                "{} MB RAM; a master needs at least {MIN_MASTER_MEM_MB} MB",
                f.mem_mb
            ));
        }
    }
    if f.swap_active {
        v.warn("swap is on; `up` turns it off (now, across reboots, and its systemd units)");
    }
    cgroups(rules, f, v);
    runtime_conflicts(rules, f, v);
    ports_free(rules, host, f, v);
}

/// kubelet 1.35+ refuses cgroup v1 unless its config says failCgroupV1: false.
fn cgroups(rules: &Rules, f: &Facts, v: &mut HostVerdict) {
    if f.cgroup_v2 {
        return;
    }
    let why = format!(
        "cgroup v1 ({}): kubelet {} refuses it",
        if f.cgroup_fs.is_empty() {
            "unknown"
        } else {
            &f.cgroup_fs
        },
        rules.kubernetes_minor
    );
    if rules.allow_cgroup_v1 {
        v.warn(format!(
            "{why}, but failCgroupV1 is false in cluster.kubeadm (deprecated; move to cgroup v2)"
        ));
    } else {
        v.fail(format!(
            "{why}; boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or set cluster.kubeadm.KubeletConfiguration.failCgroupV1: false"
        ));
    }
}

/// Runtime packages already on the host that `up` must not replace behind the user's back.
fn runtime_conflicts(rules: &Rules, f: &Facts, v: &mut HostVerdict) {
    if let Some(old) = f.packages.get("containerd") {
        let upstream = old.split(['~', '+', '-']).next().unwrap_or(old);
        let old_enough = semver::Version::parse(upstream)
            .map(|have| have < *rules.containerd_minimum)
            .unwrap_or(true);
        if old_enough {
            v.fail(format!(
                "the distribution's containerd {old} is installed; Kubernetes {} needs containerd >= {} (containerd.io): remove it first (apt-get purge containerd runc), nothing is removed for you",
                rules.kubernetes_minor, rules.containerd_minimum
            ));
        }
    }
    if rules.runtime == Runtime::Docker && f.packages.contains_key("docker.io") {
        v.fail(
            "the distribution's docker.io is installed; the docker runtime uses Docker Engine (docker-ce) with cri-dockerd: remove docker.io first (apt-get purge docker.io), nothing is removed for you",
        );
    }
}

fn ports_free(rules: &Rules, host: &Host, f: &Facts, v: &mut HostVerdict) {
    // Ports held by our own control plane / kubelet are fine on a re-run.
    let ours = f.has_control_plane_manifests || f.has_kubelet_conf;
    let mut wanted: Vec<u16> = if host.is_master() {
        rules.master_ports.clone()
    } else {
        rules.worker_ports.clone()
    };
    if host.is_master()
        && let Some(port) = rules.vip_port
        && !f.unit_active("haproxy")
    {
        wanted.push(port);
    }
    let busy: Vec<String> = wanted
        .iter()
        .filter(|p| f.listening_ports.contains(p))
        .map(u16::to_string)
        .collect();
    if !busy.is_empty() && !ours {
        v.fail(format!(
            "port(s) {} already in use; stop what listens there (ss -ltnp)",
            busy.join(", ")
        ));
    }
}

fn cross_host_checks(ctx: &Ctx, verdicts: &mut [HostVerdict]) {
    let facts: Vec<(String, &Facts)> = ctx
        .inventory
        .hosts
        .iter()
        .filter_map(|h| Some((h.name.clone(), ctx.hosts.get(&h.name)?.facts.as_ref()?)))
        .collect();
    let mut dupes: Vec<(String, String)> = Vec::new();
    let mut check = |what: &str, key: &dyn Fn(&Facts) -> Vec<String>| {
        let mut seen: HashMap<String, String> = HashMap::new();
        for (name, f) in &facts {
            for k in key(f) {
                if let Some(other) = seen.insert(k.clone(), name.clone())
                    && other != *name
                {
                    dupes.push((
                        name.clone(),
                        format!("{what} {k} is also on {other}; clone hosts need fresh identities"),
                    ));
                }
            }
        }
    };
    check("hostname", &|f| vec![f.hostname.clone()]);
    check("product_uuid", &|f| {
        f.product_uuid.iter().cloned().collect()
    });
    check("machine-id", &|f| {
        vec![f.machine_id.clone()]
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect()
    });
    check("MAC", &|f| f.real_macs().map(|(_, m)| m.clone()).collect());
    if state_ca(ctx).is_none() && ca_rotation::refuse_while_rotating(ctx).is_ok() {
        let members: Vec<(String, String)> = facts
            .iter()
            .filter(|(_, f)| f.is_cluster_member())
            .filter_map(|(name, f)| {
                let hash = crate::pki::discovery_hash(&f.ca_cert_pem()?).ok()?;
                Some((name.clone(), hash))
            })
            .collect();
        dupes.extend(mixed_clusters(&ctx.inventory.hosts, &members));
    }
    for (host, why) in dupes {
        if let Some(v) = verdicts.iter_mut().find(|v| v.host == host) {
            v.fail(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::InterfaceAddress;
    use crate::playbook::Playbooks;

    /// Runs the VIP probe of the `preflight` playbook with the VIP on loopback and VIP_PORT as
    /// the load balancer's port; what it leaves in `answers` and `seen`.
    fn probe_vip_on_loopback(vip_port: u16) -> String {
        let source = Playbooks::Embedded.read("preflight/probe-vip.sh").unwrap();
        let vars = json!({"vars": {"vip": "127.0.0.1", "vip_port": vip_port}});
        let script = crate::playbook::Renderer::new()
            .render("probe-vip.sh", &source, &vars)
            .unwrap();
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{script}\nprintf '%s|%s' \"$answers\" \"$seen\""))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn vip_probe_names_the_port_that_answers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let out = probe_vip_on_loopback(open);
        assert!(
            out.starts_with("true|") && out.contains(&format!("port {open} accepts connections")),
            "{out}"
        );
        drop(listener);
        // Nothing listens there any more: the refusal is an answer too (the address is taken).
        let out = probe_vip_on_loopback(open);
        assert!(
            out.starts_with("true|") && out.contains(&format!("port {open} refuses connections")),
            "{out}"
        );
    }

    #[test]
    fn weave_probe_tells_a_listening_peer_a_refusing_one_and_silent_udp_apart() {
        use std::net::{TcpListener, UdpSocket};
        // Three peers on loopback addresses of their own. 127.0.0.2 listens on Weave's TCP
        // port; 127.0.0.3 refuses it and its UDP ports; 127.0.0.4 refuses TCP, but one UDP
        // port is bound and never answers (what a firewall dropping UDP looks like).
        let tcp = TcpListener::bind("127.0.0.2:0").unwrap();
        let tcp_port = tcp.local_addr().unwrap().port();
        let silent = UdpSocket::bind("127.0.0.4:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let closed_port = UdpSocket::bind("127.0.0.4:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peers: Vec<Value> = [
            ("me", "127.0.0.1"),
            ("peer-a", "127.0.0.2"),
            ("peer-b", "127.0.0.3"),
            ("peer-c", "127.0.0.4"),
        ]
        .iter()
        .map(|(name, address)| json!({"name": name, "address": address}))
        .collect();
        let context = json!({
            "host": {"name": "me"},
            "masters": [],
            "vars": {
                "masters": [],
                "master_ports": [],
                "vip_prober": null,
                "weave": {"peers": peers, "tcp": tcp_port, "udp": [silent_port, closed_port]},
            },
        });
        let books = Playbooks::Embedded;
        let tasks =
            crate::playbook::render_all(&books.load("preflight").unwrap(), &context, &books)
                .unwrap();
        let out = std::process::Command::new("bash")
            .arg("-ec")
            .arg(&tasks[0].1)
            .output()
            .unwrap();
        let answer: NetworkView = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert!(answer.unreachable.is_empty(), "{answer:?}");
        assert_eq!(
            answer.udp_silent,
            [format!("peer-c 127.0.0.4:{silent_port}/udp")]
        );
        assert_eq!(answer.vip_answers, None);
    }

    #[test]
    fn a_taken_vip_is_refused_with_what_answered() {
        let message = vip_taken_message(
            "10.0.0.100",
            "port 22 accepts connections, MAC 0a:58:0a:f4:01:01",
        );
        assert!(message.contains("VIP 10.0.0.100 already answers on the network (port 22 accepts connections, MAC 0a:58:0a:f4:01:01)"), "{message}");
        assert!(message.contains("pick a free address"), "{message}");
        assert!(!vip_taken_message("10.0.0.100", "").contains("()"));
    }

    fn families() -> OsFamilies {
        OsFamilies::load(&Playbooks::Embedded).unwrap()
    }

    fn rules<'a>(families: &'a OsFamilies, minimum: &'a semver::Version) -> Rules<'a> {
        Rules {
            master_ports: vec![6443, 2379, 2380, 10250, 10257, 10259],
            worker_ports: vec![10250],
            vip_port: Some(8443),
            families,
            runtime: Runtime::Docker,
            containerd_minimum: minimum,
            kubernetes_minor: "1.36".into(),
            kubernetes: "1.36.2".into(),
            allow_cgroup_v1: false,
            state_ca: None,
        }
    }

    #[test]
    fn a_member_of_another_cluster_is_refused_and_one_of_ours_passes() {
        let ours = crate::pki::ClusterCa::generate().unwrap();
        let other = crate::pki::ClusterCa::generate().unwrap();
        let body = |ca: &crate::pki::ClusterCa| -> String {
            ca.cert_pem(crate::pki::CaKind::Kubernetes)
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect()
        };
        let (families, minimum) = (families(), semver::Version::new(1, 7, 0));
        let mut r = rules(&families, &minimum);
        let hash = ours.discovery_hash().unwrap();
        r.state_ca = Some((hash, "/x/.installer/c/pki/ca.crt".into()));
        let mut f = good_facts();
        f.has_kubelet_conf = true;
        f.ca_cert = Some(body(&ours));
        assert_eq!(foreign_cluster(&r, &f), None);
        f.ca_cert = Some(body(&other));
        let why = foreign_cluster(&r, &f).expect("another cluster's CA is refused");
        assert!(why.contains("member of another cluster"), "{why}");
        assert!(why.contains("/x/.installer/c/pki/ca.crt"), "{why}");
        assert!(why.contains(&other.discovery_hash().unwrap()), "{why}");
        // Leftover files on a host that never joined are simply replaced.
        f.has_kubelet_conf = false;
        assert_eq!(foreign_cluster(&r, &f), None);
    }

    #[test]
    fn without_a_state_directory_members_of_two_clusters_are_refused() {
        let text = "apiVersion: installer/v1\nkind: Inventory\ncluster: {name: c, kubernetes: 1.36.2, controlPlane: {vip: 10.0.0.100}}\nssh: {knownHosts: /tmp/kh}\nhosts:\n  - {name: w1, address: 10.0.0.21, roles: [worker]}\n  - {name: m1, address: 10.0.0.11, roles: [master]}\n  - {name: m2, address: 10.0.0.12, roles: [master]}\n";
        let hosts = crate::inventory::parse(std::path::Path::new("/x/h.yaml"), text)
            .unwrap()
            .inventory
            .hosts;
        let member = |name: &str, ca: &str| (name.to_string(), ca.to_string());
        // The first master that is a member decides, not the first host.
        let found = mixed_clusters(
            &hosts,
            &[
                member("w1", "sha256:b"),
                member("m1", "sha256:a"),
                member("m2", "sha256:a"),
            ],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "w1");
        assert!(
            found[0]
                .1
                .contains("m1 (where the CAs would be recovered from)"),
            "{found:?}"
        );
        assert!(
            mixed_clusters(
                &hosts,
                &[member("m1", "sha256:a"), member("m2", "sha256:a")]
            )
            .is_empty()
        );
        // No master is a member yet: nothing to recover, nothing to compare with.
        assert!(mixed_clusters(&hosts, &[member("w1", "sha256:b")]).is_empty());
    }

    fn master() -> Host {
        let text = "apiVersion: installer/v1\nkind: Inventory\ncluster: {name: c, kubernetes: 1.36.2, controlPlane: {vip: 10.0.0.100}}\nssh: {knownHosts: /tmp/kh}\nhosts:\n  - {name: m1, address: 10.0.0.11, roles: [master]}\n";
        crate::inventory::parse(std::path::Path::new("/x/h.yaml"), text)
            .unwrap()
            .inventory
            .hosts
            .remove(0)
    }

    /// A healthy Debian 12 master, as gather.sh would report it.
    fn good_facts() -> Facts {
        let mut f = Facts {
            os_id: "debian".into(),
            os_version: "12".into(),
            init: "systemd".into(),
            cpus: 2,
            mem_mb: 4000,
            root_ok: true,
            user: "ops".into(),
            uid: 1000,
            cgroup_fs: "cgroup2fs".into(),
            cgroup_v2: true,
            ..Facts::default()
        };
        for b in [
            "sh",
            "systemctl",
            "ip",
            "modprobe",
            "sysctl",
            "sudo",
            "apt-get",
            "dpkg-query",
            "apt-mark",
        ] {
            f.binaries.insert(b.into());
        }
        f.addresses.push(InterfaceAddress {
            interface: "eth0".into(),
            address: "10.0.0.11".parse().unwrap(),
            prefix: 24,
        });
        f
    }

    fn verdict(f: &Facts, tweak: impl FnOnce(&mut Rules)) -> HostVerdict {
        let fams = families();
        let min = semver::Version::new(2, 0, 0);
        let mut r = rules(&fams, &min);
        tweak(&mut r);
        let mut v = HostVerdict {
            host: "m1".into(),
            roles: "master".into(),
            address: "10.0.0.11".into(),
            verdict: Verdict::Pass,
            reasons: vec![],
        };
        judge_host(&r, &master(), f, &mut v);
        v
    }

    #[test]
    fn healthy_master_passes() {
        let v = verdict(&good_facts(), |_| {});
        assert_eq!(v.verdict, Verdict::Pass, "{:?}", v.reasons);
    }

    #[test]
    fn a_member_at_another_version_is_sent_to_installer_upgrade() {
        let mut f = good_facts();
        f.has_kubelet_conf = true;
        f.packages.insert("kubelet".into(), "1.37.1-1.1".into());
        let v = verdict(&f, |_| {});
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("kubelet 1.37.1, the inventory says 1.36.2")
                    && r.contains("installer upgrade")),
            "{:?}",
            v.reasons
        );
        f.packages.insert("kubelet".into(), "1.36.2-1.1".into());
        assert_eq!(verdict(&f, |_| {}).verdict, Verdict::Pass);
        f.has_kubelet_conf = false;
        f.packages.insert("kubelet".into(), "1.35.4-1.1".into());
        assert_eq!(
            verdict(&f, |_| {}).verdict,
            Verdict::Pass,
            "not a member yet: up installs its version"
        );
    }

    #[test]
    fn cgroup_v1_fails_unless_kubelet_is_told_to_accept_it() {
        let mut f = good_facts();
        f.cgroup_v2 = false;
        f.cgroup_fs = "tmpfs".into();
        let v = verdict(&f, |_| {});
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(v.reasons[0].contains("failCgroupV1"), "{:?}", v.reasons);
        let v = verdict(&f, |r| r.allow_cgroup_v1 = true);
        assert_eq!(v.verdict, Verdict::Warn, "{:?}", v.reasons);
    }

    #[test]
    fn old_distribution_containerd_is_refused_with_the_reason() {
        let mut f = good_facts();
        f.packages
            .insert("containerd".into(), "1.6.20~ds1-1+b1".into());
        let v = verdict(&f, |_| {});
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(
            v.reasons[0].contains("containerd >= 2.0.0") && v.reasons[0].contains("1.6.20"),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn missing_package_manager_commands_are_named() {
        let mut f = good_facts();
        f.binaries.remove("apt-mark");
        let v = verdict(&f, |_| {});
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("missing commands: apt-mark")),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn busy_ports_fail_a_fresh_master_but_not_our_own_control_plane() {
        let mut f = good_facts();
        f.listening_ports.insert(6443);
        f.listening_ports.insert(8443);
        let v = verdict(&f, |_| {});
        assert!(
            v.reasons.iter().any(|r| r.contains("6443, 8443")),
            "{:?}",
            v.reasons
        );
        f.has_kubelet_conf = true;
        assert_eq!(verdict(&f, |_| {}).verdict, Verdict::Pass);
    }

    #[test]
    fn small_master_and_swap_are_reported() {
        let mut f = good_facts();
        f.cpus = 1;
        f.swap_active = true;
        let v = verdict(&f, |_| {});
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(v.reasons.iter().any(|r| r.contains("1 CPU(s)")));
        assert!(v.reasons.iter().any(|r| r.contains("swap is on")));
    }

    #[test]
    fn storage_devices_must_be_empty_block_devices() {
        let dev = |exists, block, signature: &str, partitions| StorageDevice {
            device: "/dev/sdb".into(),
            exists,
            block,
            signature: signature.into(),
            partitions,
        };
        assert!(
            storage_problem(&dev(false, false, "", 0))
                .unwrap()
                .contains("does not exist")
        );
        assert!(
            storage_problem(&dev(true, false, "", 0))
                .unwrap()
                .contains("not a block device")
        );
        let fs = storage_problem(&dev(true, true, "ext4", 0)).unwrap();
        assert!(
            fs.contains("ext4 signature") && fs.contains("wipefs -a /dev/sdb"),
            "{fs}"
        );
        assert!(
            storage_problem(&dev(true, true, "", 2))
                .unwrap()
                .contains("2 partition(s)")
        );
        assert_eq!(storage_problem(&dev(true, true, "", 0)), None);
    }

    #[test]
    fn unsupported_os_is_named() {
        let mut f = good_facts();
        f.os_id = "rocky".into();
        f.os_version = "9".into();
        let v = verdict(&f, |_| {});
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("unsupported OS rocky 9")),
            "{:?}",
            v.reasons
        );
    }
}
