//! `kubeadm init`: the phases that bring up the first control-plane node.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

use super::certs::NodePki;
use super::{
    FOUR_MINUTES, Phases, kubeadm_version, objects, start_kubelet, timeout_of, wait_kubelet,
    write_kubelet_files,
};
use crate::config::{self, Effective, Taint, host_port};
use crate::kube::Kube;
use crate::kubeconfig::KubeConfig;
use crate::manifests::{self, Local};
use crate::paths::{self, p};
use crate::preflight;
use crate::token::{self, Token};
use crate::util::{KubeVersion, write_file};

const PHASES: &[&str] = &[
    "preflight",
    "certs/ca",
    "certs/apiserver",
    "certs/apiserver-kubelet-client",
    "certs/front-proxy-ca",
    "certs/front-proxy-client",
    "certs/etcd-ca",
    "certs/etcd-server",
    "certs/etcd-peer",
    "certs/etcd-healthcheck-client",
    "certs/apiserver-etcd-client",
    "certs/sa",
    "kubeconfig/admin",
    "kubeconfig/super-admin",
    "kubeconfig/kubelet",
    "kubeconfig/controller-manager",
    "kubeconfig/scheduler",
    "etcd/local",
    "control-plane/apiserver",
    "control-plane/controller-manager",
    "control-plane/scheduler",
    "kubelet-start",
    "wait-control-plane",
    "upload-config/kubeadm",
    "upload-config/kubelet",
    "upload-certs",
    "mark-control-plane",
    "bootstrap-token",
    "kubelet-finalize/enable-client-cert-rotation",
    "addon/coredns",
    "addon/kube-proxy",
    "show-join-command",
];

#[derive(Args, Debug, Default)]
pub struct InitArgs {
    /// Path to a kubeadm configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long = "skip-phases", value_delimiter = ',')]
    skip_phases: Vec<String>,
    #[arg(long = "ignore-preflight-errors", value_delimiter = ',')]
    ignore_preflight_errors: Vec<String>,
    #[arg(long = "upload-certs")]
    upload_certs: bool,
    #[arg(long = "certificate-key")]
    certificate_key: Option<String>,
    #[arg(long = "skip-token-print")]
    skip_token_print: bool,
    #[arg(long = "dry-run")]
    dry_run: bool,
    #[arg(long = "apiserver-advertise-address")]
    apiserver_advertise_address: Option<String>,
    #[arg(long = "apiserver-bind-port")]
    apiserver_bind_port: Option<u16>,
    #[arg(long = "apiserver-cert-extra-sans", value_delimiter = ',')]
    apiserver_cert_extra_sans: Vec<String>,
    #[arg(long = "control-plane-endpoint")]
    control_plane_endpoint: Option<String>,
    #[arg(long = "pod-network-cidr")]
    pod_network_cidr: Option<String>,
    #[arg(long = "service-cidr")]
    service_cidr: Option<String>,
    #[arg(long = "service-dns-domain")]
    service_dns_domain: Option<String>,
    #[arg(long = "kubernetes-version")]
    kubernetes_version: Option<String>,
    #[arg(long = "node-name")]
    node_name: Option<String>,
    #[arg(long = "cri-socket")]
    cri_socket: Option<String>,
    #[arg(long = "token")]
    token: Option<String>,
    #[arg(long = "token-ttl")]
    token_ttl: Option<String>,
    #[arg(long = "cert-dir")]
    cert_dir: Option<String>,
    #[arg(long = "image-repository")]
    image_repository: Option<String>,
}

