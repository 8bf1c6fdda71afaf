//! `kubeadm join`: token discovery, TLS bootstrap, and for control-plane nodes the local
//! certificates, manifests and etcd membership.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::certs::{NodePki, missing_shared_files};
use super::init::{mark_control_plane, wait_api};
use super::{
    FOUR_MINUTES, Phases, kubeadm_version, start_kubelet, timeout_of, wait_for, wait_kubelet,
    write_kubelet_files,
};
use crate::config::{
    self, BootstrapTokenDiscovery, ClusterConfiguration, JoinConfiguration, host_port,
};
use crate::etcd::Etcd;
use crate::kube::Kube;
use crate::kubeconfig::{Credentials, KubeConfig, User};
use crate::manifests::{self, Local};
use crate::paths::{self, p};
use crate::preflight;
use crate::token::{self, Token};
use crate::util::{self, KubeVersion, write_file};

const PHASES: &[&str] = &[
    "preflight",
    "control-plane-prepare/download-certs",
    "control-plane-prepare/certs",
    "control-plane-prepare/kubeconfig",
    "control-plane-prepare/control-plane",
    "kubelet-start",
    "control-plane-join/etcd",
    "control-plane-join/mark-control-plane",
    "wait-control-plane",
];

#[derive(Args, Debug, Default)]
pub struct JoinArgs {
    /// API server endpoint, host:port
    endpoint: Option<String>,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    token: Option<String>,
    #[arg(long = "discovery-token")]
    discovery_token: Option<String>,
    #[arg(long = "tls-bootstrap-token")]
    tls_bootstrap_token: Option<String>,
    #[arg(long = "discovery-token-ca-cert-hash", value_delimiter = ',')]
    discovery_token_ca_cert_hash: Vec<String>,
    #[arg(long = "discovery-token-unsafe-skip-ca-verification")]
    discovery_token_unsafe_skip_ca_verification: bool,
    #[arg(long = "discovery-file")]
    discovery_file: Option<String>,
    #[arg(long = "control-plane")]
    control_plane: bool,
    #[arg(long = "certificate-key")]
    certificate_key: Option<String>,
    #[arg(long = "apiserver-advertise-address")]
    apiserver_advertise_address: Option<String>,
    #[arg(long = "apiserver-bind-port")]
    apiserver_bind_port: Option<u16>,
    #[arg(long = "node-name")]
    node_name: Option<String>,
    #[arg(long = "cri-socket")]
    cri_socket: Option<String>,
    #[arg(long = "ignore-preflight-errors", value_delimiter = ',')]
    ignore_preflight_errors: Vec<String>,
    #[arg(long = "skip-phases", value_delimiter = ',')]
    skip_phases: Vec<String>,
    #[arg(long = "dry-run")]
    dry_run: bool,
}

impl JoinArgs {
    fn config_flags(&self) -> Vec<&'static str> {
        let mut v = vec![];
        let mut add = |set: bool, name| {
            if set {
                v.push(name)
            }
        };
        add(self.endpoint.is_some(), "api-server-endpoint");
        add(self.token.is_some(), "token");
        add(self.discovery_token.is_some(), "discovery-token");
        add(self.tls_bootstrap_token.is_some(), "tls-bootstrap-token");
        add(
            !self.discovery_token_ca_cert_hash.is_empty(),
            "discovery-token-ca-cert-hash",
        );
        add(
            self.discovery_token_unsafe_skip_ca_verification,
            "discovery-token-unsafe-skip-ca-verification",
        );
        add(self.discovery_file.is_some(), "discovery-file");
        add(self.control_plane, "control-plane");
        add(
            self.apiserver_advertise_address.is_some(),
            "apiserver-advertise-address",
        );
        add(self.apiserver_bind_port.is_some(), "apiserver-bind-port");
        add(self.node_name.is_some(), "node-name");
        add(self.cri_socket.is_some(), "cri-socket");
        v
    }

    fn join_configuration(&self) -> Result<JoinConfiguration> {
        if let Some(path) = &self.config {
            let flags = self.config_flags();
            if !flags.is_empty() {
                bail!(
                    "can not mix '--config' with arguments [{}]",
                    flags.join(" ")
                );
            }
            let text = util::read_to_string(path)?;
            let docs = match kubeadm_version() {
                Ok(kv) => config::parse_documents_for(&text, kv),
                Err(_) => config::parse_documents(&text),
            }
            .with_context(|| format!("loading {}", path.display()))?;
            for w in &docs.warnings {
                eprintln!("{w}");
            }
            return docs
                .join
                .ok_or_else(|| anyhow!("no JoinConfiguration found in {}", path.display()));
        }
        let mut j = JoinConfiguration::default();
        let discovery_token = self.discovery_token.clone().or(self.token.clone());
        if let Some(f) = &self.discovery_file {
            j.discovery.file = Some(config::FileDiscovery {
                kube_config_path: f.clone(),
            });
        } else {
            j.discovery.bootstrap_token = Some(BootstrapTokenDiscovery {
                token: discovery_token.clone().unwrap_or_default(),
                api_server_endpoint: self.endpoint.clone().unwrap_or_default(),
                ca_cert_hashes: self.discovery_token_ca_cert_hash.clone(),
                unsafe_skip_ca_verification: self.discovery_token_unsafe_skip_ca_verification,
            });
        }
        j.discovery.tls_bootstrap_token = self
            .tls_bootstrap_token
            .clone()
            .or(self.token.clone())
            .unwrap_or_default();
        j.node_registration.name = self.node_name.clone().unwrap_or_default();
        j.node_registration.cri_socket = self.cri_socket.clone().unwrap_or_default();
        if self.control_plane {
            let mut cp = config::JoinControlPlane::default();
            cp.local_api_endpoint.advertise_address =
                self.apiserver_advertise_address.clone().unwrap_or_default();
            cp.local_api_endpoint.bind_port = self.apiserver_bind_port.unwrap_or(0);
            cp.certificate_key = self.certificate_key.clone().unwrap_or_default();
            j.control_plane = Some(cp);
        }
        Ok(j)
    }
}

