//! Turns the raw file into a typed `Inventory`: fills defaults, collects every problem.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_saphyr::{Location, Spanned};

use super::defaults as d;
use super::model::*;
use super::problem::Problem;
use super::raw::*;

/// Where relative paths and `~` in the inventory are resolved.
pub struct Context<'a> {
    pub inventory_dir: &'a Path,
    pub home: Option<PathBuf>,
}

pub struct Checked {
    pub inventory: Option<Inventory>,
    pub problems: Vec<Problem>,
}

pub fn check(raw: RawInventory, source: PathBuf, ctx: &Context) -> Checked {
    let mut v = Validator {
        problems: Vec::new(),
        ctx,
    };
    let inventory = v.inventory(raw, source);
    // Global `ssh:` settings are resolved once per host; report each problem once.
    let mut seen = std::collections::HashSet::new();
    v.problems
        .retain(|p| seen.insert((p.line, p.column, p.message.clone())));
    let has_errors = v
        .problems
        .iter()
        .any(|p| p.severity == super::problem::Severity::Error);
    Checked {
        inventory: if has_errors { None } else { inventory },
        problems: v.problems,
    }
}

struct Validator<'a> {
    problems: Vec<Problem>,
    ctx: &'a Context<'a>,
}

impl Validator<'_> {
    fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn inventory(&mut self, raw: RawInventory, source: PathBuf) -> Option<Inventory> {
        if raw.api_version.value != d::API_VERSION {
            self.push(
                Problem::at(
                    &raw.api_version,
                    format!("unsupported apiVersion {:?}", raw.api_version.value),
                )
                .hint(format!("use `apiVersion: {}`", d::API_VERSION)),
            );
        }
        if raw.kind.value != d::KIND {
            self.push(
                Problem::at(&raw.kind, format!("unsupported kind {:?}", raw.kind.value))
                    .hint(format!("use `kind: {}`", d::KIND)),
            );
        }
        let cluster_at = raw.cluster.referenced;
        let ssh_defaults = raw.ssh.as_ref().map(|s| &s.value);
        let hosts = self.hosts(&raw.hosts, ssh_defaults);
        let cluster = self.cluster(raw.cluster.value, cluster_at);
        let packages = self.packages(raw.packages.unwrap_or_default(), cluster.as_ref());
        let addons = self.addons(raw.addons.unwrap_or_default());
        if let Some(hosts) = &hosts {
            self.cross_checks(cluster.as_ref(), hosts, &raw.hosts);
        }
        Some(Inventory {
            source,
            cluster: cluster?,
            packages,
            hosts: hosts?.into_iter().map(|(h, _)| h).collect(),
            addons,
        })
    }

    fn cluster(&mut self, raw: RawCluster, at: Location) -> Option<Cluster> {
        let name_ok = is_dns_label(&raw.name.value);
        if !name_ok {
            self.push(
                Problem::at(
                    &raw.name,
                    format!("cluster name {:?} is not a DNS-1123 label", raw.name.value),
                )
                .hint("use lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit"),
            );
        }
        let kubernetes = self.kube_version(&raw.kubernetes);
        let runtime = match raw.runtime.as_ref().map(|r| r.value.as_str()) {
            None => Some(d::RUNTIME),
            Some("docker") => Some(Runtime::Docker),
            Some("containerd") => Some(Runtime::Containerd),
            Some(other) => {
                let at = raw.runtime.as_ref().map(|r| r.referenced).unwrap_or(at);
                self.push(
                    Problem::error(at, format!("unknown container runtime {other:?}"))
                        .hint("use `docker` (Docker Engine + cri-dockerd) or `containerd`"),
                );
                None
            }
        };
        let network = self.network(raw.network);
        let control_plane = self.control_plane(&raw.control_plane);
        let kubeadm = self.kubeadm(raw.kubeadm);
        if let (Some(cp), Some(net)) = (&control_plane, &network)
            && let ControlPlane::Vip { vip, .. } = cp
        {
            for (subnet, what) in [(&net.pods, "pod"), (&net.services, "service")] {
                if subnet.contains(vip) {
                    let at = raw
                        .control_plane
                        .value
                        .vip
                        .as_ref()
                        .map(|v| v.referenced)
                        .unwrap_or(at);
                    self.push(
                        Problem::error(
                            at,
                            format!("VIP {vip} lies inside the {what} subnet {subnet}"),
                        )
                        .hint("pick a free address on the masters' own network for the VIP"),
                    );
                }
            }
        }
        Some(Cluster {
            name: raw.name.value,
            kubernetes: kubernetes?,
            runtime: runtime?,
            network: network?,
            control_plane: control_plane?,
            schedulable_masters: raw.schedulable_masters.unwrap_or(d::SCHEDULABLE_MASTERS),
            kubeadm: kubeadm?,
        })
    }

    fn kube_version(&mut self, raw: &Spanned<String>) -> Option<KubeVersion> {
        let text = raw.value.trim_start_matches('v');
        let version = match semver::Version::parse(text) {
            Ok(v) => v,
            Err(_) => {
                self.push(
                    Problem::at(
                        raw,
                        format!("{:?} is not an exact Kubernetes version", raw.value),
                    )
                    .hint("write the full version, e.g. `kubernetes: 1.36.2`"),
                );
                return None;
            }
        };
        if !d::SUPPORTED_MINORS.contains(&(version.major, version.minor)) {
            let supported: Vec<String> = d::SUPPORTED_MINORS
                .iter()
                .map(|(a, b)| format!("{a}.{b}"))
                .collect();
            self.push(
                Problem::at(raw, format!("Kubernetes {version} is not supported"))
                    .hint(format!("supported minors: {}", supported.join(", "))),
            );
            return None;
        }
        Some(KubeVersion(version))
    }

    fn network(&mut self, raw: Option<RawNetwork>) -> Option<Network> {
        let raw = raw.unwrap_or(RawNetwork {
            pods: None,
            services: None,
        });
        let pods = self.cidr(raw.pods.as_ref(), d::POD_SUBNET, "pod");
        let services = self.cidr(raw.services.as_ref(), d::SERVICE_SUBNET, "service");
        let (pods, services) = (pods?, services?);
        let pods_at = raw.pods.as_ref().map(|s| s.referenced);
        let services_at = raw.services.as_ref().map(|s| s.referenced);
        let mut sized = true;
        for (net, at, what) in [(pods, pods_at, "pod"), (services, services_at, "service")] {
            if let (IpNet::V6(_), Some(at)) = (net, at) {
                self.push(
                    Problem::error(at, format!("{what} subnet {net} is IPv6; IPv6 and dual-stack clusters are not supported yet"))
                        .hint("use an IPv4 range"),
                );
                sized = false;
            }
        }
        // kubeadm's ValidateServiceSubnetSize: at most 20 bits of service addresses (/12 for IPv4).
        if let (IpNet::V4(v4), Some(at)) = (services, services_at)
            && v4.prefix_len() < 12
        {
            self.push(
                Problem::error(at, format!("service subnet {services} is too large; kubeadm accepts at most a /12 for IPv4"))
                    .hint("use a /12 or smaller range, e.g. 10.96.0.0/12"),
            );
            sized = false;
        }
        // kubeadm's ValidatePodSubnetNodeMask: every node gets a /24 (the controller manager's
        // default node-cidr-mask-size), at most 16 bits more specific than the pod subnet.
        if let (IpNet::V4(v4), Some(at)) = (pods, pods_at)
            && !(8..=24).contains(&v4.prefix_len())
        {
            let why = if v4.prefix_len() > 24 {
                "is smaller than the /24 each node gets"
            } else {
                "is more than 16 bits wider than the /24 each node gets"
            };
            self.push(
                Problem::error(at, format!("pod subnet {pods} {why}"))
                    .hint("use a range between /8 and /24, e.g. 10.244.0.0/16"),
            );
            sized = false;
        }
        if !sized {
            return None;
        }
        if pods.contains(&services.network()) || services.contains(&pods.network()) {
            let at = raw
                .services
                .as_ref()
                .or(raw.pods.as_ref())
                .map(|s| s.referenced);
            if let Some(at) = at {
                self.push(
                    Problem::error(at, format!("pod subnet {pods} and service subnet {services} overlap"))
                        .hint("give pods and services disjoint ranges, e.g. 10.244.0.0/16 and 10.96.0.0/12"),
                );
            }
            return None;
        }
        Some(Network { pods, services })
    }

    fn cidr(&mut self, raw: Option<&Spanned<String>>, default: &str, what: &str) -> Option<IpNet> {
        let Some(raw) = raw else {
            return default.parse().ok();
        };
        match raw.value.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.push(
                    Problem::at(raw, format!("{what} subnet {net} has host bits set"))
                        .hint(format!("did you mean {}?", net.trunc())),
                );
                None
            }
            Err(_) => {
                self.push(
                    Problem::at(raw, format!("{what} subnet {:?} is not a CIDR", raw.value))
                        .hint("write it as address/prefix, e.g. 10.244.0.0/16"),
                );
                None
            }
        }
    }

    fn control_plane(&mut self, raw: &Spanned<RawControlPlane>) -> Option<ControlPlane> {
        let cp = &raw.value;
        match (&cp.vip, &cp.load_balancer) {
            (Some(_), Some(lb)) => {
                self.push(
                    Problem::at(lb, "controlPlane has both `vip` and `loadBalancer`")
                        .hint("keep `vip` for keepalived + haproxy on the masters, or `loadBalancer` for your own"),
                );
                None
            }
            (None, None) => {
                self.push(
                    Problem::at(raw, "controlPlane needs a `vip` or a `loadBalancer`")
                        .hint("add `vip: <free address on the masters' network>`"),
                );
                None
            }
            (Some(vip), None) => {
                let Ok(addr) = vip.value.parse::<IpAddr>() else {
                    self.push(
                        Problem::at(vip, format!("VIP {:?} is not an IP address", vip.value))
                            .hint("the VIP must be a literal address, e.g. 192.168.10.100"),
                    );
                    return None;
                };
                let port = self.port(cp.port.as_ref(), d::VIP_PORT)?;
                if port == 6443 {
                    let at = cp
                        .port
                        .as_ref()
                        .map(|p| p.referenced)
                        .unwrap_or(vip.referenced);
                    self.push(
                        Problem::error(at, "VIP port 6443 collides with the apiservers on the masters")
                            .hint("haproxy listens on the VIP port on every master; use another, e.g. 8443"),
                    );
                    return None;
                }
                if let Some(ifname) = &cp.interface
                    && (ifname.value.is_empty()
                        || ifname.value.len() > 15
                        || ifname.value.contains(['/', ' ']))
                {
                    self.push(
                        Problem::at(
                            ifname,
                            format!("{:?} is not a network interface name", ifname.value),
                        )
                        .hint("use the name `ip link` shows on the masters, e.g. eth0, or omit it"),
                    );
                    return None;
                }
                Some(ControlPlane::Vip {
                    vip: addr,
                    port,
                    interface: cp.interface.as_ref().map(|i| i.value.clone()),
                })
            }
            (None, Some(lb)) => {
                if lb.value.address.value.trim().is_empty() {
                    self.push(
                        Problem::at(&lb.value.address, "loadBalancer address is empty").hint(
                            "give the address your load balancer answers on, e.g. lb.example.com",
                        ),
                    );
                    return None;
                }
                Some(ControlPlane::LoadBalancer {
                    address: lb.value.address.value.clone(),
                    port: lb.value.port.unwrap_or(d::LOAD_BALANCER_PORT),
                })
            }
        }
    }

    fn port(&mut self, raw: Option<&Spanned<u16>>, default: u16) -> Option<u16> {
        match raw {
            None => Some(default),
            Some(p) if p.value == 0 => {
                self.push(Problem::at(p, "port 0 is not a usable port").hint("use 1-65535"));
                None
            }
            Some(p) => Some(p.value),
        }
    }

    fn kubeadm(
        &mut self,
        raw: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    ) -> Option<BTreeMap<String, serde_json::Value>> {
        let Some(raw) = raw else {
            return Some(BTreeMap::new());
        };
        let mut ok = true;
        for (kind, value) in &raw.value {
            if !d::KUBEADM_KINDS.contains(&kind.as_str()) {
                self.push(
                    Problem::at(&raw, format!("kubeadm: unknown document kind {kind:?}"))
                        .hint(format!("use one of {}", d::KUBEADM_KINDS.join(", "))),
                );
                ok = false;
            } else if !value.is_object() {
                self.push(
                    Problem::at(&raw, format!("kubeadm: {kind} must be a mapping of fields"))
                        .hint("write the fields to merge, e.g. `ClusterConfiguration: {apiServer: {certSANs: [api.example.com]}}`"),
                );
                ok = false;
            }
        }
        ok.then_some(raw.value)
    }

    fn hosts(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawHost>>>,
        ssh_defaults: Option<&RawSsh>,
    ) -> Option<Vec<(Host, Location)>> {
        if raw.value.is_empty() {
            self.push(
                Problem::at(raw, "the inventory lists no hosts")
                    .hint("add at least one host with `roles: [master]`"),
            );
            return None;
        }
        let mut hosts = Vec::new();
        let mut ok = true;
        for h in &raw.value {
            match self.host(&h.value, ssh_defaults) {
                Some(host) => hosts.push((host, h.referenced)),
                None => ok = false,
            }
        }
        ok.then_some(hosts)
    }

    fn host(&mut self, raw: &RawHost, ssh_defaults: Option<&RawSsh>) -> Option<Host> {
        let mut ok = true;
        if !is_dns_subdomain(&raw.name.value) {
            self.push(
                Problem::at(
                    &raw.name,
                    format!("host name {:?} is not a valid node name", raw.name.value),
                )
                .hint("node names are lowercase DNS names: letters, digits, '-' and '.'"),
            );
            ok = false;
        }
        let address = match raw.address.value.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(
                    Problem::at(
                        &raw.address,
                        format!("address {:?} is not an IP address", raw.address.value),
                    )
                    .hint("use the host's IP address on the cluster network, e.g. 192.168.10.11"),
                );
                None
            }
        };
        let roles = self.roles(&raw.roles);
        let labels = raw
            .labels
            .as_ref()
            .map(|l| self.labels(l))
            .unwrap_or(Some(BTreeMap::new()));
        let taints = self.taints(raw.taints.as_deref().unwrap_or(&[]));
        let storage = self.storage(raw.storage.as_deref().unwrap_or(&[]));
        let ssh = self.ssh(ssh_defaults, raw.ssh.as_ref().map(|s| &s.value));
        if !ok {
            return None;
        }
        Some(Host {
            name: raw.name.value.clone(),
            address: address?,
            roles: roles?,
            ssh: ssh?,
            labels: labels?,
            taints: taints?,
            storage: storage?,
        })
    }

    fn roles(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<Role>> {
        if raw.value.is_empty() {
            self.push(
                Problem::at(raw, "a host needs at least one role")
                    .hint("use `roles: [master]` or `roles: [worker]`"),
            );
            return None;
        }
        let mut roles = Vec::new();
        for r in &raw.value {
            match r.value.as_str() {
                "master" => roles.push(Role::Master),
                "worker" => roles.push(Role::Worker),
                other => {
                    self.push(
                        Problem::at(r, format!("unknown role {other:?}"))
                            .hint("roles are `master` and `worker`"),
                    );
                    return None;
                }
            }
        }
        roles.sort();
        roles.dedup();
        Some(roles)
    }

    fn labels(
        &mut self,
        raw: &Spanned<BTreeMap<String, String>>,
    ) -> Option<BTreeMap<String, String>> {
        let mut ok = true;
        for (k, v) in &raw.value {
            if !is_label_key(k) || !is_label_value(v) {
                self.push(
                    Problem::at(
                        raw,
                        format!("label {k}={v} is not a valid Kubernetes label"),
                    )
                    .hint("keys are [prefix/]name, values at most 63 characters of [A-Za-z0-9._-]"),
                );
                ok = false;
            }
        }
        ok.then(|| raw.value.clone())
    }

    fn taints(&mut self, raw: &[Spanned<String>]) -> Option<Vec<Taint>> {
        let mut taints = Vec::new();
        let mut ok = true;
        for t in raw {
            match parse_taint(&t.value) {
                Some(taint) => taints.push(taint),
                None => {
                    self.push(
                        Problem::at(t, format!("taint {:?} is not key[=value]:Effect", t.value))
                            .hint("e.g. `dedicated=db:NoSchedule`; effects: NoSchedule, PreferNoSchedule, NoExecute"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(taints)
    }

    fn storage(&mut self, raw: &[Spanned<String>]) -> Option<Vec<String>> {
        let mut ok = true;
        for s in raw {
            if !s.value.starts_with("/dev/") || s.value.contains(char::is_whitespace) {
                self.push(
                    Problem::at(
                        s,
                        format!("storage device {:?} is not a /dev path", s.value),
                    )
                    .hint("list raw disks for Rook, e.g. /dev/sdb"),
                );
                ok = false;
            }
        }
        ok.then(|| raw.iter().map(|s| s.value.clone()).collect())
    }

    fn ssh(&mut self, defaults: Option<&RawSsh>, own: Option<&RawSsh>) -> Option<SshSettings> {
        // A host's own setting wins over the inventory-wide one.
        fn pick<'a, T>(
            own: Option<&'a RawSsh>,
            def: Option<&'a RawSsh>,
            f: impl Fn(&'a RawSsh) -> Option<&'a T>,
        ) -> Option<&'a T> {
            own.and_then(&f).or_else(|| def.and_then(&f))
        }
        let user = pick(own, defaults, |s| s.user.as_ref());
        if let Some(u) = user
            && (u.value.is_empty() || u.value.contains(char::is_whitespace))
        {
            self.push(
                Problem::at(u, format!("ssh user {:?} is not a user name", u.value))
                    .hint("write the login name on the hosts, e.g. `user: ops`"),
            );
            return None;
        }
        let port = self.port(pick(own, defaults, |s| s.port.as_ref()), d::SSH_PORT)?;
        let identity_file = match pick(own, defaults, |s| s.identity_file.as_ref()) {
            None => None,
            Some(f) => {
                let path = self.resolve_path(&f.value);
                if !path.is_file() {
                    self.push(
                        Problem::at(f, format!("identity file {} does not exist", path.display()))
                            .hint("point ssh.identityFile at your private key, or remove it to use the ssh-agent"),
                    );
                    return None;
                }
                Some(path)
            }
        };
        let known_hosts = pick(own, defaults, |s| s.known_hosts.as_ref())
            .map(|k| self.resolve_path(&k.value))
            .unwrap_or_else(|| self.resolve_path(d::SSH_KNOWN_HOSTS));
        let host_key_policy = match pick(own, defaults, |s| s.host_key_policy.as_ref()) {
            None => d::SSH_HOST_KEY_POLICY,
            Some(p) => match p.value.as_str() {
                "strict" => HostKeyPolicy::Strict,
                "accept-new" => HostKeyPolicy::AcceptNew,
                other => {
                    self.push(
                        Problem::at(p, format!("unknown hostKeyPolicy {other:?}"))
                            .hint("use `strict` (default) or `accept-new`"),
                    );
                    return None;
                }
            },
        };
        let env_name = |v: Option<&Spanned<String>>,
                        this: &mut Self|
         -> Result<Option<String>, ()> {
            match v {
                None => Ok(None),
                Some(e) if is_env_name(&e.value) => Ok(Some(e.value.clone())),
                Some(e) => {
                    this.push(
                        Problem::at(e, format!("{:?} is not an environment variable name", e.value))
                            .hint("name the variable that holds the secret (e.g. SSH_PASSWORD), never the secret itself"),
                    );
                    Err(())
                }
            }
        };
        let password_env = env_name(pick(own, defaults, |s| s.password_env.as_ref()), self).ok()?;
        let sudo_password_env =
            env_name(pick(own, defaults, |s| s.sudo_password_env.as_ref()), self).ok()?;
        let identity_passphrase_env = env_name(
            pick(own, defaults, |s| s.identity_passphrase_env.as_ref()),
            self,
        )
        .ok()?;
        let bastion = match pick(own, defaults, |s| s.bastion.as_ref()) {
            None => None,
            Some(b) => Some(Bastion {
                address: b.value.address.value.clone(),
                user: b
                    .value
                    .user
                    .as_ref()
                    .map(|u| u.value.clone())
                    .or_else(|| user.map(|u| u.value.clone()))
                    .unwrap_or_else(|| d::SSH_USER.to_string()),
                port: self.port(b.value.port.as_ref(), d::SSH_PORT)?,
            }),
        };
        let agent = own
            .and_then(|s| s.agent)
            .or_else(|| defaults.and_then(|s| s.agent))
            .unwrap_or(d::SSH_AGENT);
        Some(SshSettings {
            user: user
                .map(|u| u.value.clone())
                .unwrap_or_else(|| d::SSH_USER.to_string()),
            port,
            identity_file,
            identity_passphrase_env,
            agent,
            password_env,
            sudo_password_env,
            known_hosts,
            host_key_policy,
            bastion,
            connect_timeout_secs: pick(own, defaults, |s| s.connect_timeout.as_ref())
                .map(|t| t.value)
                .unwrap_or(d::SSH_CONNECT_TIMEOUT_SECS),
        })
    }

    fn resolve_path(&self, raw: &str) -> PathBuf {
        if let Some(rest) = raw.strip_prefix("~/")
            && let Some(home) = &self.ctx.home
        {
            return home.join(rest);
        }
        let p = PathBuf::from(raw);
        if p.is_absolute() {
            p
        } else {
            self.ctx.inventory_dir.join(p)
        }
    }

    fn packages(&mut self, raw: RawPackages, cluster: Option<&Cluster>) -> Packages {
        let mut url = |v: Option<Spanned<String>>| -> Option<String> {
            let v = v?;
            if !(v.value.starts_with("http://") || v.value.starts_with("https://")) {
                self.push(
                    Problem::at(&v, format!("{:?} is not an http(s) URL", v.value))
                        .hint("write the full URL of the repository or mirror"),
                );
            }
            Some(v.value)
        };
        let minor = cluster
            .map(|c| c.kubernetes.minor_string())
            .unwrap_or_default();
        Packages {
            // `{minor}` lets one mirror URL serve every minor (and upgrades switch with the version).
            kubernetes_repo: url(raw.kubernetes_repo)
                .map(|u| u.replace("{minor}", &minor))
                .unwrap_or_else(|| d::kubernetes_repo(&minor)),
            docker_repo: url(raw.docker_repo).unwrap_or_else(|| d::DOCKER_REPO.to_string()),
            manifests_mirror: url(raw.manifests_mirror),
            cri_dockerd_repo: url(raw.cri_dockerd_repo)
                .unwrap_or_else(|| d::CRI_DOCKERD_REPO.to_string()),
            cri_dockerd_sha256: self.sha256_sums(raw.cri_dockerd_sha256.unwrap_or_default()),
        }
    }

    /// `file name: sha256` pairs; a sum must be 64 hex digits.
    fn sha256_sums(
        &mut self,
        raw: std::collections::BTreeMap<String, S<String>>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut sums = std::collections::BTreeMap::new();
        for (file, sum) in raw {
            let hex = sum.value.trim().to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                self.push(
                    Problem::at(&sum, format!("the sha256 of {file} is not 64 hex digits"))
                        .hint("paste the output of `sha256sum FILE` (the first field)"),
                );
                continue;
            }
            sums.insert(file, hex);
        }
        sums
    }

    fn addons(&mut self, raw: RawAddons) -> Addons {
        let weave = raw.weave.map(|w| w.value);
        let weave_sha256 = weave
            .as_ref()
            .and_then(|w| w.sha256.as_ref())
            .and_then(|sum| {
                let hex = sum.value.trim().to_ascii_lowercase();
                if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Some(hex);
                }
                self.push(
                    Problem::at(sum, "addons.weave.sha256 is not 64 hex digits")
                        .hint("paste the output of `sha256sum weave-daemonset-k8s-1.11.yaml` (the first field)"),
                );
                None
            });
        let rook = raw.rook.map(|r| r.value);
        let dashboard = raw.dashboard.map(|x| x.value);
        let dashboard_kind = match dashboard.as_ref().and_then(|x| x.kind.as_ref()) {
            None => d::DASHBOARD_KIND,
            Some(k) => match k.value.as_str() {
                "headlamp" => DashboardKind::Headlamp,
                "kubernetes-dashboard" => DashboardKind::KubernetesDashboard,
                other => {
                    self.push(
                        Problem::at(k, format!("unknown dashboard kind {other:?}"))
                            .hint("use `headlamp` (maintained) or `kubernetes-dashboard` (archived upstream)"),
                    );
                    d::DASHBOARD_KIND
                }
            },
        };
        Addons {
            weave: Weave {
                enabled: weave
                    .as_ref()
                    .and_then(|w| w.enabled)
                    .unwrap_or(d::WEAVE_ENABLED),
                version: weave
                    .as_ref()
                    .and_then(|w| w.version.as_ref().map(|v| v.value.clone()))
                    .unwrap_or_else(|| d::WEAVE_VERSION.into()),
                password_env: weave.and_then(|w| w.password_env.map(|p| p.value)),
                sha256: weave_sha256,
            },
            rook: Rook {
                enabled: rook
                    .as_ref()
                    .and_then(|r| r.enabled)
                    .unwrap_or(d::ROOK_ENABLED),
                version: rook
                    .and_then(|r| r.version.map(|v| v.value))
                    .unwrap_or_else(|| d::ROOK_VERSION.into()),
            },
            dashboard: Dashboard {
                enabled: dashboard
                    .as_ref()
                    .and_then(|x| x.enabled)
                    .unwrap_or(d::DASHBOARD_ENABLED),
                kind: dashboard_kind,
                admin: dashboard
                    .and_then(|x| x.admin)
                    .unwrap_or(d::DASHBOARD_ADMIN),
            },
        }
    }

    /// Rules that need the whole inventory: uniqueness, masters, VIP vs hosts.
    fn cross_checks(
        &mut self,
        cluster: Option<&Cluster>,
        hosts: &[(Host, Location)],
        raw: &Spanned<Vec<Spanned<RawHost>>>,
    ) {
        let mut names: HashMap<&str, u32> = HashMap::new();
        let mut addresses: HashMap<IpAddr, u32> = HashMap::new();
        for ((host, _), raw_host) in hosts.iter().zip(&raw.value) {
            if let Some(first) =
                names.insert(&host.name, raw_host.value.name.referenced.line() as u32)
            {
                self.push(
                    Problem::at(
                        &raw_host.value.name,
                        format!("host name {:?} is used twice", host.name),
                    )
                    .hint(format!(
                        "first used on line {first}; every host needs its own name"
                    )),
                );
            }
            if let Some(first) = addresses.insert(
                host.address,
                raw_host.value.address.referenced.line() as u32,
            ) {
                self.push(
                    Problem::at(
                        &raw_host.value.address,
                        format!("address {} is used twice", host.address),
                    )
                    .hint(format!(
                        "first used on line {first}; list each machine once"
                    )),
                );
            }
            let Some(cluster) = cluster else { continue };
            if let ControlPlane::Vip { vip, .. } = cluster.control_plane
                && vip == host.address
            {
                self.push(
                    Problem::at(
                        &raw_host.value.address,
                        format!("host {} has the VIP {vip} as its address", host.name),
                    )
                    .hint(
                        "the VIP must be a free address that keepalived can move between masters",
                    ),
                );
            }
            for (subnet, what) in [
                (&cluster.network.pods, "pod"),
                (&cluster.network.services, "service"),
            ] {
                if subnet.contains(&host.address) {
                    self.push(
                        Problem::at(
                            &raw_host.value.address,
                            format!(
                                "host address {} lies inside the {what} subnet {subnet}",
                                host.address
                            ),
                        )
                        .hint(
                            "choose cluster.network ranges that do not overlap your hosts' network",
                        ),
                    );
                }
            }
        }
        let masters = hosts.iter().filter(|(h, _)| h.is_master()).count();
        if masters == 0 {
            self.push(
                Problem::at(raw, "no host has the master role")
                    .hint("give at least one host (three for HA) `roles: [master]`"),
            );
        } else if masters % 2 == 0 {
            self.push(
                Problem::warning(raw.referenced, format!("{masters} masters: an even number of etcd members tolerates no more failures than {}", masters - 1))
                    .hint("use an odd number of masters (3 or 5) for etcd quorum"),
            );
        }
    }
}

fn parse_taint(s: &str) -> Option<Taint> {
    let (kv, effect) = s.rsplit_once(':')?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        _ => return None,
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if !is_label_key(key) || !value.is_none_or(is_label_value) {
        return None;
    }
    Some(Taint {
        key: key.to_string(),
        value: value.filter(|v| !v.is_empty()).map(str::to_string),
        effect,
    })
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}