impl InitArgs {
    /// The flags that describe configuration and so cannot be combined with --config.
    fn config_flags(&self) -> Vec<&'static str> {
        let mut v = vec![];
        let mut add = |set: bool, name| {
            if set {
                v.push(name)
            }
        };
        add(
            self.apiserver_advertise_address.is_some(),
            "apiserver-advertise-address",
        );
        add(self.apiserver_bind_port.is_some(), "apiserver-bind-port");
        add(
            !self.apiserver_cert_extra_sans.is_empty(),
            "apiserver-cert-extra-sans",
        );
        add(self.cert_dir.is_some(), "cert-dir");
        add(
            self.control_plane_endpoint.is_some(),
            "control-plane-endpoint",
        );
        add(self.cri_socket.is_some(), "cri-socket");
        add(self.image_repository.is_some(), "image-repository");
        add(self.kubernetes_version.is_some(), "kubernetes-version");
        add(self.node_name.is_some(), "node-name");
        add(self.pod_network_cidr.is_some(), "pod-network-cidr");
        add(self.service_cidr.is_some(), "service-cidr");
        add(self.service_dns_domain.is_some(), "service-dns-domain");
        add(self.token.is_some(), "token");
        add(self.token_ttl.is_some(), "token-ttl");
        v
    }

    fn effective(&self, kv: KubeVersion) -> Result<Effective> {
        if let Some(cfg) = &self.config {
            let flags = self.config_flags();
            if !flags.is_empty() {
                bail!(
                    "can not mix '--config' with arguments [{}]",
                    flags.join(" ")
                );
            }
            return config::load_init(cfg, kv);
        }
        let mut docs = config::Documents::default();
        let mut init = config::InitConfiguration::default();
        init.local_api_endpoint.advertise_address =
            self.apiserver_advertise_address.clone().unwrap_or_default();
        init.local_api_endpoint.bind_port = self.apiserver_bind_port.unwrap_or(0);
        init.node_registration.name = self.node_name.clone().unwrap_or_default();
        init.node_registration.cri_socket = self.cri_socket.clone().unwrap_or_default();
        if let Some(t) = &self.token {
            init.bootstrap_tokens.push(config::BootstrapTokenCfg {
                token: t.clone(),
                ttl: self.token_ttl.clone(),
                ..Default::default()
            });
        }
        let mut cluster = config::ClusterConfiguration {
            control_plane_endpoint: self.control_plane_endpoint.clone().unwrap_or_default(),
            kubernetes_version: self.kubernetes_version.clone().unwrap_or_default(),
            certificates_dir: self.cert_dir.clone().unwrap_or_default(),
            image_repository: self.image_repository.clone().unwrap_or_default(),
            ..Default::default()
        };
        cluster.networking.pod_subnet = self.pod_network_cidr.clone().unwrap_or_default();
        cluster.networking.service_subnet = self.service_cidr.clone().unwrap_or_default();
        cluster.networking.dns_domain = self.service_dns_domain.clone().unwrap_or_default();
        cluster.api_server.cert_sans = self.apiserver_cert_extra_sans.clone();
        docs.init = Some(init);
        docs.cluster = Some(cluster);
        config::effective_init(docs, kv)
    }
}

