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

/// Whether the first certificate of `leaf_pem` verifies as a client certificate against the
/// CA bundle `ca_pem` (what the API server's `--client-ca-file` check does).
#[cfg(test)]
pub fn client_cert_verifies(leaf_pem: &[u8], ca_pem: &[u8]) -> bool {
    let leaf = certs_from_pem(leaf_pem).expect("leaf");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem).expect("roots")),
        provider(),
    )
    .build()
    .expect("verifier");
    verifier
        .verify_client_cert(&leaf[0], &leaf[1..], rustls::pki_types::UnixTime::now())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A self-signed CA with the subject kubeadm gives the cluster CA: (cert PEM, key).
    fn kubernetes_ca() -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "kubernetes");
        (p.self_signed(&key).unwrap().pem(), key)
    }

    fn leaf(ca: &(String, KeyPair), cn: &str, server: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        if server {
            p.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        } else {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let issuer = Issuer::from_ca_cert_pem(&ca.0, &ca.1).unwrap();
        (
            p.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }

    /// Two CAs with the same subject (CN=kubernetes) in one bundle, leaves signed by the
    /// SECOND: webpki tries every trust anchor whose subject matches the issuer, so both the
    /// server certificate (client side) and the client certificate (the API server's
    /// `--client-ca-file`) verify, as with Go's crypto/x509 pools.
    #[test]
    fn leaves_of_the_second_ca_in_a_bundle_with_equal_subjects_verify() {
        let a = kubernetes_ca();
        let b = kubernetes_ca();
        let bundle = format!("{}{}", a.0, b.0);
        let (server_cert, server_key) = leaf(&b, "kube-apiserver", true);
        let (client_cert, client_key) = leaf(&b, "kubernetes-admin", false);
        assert!(client_cert_verifies(
            client_cert.as_bytes(),
            bundle.as_bytes()
        ));
        assert!(!client_cert_verifies(
            client_cert.as_bytes(),
            a.0.as_bytes()
        ));

        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, data: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            p.to_string_lossy().into_owned()
        };
        let (sc, sk, ca) = (
            w("apiserver.crt", &server_cert),
            w("apiserver.key", &server_key),
            w("ca.crt", &bundle),
        );
        let server = Arc::new(server_config(&sc, &sk, Some(&ca)).unwrap());
        let identity = (
            certs_from_pem(client_cert.as_bytes()).unwrap(),
            PrivateKeyDer::from_pem_slice(client_key.as_bytes()).unwrap(),
        );
        let client = Arc::new(client_config_from(Some(bundle.as_bytes()), Some(identity)).unwrap());

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (c_io, s_io) = tokio::io::duplex(64 * 1024);
            let accept = tokio::spawn(async move {
                let mut tls = tokio_rustls::TlsAcceptor::from(server)
                    .accept(s_io)
                    .await
                    .expect("server handshake");
                let peer = tls.get_ref().1.peer_certificates().map(|c| c.len());
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await.unwrap();
                tls.write_all(b"pong").await.unwrap();
                tls.flush().await.unwrap();
                peer
            });
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(name, c_io)
                .await
                .expect("client handshake");
            tls.write_all(b"ping").await.unwrap();
            tls.flush().await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
            assert_eq!(
                accept.await.unwrap(),
                Some(1),
                "the client certificate was verified"
            );
        });
    }
}
