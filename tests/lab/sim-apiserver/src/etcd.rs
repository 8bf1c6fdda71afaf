//! Storage client: the real etcd through its v3 JSON gateway (grpc-gateway), over mutual TLS.
//!
//! The gateway speaks JSON with base64 keys/values and int64 fields as strings. Every API
//! server replica on every master talks to the same cluster, so replicas are interchangeable,
//! and the API stays up exactly as long as etcd keeps quorum.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::tlsutil;

#[derive(Debug)]
pub enum EtcdError {
    /// No endpoint answered (network, TLS, or etcd without quorum).
    Unavailable(String),
    /// A compare in a transaction failed: the key exists / changed / is gone.
    Conflict,
    NotFound,
    /// The requested watch revision was compacted away.
    Compacted(i64),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unavailable(e) => write!(f, "etcd unavailable: {e}"),
            EtcdError::Conflict => write!(f, "precondition failed"),
            EtcdError::NotFound => write!(f, "key not found"),
            EtcdError::Compacted(r) => write!(f, "revision compacted (oldest {r})"),
        }
    }
}

impl std::error::Error for EtcdError {}

#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub create_revision: i64,
}

#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The new value, and the previous one when the key existed before.
    Put(Kv, Option<Kv>),
    /// The deleted key with its last value (prev_kv) and the deletion revision.
    Delete(Kv, i64),
}

/// gRPC's codes.Unavailable, as the JSON gateway reports it in an error body.
const GRPC_UNAVAILABLE: i64 = 14;

/// How one pass over the endpoints failed.
enum Attempt {
    /// etcd answered codes.Unavailable (an election, a leadership transfer): worth a retry.
    Unavailable(String),
    /// Anything else: no endpoint reachable, a TLS error, a non-transient error.
    Failed(String),
}

/// Whether a gateway error body carries codes.Unavailable.
fn says_unavailable(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| v["code"].as_i64() == Some(GRPC_UNAVAILABLE))
}

#[derive(Clone)]
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Arc<Vec<String>>,
    preferred: Arc<AtomicUsize>,
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The key just after every key with this prefix (etcd's range_end for a prefix scan).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn parse_kv(v: &Value) -> Kv {
    let dec = |f: &str| {
        v.get(f)
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default()
    };
    Kv {
        key: String::from_utf8_lossy(&dec("key")).into_owned(),
        value: dec("value"),
        mod_revision: int(&v["mod_revision"]),
        create_revision: int(&v["create_revision"]),
    }
}