pub fn run(a: InitArgs) -> Result<()> {
    let kv = kubeadm_version()?;
    let eff = a.effective(kv)?;
    if a.upload_certs || a.certificate_key.is_some() {
        bail!(
            "--upload-certs is not implemented by the lab simulator: copy the shared CA files (ca, sa, front-proxy-ca, etcd/ca) to the other control-plane nodes instead"
        );
    }
    if a.dry_run || eff.init.dry_run {
        bail!("--dry-run is not implemented by the lab simulator");
    }
    let mut skip = a.skip_phases.clone();
    skip.extend(eff.init.skip_phases.iter().cloned());
    let phases = Phases::new(&skip, PHASES)?;
    let mut ignore = a.ignore_preflight_errors.clone();
    ignore.extend(
        eff.init
            .node_registration
            .ignore_preflight_errors
            .iter()
            .cloned(),
    );
    let ignore = preflight::ignore_set(&ignore)?;

    println!("[init] Using Kubernetes version: {}", eff.version);
    let cri = match eff.init.node_registration.cri_endpoint() {
        Some(c) => c,
        None => crate::cri::detect()?,
    };
    let kubelet_cfg = manifests::kubelet_config(&eff.cluster, &eff.kubelet)?;
    if phases.run("preflight") {
        run_preflight(&eff, &cri, kv, &ignore)?;
    }

    let node = NodePki {
        cfg: &eff.cluster,
        node_name: &eff.node_name,
        advertise: eff.advertise,
        bind_port: eff.bind_port,
    };
    if phases.run("certs/ca") {
        node.cas(true)?;
    }
    if phases.run("certs/apiserver") {
        node.leaves()?;
    }
    if phases.run("kubeconfig/admin") {
        node.control_plane_kubeconfigs(phases.run("kubeconfig/super-admin"))?;
    }
    if phases.run("kubeconfig/kubelet") {
        node.kubelet_kubeconfig()?;
    }

    let local = Local {
        cfg: &eff.cluster,
        version: eff.version,
        node_name: &eff.node_name,
        advertise: eff.advertise,
        bind_port: eff.bind_port,
    };
    let manifests_dir = p(paths::MANIFESTS_DIR);
    if phases.run("etcd/local") && eff.cluster.etcd.local.is_some() {
        let peer = format!("https://{}", host_port(&eff.advertise.to_string(), 2380));
        let pod = local.etcd(&format!("{}={peer}", eff.node_name), false)?;
        println!(
            "[etcd] Creating static Pod manifest for local etcd in {:?}",
            manifests_dir.display().to_string()
        );
        write_file(
            &manifests_dir.join("etcd.yaml"),
            manifests::to_yaml(&pod)?,
            0o600,
        )?;
    }
    println!(
        "[control-plane] Using manifest folder {:?}",
        manifests_dir.display().to_string()
    );
    for (phase, name, pod) in [
        (
            "control-plane/apiserver",
            "kube-apiserver",
            local.api_server(),
        ),
        (
            "control-plane/controller-manager",
            "kube-controller-manager",
            local.controller_manager(),
        ),
        (
            "control-plane/scheduler",
            "kube-scheduler",
            local.scheduler(),
        ),
    ] {
        if phases.run(phase) {
            println!("[control-plane] Creating static Pod manifest for {name:?}");
            write_file(
                &manifests_dir.join(format!("{name}.yaml")),
                manifests::to_yaml(&pod)?,
                0o600,
            )?;
        }
    }

    if phases.run("kubelet-start") {
        let flags = manifests::kubeadm_flags(
            &cri,
            &eff.node_name,
            &eff.init.node_registration.kubelet_extra_args,
        );
        write_kubelet_files(&kubelet_cfg, &flags)?;
        start_kubelet();
    }

    let timeouts = eff.init.timeouts.as_ref();
    let local_server = node.local_endpoint();
    if phases.run("wait-control-plane") {
        println!(
            "[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory {:?}",
            manifests_dir.display().to_string()
        );
        wait_kubelet(
            super::kubelet_healthz_port(&kubelet_cfg),
            timeout_of(timeouts, |t| &t.kubelet_health_check, FOUR_MINUTES)?,
        )?;
    }
    let kube = admin_client(&local_server)?;
    if phases.run("wait-control-plane") {
        wait_api(
            &kube,
            timeout_of(
                timeouts,
                |t| &t.control_plane_component_health_check,
                FOUR_MINUTES,
            )?,
        )?;
    }

    if phases.run("upload-config/kubeadm") || phases.run("upload-config/kubelet") {
        println!(
            "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace"
        );
        println!(
            "[kubelet] Creating a ConfigMap \"kubelet-config\" in namespace kube-system with the configuration for the kubelets in the cluster"
        );
        objects::apply_all(&kube, &objects::cluster_admins())?;
        let kubelet_yaml = manifests::to_yaml(&Value::Object(kubelet_cfg.clone()))?;
        objects::apply_all(
            &kube,
            &objects::upload_config(&eff.cluster.to_yaml()?, &kubelet_yaml),
        )?;
    }
    if phases.run("mark-control-plane") {
        mark_control_plane(
            &kube,
            &eff.node_name,
            eff.init.node_registration.taints.as_ref(),
            FOUR_MINUTES,
        )?;
    }

    let cluster_server = node.cluster_endpoint()?;
    // cluster-info and the join commands take the CA from admin.conf (clusterinfo
    // `CreateBootstrapConfigMapIfNotExists`, cmd/util `GetJoinWorkerCommand`), where the
    // kubeconfig phase wrote ca.crt's first certificate alone.
    let ca_pem = crate::pki::encode_cert_pem(
        &crate::pki::certs_from_pem(&crate::util::read_to_string(&node.dir().join("ca.crt"))?)?[0],
    );
    let mut tokens = vec![];
    if phases.run("bootstrap-token") {
        println!("[bootstrap-token] Using token: <redacted>");
        println!(
            "[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles"
        );
        let cfgs = if eff.init.bootstrap_tokens.is_empty() {
            vec![config::BootstrapTokenCfg {
                token: Token::generate().full(),
                ..Default::default()
            }]
        } else {
            eff.init.bootstrap_tokens.clone()
        };
        for c in &cfgs {
            let t = Token::parse(&c.token)?;
            token::validate_usages_groups(&c.usages, &c.groups)?;
            let ttl = match &c.ttl {
                Some(s) => crate::util::parse_duration(s)?,
                None => token::DEFAULT_TTL,
            };
            let secret = t.secret_object(&c.description, Some(ttl), &c.usages, &c.groups);
            objects::apply_retrying(&kube, "/api/v1/namespaces/kube-system/secrets", &secret)?;
            tokens.push(t);
        }
        let info = cluster_info_kubeconfig(&cluster_server, &ca_pem)?;
        objects::apply_all(&kube, &objects::bootstrap_rbac(&info))?;
    }
    if phases.run("addon/coredns") && !eff.cluster.dns.disabled {
        objects::apply_all(&kube, &objects::coredns(&eff.cluster, kv)?)?;
        println!("[addons] Applied essential addon: CoreDNS");
    }
    if phases.run("addon/kube-proxy") && !eff.cluster.proxy.disabled {
        let proxy_cfg = objects::kube_proxy_config(&eff.cluster, &eff.kube_proxy);
        objects::apply_all(
            &kube,
            &objects::kube_proxy(
                &eff.cluster,
                &cluster_server,
                &manifests::to_yaml(&proxy_cfg)?,
            ),
        )?;
        println!("[addons] Applied essential addon: kube-proxy");
    }

    println!("\nYour Kubernetes control-plane has initialized successfully!\n");
    println!("To start using your cluster, you need to run the following as a regular user:\n");
    println!(
        "  mkdir -p $HOME/.kube\n  sudo cp -i {} $HOME/.kube/config\n  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n",
        paths::s(paths::ADMIN_CONF)
    );
    println!(
        "Alternatively, if you are the root user, you can run:\n\n  export KUBECONFIG={}\n",
        paths::s(paths::ADMIN_CONF)
    );
    println!(
        "You should now deploy a pod network to the cluster.\nRun \"kubectl apply -f [podnetwork].yaml\" with one of the options listed at:\n  https://kubernetes.io/docs/concepts/cluster-administration/addons/\n"
    );
    if phases.run("show-join-command")
        && let Some(t) = tokens.first()
    {
        let endpoint = cluster_server.trim_start_matches("https://");
        let token_text = if a.skip_token_print {
            "<value withheld>".to_string()
        } else {
            t.full()
        };
        let hash = crate::pki::spki_pin(&ca_pem)?;
        if !eff.cluster.control_plane_endpoint.is_empty() {
            println!(
                "You can now join any number of control-plane nodes by copying certificate authorities\nand service account keys on each node and then running the following as root:\n"
            );
            println!(
                "  kubeadm join {endpoint} --token {token_text} \\\n\t--discovery-token-ca-cert-hash {hash} \\\n\t--control-plane \n"
            );
        }
        println!(
            "Then you can join any number of worker nodes by running the following on each as root:\n"
        );
        println!(
            "kubeadm join {endpoint} --token {token_text} \\\n\t--discovery-token-ca-cert-hash {hash} "
        );
    }
    Ok(())
}

