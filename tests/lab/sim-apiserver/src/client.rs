//! A small API client for the controller-manager and scheduler: kubeconfig loading, JSON
//! requests, leader election with a coordination.k8s.io Lease (like client-go's leaderelection).

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::{obj, tlsutil};

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A failed API call: HTTP status (0 when the server could not be reached) and message.
#[derive(Debug)]
pub struct CallError {
    pub code: u16,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for CallError {}

fn data_or_file(
    entry: &Value,
    field: &str,
    base: &std::path::Path,
) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(d) = entry[format!("{field}-data")].as_str() {
        return Ok(Some(
            B64.decode(d.trim())
                .with_context(|| format!("{field}-data is not base64"))?,
        ));
    }
    if let Some(p) = entry[field].as_str() {
        let path = base.join(p);
        return Ok(Some(
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        ));
    }
    Ok(None)
}

/// Resource path: `/api/v1/namespaces/ns/pods/name` or `/apis/apps/v1/deployments`.
pub fn path(
    group: &str,
    version: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> String {
    let mut p = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    if let Some(ns) = ns.filter(|n| !n.is_empty()) {
        p.push_str(&format!("/namespaces/{ns}"));
    }
    p.push('/');
    p.push_str(resource);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    p
}

impl Client {
    /// Client for the current context of a kubeconfig file.
    pub fn from_kubeconfig(file: &str) -> anyhow::Result<Client> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading kubeconfig {file}"))?;
        let kc: Value =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing kubeconfig {file}"))?;
        let base_dir = std::path::Path::new(file)
            .parent()
            .unwrap_or(std::path::Path::new("/"))
            .to_owned();
        let current = kc["current-context"].as_str().unwrap_or("");
        let find = |list: &str, name: &str| -> Value {
            kc[list]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["name"] == name).or_else(|| a.first()))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let ctx = find("contexts", current);
        let cluster =
            find("clusters", ctx["context"]["cluster"].as_str().unwrap_or(""))["cluster"].clone();
        let user = find("users", ctx["context"]["user"].as_str().unwrap_or(""))["user"].clone();
        let server = cluster["server"]
            .as_str()
            .context("kubeconfig has no cluster server")?
            .trim_end_matches('/')
            .to_owned();
        let ca = data_or_file(&cluster, "certificate-authority", &base_dir)?;
        let cert = data_or_file(&user, "client-certificate", &base_dir)?;
        let key = data_or_file(&user, "client-key", &base_dir)?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => {
                use rustls::pki_types::PrivateKeyDer;
                use rustls::pki_types::pem::PemObject;
                Some((
                    tlsutil::certs_from_pem(&c)?,
                    PrivateKeyDer::from_pem_slice(&k).context("parsing client-key")?,
                ))
            }
            _ => None,
        };
        let tls = tlsutil::client_config_from(ca.as_deref(), identity)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Client {
            http,
            base: server,
            token: user["token"].as_str().map(str::to_owned),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&Value, &str)>,
    ) -> Result<Option<Value>, CallError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some((b, ct)) = body {
            req = req.header("content-type", ct).body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| CallError {
            code: 0,
            message: e.to_string(),
        })?;
        let code = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if code == 404 {
            return Ok(None);
        }
        if code >= 300 {
            return Err(CallError {
                code,
                message: v["message"].as_str().unwrap_or("request failed").to_owned(),
            });
        }
        Ok(Some(v))
    }

    pub async fn get(&self, path: &str) -> Result<Option<Value>, CallError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn list(&self, path: &str) -> Result<Vec<Value>, CallError> {
        Ok(self
            .get(path)
            .await?
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default())
    }

    fn not_found(path: &str) -> CallError {
        CallError {
            code: 404,
            message: format!("{path} not found"),
        }
    }

    pub async fn create(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(
            reqwest::Method::POST,
            path,
            Some((body, "application/json")),
        )
        .await?
        .ok_or_else(|| Self::not_found(path))
    }

    pub async fn update(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(reqwest::Method::PUT, path, Some((body, "application/json")))
            .await?
            .ok_or_else(|| Self::not_found(path))
    }

    pub async fn merge_patch(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(
            reqwest::Method::PATCH,
            path,
            Some((body, "application/merge-patch+json")),
        )
        .await?
        .ok_or_else(|| Self::not_found(path))
    }

    /// Delete; a missing object is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), CallError> {
        let opts =
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        self.call(
            reqwest::Method::DELETE,
            path,
            Some((&opts, "application/json")),
        )
        .await
        .map(|_| ())
    }
}