impl Etcd {
    /// Client for `endpoints` with the apiserver's `--etcd-cafile/--etcd-certfile/--etcd-keyfile`.
    pub fn new(
        endpoints: Vec<String>,
        ca: Option<&str>,
        cert: Option<&str>,
        key: Option<&str>,
    ) -> anyhow::Result<Etcd> {
        let tls = tlsutil::client_config(ca, cert.zip(key))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        if endpoints.is_empty() {
            anyhow::bail!("--etcd-servers must be set");
        }
        Ok(Etcd {
            http,
            endpoints: Arc::new(endpoints),
            preferred: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// One gateway call. Reads (`kv/range`) are retried the way clientv3's retry interceptor
    /// retries a repeatable RPC: while etcd answers codes.Unavailable (14: "leader changed",
    /// "no leader" during an election or a leadership transfer), every 25 ms, at most 100
    /// times (client/v3 options.go `defaultUnaryMaxRetries`, `defaultBackoffWaitBetween`;
    /// retry_interceptor.go `isSafeRetryImmutableRPC`). Writes are never retried.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        const MAX_RETRIES: usize = 100;
        const WAIT: Duration = Duration::from_millis(25);
        let repeatable = path == "kv/range";
        let mut retries = 0;
        loop {
            match self.call_once(path, &body).await {
                Err(Attempt::Unavailable(_)) if repeatable && retries < MAX_RETRIES => {
                    retries += 1;
                    tokio::time::sleep(WAIT).await;
                }
                Err(Attempt::Unavailable(e) | Attempt::Failed(e)) => {
                    return Err(EtcdError::Unavailable(e));
                }
                Ok(v) => return Ok(v),
            }
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, Attempt> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_err = String::new();
        let mut unavailable = false;
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}/v3/{path}", self.endpoints[idx].trim_end_matches('/'));
            let res = self
                .http
                .post(&url)
                .timeout(Duration::from_secs(5))
                .json(body)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return r.json().await.map_err(|e| Attempt::Failed(e.to_string()));
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    // The gateway's error body carries the gRPC code.
                    unavailable |= says_unavailable(&text);
                    last_err = format!("{url}: {status} {text}");
                }
                Err(e) => last_err = format!("{url}: {e}"),
            }
        }
        Err(if unavailable {
            Attempt::Unavailable(last_err)
        } else {
            Attempt::Failed(last_err)
        })
    }

    /// Linearizable read of the cluster revision: fails without quorum (used by /readyz).
    pub async fn health(&self) -> Result<i64, EtcdError> {
        let r = self
            .call(
                "kv/range",
                json!({"key": b64(b"/registry/health"), "count_only": true}),
            )
            .await?;
        Ok(int(&r["header"]["revision"]))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let r = self
            .call("kv/range", json!({"key": b64(key.as_bytes())}))
            .await?;
        Ok(r["kvs"].as_array().and_then(|a| a.first()).map(parse_kv))
    }

    /// All keys under `prefix`, and the store revision the list was read at.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let r = self
            .call(
                "kv/range",
                json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
            )
            .await?;
        let kvs = r["kvs"]
            .as_array()
            .map(|a| a.iter().map(parse_kv).collect())
            .unwrap_or_default();
        Ok((kvs, int(&r["header"]["revision"])))
    }

    /// Put only if the key does not exist. Returns the new revision.
    pub async fn create(&self, key: &str, value: &[u8]) -> Result<i64, EtcdError> {
        let r = self
            .call(
                "kv/txn",
                json!({
                    "compare": [{"key": b64(key.as_bytes()), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
                    "success": [{"request_put": {"key": b64(key.as_bytes()), "value": b64(value)}}],
                }),
            )
            .await?;
        if r["succeeded"].as_bool() != Some(true) {
            return Err(EtcdError::Conflict);
        }
        Ok(int(&r["header"]["revision"]))
    }

    /// Put only if the key's mod_revision is still `expected`. Returns the new revision.
    pub async fn update(&self, key: &str, value: &[u8], expected: i64) -> Result<i64, EtcdError> {
        let r = self
            .call(
                "kv/txn",
                json!({
                    "compare": [{"key": b64(key.as_bytes()), "result": "EQUAL", "target": "MOD", "mod_revision": expected.to_string()}],
                    "success": [{"request_put": {"key": b64(key.as_bytes()), "value": b64(value)}}],
                }),
            )
            .await?;
        if r["succeeded"].as_bool() != Some(true) {
            return Err(EtcdError::Conflict);
        }
        Ok(int(&r["header"]["revision"]))
    }

    /// Delete only if the key's mod_revision is still `expected`. Returns the deletion revision.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, EtcdError> {
        let r = self
            .call(
                "kv/txn",
                json!({
                    "compare": [{"key": b64(key.as_bytes()), "result": "EQUAL", "target": "MOD", "mod_revision": expected.to_string()}],
                    "success": [{"request_delete_range": {"key": b64(key.as_bytes())}}],
                }),
            )
            .await?;
        if r["succeeded"].as_bool() != Some(true) {
            return Err(EtcdError::Conflict);
        }
        Ok(int(&r["header"]["revision"]))
    }

    /// Stream changes under `prefix` after revision `after`. The receiver ends when the
    /// stream breaks; an `Err(Compacted)` is sent when `after` is too old.
    pub async fn watch(
        &self,
        prefix: &str,
        after: i64,
    ) -> Result<mpsc::Receiver<Result<WatchEvent, EtcdError>>, EtcdError> {
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": (after + 1).to_string(),
            "prev_kv": true,
        }});
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_err = String::new();
        let mut response = None;
        for i in 0..n {
            let url = format!(
                "{}/v3/watch",
                self.endpoints[(start + i) % n].trim_end_matches('/')
            );
            match self.http.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    response = Some(r);
                    break;
                }
                Ok(r) => last_err = format!("{url}: {}", r.status()),
                Err(e) => last_err = format!("{url}: {e}"),
            }
        }
        let Some(response) = response else {
            return Err(EtcdError::Unavailable(last_err));
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut stream = response.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            loop {
                // Stop reading as soon as the consumer is gone, so quiet watches do not linger.
                let chunk = tokio::select! {
                    _ = tx.closed() => return,
                    c = stream.next() => c,
                };
                let Some(Ok(chunk)) = chunk else { return };
                buf.extend_from_slice(&chunk);
                let mut consumed = 0;
                {
                    let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
                    while let Some(Ok(msg)) = it.next() {
                        consumed = it.byte_offset();
                        if !forward(&msg, &tx).await {
                            return;
                        }
                    }
                }
                buf.drain(..consumed);
            }
        });
        Ok(rx)
    }
}

/// Forward one gateway message's events; false when the watch must end.
async fn forward(msg: &Value, tx: &mpsc::Sender<Result<WatchEvent, EtcdError>>) -> bool {
    let result = &msg["result"];
    let compact = int(&result["compact_revision"]);
    if compact > 0 {
        let _ = tx.send(Err(EtcdError::Compacted(compact))).await;
        return false;
    }
    if result["canceled"].as_bool() == Some(true) {
        return false;
    }
    let Some(events) = result["events"].as_array() else {
        return true;
    };
    for ev in events {
        let kv = parse_kv(&ev["kv"]);
        let event = if ev["type"].as_str() == Some("DELETE") {
            let rev = kv.mod_revision;
            let mut prev = parse_kv(&ev["prev_kv"]);
            prev.key = kv.key;
            WatchEvent::Delete(prev, rev)
        } else {
            let prev = ev.get("prev_kv").filter(|p| p.is_object()).map(parse_kv);
            WatchEvent::Put(kv, prev)
        };
        if tx.send(Ok(event)).await.is_err() {
            return false;
        }
    }
    true
}

impl Etcd {
    /// Compact the key space up to `revision` (the API server does this periodically).
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        self.call("kv/compaction", json!({"revision": revision.to_string()}))
            .await
            .map(|_| ())
    }

    /// Delete every key under `prefix` (used when a CRD goes away with its objects).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), EtcdError> {
        self.call(
            "kv/deleterange",
            json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unavailable_answer_makes_a_read_worth_retrying() {
        // etcd 3.4's gateway body during a leadership transfer, and during an election.
        let changed = r#"{"error":"etcdserver: leader changed","message":"etcdserver: leader changed","code":14}"#;
        let no_leader =
            r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#;
        assert!(says_unavailable(changed) && says_unavailable(no_leader));
        let compacted =
            r#"{"error":"etcdserver: mvcc: required revision has been compacted","code":11}"#;
        assert!(!says_unavailable(compacted));
        assert!(!says_unavailable("502 Bad Gateway"));
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
    }
}