/// kubeadm's ValidateJoinConfiguration for the discovery settings.
pub fn validate_join_config(j: &JoinConfiguration) -> Result<()> {
    match (&j.discovery.bootstrap_token, &j.discovery.file) {
        (None, None) => bail!("discovery: Invalid value: \"\": bootstrapToken or file must be set"),
        (Some(_), Some(_)) => {
            bail!("discovery: Invalid value: \"\": bootstrapToken and file cannot both be set")
        }
        (Some(bt), None) => {
            Token::parse(&bt.token).map_err(|e| {
                anyhow!("discovery.bootstrapToken.token: Invalid value: \"<redacted>\": {e}")
            })?;
            if bt.api_server_endpoint.is_empty() {
                bail!(
                    "discovery.bootstrapToken.apiServerEndpoint: Invalid value: \"\": the API server endpoint must be set (kubeadm join HOST:PORT ...)"
                );
            }
            config::split_host_port(&bt.api_server_endpoint, 6443).map_err(|e| {
                anyhow!(
                    "discovery.bootstrapToken.apiServerEndpoint: Invalid value: {:?}: {e}",
                    bt.api_server_endpoint
                )
            })?;
            if bt.ca_cert_hashes.is_empty() && !bt.unsafe_skip_ca_verification {
                bail!(
                    "discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue"
                );
            }
            for h in &bt.ca_cert_hashes {
                token::parse_ca_hash(h).map_err(|e| {
                    anyhow!("discovery.bootstrapToken.caCertHashes: Invalid value: {h:?}: {e}")
                })?;
            }
        }
        (None, Some(_)) => {}
    }
    let tls = tls_token(j);
    if !tls.is_empty() {
        Token::parse(&tls).map_err(|e| {
            anyhow!("discovery.tlsBootstrapToken: Invalid value: \"<redacted>\": {e}")
        })?;
    }
    if let Some(cp) = &j.control_plane
        && !cp.local_api_endpoint.advertise_address.is_empty()
        && cp
            .local_api_endpoint
            .advertise_address
            .parse::<IpAddr>()
            .is_err()
    {
        bail!(
            "controlPlane.localAPIEndpoint.advertiseAddress: Invalid value: {:?}: cannot parse IP address",
            cp.local_api_endpoint.advertise_address
        );
    }
    Ok(())
}

fn tls_token(j: &JoinConfiguration) -> String {
    if !j.discovery.tls_bootstrap_token.is_empty() {
        return j.discovery.tls_bootstrap_token.clone();
    }
    j.discovery
        .bootstrap_token
        .as_ref()
        .map(|b| b.token.clone())
        .unwrap_or_default()
}

/// What discovery yields: the endpoint to use and the CA to trust.
pub struct Discovered {
    pub server: String,
    pub ca_pem: String,
    pub cluster_name: String,
}

