//! Everything a phase needs: the inventory, the hosts' connections and facts, output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::facts::Facts;
use crate::inventory::{Host, Inventory};
use crate::playbook::{HostReport, HostTarget, Mode, Playbooks, RunOptions, SshRemote};
use crate::ui::{HostLogs, Reporter};

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub forks: usize,
    pub playbooks: Option<PathBuf>,
}

/// The state directory holds CA keys and the admin kubeconfig: if others can read it, stop.
fn refuse_open_state_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(()); // made 0700 below
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the state directory {} is open to others (mode {mode:04o}) and holds the cluster's CA keys: run chmod 700 {} (and check who could read it)",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Whether a host's failure stops the whole run. Masters carry the control plane and etcd's
/// quorum, so a run never goes on without one of them. A worker depends on no other host: when
/// it fails it is left behind (named at the end, `up` exits 1) and the others go on.
pub fn failure_stops_the_run(host: &Host) -> bool {
    host.is_master()
}

pub struct Ctx {
    pub inventory: Inventory,
    pub reporter: Reporter,
    pub logs: HostLogs,
    pub playbooks: Playbooks,
    pub forks: usize,
    /// The Kubernetes minor's defaults (images, ports, API versions).
    pub defaults: super::Defaults,
    /// What differs between distributions, per OS family (`playbooks/os-family/`).
    pub os_families: super::OsFamilies,
    /// Per host, in inventory order of names.
    pub hosts: BTreeMap<String, HostState>,
    /// Set by the PKI phase.
    pub ca: Option<crate::pki::ClusterCa>,
    pub token: Option<crate::pki::BootstrapToken>,
    pub discovery_hash: Option<String>,
    /// The master that ran (or already runs) the first control plane; set by init.
    pub init_master: Option<String>,
}

#[derive(Default)]
pub struct HostState {
    pub remote: Option<SshRemote>,
    pub facts: Option<Facts>,
    /// Why this host cannot be used (connection or fact gathering failed).
    pub error: Option<String>,
}

impl Ctx {
    pub fn new(inventory: Inventory, reporter: Reporter, options: &Options) -> Result<Ctx, String> {
        let playbooks = Playbooks::from_option(options.playbooks.as_deref());
        let defaults =
            super::Defaults::load(&playbooks, &inventory.cluster.kubernetes.minor_string())?;
        let os_families = super::OsFamilies::load(&playbooks)?;
        refuse_open_state_dir(&inventory.state_dir())?;
        let logs = HostLogs::open(
            &inventory.state_dir().join("logs"),
            reporter.redactor().clone(),
        )
        .map_err(|e| {
            format!(
                "cannot create the state directory {}: {e}",
                inventory.state_dir().display()
            )
        })?;
        let hosts = inventory
            .hosts
            .iter()
            .map(|h| (h.name.clone(), HostState::default()))
            .collect();
        Ok(Ctx {
            playbooks,
            forks: options.forks,
            defaults,
            os_families,
            inventory,
            reporter,
            logs,
            hosts,
            ca: None,
            token: None,
            discovery_hash: None,
            init_master: None,
        })
    }

    pub fn run_options(&self, mode: Mode) -> RunOptions {
        RunOptions {
            forks: self.forks,
            mode,
            reporter: self.reporter.clone(),
            logs: Some(self.logs.clone()),
            playbooks: self.playbooks.clone(),
        }
    }

