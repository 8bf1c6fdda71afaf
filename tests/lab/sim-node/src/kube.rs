//! A small blocking Kubernetes API client (JSON only), authenticated like kubeadm and the
//! kubelet: client certificate or bearer token from a kubeconfig.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::kubeconfig::{Credentials, KubeConfig};

#[derive(Clone)]
pub struct Kube {
    agent: ureq::Agent,
    pub server: String,
    token: Option<String>,
}

/// An HTTP answer: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The API's own message (Status.message), else the raw text.
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.text.chars().take(300).collect())
    }

    pub fn into_result(self, what: &str) -> Result<Value> {
        if self.ok() {
            Ok(self.body)
        } else {
            bail!("{what}: HTTP {} {}", self.status, self.message())
        }
    }
}

pub fn tls_config(
    ca_pem: Option<&str>,
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
) -> Result<TlsConfig> {
    let mut b = TlsConfig::builder();
    match ca_pem {
        Some(ca) => {
            let certs = pem_certs(ca)?;
            b = b.root_certs(RootCerts::new_with_certs(&certs));
        }
        None => b = b.disable_verification(true),
    }
    if let (Some(cert), Some(key)) = (cert_pem, key_pem) {
        let chain = pem_certs(cert)?;
        let key = PrivateKey::from_pem(key.as_bytes())
            .map_err(|e| anyhow!("reading the client key: {e}"))?
            .to_owned();
        b = b.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(b.build())
}

fn pem_certs(pem: &str) -> Result<Vec<Certificate<'static>>> {
    let mut out = vec![];
    for item in ureq::tls::parse_pem(pem.as_bytes()) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| anyhow!("bad PEM: {e}"))? {
            out.push(c.to_owned());
        }
    }
    if out.is_empty() {
        bail!("no certificate in PEM data");
    }
    Ok(out)
}

pub fn agent(tls: TlsConfig, timeout: Duration) -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build();
    ureq::Agent::new_with_config(cfg)
}

impl Kube {
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let kc = KubeConfig::load(path)?;
        Self::from_credentials(&kc.credentials()?)
    }

    pub fn from_credentials(c: &Credentials) -> Result<Self> {
        let tls = tls_config(Some(&c.ca_pem), c.cert_pem.as_deref(), c.key_pem.as_deref())?;
        Ok(Self {
            agent: agent(tls, Duration::from_secs(15)),
            server: c.server.trim_end_matches('/').to_string(),
            token: c.token.clone(),
        })
    }

    /// An unauthenticated client that does not verify the server: discovery's first step.
    pub fn insecure(server: &str) -> Result<Self> {
        Ok(Self {
            agent: agent(tls_config(None, None, None)?, Duration::from_secs(10)),
            server: server.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    pub fn with_server(mut self, server: &str) -> Self {
        self.server = server.trim_end_matches('/').to_string();
        self
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<Reply> {
        let url = format!("{}{}", self.server, path);
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("Content-Type", content_type);
                serde_json::to_vec(b)?
            }
            None => vec![],
        };
        let req = req.body(bytes).context("building request")?;
        let mut resp = self
            .agent
            .run(req)
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply { status, body, text })
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        self.request("GET", path, None, "")
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Reply> {
        self.request("POST", path, Some(body), "application/json")
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Reply> {
        self.request("PUT", path, Some(body), "application/json")
    }

    pub fn merge_patch(&self, path: &str, body: &Value) -> Result<Reply> {
        self.request("PATCH", path, Some(body), "application/merge-patch+json")
    }

    pub fn delete(&self, path: &str) -> Result<Reply> {
        self.request("DELETE", path, None, "")
    }

    /// Creates `obj` in `collection`, or replaces the existing object of the same name.
    pub fn apply(&self, collection: &str, obj: &Value) -> Result<Value> {
        let name = obj["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("object without metadata.name"))?;
        let what = format!("{} {name}", obj["kind"].as_str().unwrap_or("object"));
        let created = self.post(collection, obj)?;
        if created.status != 409 {
            return created.into_result(&format!("creating {what}"));
        }
        let item = format!("{collection}/{name}");
        let current = self.get(&item)?.into_result(&format!("reading {what}"))?;
        let mut obj = obj.clone();
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        self.put(&item, &obj)?
            .into_result(&format!("updating {what}"))
    }

    /// Whether `path` answers 200 `ok`-ish.
    pub fn healthy(&self, path: &str) -> bool {
        matches!(self.get(path), Ok(r) if r.status == 200)
    }
}

/// The collection URL of a namespaced core or group resource.
pub fn collection(api: &str, namespace: Option<&str>, resource: &str) -> String {
    let base = if api == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{api}")
    };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{resource}"),
        None => format!("{base}/{resource}"),
    }
}

/// The collection an object belongs in, from its apiVersion, kind and namespace.
pub fn collection_of(obj: &Value) -> Result<String> {
    let api = obj["apiVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("object without apiVersion"))?;
    let kind = obj["kind"]
        .as_str()
        .ok_or_else(|| anyhow!("object without kind"))?;
    let resource = match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "ServiceAccount" => "serviceaccounts",
        "Service" => "services",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Namespace" => "namespaces",
        other => bail!("no resource known for kind {other}"),
    };
    let ns = obj["metadata"]["namespace"].as_str();
    Ok(collection(api, ns, resource))
}
