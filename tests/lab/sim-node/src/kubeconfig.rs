//! kubeconfig files in the shape kubeadm writes them.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::util::{read_to_string, write_file};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct KubeConfig {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub preferences: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedCluster {
    pub cluster: Cluster,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Cluster {
    #[serde(
        rename = "certificate-authority-data",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_data: String,
    #[serde(
        rename = "certificate-authority",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_file: String,
    pub server: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedContext {
    pub context: Context_,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Context_ {
    pub cluster: String,
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct User {
    #[serde(
        rename = "client-certificate-data",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cert_data: String,
    #[serde(
        rename = "client-key-data",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub key_data: String,
    #[serde(
        rename = "client-certificate",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cert_file: String,
    #[serde(
        rename = "client-key",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub key_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

/// What a client needs from a kubeconfig: where, whom to trust, who it is.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub server: String,
    pub ca_pem: String,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    pub token: Option<String>,
}

impl KubeConfig {
    /// One cluster, one user, one context named `user@cluster`, like kubeadm.
    pub fn new(cluster: &str, server: &str, ca_pem: &str, user_name: &str, user: User) -> Self {
        let ctx = format!("{user_name}@{cluster}");
        Self {
            api_version: "v1".into(),
            clusters: vec![NamedCluster {
                cluster: Cluster {
                    ca_data: B64.encode(ca_pem),
                    ca_file: String::new(),
                    server: server.into(),
                },
                name: cluster.into(),
            }],
            contexts: vec![NamedContext {
                context: Context_ {
                    cluster: cluster.into(),
                    user: user_name.into(),
                },
                name: ctx.clone(),
            }],
            current_context: ctx,
            kind: "Config".into(),
            preferences: Default::default(),
            users: vec![NamedUser {
                name: user_name.into(),
                user,
            }],
        }
    }

    pub fn with_cert(
        cluster: &str,
        server: &str,
        ca_pem: &str,
        user: &str,
        cert: &str,
        key: &str,
    ) -> Self {
        let u = User {
            cert_data: B64.encode(cert),
            key_data: B64.encode(key),
            ..Default::default()
        };
        Self::new(cluster, server, ca_pem, user, u)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = read_to_string(path)?;
        Self::parse(&text).with_context(|| format!("parsing kubeconfig {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let kc: Self = serde_saphyr::from_str(text).map_err(|e| anyhow!("{e}"))?;
        if kc.clusters.is_empty() {
            bail!("no clusters in kubeconfig");
        }
        Ok(kc)
    }

    pub fn to_yaml(&self) -> Result<String> {
        crate::util::to_yaml(self)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_file(path, self.to_yaml()?, 0o600)
    }

    fn current(&self) -> (Option<&Cluster>, Option<&User>) {
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .or(self.contexts.first());
        let cluster = match ctx {
            Some(c) => self.clusters.iter().find(|n| n.name == c.context.cluster),
            None => self.clusters.first(),
        }
        .map(|n| &n.cluster);
        let user = match ctx {
            Some(c) => self.users.iter().find(|n| n.name == c.context.user),
            None => self.users.first(),
        }
        .map(|n| &n.user);
        (cluster, user)
    }

    pub fn server(&self) -> Option<String> {
        self.current().0.map(|c| c.server.clone())
    }

    /// Resolves data and file references into PEM strings.
    pub fn credentials(&self) -> Result<Credentials> {
        let (cluster, user) = self.current();
        let cluster = cluster.ok_or_else(|| anyhow!("kubeconfig has no current cluster"))?;
        let ca_pem = data_or_file(&cluster.ca_data, &cluster.ca_file)?
            .ok_or_else(|| anyhow!("kubeconfig has no certificate-authority"))?;
        let (cert_pem, key_pem, token) = match user {
            Some(u) => (
                data_or_file(&u.cert_data, &u.cert_file)?,
                data_or_file(&u.key_data, &u.key_file)?,
                (!u.token.is_empty()).then(|| u.token.clone()),
            ),
            None => (None, None, None),
        };
        Ok(Credentials {
            server: cluster.server.clone(),
            ca_pem,
            cert_pem,
            key_pem,
            token,
        })
    }
}

fn data_or_file(data: &str, file: &str) -> Result<Option<String>> {
    if !data.is_empty() {
        let bytes = B64
            .decode(data.trim())
            .context("kubeconfig holds malformed base64 data")?;
        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
    }
    if !file.is_empty() {
        return read_to_string(Path::new(file)).map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_round_trips_in_kubeadm_shape() {
        let kc = KubeConfig::with_cert(
            "kubernetes",
            "https://10.0.0.1:6443",
            "CA",
            "kubernetes-admin",
            "C",
            "K",
        );
        let yaml = kc.to_yaml().unwrap();
        assert!(
            yaml.contains("current-context: kubernetes-admin@kubernetes"),
            "{yaml}"
        );
        assert!(yaml.contains("client-certificate-data"), "{yaml}");
        let back = KubeConfig::parse(&yaml).unwrap();
        let c = back.credentials().unwrap();
        assert_eq!(c.server, "https://10.0.0.1:6443");
        assert_eq!(c.ca_pem, "CA");
        assert_eq!(c.cert_pem.as_deref(), Some("C"));
    }
}
