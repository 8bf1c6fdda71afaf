//! The HTTPS health endpoints kube-controller-manager (10257) and kube-scheduler (10259)
//! serve: `/healthz`, `/livez`, `/readyz` for anyone (their default
//! --authorization-always-allow-paths), 403 for everything else. Without `--tls-cert-file`
//! they use a self-signed certificate made at start-up, like the real components.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::flags::Flags;
use crate::tlsutil;

fn tls_config(f: &Flags) -> anyhow::Result<rustls::ServerConfig> {
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) =
        match (f.get("tls-cert-file"), f.get("tls-private-key-file")) {
            (Some(c), Some(k)) => (tlsutil::load_certs(c)?, tlsutil::load_key(k)?),
            _ => {
                let key = rcgen::KeyPair::generate()?;
                let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
                p.subject_alt_names.push(rcgen::SanType::IpAddress(
                    std::net::Ipv4Addr::LOCALHOST.into(),
                ));
                let cert = p.self_signed(&key)?;
                (
                    vec![cert.der().clone()],
                    PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
                )
            }
        };
    let mut config = rustls::ServerConfig::builder_with_provider(tlsutil::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Bind the health port now (so a second instance fails fast, like the real binaries) and
/// serve it in the background.
pub async fn serve(f: &Flags, default_port: u16) -> anyhow::Result<()> {
    let port: u16 = match f.get("secure-port") {
        Some(p) => p
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid --secure-port {p}"))?,
        None => default_port,
    };
    if port == 0 {
        return Ok(());
    }
    let bind = f.get("bind-address").unwrap_or("0.0.0.0");
    let addr: SocketAddr = format!("{bind}:{port}")
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --bind-address {bind}"))?;
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("failed to create listener: failed to listen on {addr}: {e}")
    })?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(f)?));
    eprintln!("Serving securely on {addr}");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let (code, body) = match req.uri().path() {
                            "/healthz" | "/livez" | "/readyz" => (StatusCode::OK, "ok".to_owned()),
                            p => (
                                StatusCode::FORBIDDEN,
                                format!(
                                    "forbidden: User \"system:anonymous\" cannot get path \"{p}\""
                                ),
                            ),
                        };
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = code;
                        Ok::<_, Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}
