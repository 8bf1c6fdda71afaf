//! PEM loading and rustls configurations (aws-lc-rs provider, like the rest of the workspace).

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn certs_from_pem(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>()?;
    if certs.is_empty() {
        anyhow::bail!("no CERTIFICATE block found");
    }
    Ok(certs)
}

pub fn load_certs(path: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading certificate file {path}"))?;
    certs_from_pem(&pem).with_context(|| format!("parsing certificate file {path}"))
}

pub fn load_key(path: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading key file {path}"))?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| format!("parsing private key file {path}"))
}

fn roots(ca_pem: &[u8]) -> anyhow::Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        store.add(c)?;
    }
    Ok(store)
}

/// Client TLS: trust `ca` (a file), present `identity` (cert file, key file) when given.
pub fn client_config(
    ca: Option<&str>,
    identity: Option<(&str, &str)>,
) -> anyhow::Result<rustls::ClientConfig> {
    let ca_pem = match ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading CA file {p}"))?),
        None => None,
    };
    let identity = match identity {
        Some((c, k)) => Some((load_certs(c)?, load_key(k)?)),
        None => None,
    };
    client_config_from(ca_pem.as_deref(), identity)
}

/// Client TLS from in-memory PEM/DER (kubeconfigs embed their material).
pub fn client_config_from(
    ca_pem: Option<&[u8]>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> anyhow::Result<rustls::ClientConfig> {
    let store = match ca_pem {
        Some(p) => roots(p)?,
        None => rustls::RootCertStore::empty(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store);
    Ok(match identity {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key)?,
        None => builder.with_no_client_auth(),
    })
}

/// Server TLS: serve `cert`/`key`; verify client certificates against `client_ca` when set,
/// but let clients without a certificate through (they may use a bearer token).
pub fn server_config(
    cert: &str,
    key: &str,
    client_ca: Option<&str>,
) -> anyhow::Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading --client-ca-file {ca}"))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(&pem)?),
                provider(),
            )
            .allow_unauthenticated()
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