impl Client {
    /// Record a core/v1 Event about `involved` (best effort: a failure is not an error).
    pub async fn event(
        &self,
        involved: &Value,
        ty: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let ns = involved["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("default");
        let name = obj::name(involved);
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let now = obj::now();
        let ev = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
            "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": name,
                "namespace": involved["metadata"]["namespace"], "uid": involved["metadata"]["uid"],
                "resourceVersion": involved["metadata"]["resourceVersion"]},
            "reason": reason, "message": message, "type": ty, "source": {"component": component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "reportingComponent": component, "reportingInstance": ""});
        let _ = self
            .create(&path("", "v1", "events", Some(ns), None), &ev)
            .await;
    }
}

/// Leader election on Lease `kube-system/<name>`: blocks until this process holds it, then
/// keeps renewing; exits the process if the lease is lost (like the real components).
pub async fn lead(client: &Client, name: &str, identity: &str, lease_secs: i64) {
    let p = path(
        "coordination.k8s.io",
        "v1",
        "leases",
        Some("kube-system"),
        Some(name),
    );
    let coll = path(
        "coordination.k8s.io",
        "v1",
        "leases",
        Some("kube-system"),
        None,
    );
    let mut announced = false;
    loop {
        match try_acquire(client, &p, &coll, name, identity, lease_secs).await {
            Ok(true) => break,
            Ok(false) => {
                if !announced {
                    eprintln!("attempting to acquire leader lease kube-system/{name}...");
                    announced = true;
                }
            }
            Err(e) => eprintln!("error retrieving resource lock kube-system/{name}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("successfully acquired lease kube-system/{name}");
    let client = client.clone();
    let (name, identity) = (name.to_owned(), identity.to_owned());
    tokio::spawn(async move {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match try_acquire(&client, &p, &coll, &name, &identity, lease_secs).await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => {
                    eprintln!("leaderelection lost: another process holds kube-system/{name}");
                    std::process::exit(1);
                }
                Err(e) => {
                    if last_ok.elapsed() > Duration::from_secs(lease_secs as u64) {
                        eprintln!(
                            "leaderelection lost: failed to renew lease kube-system/{name}: {e}"
                        );
                        std::process::exit(1);
                    }
                }
            }
        }
    });
}

fn micro_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{}.{:06}Z",
        t.format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default(),
        t.microsecond()
    )
}

async fn try_acquire(
    client: &Client,
    p: &str,
    coll: &str,
    name: &str,
    identity: &str,
    lease_secs: i64,
) -> Result<bool, CallError> {
    let now = micro_now();
    match client.get(p).await? {
        None => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-system"},
                "spec": {"holderIdentity": identity, "leaseDurationSeconds": lease_secs, "acquireTime": now, "renewTime": now, "leaseTransitions": 0}});
            match client.create(coll, &lease).await {
                Ok(_) => Ok(true),
                Err(e) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let holder = lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let renew = lease["spec"]["renewTime"].as_str().unwrap_or("");
            let dur = lease["spec"]["leaseDurationSeconds"]
                .as_i64()
                .unwrap_or(lease_secs);
            let expired = obj::parse_time(renew).is_none() || obj::age_seconds(renew) > dur;
            if holder != identity && !holder.is_empty() && !expired {
                return Ok(false);
            }
            if holder != identity {
                lease["spec"]["acquireTime"] = json!(now);
                lease["spec"]["leaseTransitions"] =
                    json!(lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) + 1);
            }
            lease["spec"]["holderIdentity"] = json!(identity);
            lease["spec"]["renewTime"] = json!(now);
            lease["spec"]["leaseDurationSeconds"] = json!(lease_secs);
            match client.update(p, &lease).await {
                Ok(_) => Ok(true),
                Err(e) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Parse Go durations as used by the flags (`40s`, `5m`, `8760h`, `1h30m`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("40s"), Some(Duration::from_secs(40)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("8760h"),
            Some(Duration::from_secs(8760 * 3600))
        );
        assert_eq!(parse_duration("40"), None);
    }

    #[test]
    fn resource_paths_match_the_api_layout() {
        assert_eq!(
            path("", "v1", "pods", Some("a"), Some("p")),
            "/api/v1/namespaces/a/pods/p"
        );
        assert_eq!(
            path("apps", "v1", "deployments", None, None),
            "/apis/apps/v1/deployments"
        );
    }
}