const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// Token discovery: fetch cluster-info without trusting the server, check the JWS made with the
/// token, pin the CA, then fetch again over TLS verified with that CA.
pub fn discover(bt: &BootstrapTokenDiscovery, timeout: Duration) -> Result<Discovered> {
    let token = Token::parse(&bt.token)?;
    let server = format!("https://{}", bt.api_server_endpoint);
    println!(
        "[discovery] Trying to connect to API Server {:?}",
        bt.api_server_endpoint
    );
    let insecure = Kube::insecure(&server)?;
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    let (kubeconfig, ca_pem) = loop {
        if start.elapsed() > timeout {
            bail!(
                "couldn't validate the identity of the API Server: failed to obtain cluster-info within {}: {last}",
                super::fmt_duration(timeout)
            );
        }
        let reply = match insecure.get(CLUSTER_INFO) {
            Ok(r) => r,
            Err(e) => {
                last = format!("{e:#}");
                eprintln!("[discovery] Failed to request cluster-info, will try again: {last}");
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        };
        if !reply.ok() {
            last = format!("HTTP {} {}", reply.status, reply.message());
            eprintln!("[discovery] Failed to request cluster-info, will try again: {last}");
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        let data = &reply.body["data"];
        let Some(kubeconfig) = data["kubeconfig"].as_str() else {
            bail!(
                "there is no \"kubeconfig\" key in the cluster-info ConfigMap: this API server does not serve kubeadm discovery"
            );
        };
        let Some(jws) = data[format!("jws-kubeconfig-{}", token.id)].as_str() else {
            last = format!(
                "there is no JWS signed token in the cluster-info ConfigMap. This token id {:?} is invalid for this cluster, can't connect",
                token.id
            );
            eprintln!(
                "[discovery] The cluster-info ConfigMap does not yet contain a JWS signature for token ID {:?}, will try again",
                token.id
            );
            std::thread::sleep(Duration::from_secs(2));
            continue;
        };
        if token::verify_detached(jws, kubeconfig, &token).is_err() {
            bail!(
                "failed to verify JWS signature of received cluster info object, can't trust this API Server"
            );
        }
        let kc = KubeConfig::parse(kubeconfig)
            .context("couldn't parse the kubeconfig file in the cluster-info ConfigMap")?;
        let ca = kc.credentials()?.ca_pem;
        break (kubeconfig.to_string(), ca);
    };
    if !bt.unsafe_skip_ca_verification {
        let pinned: Vec<String> = bt
            .ca_cert_hashes
            .iter()
            .filter_map(|h| token::parse_ca_hash(h).ok())
            .collect();
        token::check_any_pin(&ca_pem, &pinned)
            .context("cluster CA found in cluster-info ConfigMap is invalid")?;
    }
    println!(
        "[discovery] Requesting info from {server:?} again to validate TLS against the pinned public key"
    );
    let secure = Kube::from_credentials(&Credentials {
        server: server.clone(),
        ca_pem: ca_pem.clone(),
        cert_pem: None,
        key_pem: None,
        token: None,
    })?;
    let again = secure
        .get(CLUSTER_INFO)?
        .into_result("failed to securely fetch cluster-info")?;
    if again["data"]["kubeconfig"].as_str() != Some(kubeconfig.as_str()) {
        bail!(
            "cluster-info changed between the insecure and the pinned request; refusing to trust this API server"
        );
    }
    println!(
        "[discovery] Cluster info signature and contents are valid and TLS certificate validates against pinned roots, will use API Server {:?}",
        bt.api_server_endpoint
    );
    let kc = KubeConfig::parse(&kubeconfig)?;
    let cluster_name = kc
        .clusters
        .first()
        .map(|c| c.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "kubernetes".into());
    Ok(Discovered {
        server,
        ca_pem,
        cluster_name,
    })
}

fn discover_file(path: &str) -> Result<Discovered> {
    let kc = KubeConfig::load(std::path::Path::new(path))?;
    let creds = kc.credentials()?;
    Ok(Discovered {
        server: creds.server,
        ca_pem: creds.ca_pem,
        cluster_name: kc
            .clusters
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "kubernetes".into()),
    })
}

pub fn run(a: JoinArgs) -> Result<()> {
    let kv = kubeadm_version()?;
    let j = a.join_configuration()?;
    validate_join_config(&j)?;
    if a.dry_run || j.dry_run {
        bail!("--dry-run is not implemented by the lab simulator");
    }
    let mut skip = a.skip_phases.clone();
    skip.extend(j.skip_phases.iter().cloned());
    let phases = Phases::new(&skip, PHASES)?;
    let mut ignore = a.ignore_preflight_errors.clone();
    ignore.extend(j.node_registration.ignore_preflight_errors.iter().cloned());
    let ignore = preflight::ignore_set(&ignore)?;
    let cri = match j.node_registration.cri_endpoint() {
        Some(c) => c,
        None => crate::cri::detect()?,
    };
    let node_name = if j.node_registration.name.is_empty() {
        util::hostname()
    } else {
        j.node_registration.name.clone()
    };
    let timeouts = j.timeouts.as_ref();

    if phases.run("preflight") {
        println!("[preflight] Running pre-flight checks");
        preflight::run(vec![preflight::privileged_user()], &ignore)
            .context("error execution phase preflight")?;
        preflight::run(node_checks(&j, &cri, kv), &ignore)
            .context("error execution phase preflight")?;
    }
    let discovered = match (&j.discovery.bootstrap_token, &j.discovery.file) {
        (Some(bt), _) => discover(
            bt,
            timeout_of(timeouts, |t| &t.discovery, Duration::from_secs(300))?,
        )?,
        (None, Some(f)) => discover_file(&f.kube_config_path)?,
        (None, None) => bail!("discovery: bootstrapToken or file must be set"),
    };
    let tls = Token::parse(&tls_token(&j))?;
    let bootstrap = Kube::from_credentials(&Credentials {
        server: discovered.server.clone(),
        ca_pem: discovered.ca_pem.clone(),
        cert_pem: None,
        key_pem: None,
        token: Some(tls.full()),
    })?;
    println!(
        "[preflight] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"..."
    );
    let (cluster, kubelet_cfg) = fetch_cluster_config(&bootstrap, kv)?;
    check_node_name_free(&bootstrap, &node_name)?;

    let mut advertise = None;
    if let Some(cp) = &j.control_plane {
        if cluster.control_plane_endpoint.is_empty() {
            bail!(
                "error execution phase preflight: \nOne or more conditions for hosting a new control plane instance is not satisfied.\n\nunable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n"
            );
        }
        let dir = cluster.cert_dir();
        let missing = missing_shared_files(&dir);
        if !missing.is_empty() {
            if !cp.certificate_key.is_empty() {
                bail!(
                    "error execution phase control-plane-prepare/download-certs: downloading the shared certificates from the kubeadm-certs Secret is not implemented by the lab simulator; copy ca, sa, front-proxy-ca and etcd/ca to {} instead",
                    dir.display()
                );
            }
            bail!(
                "error execution phase preflight: \nOne or more conditions for hosting a new control plane instance is not satisfied.\n\n[failure loading certificate authorities: {}]\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n",
                missing.join(", ")
            );
        }
        if !cp.certificate_key.is_empty() {
            println!(
                "[download-certs] The shared certificate authorities are already present in {}: not downloading them",
                dir.display()
            );
        }
        let ip: IpAddr = if cp.local_api_endpoint.advertise_address.is_empty() {
            util::default_ipv4().map(IpAddr::V4).ok_or_else(|| anyhow!("unable to select an IP address: set controlPlane.localAPIEndpoint.advertiseAddress"))?
        } else {
            cp.local_api_endpoint.advertise_address.parse()?
        };
        let port = if cp.local_api_endpoint.bind_port == 0 {
            6443
        } else {
            cp.local_api_endpoint.bind_port
        };
        if phases.run("preflight") {
            println!(
                "[preflight] Running pre-flight checks before initializing the new control plane instance"
            );
            let version = KubeVersion::parse(&cluster.kubernetes_version)?;
            preflight::run(control_plane_checks(&cluster, version, kv, port), &ignore)
                .context("error execution phase preflight")?;
            super::init::pull_images(&cluster, version, kv, &cri, &j.node_registration, &ignore)?;
        }
        advertise = Some((ip, port));
    }

    let version = KubeVersion::parse(&cluster.kubernetes_version)?;
    if let Some((ip, port)) = advertise {
        let node = NodePki {
            cfg: &cluster,
            node_name: &node_name,
            advertise: ip,
            bind_port: port,
        };
        if phases.run("control-plane-prepare/certs") {
            node.cas(false)?;
            node.leaves()?;
        }
        if phases.run("control-plane-prepare/kubeconfig") {
            node.control_plane_kubeconfigs(false)?;
        }
        if phases.run("control-plane-prepare/control-plane") {
            let local = Local {
                cfg: &cluster,
                version,
                node_name: &node_name,
                advertise: ip,
                bind_port: port,
            };
            let dir = p(paths::MANIFESTS_DIR);
            println!(
                "[control-plane] Using manifest folder {:?}",
                dir.display().to_string()
            );
            for (name, pod) in [
                ("kube-apiserver", local.api_server()),
                ("kube-controller-manager", local.controller_manager()),
                ("kube-scheduler", local.scheduler()),
            ] {
                println!("[control-plane] Creating static Pod manifest for {name:?}");
                write_file(
                    &dir.join(format!("{name}.yaml")),
                    manifests::to_yaml(&pod)?,
                    0o600,
                )?;
            }
        }
    }

    if phases.run("kubelet-start") {
        let ca_path = if j.ca_cert_path.is_empty() {
            cluster.cert_dir().join("ca.crt").display().to_string()
        } else {
            j.ca_cert_path.clone()
        };
        if !std::path::Path::new(&ca_path).exists() {
            write_file(std::path::Path::new(&ca_path), &discovered.ca_pem, 0o644)?;
        }
        let user = User {
            token: tls.full(),
            ..Default::default()
        };
        KubeConfig::new(
            &discovered.cluster_name,
            &discovered.server,
            &discovered.ca_pem,
            "tls-bootstrap-token-user",
            user,
        )
        .write(&p(paths::BOOTSTRAP_KUBELET_CONF))?;
        let flags =
            manifests::kubeadm_flags(&cri, &node_name, &j.node_registration.kubelet_extra_args);
        write_kubelet_files(&kubelet_cfg, &flags)?;
        start_kubelet();
        wait_kubelet(
            super::kubelet_healthz_port(&kubelet_cfg),
            timeout_of(timeouts, |t| &t.kubelet_health_check, FOUR_MINUTES)?,
        )?;
        wait_tls_bootstrap(timeout_of(
            timeouts,
            |t| &t.tls_bootstrap,
            Duration::from_secs(300),
        )?)?;
    }

    let Some((ip, port)) = advertise else {
        println!(
            "\nThis node has joined the cluster:\n* Certificate signing request was sent to apiserver and a response was received.\n* The Kubelet was informed of the new secure connection details.\n\nRun 'kubectl get nodes' on the control-plane to see this node join the cluster.\n"
        );
        return Ok(());
    };
    let admin = Kube::from_kubeconfig(&p(paths::ADMIN_CONF))?;
    let etcd_timeout = timeout_of(timeouts, |t| &t.etcd_api_call, Duration::from_secs(120))?;
    if phases.run("control-plane-join/etcd") && cluster.etcd.local.is_some() {
        join_etcd(
            &admin,
            &cluster,
            &node_name,
            ip,
            port,
            version,
            etcd_timeout,
        )?;
    }
    if phases.run("control-plane-join/mark-control-plane") {
        mark_control_plane(
            &admin,
            &node_name,
            j.node_registration.taints.as_ref(),
            FOUR_MINUTES,
        )?;
    }
    if phases.run("wait-control-plane") {
        let local = admin
            .clone()
            .with_server(&format!("https://{}", host_port(&ip.to_string(), port)));
        wait_api(
            &local,
            timeout_of(
                timeouts,
                |t| &t.control_plane_component_health_check,
                FOUR_MINUTES,
            )?,
        )?;
    }
    println!(
        "\nThis node has joined the cluster and a new control plane instance was created:\n\n* Certificate signing request was sent to apiserver and approval was received.\n* The Kubelet was informed of the new secure connection details.\n* Control plane label and taint were applied to the new node.\n* The Kubernetes control plane instances scaled up.\n* A new etcd member was added to the local/stacked etcd cluster.\n"
    );
    println!(
        "To start administering your cluster from this node, you need to run the following as a regular user:\n\n\tmkdir -p $HOME/.kube\n\tsudo cp -i {} $HOME/.kube/config\n\tsudo chown $(id -u):$(id -g) $HOME/.kube/config\n\nRun 'kubectl get nodes' to see this node join the cluster.\n",
        paths::s(paths::ADMIN_CONF)
    );
    Ok(())
}

/// JoinNodeChecks: the kubelet's kubeconfigs, the common checks (no control-plane version
/// is known yet), the CA file on workers, and IPv4 forwarding when the API endpoint is an IPv4
/// address (a host name gets no forwarding check, as upstream).
fn node_checks(j: &JoinConfiguration, cri: &str, kv: KubeVersion) -> Vec<preflight::Check> {
    let mut c = vec![
        preflight::file_available("/etc/kubernetes/kubelet.conf"),
        preflight::file_available("/etc/kubernetes/bootstrap-kubelet.conf"),
    ];
    c.extend(super::init::common_checks(
        cri,
        None,
        preflight::installed_kubelet_version(),
        kv,
    ));
    if j.control_plane.is_none() {
        let ca = if j.ca_cert_path.is_empty() {
            "/etc/kubernetes/pki/ca.crt".to_string()
        } else {
            j.ca_cert_path.clone()
        };
        c.push(preflight::file_available(ca));
    }
    if let Some(bt) = &j.discovery.bootstrap_token
        && let Ok((host, _)) = config::split_host_port(&bt.api_server_endpoint, 6443)
        && let Ok(ip) = host.parse::<IpAddr>()
        && ip.is_ipv4()
    {
        c.push(preflight::ip_forward());
    }
    c
}

/// RunInitNodeChecks for a joining control plane (isSecondaryControlPlane).
fn control_plane_checks(
    cluster: &ClusterConfiguration,
    version: KubeVersion,
    kv: KubeVersion,
    port: u16,
) -> Vec<preflight::Check> {
    let mut c = vec![
        preflight::num_cpu(),
        preflight::mem(),
        preflight::kubernetes_version(version, kv),
        preflight::port(port),
        preflight::port(10259),
        preflight::port(10257),
        preflight::file_available("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        preflight::file_available("/etc/kubernetes/manifests/kube-controller-manager.yaml"),
        preflight::file_available("/etc/kubernetes/manifests/kube-scheduler.yaml"),
        preflight::file_available("/etc/kubernetes/manifests/etcd.yaml"),
    ];
    if let Some(local) = &cluster.etcd.local {
        c.push(preflight::port(2379));
        c.push(preflight::port(2380));
        c.push(preflight::dir_available(local.data_dir.clone()));
    }
    c
}

/// kubeadm-config's ClusterConfiguration and kubelet-config's KubeletConfiguration.
pub fn fetch_cluster_config(
    kube: &Kube,
    kv: KubeVersion,
) -> Result<(ClusterConfiguration, Map<String, Value>)> {
    let cm = kube
        .get("/api/v1/namespaces/kube-system/configmaps/kubeadm-config")?
        .into_result("unable to fetch the kubeadm-config ConfigMap")?;
    let yaml = cm["data"]["ClusterConfiguration"]
        .as_str()
        .ok_or_else(|| anyhow!("unexpected error when reading kubeadm-config ConfigMap: ClusterConfiguration key value pair missing"))?;
    let docs = config::parse_documents(yaml)
        .context("the kubeadm-config ConfigMap holds an invalid ClusterConfiguration")?;
    let mut cluster = docs
        .cluster
        .ok_or_else(|| anyhow!("the kubeadm-config ConfigMap holds no ClusterConfiguration"))?;
    cluster.default_fields(kv);
    let kcm = kube
        .get("/api/v1/namespaces/kube-system/configmaps/kubelet-config")?
        .into_result("unable to fetch the kubelet-config ConfigMap")?;
    let kyaml = kcm["data"]["kubelet"]
        .as_str()
        .ok_or_else(|| anyhow!("the kubelet-config ConfigMap has no \"kubelet\" key"))?;
    let kubelet: Map<String, Value> = serde_saphyr::from_str(kyaml)
        .map_err(|e| anyhow!("the kubelet-config ConfigMap holds invalid YAML: {e}"))?;
    Ok((cluster, kubelet))
}

/// kubeadm refuses to join a node whose name belongs to a Ready node already in the cluster.
fn check_node_name_free(kube: &Kube, node: &str) -> Result<()> {
    let r = kube.get(&format!("/api/v1/nodes/{node}"))?;
    if r.status == 404 || r.status == 403 {
        return Ok(());
    }
    if r.ok() {
        let ready = r.body["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            bail!(
                "a Node with name {node:?} and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node"
            );
        }
        return Ok(());
    }
    if r.status == 401 {
        bail!(
            "error execution phase preflight: unable to fetch the kubeadm-config ConfigMap: Unauthorized (the bootstrap token was rejected by the API server)"
        );
    }
    Ok(())
}

fn wait_tls_bootstrap(timeout: Duration) -> Result<()> {
    println!("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap");
    let conf = p(paths::KUBELET_CONF);
    let ok = wait_for(timeout, Duration::from_millis(500), || {
        KubeConfig::load(&conf)
            .and_then(|k| k.credentials())
            .is_ok_and(|c| c.cert_pem.is_some())
    });
    if !ok {
        bail!(
            "error execution phase kubelet-start: timed out waiting for the condition: the kubelet did not write {} within {} (TLS bootstrap not approved? check 'kubectl get csr' and 'journalctl -xeu kubelet')",
            conf.display(),
            super::fmt_duration(timeout)
        );
    }
    let _ = std::fs::remove_file(p(paths::BOOTSTRAP_KUBELET_CONF));
    Ok(())
}

/// The client URLs of the etcd members, from the etcd static pods' annotations.
pub fn etcd_endpoints(admin: &Kube) -> Result<Vec<String>> {
    let pods = admin
        .get("/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd%2Ctier%3Dcontrol-plane")?
        .into_result("listing the etcd Pods")?;
    let mut eps: Vec<String> = pods["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["labels"]["component"] == "etcd")
                .filter_map(|p| {
                    p["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"]
                        .as_str()
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    eps.sort();
    eps.dedup();
    if eps.is_empty() {
        bail!(
            "could not find any etcd endpoint: no etcd Pod in kube-system carries the kubeadm.kubernetes.io/etcd.advertise-client-urls annotation"
        );
    }
    Ok(eps)
}

/// Where a test can make `kubeadm join --control-plane` die like `kill -9`: right after etcd
/// accepted the learner (`learner-added`, before the etcd manifest is written) or after the
/// manifest is written but before the learner is promoted (`before-promote`). Set by env
/// `SIM_KUBEADM_CRASH_AT=<point>` (every run) or by the file
/// `/run/kubernetes-sim/kubeadm-crash-at` holding the point (one run: the file is removed
/// when it fires).
pub const CRASH_FILE: &str = "/run/kubernetes-sim/kubeadm-crash-at";

/// The crash point asked for, and whether it came from the (one-shot) file.
pub fn crash_request(env: Option<String>, file: Option<String>) -> Option<(String, bool)> {
    if let Some(f) = file.map(|f| f.trim().to_string()).filter(|f| !f.is_empty()) {
        return Some((f, true));
    }
    env.map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .map(|e| (e, false))
}

fn crash_point(point: &str) {
    let file = p(CRASH_FILE);
    let Some((want, from_file)) = crash_request(
        std::env::var("SIM_KUBEADM_CRASH_AT").ok(),
        std::fs::read_to_string(&file).ok(),
    ) else {
        return;
    };
    if want != point {
        return;
    }
    if from_file {
        let _ = std::fs::remove_file(&file);
    }
    use std::io::Write;
    eprintln!(
        "[lab-sim] kubeadm dies at {point:?} as {} asked (SIGKILL, nothing cleaned up)",
        if from_file {
            CRASH_FILE
        } else {
            "SIM_KUBEADM_CRASH_AT"
        }
    );
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

/// `--initial-cluster` for a joining member, as kubeadm builds it from the member list etcd
/// returned: every member, the joining one under this node's name, unnamed (never started)
/// members under their hex ID — etcd refuses to start when the list and the membership differ.
pub fn initial_cluster(members: &[crate::etcd::Member], node: &str, peer: &str) -> String {
    members
        .iter()
        .filter_map(|m| {
            let url = m.peer_urls.first()?;
            let name = if url == peer {
                node.to_string()
            } else if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                m.name.clone()
            };
            Some(format!("{name}={url}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn etcd_phase_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: {e}"
    )
}

/// CreateStackedEtcdStaticPodManifestFile with the EtcdLearnerMode behaviour (GA since 1.32):
/// add this member as a learner (or reuse the member that already has this peer URL), write
/// the manifest, promote the learner once it has caught up, wait for the cluster.
fn join_etcd(
    admin: &Kube,
    cluster: &ClusterConfiguration,
    node: &str,
    ip: IpAddr,
    port: u16,
    version: KubeVersion,
    timeout: Duration,
) -> Result<()> {
    let pki = cluster.cert_dir();
    let endpoints = etcd_endpoints(admin)?;
    let etcd = Etcd::new(endpoints.clone(), &pki, "apiserver-etcd-client")?;
    let peer = format!("https://{}", host_port(&ip.to_string(), 2380));
    println!("[etcd] Adding etcd member {peer} as a learner");
    // kubeadm retries every failure (listing, adding) every 500ms for timeouts.etcdAPICall.
    let start = Instant::now();
    let mut last_error = String::new();
    let members = loop {
        let attempt = etcd.member_list().and_then(|current| {
            if let Some(m) = current.iter().find(|m| m.peer_urls.first() == Some(&peer)) {
                println!(
                    "[etcd] The peer URL {peer} already belongs to member {:x}{}; skipping the member addition",
                    m.id,
                    if m.is_learner { " (a learner)" } else { "" }
                );
                return Ok(current);
            }
            etcd.member_add_learner(&peer).map(|(m, all)| {
                println!("[etcd] Added learner {:x} for {peer}", m.id);
                all
            })
        });
        match attempt {
            Ok(all) => break all,
            Err(e) => {
                let msg = format!("{e:#}");
                if msg != last_error {
                    eprintln!("[etcd] Failed to add etcd member, will retry: {msg}");
                    last_error = msg;
                }
                if start.elapsed() >= timeout {
                    return Err(etcd_phase_error(last_error));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    println!("[etcd] Announced new etcd member joining to the existing etcd cluster");
    crash_point("learner-added");

    let local = Local {
        cfg: cluster,
        version,
        node_name: node,
        advertise: ip,
        bind_port: port,
    };
    let pod = local.etcd(&initial_cluster(&members, node, &peer), true)?;
    println!("[etcd] Creating static Pod manifest for \"etcd\"");
    write_file(
        &p(paths::MANIFESTS_DIR).join("etcd.yaml"),
        manifests::to_yaml(&pod)?,
        0o600,
    )?;
    crash_point("before-promote");

    // MemberPromote: find the learner by peer URL, retry until etcd accepts the promotion
    // (the learner must be running and in sync), or until it is no longer a learner.
    let start = Instant::now();
    let mut last_error = String::new();
    loop {
        let attempt = etcd.member_list().and_then(|current| {
            let m = current
                .iter()
                .find(|m| m.peer_urls.first() == Some(&peer))
                .ok_or_else(|| anyhow!("no member ID found for peer URL {peer}"))?;
            if !m.is_learner {
                return Ok(());
            }
            etcd.member_promote(m.id)?;
            println!("[etcd] Promoted learner {:x} to a voting member", m.id);
            Ok(())
        });
        match attempt {
            Ok(()) => break,
            Err(e) => {
                let msg = format!("{e:#}");
                if msg != last_error {
                    eprintln!("[etcd] Promoting the learner failed, will retry: {msg}");
                    last_error = msg;
                }
                if start.elapsed() >= timeout {
                    return Err(etcd_phase_error(last_error));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    // WaitForClusterAvailable: 8 tries, 5 s apart, every endpoint (this one included).
    println!("[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s");
    let me = format!("https://{}", host_port(&ip.to_string(), 2379));
    let mut all = endpoints;
    if !all.contains(&me) {
        all.push(me);
    }
    let everyone = Etcd::new(all.clone(), &pki, "apiserver-etcd-client")?;
    if !wait_for(Duration::from_secs(40), Duration::from_secs(5), || {
        all.iter().all(|ep| everyone.healthy(ep))
    }) {
        bail!(
            "error execution phase control-plane-join/etcd: timeout waiting for etcd cluster to be available"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bt(token: &str, endpoint: &str, hashes: &[&str], unsafe_skip: bool) -> JoinConfiguration {
        let mut j = JoinConfiguration::default();
        j.discovery.bootstrap_token = Some(BootstrapTokenDiscovery {
            token: token.into(),
            api_server_endpoint: endpoint.into(),
            ca_cert_hashes: hashes.iter().map(|h| h.to_string()).collect(),
            unsafe_skip_ca_verification: unsafe_skip,
        });
        j
    }

    const HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn token_discovery_without_ca_hashes_is_refused_unless_unsafe_is_asked_for() {
        let e = validate_join_config(&bt("abcdef.0123456789abcdef", "10.0.0.1:6443", &[], false))
            .unwrap_err();
        assert!(
            e.to_string().contains("without caCertHashes can be unsafe"),
            "{e}"
        );
        assert!(
            validate_join_config(&bt("abcdef.0123456789abcdef", "10.0.0.1:6443", &[], true))
                .is_ok()
        );
    }

    #[test]
    fn join_without_endpoint_or_with_a_malformed_token_is_refused() {
        assert!(validate_join_config(&bt("abcdef.0123456789abcdef", "", &[HASH], false)).is_err());
        let e = validate_join_config(&bt("abcdef.secret", "10.0.0.1:6443", &[HASH], false))
            .unwrap_err();
        assert!(
            !e.to_string().contains("secret"),
            "the token must not be echoed: {e}"
        );
        assert!(
            validate_join_config(&bt(
                "abcdef.0123456789abcdef",
                "10.0.0.1:6443",
                &["sha256:00"],
                false
            ))
            .is_err()
        );
    }

    #[test]
    fn discovery_needs_exactly_one_method() {
        assert!(validate_join_config(&JoinConfiguration::default()).is_err());
        let mut j = bt("abcdef.0123456789abcdef", "10.0.0.1:6443", &[HASH], false);
        j.discovery.file = Some(config::FileDiscovery {
            kube_config_path: "/x".into(),
        });
        assert!(
            validate_join_config(&j)
                .unwrap_err()
                .to_string()
                .contains("cannot both be set")
        );
    }

    #[test]
    fn config_file_cannot_be_mixed_with_join_flags() {
        let a = JoinArgs {
            config: Some("/tmp/join.yaml".into()),
            token: Some("abcdef.0123456789abcdef".into()),
            control_plane: true,
            ..Default::default()
        };
        let e = a.join_configuration().unwrap_err().to_string();
        assert!(
            e.contains("can not mix '--config' with arguments [token control-plane]"),
            "{e}"
        );
    }

    fn member(id: u64, name: &str, peer: &str, learner: bool) -> crate::etcd::Member {
        crate::etcd::Member {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    #[test]
    fn initial_cluster_names_the_joining_member_and_unstarted_members_by_id() {
        let ms = [
            member(1, "m1", "https://10.0.0.11:2380", false),
            member(0x2a, "", "https://10.0.0.13:2380", true),
            member(3, "", "https://10.0.0.12:2380", true),
        ];
        assert_eq!(
            initial_cluster(&ms, "m2", "https://10.0.0.12:2380"),
            "m1=https://10.0.0.11:2380,2a=https://10.0.0.13:2380,m2=https://10.0.0.12:2380"
        );
    }

    #[test]
    fn crash_file_wins_over_env_and_is_one_shot() {
        assert_eq!(crash_request(None, None), None);
        assert_eq!(
            crash_request(
                Some("before-promote".into()),
                Some("learner-added\n".into())
            ),
            Some(("learner-added".into(), true))
        );
        assert_eq!(
            crash_request(Some("before-promote".into()), None),
            Some(("before-promote".into(), false))
        );
    }
}
