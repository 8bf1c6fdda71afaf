//! Preflight: judge every host before anything changes. Each host gets PASS, WARN or FAIL
//! with reasons; `up` stops on any FAIL, `check` prints the table.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::cluster::probe::probe_many;
use crate::facts::Facts;
use crate::inventory::{ControlPlane, Host};

const MIN_MASTER_CPUS: u32 = 2;
const MIN_MASTER_MEM_MB: u64 = 1700;
const SUPPORTED_OS: &[(&str, &str)] = &[
    ("debian", "12"),
    ("debian", "13"),
    ("ubuntu", "22.04"),
    ("ubuntu", "24.04"),
];
const REQUIRED_BINARIES: &[&str] = &[
    "sh",
    "systemctl",
    "apt-get",
    "dpkg",
    "ip",
    "modprobe",
    "sysctl",
];

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
            let verdicts = judge(ctx, &network);
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
    vip_answers: Option<bool>,
    probe_errors: HashMap<String, String>,
}

/// One host's answer to the `preflight` probe.
#[derive(Debug, Deserialize)]
struct NetworkView {
    unreachable: Vec<String>,
    vip_answers: Option<bool>,
}

async fn network_probes(ctx: &Ctx) -> NetworkProbes {
    let vip_held = vip_holder(ctx).is_some();
    let first_master = ctx.usable(Host::is_master).next().map(|h| h.name.clone());
    let hosts: Vec<&Host> = ctx
        .usable(|h| ctx.hosts.get(&h.name).is_some_and(|s| s.facts.is_some()))
        .collect();
    // Only one host probes the VIP: every probe sends traffic to it.
    let vip_prober = if vip_held { None } else { first_master };
    let vars = match &ctx.inventory.cluster.control_plane {
        ControlPlane::Vip { vip, port, .. } => {
            json!({"vip_prober": vip_prober, "vip": vip, "vip_port": port})
        }
        ControlPlane::LoadBalancer { .. } => json!({"vip_prober": null}),
    };
    let mut probes = NetworkProbes::default();
    for (host, answer) in probe_many::<NetworkView>(ctx, "preflight", &hosts, &vars).await {
        match answer {
            Ok(view) => {
                probes.unreachable.insert(host, view.unreachable);
                if view.vip_answers.is_some() {
                    probes.vip_answers = view.vip_answers;
                }
            }
            Err(e) => {
                probes.probe_errors.insert(host, e.to_string());
            }
        }
    }
    probes
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
            (None, Some(f)) => judge_host(ctx, host, f, &mut v),
        }
        if let Some(list) = net.unreachable.get(&host.name)
            && !list.is_empty()
        {
            v.fail(format!(
                "cannot reach master(s) {}; open the network between nodes",
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
        first.fail(format!(
            "VIP {vip} already answers on the network but no master holds it; pick a free address"
        ));
    }
    if let Some(holder) = vip_holder(ctx)
        && let Some(v) = verdicts.iter_mut().find(|v| v.host == holder)
    {
        v.reasons.push("holds the VIP".into());
    }
    verdicts
}

fn judge_host(ctx: &Ctx, host: &Host, f: &Facts, v: &mut HostVerdict) {
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
            "unsupported OS {} {}; supported: Debian 12/13, Ubuntu 22.04/24.04",
            f.os_id, f.os_version
        ));
    }
    if f.init != "systemd" {
        v.fail("systemd is not running; kubelet and the runtime need it");
    }
    let missing: Vec<&str> = REQUIRED_BINARIES
        .iter()
        .copied()
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
        v.warn("swap is on; `up` turns it off (now and across reboots)");
    }
    ports_free(ctx, host, f, v);
}

fn ports_free(ctx: &Ctx, host: &Host, f: &Facts, v: &mut HostVerdict) {
    // Ports held by our own control plane / kubelet are fine on a re-run.
    let ours = f.has_control_plane_manifests || f.has_kubelet_conf;
    let mut wanted: Vec<u16> = if host.is_master() {
        ctx.defaults.ports.master()
    } else {
        ctx.defaults.ports.worker()
    };
    if host.is_master()
        && let ControlPlane::Vip { port, .. } = ctx.inventory.cluster.control_plane
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
    for (host, why) in dupes {
        if let Some(v) = verdicts.iter_mut().find(|v| v.host == host) {
            v.fail(why);
        }
    }
}
