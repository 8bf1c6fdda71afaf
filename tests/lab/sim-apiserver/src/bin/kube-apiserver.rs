//! kube-apiserver simulator: the real flags, HTTPS with the kubeadm certificates, storage in etcd.

use std::net::{IpAddr, SocketAddr};

use sim_apiserver::auth::{SaSigner, SaVerifier};
use sim_apiserver::server::{self, Config, Server};
use sim_apiserver::{admission, bootstrap, etcd::Etcd, flags, tlsutil};

fn run(f: &flags::Flags) -> anyhow::Result<()> {
    let port: u16 = f
        .get("secure-port")
        .unwrap_or("6443")
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --secure-port"))?;
    let bind: IpAddr = f
        .get("bind-address")
        .unwrap_or("0.0.0.0")
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --bind-address"))?;
    let (Some(cert), Some(key)) = (f.get("tls-cert-file"), f.get("tls-private-key-file")) else {
        anyhow::bail!(
            "--tls-cert-file and --tls-private-key-file are required (self-signed serving certificates are not simulated)"
        );
    };
    let etcd = Etcd::new(
        f.list("etcd-servers"),
        f.get("etcd-cafile"),
        f.get("etcd-certfile"),
        f.get("etcd-keyfile"),
    )?;
    let issuers = f.list("service-account-issuer");
    let audiences = f.list("api-audiences");
    let key_files = f.list("service-account-key-file");
    let sa_verifier = if key_files.is_empty() {
        None
    } else {
        Some(SaVerifier::new(
            &key_files,
            issuers.clone(),
            audiences.clone(),
        )?)
    };
    let sa_signer = match f.get("service-account-signing-key-file") {
        Some(k) => {
            let Some(iss) = issuers.first() else {
                anyhow::bail!(
                    "--service-account-issuer is required when --service-account-signing-key-file is set"
                );
            };
            Some(SaSigner::new(k, iss.clone(), audiences.clone())?)
        }
        None => None,
    };
    let service_cidr = match f.get("service-cluster-ip-range") {
        Some(s) => Some(
            admission::parse_cidr(s.split(',').next().unwrap_or(s))
                .ok_or_else(|| anyhow::anyhow!("invalid --service-cluster-ip-range {s}"))?,
        ),
        None => None,
    };
    let advertise = format!(
        "{}:{port}",
        f.get("advertise-address").unwrap_or("127.0.0.1")
    );
    let tls = tlsutil::server_config(cert, key, f.get("client-ca-file"))?;
    let cfg = Config {
        etcd,
        sa_verifier,
        sa_signer,
        bootstrap_tokens: f.bool("enable-bootstrap-token-auth", false),
        anonymous: f.bool("anonymous-auth", true),
        version: sim_apiserver::component_version(),
        service_cidr,
        advertise,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let srv = Server::new(cfg);
        let boot = srv.clone();
        tokio::spawn(async move { bootstrap::ensure_system_objects(&boot).await });
        server::serve(srv, tls, SocketAddr::new(bind, port)).await
    })
}

fn main() {
    let specs = flags::specs_for(flags::APISERVER);
    let f = flags::parse_or_exit("kube-apiserver", &specs);
    if f.has("version") {
        println!("Kubernetes {}", sim_apiserver::component_version());
        return;
    }
    if let Err(e) = run(&f) {
        eprintln!("E0000 kube-apiserver: {e:#}");
        std::process::exit(1);
    }
}