    /// Hosts that are connected and have facts, filtered by `pick`.
    pub fn usable<'a>(
        &'a self,
        pick: impl Fn(&Host) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Host> + 'a {
        self.inventory.hosts.iter().filter(move |h| {
            pick(h)
                && self
                    .hosts
                    .get(&h.name)
                    .is_some_and(|s| s.remote.is_some() && s.error.is_none())
        })
    }

    /// The template context every playbook sees: inventory, this host, its facts, extra vars.
    pub fn host_context(&self, host: &Host, vars: &Value) -> Value {
        let state = self.hosts.get(&host.name);
        let facts = state.and_then(|s| s.facts.as_ref());
        json!({
            "inventory": self.inventory,
            "cluster": self.inventory.cluster,
            "host": host,
            "facts": facts,
            "os": facts.and_then(|f| self.os_families.of(f)),
            "masters": self.inventory.masters().collect::<Vec<_>>(),
            "defaults": self.defaults,
            "vars": vars,
        })
    }

    /// Builds run targets for `hosts` (skipping unusable ones) with per-host context.
    pub fn targets(&self, hosts: &[&Host], vars: &Value) -> Vec<HostTarget<SshRemote>> {
        hosts
            .iter()
            .filter_map(|h| {
                let remote = self.hosts.get(&h.name)?.remote.clone()?;
                Some(HostTarget {
                    name: h.name.clone(),
                    remote,
                    context: self.host_context(h, vars),
                })
            })
            .collect()
    }

    /// The pause image kubeadm expects: the minor's tag, from the user's imageRepository
    /// when their `cluster.kubeadm` ClusterConfiguration sets one.
    pub fn pause_image(&self) -> String {
        let repository = self
            .kubeadm_setting("ClusterConfiguration", "imageRepository")
            .and_then(Value::as_str);
        self.defaults.pause_image(repository)
    }

    /// The CoreDNS image of this cluster: `dns.imageRepository`, else `imageRepository`.
    pub fn coredns_image(&self) -> String {
        let repository = self
            .kubeadm_setting("ClusterConfiguration", "dns")
            .and_then(|dns| dns.get("imageRepository"))
            .or_else(|| self.kubeadm_setting("ClusterConfiguration", "imageRepository"))
            .and_then(Value::as_str);
        self.defaults.coredns_image(repository)
    }

    /// A top-level field the user set in one of their `cluster.kubeadm` documents.
    pub fn kubeadm_setting(&self, kind: &str, field: &str) -> Option<&Value> {
        self.inventory.cluster.kubeadm.get(kind)?.get(field)
    }

    /// The master the API and etcd are reached through.
    pub fn leader(&self) -> Result<Host, String> {
        let name = self
            .init_master
            .as_ref()
            .ok_or("no control plane yet (init has not run)")?;
        self.inventory
            .host(name)
            .cloned()
            .ok_or_else(|| format!("{name} is not in the inventory"))
    }

    /// The eight shared CA files as `{relative path: PEM}`, for the `pki` playbook.
    pub fn shared_files_json(&self) -> Result<Value, String> {
        let ca = self
            .ca
            .as_ref()
            .ok_or("no cluster CA yet (the PKI phase makes it)")?;
        let files: serde_json::Map<String, Value> = ca
            .files()
            .iter()
            .map(|f| {
                (
                    f.path.to_string(),
                    Value::String(String::from_utf8_lossy(f.contents()).into_owned()),
                )
            })
            .collect();
        Ok(Value::Object(files))
    }

    pub fn mark_failed(&mut self, host: &str, why: impl Into<String>) {
        if let Some(state) = self.hosts.get_mut(host)
            && state.error.is_none()
        {
            state.error = Some(why.into());
        }
    }

    /// Runs playbook `name` to change `targets`; any host's failure is recorded against it
    /// and returned, naming each host and why.
    pub async fn apply(
        &mut self,
        name: &str,
        targets: Vec<HostTarget<SshRemote>>,
    ) -> Result<Vec<HostReport>, String> {
        let playbook = self.playbooks.load(name).map_err(|e| e.to_string())?;
        let reports =
            crate::playbook::run(&playbook, targets, &self.run_options(Mode::Apply)).await;
        let failed = self.absorb(&reports);
        if failed.is_empty() {
            Ok(reports)
        } else {
            Err(failed.join("; "))
        }
    }

    /// Records the failures of a playbook run in PHASE against their hosts, like `absorb`,
    /// and returns only those that stop the run ([`failure_stops_the_run`]). A failed worker
    /// is left behind: `usable` skips it from now on and `up` ends by naming it.
    pub fn absorb_leaving_workers(&mut self, phase: &str, reports: &[HostReport]) -> Vec<String> {
        let mut fatal = Vec::new();
        for r in reports {
            let Some(why) = &r.failure else { continue };
            self.mark_failed(&r.host, format!("{phase}: {why}"));
            let stops = self
                .inventory
                .host(&r.host)
                .is_none_or(failure_stops_the_run);
            if stops {
                fatal.push(format!("{}: {why}", r.host));
            } else {
                self.reporter.host_info(
                    &r.host,
                    format!("left behind ({phase}: {why}); the other hosts go on"),
                );
            }
        }
        fatal
    }

    /// Hosts marked failed during the run, in inventory order, with why.
    pub fn failed_hosts(&self) -> Vec<(String, String)> {
        self.inventory
            .hosts
            .iter()
            .filter_map(|h| {
                let why = self.hosts.get(&h.name)?.error.clone()?;
                Some((h.name.clone(), why))
            })
            .collect()
    }

    /// Records failures from a playbook run against their hosts; returns the failed ones.
    pub fn absorb(&mut self, reports: &[HostReport]) -> Vec<String> {
        let mut failed = Vec::new();
        for r in reports {
            if let Some(why) = &r.failure {
                self.mark_failed(&r.host, why.to_string());
                failed.push(format!("{}: {why}", r.host));
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::failure_stops_the_run;

    fn hosts() -> Vec<crate::inventory::Host> {
        let text = "apiVersion: installer/v1\nkind: Inventory\ncluster: {name: c, kubernetes: 1.36.2, controlPlane: {vip: 10.0.0.100}}\nssh: {knownHosts: /tmp/kh}\nhosts:\n  - {name: m1, address: 10.0.0.11, roles: [master]}\n  - {name: mw, address: 10.0.0.12, roles: [master, worker]}\n  - {name: w1, address: 10.0.0.21, roles: [worker]}\n";
        crate::inventory::parse(std::path::Path::new("/x/h.yaml"), text)
            .unwrap()
            .inventory
            .hosts
    }

    #[test]
    fn a_failed_master_stops_the_run_a_failed_worker_is_left_behind() {
        let hosts = hosts();
        let stops: Vec<(&str, bool)> = hosts
            .iter()
            .map(|h| (h.name.as_str(), failure_stops_the_run(h)))
            .collect();
        assert_eq!(stops, [("m1", true), ("mw", true), ("w1", false)]);
    }

    fn failed(host: &str) -> crate::playbook::HostReport {
        crate::playbook::HostReport {
            host: host.into(),
            tasks: Vec::new(),
            failure: Some(crate::playbook::HostFailure {
                task: "Install kubelet".into(),
                message: "exit 100".into(),
                transient: false,
            }),
            registered: Default::default(),
            changed: Default::default(),
        }
    }

    #[test]
    fn failures_are_recorded_against_their_hosts_and_only_masters_are_returned() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = crate::inventory::parse(
            &dir.path().join("h.yaml"),
            "apiVersion: installer/v1\nkind: Inventory\ncluster: {name: c, kubernetes: 1.36.2, controlPlane: {vip: 10.0.0.100}}\nssh: {knownHosts: /tmp/kh}\nhosts:\n  - {name: m1, address: 10.0.0.11, roles: [master]}\n  - {name: w1, address: 10.0.0.21, roles: [worker]}\n  - {name: w2, address: 10.0.0.22, roles: [worker]}\n",
        )
        .unwrap()
        .inventory;
        let reporter = crate::ui::Reporter::new(
            crate::ui::OutputMode::Json,
            crate::ui::Redactor::new(),
            false,
        );
        let options = super::Options {
            forks: 1,
            playbooks: None,
        };
        let mut ctx = super::Ctx::new(inventory, reporter, &options).unwrap();

        let fatal = ctx.absorb_leaving_workers("Prepare hosts", &[failed("w1")]);
        assert!(fatal.is_empty(), "a worker's failure must not stop the run");
        assert_eq!(
            ctx.failed_hosts(),
            [(
                "w1".to_string(),
                "Prepare hosts: task 'Install kubelet' failed: exit 100".to_string()
            )]
        );

        let fatal = ctx.absorb_leaving_workers("Prepare hosts", &[failed("m1")]);
        assert_eq!(fatal, ["m1: task 'Install kubelet' failed: exit 100"]);
        assert_eq!(ctx.failed_hosts().len(), 2);
    }
}