fn run_preflight(eff: &Effective, cri: &str, kv: KubeVersion, ignore: &[String]) -> Result<()> {
    println!("[preflight] Running pre-flight checks");
    // RunRootCheckOnly first: it fails fast on its own.
    preflight::run(vec![preflight::privileged_user()], ignore)
        .context("error execution phase preflight")?;
    let kubelet = preflight::installed_kubelet_version();
    let mut checks = vec![
        preflight::num_cpu(),
        preflight::mem(),
        preflight::kubernetes_version(eff.version, kv),
        preflight::port(eff.bind_port),
        preflight::port(10259),
        preflight::port(10257),
        preflight::file_available("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        preflight::file_available("/etc/kubernetes/manifests/kube-controller-manager.yaml"),
        preflight::file_available("/etc/kubernetes/manifests/kube-scheduler.yaml"),
        preflight::file_available("/etc/kubernetes/manifests/etcd.yaml"),
    ];
    checks.extend(common_checks(cri, Some(eff.version), kubelet.clone(), kv));
    // IPv4 forwarding when the subnets or the advertise address are IPv4.
    let ipv4 = eff.advertise.is_ipv4()
        || eff.cluster.networking.service_subnet.contains('.')
        || eff.cluster.networking.pod_subnet.contains('.');
    if ipv4 {
        checks.push(preflight::ip_forward());
    }
    if let Some(local) = &eff.cluster.etcd.local {
        checks.push(preflight::port(2379));
        checks.push(preflight::port(2380));
        checks.push(preflight::dir_available(local.data_dir.clone()));
    }
    preflight::run(checks, ignore).context("error execution phase preflight")?;
    pull_images(
        &eff.cluster,
        eff.version,
        kv,
        cri,
        &eff.init.node_registration,
        ignore,
    )
}

/// addCommonChecks (init and every join): CRI, Swap, the executables, SystemVerification,
/// KubeletVersion, Service-Kubelet and the kubelet's port.
pub fn common_checks(
    cri: &str,
    kubernetes: Option<KubeVersion>,
    kubelet: std::result::Result<KubeVersion, String>,
    kv: KubeVersion,
) -> Vec<preflight::Check> {
    let mut checks = vec![preflight::cri(cri.to_string()), preflight::swap()];
    checks.extend(preflight::exec_checks(kubernetes));
    checks.push(preflight::system_verification(kubelet.clone().ok()));
    checks.push(preflight::kubelet_version(kubelet, kubernetes, kv));
    checks.push(preflight::kubelet_service());
    checks.push(preflight::port(10250));
    checks
}

/// RunPullImagesCheck, with kubeadm's lines before it.
pub fn pull_images(
    cluster: &config::ClusterConfiguration,
    version: KubeVersion,
    kv: KubeVersion,
    cri: &str,
    reg: &config::NodeRegistration,
    ignore: &[String],
) -> Result<()> {
    println!("[preflight] Pulling images required for setting up a Kubernetes cluster");
    println!(
        "[preflight] This might take a minute or two, depending on the speed of your internet connection"
    );
    println!(
        "[preflight] You can also perform this action beforehand using 'kubeadm config images pull'"
    );
    let images = crate::images::control_plane_images(cluster, version, kv);
    let check = preflight::image_pull(
        cri.to_string(),
        images,
        crate::images::pause_image(cluster, kv),
        reg.image_pull_policy.clone(),
    );
    preflight::run(vec![check], ignore).context("error execution phase preflight")
}

/// The super-admin client (falls back to admin.conf) aimed at this node's API server.
pub fn admin_client(local_server: &str) -> Result<Kube> {
    let super_admin = p(paths::SUPER_ADMIN_CONF);
    let conf = if super_admin.exists() {
        super_admin
    } else {
        p(paths::ADMIN_CONF)
    };
    Ok(Kube::from_kubeconfig(&conf)?.with_server(local_server))
}

/// kubeadm's control-plane check: the API server's /livez through the verified client, and
/// the controller-manager's and scheduler's local health endpoints (self-signed, so not
/// verified) when their manifests are on this node.
pub fn wait_api(kube: &Kube, timeout: Duration) -> Result<()> {
    println!(
        "[control-plane-check] Waiting for healthy control plane components. This can take up to {}",
        super::fmt_duration(timeout)
    );
    // (component, client, health path)
    let mut checks: Vec<(&str, Kube, &str)> = vec![("kube-apiserver", kube.clone(), "/livez")];
    let manifests = p(paths::MANIFESTS_DIR);
    for (name, port, path) in [
        ("kube-controller-manager", 10257, "/healthz"),
        ("kube-scheduler", 10259, "/livez"),
    ] {
        if manifests.join(format!("{name}.yaml")).exists() {
            checks.push((
                name,
                Kube::insecure(&format!("https://127.0.0.1:{port}"))?,
                path,
            ));
        }
    }
    for (name, client, path) in &checks {
        println!(
            "[control-plane-check] Checking {name} at {}{path}",
            client.server
        );
    }
    let start = std::time::Instant::now();
    for (name, client, path) in &checks {
        let left = timeout.saturating_sub(start.elapsed());
        if !super::wait_for(left, Duration::from_millis(500), || client.healthy(path)) {
            bail!(
                "[control-plane-check] {name} check failed at {}{path}: not healthy after {}\n\nA control plane component may have crashed or exited when started by the container runtime.\nThe simulated components log to {}/<pod>.log; also check 'journalctl -xeu kubelet'.",
                client.server,
                super::fmt_duration(timeout),
                paths::s(paths::LOG_DIR)
            );
        }
        println!(
            "[control-plane-check] {name} is healthy after {}",
            super::fmt_duration(start.elapsed())
        );
    }
    Ok(())
}

/// The kubeconfig published in kube-public/cluster-info: server and CA, no user.
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> Result<String> {
    let mut kc = KubeConfig::new("", server, ca_pem, "", Default::default());
    kc.contexts.clear();
    kc.users.clear();
    kc.current_context.clear();
    kc.to_yaml()
}

/// Labels the node as control plane and adds the taints (default: control-plane:NoSchedule).
pub fn mark_control_plane(
    kube: &Kube,
    node: &str,
    taints: Option<&Vec<Taint>>,
    timeout: Duration,
) -> Result<()> {
    let wanted: Vec<Taint> = match taints {
        Some(t) => t.clone(),
        None => vec![Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        }],
    };
    println!(
        "[mark-control-plane] Marking the node {node} as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]"
    );
    let shown: Vec<String> = wanted
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    println!(
        "[mark-control-plane] Marking the node {node} as control-plane by adding the taints [{}]",
        shown.join(" ")
    );
    let path = format!("/api/v1/nodes/{node}");
    let mut current = None;
    super::wait_for(timeout, Duration::from_secs(1), || match kube.get(&path) {
        Ok(r) if r.ok() => {
            current = Some(r.body);
            true
        }
        _ => false,
    });
    let current = current.ok_or_else(|| anyhow!("error marking control-plane: node {node:?} did not register with the API server within {}", super::fmt_duration(timeout)))?;
    let mut all: Vec<Value> = current["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for t in &wanted {
        if !all
            .iter()
            .any(|x| x["key"] == t.key.as_str() && x["effect"] == t.effect.as_str())
        {
            all.push(serde_json::to_value(t)?);
        }
    }
    let patch = json!({
        "metadata": {"labels": {
            "node-role.kubernetes.io/control-plane": "",
            "node.kubernetes.io/exclude-from-external-load-balancers": "",
        }},
        "spec": {"taints": all},
    });
    kube.merge_patch(&path, &patch)?
        .into_result(&format!("marking node {node} as control-plane"))?;
    Ok(())
}
