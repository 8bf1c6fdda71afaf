//! kube-apiserver simulator: the real flags, HTTPS with the kubeadm certificates, storage in etcd.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sim_apiserver::auth::{SaSigner, SaVerifier};
use sim_apiserver::server::{self, Config, Server};
use sim_apiserver::{admission, bootstrap, client, etcd::Etcd, flags, tlsutil};

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
    // The address other masters and clients reach this replica on (the kubernetes Endpoints).
    let lease_ip = f
        .get("advertise-address")
        .map(str::to_owned)
        .or_else(|| (!bind.is_unspecified()).then(|| bind.to_string()));
    let advertise = format!(
        "{}:{port}",
        f.get("advertise-address").unwrap_or("127.0.0.1")
    );
    let tls = tlsutil::server_config(cert, key, f.get("client-ca-file"))?;
    let compaction = match f.get("etcd-compaction-interval") {
        Some(v) => client::parse_duration(v)
            .ok_or_else(|| anyhow::anyhow!("invalid --etcd-compaction-interval {v}"))?,
        None => Duration::from_secs(300),
    };
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
        if let Some(ip) = lease_ip {
            let rec = srv.clone();
            tokio::spawn(async move {
                bootstrap::reconcile_master_endpoints(&rec, &ip, port, Duration::from_secs(15))
                    .await
            });
        }
        // CRDs created or deleted through another replica show up here within seconds.
        let cat = srv.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let _ = cat.refresh_catalog().await;
            }
        });
        if !compaction.is_zero() {
            let etcd = srv.cfg.etcd.clone();
            tokio::spawn(compact_periodically(etcd, compaction));
        }
        server::serve(srv, tls, SocketAddr::new(bind, port)).await
    })
}

/// Like the real server: every interval, compact to the revision seen one interval earlier,
/// so watchers always have at least one interval of history.
async fn compact_periodically(etcd: Etcd, every: Duration) {
    let mut previous = 0;
    loop {
        tokio::time::sleep(every).await;
        if previous > 0 {
            // Another replica may have compacted further already; that is fine.
            let _ = etcd.compact(previous).await;
        }
        if let Ok(rev) = etcd.health().await {
            previous = rev;
        }
    }
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
