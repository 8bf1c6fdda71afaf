//! The HTTPS front: TLS with optional client certificates, authentication, routing of
//! discovery / health / OpenAPI / resource paths, and response encoding (JSON or Table).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Attributes, SaSigner, SaVerifier, User};
use crate::catalog::{Catalog, ResourceType};
use crate::errors::ApiError;
use crate::etcd::Etcd;
use crate::openapi;

pub type Body = BoxBody<Bytes, Infallible>;

pub struct Config {
    pub etcd: Etcd,
    pub sa_verifier: Option<SaVerifier>,
    pub sa_signer: Option<SaSigner>,
    pub bootstrap_tokens: bool,
    pub anonymous: bool,
    /// gitVersion reported by /version (`v1.36.2`).
    pub version: String,
    /// Service CIDR as (network, prefix length).
    pub service_cidr: Option<(u32, u8)>,
    pub advertise: String,
}

pub struct Server {
    pub cfg: Config,
    catalog: RwLock<Arc<Catalog>>,
    /// Set once the start-up objects exist (the real server's bootstrap post-start hooks).
    pub bootstrapped: std::sync::atomic::AtomicBool,
}

/// A parsed request, after authentication.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
    pub user: User,
}

impl Req {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    pub fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }

    pub fn dry_run(&self) -> bool {
        self.q("dryRun").is_some_and(|v| !v.is_empty())
    }
}

/// A resource request's coordinates.
#[derive(Clone)]
pub struct Target {
    pub rt: ResourceType,
    pub version: String,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

pub fn text_response(code: u16, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status())
}

/// A streaming (chunked) JSON response fed by the returned sender.
pub fn stream_response() -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "transfer-encoding",
        hyper::header::HeaderValue::from_static("chunked"),
    );
    (tx, r)
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

impl Server {
    pub fn new(cfg: Config) -> Arc<Server> {
        Arc::new(Server {
            cfg,
            catalog: RwLock::new(Arc::new(Catalog::new(&[]))),
            bootstrapped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Rebuild the catalog from the CRDs in etcd (after a CRD write, or a lookup miss).
    pub async fn refresh_catalog(&self) -> Result<Arc<Catalog>, ApiError> {
        let (kvs, _) = self
            .cfg
            .etcd
            .list("/registry/apiextensions.k8s.io/customresourcedefinitions/")
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let crds: Vec<Value> = kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let c = Arc::new(Catalog::new(&crds));
        match self.catalog.write() {
            Ok(mut g) => *g = c.clone(),
            Err(p) => *p.into_inner() = c.clone(),
        }
        Ok(c)
    }

    async fn authenticate(
        &self,
        bearer: Option<&str>,
        cert_user: Option<User>,
    ) -> Result<User, ApiError> {
        let unauthorized = || ApiError::new(401, "Unauthorized", "Unauthorized");
        if let Some(u) = cert_user {
            return Ok(u);
        }
        let Some(token) = bearer else {
            return if self.cfg.anonymous {
                Ok(User::anonymous())
            } else {
                Err(unauthorized())
            };
        };
        if let Some((id, secret)) = auth::parse_bootstrap_token(token) {
            if !self.cfg.bootstrap_tokens {
                return Err(unauthorized());
            }
            let key = format!("/registry/secrets/kube-system/bootstrap-token-{id}");
            let kv = self
                .cfg
                .etcd
                .get(&key)
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            let user = kv
                .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                .and_then(|s| auth::user_from_bootstrap_secret(&s, secret));
            return user.ok_or_else(unauthorized);
        }
        if let Some(v) = &self.cfg.sa_verifier
            && let Some(claims) = v.verify(token)
        {
            // Like --service-account-lookup: the account must still exist (and be the same one).
            let key = format!(
                "/registry/serviceaccounts/{}/{}",
                claims.namespace, claims.name
            );
            let kv = self
                .cfg
                .etcd
                .get(&key)
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            let sa = kv.and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok());
            if let Some(sa) = sa
                && (claims.uid.is_empty()
                    || sa["metadata"]["uid"].as_str() == Some(claims.uid.as_str()))
            {
                return Ok(auth::sa_user(&claims));
            }
        }
        Err(unauthorized())
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        cert_user: Option<User>,
    ) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = parse_query(req.uri().query());
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let accept = header("accept");
        let content_type = header("content-type");
        let authz = header("authorization");
        let bearer = authz
            .strip_prefix("Bearer ")
            .map(str::trim)
            .map(str::to_owned);
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error_response(&ApiError::bad_request(format!(
                    "reading request body: {e}"
                )));
            }
        };
        let user = match self.authenticate(bearer.as_deref(), cert_user).await {
            Ok(u) => u,
            Err(e) => return error_response(&e),
        };
        let r = Req {
            method,
            path,
            query,
            accept,
            content_type,
            body,
            user,
        };
        match self.route(&r).await {
            Ok(resp) => resp,
            Err(e) => {
                // Server-side failures are worth a line in the component log (never bodies or headers).
                if e.code >= 500 {
                    eprintln!("E {} {}: {} {}", r.method, r.path, e.code, e.message);
                }
                error_response(&e)
            }
        }
    }

    fn non_resource_authz(&self, r: &Req) -> Result<(), ApiError> {
        let verb = if r.method == Method::GET {
            "get"
        } else {
            "post"
        };
        auth::authorize(
            &r.user,
            &Attributes {
                verb,
                path: &r.path,
                resource: None,
            },
        )
    }

    async fn route(self: &Arc<Self>, r: &Req) -> Result<Response<Body>, ApiError> {
        let path = r.path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segs.as_slice() {
            ["healthz" | "livez" | "readyz", ..] => {
                self.non_resource_authz(r)?;
                return Ok(self.health(segs[0], r).await);
            }
            ["version"] => {
                self.non_resource_authz(r)?;
                return Ok(json_response(200, &self.version_info()));
            }
            _ => {}
        }
        match segs.as_slice() {
            ["api"] => {
                self.non_resource_authz(r)?;
                Ok(json_response(
                    200,
                    &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.cfg.advertise}]}),
                ))
            }
            ["apis"] => {
                self.non_resource_authz(r)?;
                let c = self.refresh_catalog().await?;
                Ok(json_response(200, &self.group_list(&c)))
            }
            ["api", "v1"] => {
                self.non_resource_authz(r)?;
                let c = self.catalog();
                c.resource_list("", "v1")
                    .map(|l| json_response(200, &l))
                    .ok_or_else(|| {
                        ApiError::not_found_plain(
                            "the server could not find the requested resource",
                        )
                    })
            }
            ["apis", g] => {
                self.non_resource_authz(r)?;
                let c = self.refresh_catalog().await?;
                let gl = self.group_list(&c);
                let found = gl["groups"]
                    .as_array()
                    .and_then(|gs| gs.iter().find(|x| x["name"] == *g))
                    .cloned();
                match found {
                    Some(mut grp) => {
                        grp["kind"] = json!("APIGroup");
                        grp["apiVersion"] = json!("v1");
                        Ok(json_response(200, &grp))
                    }
                    None => Err(ApiError::not_found_plain(
                        "the server could not find the requested resource",
                    )),
                }
            }
            ["apis", g, v] => {
                self.non_resource_authz(r)?;
                let mut c = self.catalog();
                if c.resource_list(g, v).is_none() {
                    c = self.refresh_catalog().await?;
                }
                c.resource_list(g, v)
                    .map(|l| json_response(200, &l))
                    .ok_or_else(|| {
                        ApiError::not_found_plain(
                            "the server could not find the requested resource",
                        )
                    })
            }
            ["openapi", "v2"] => {
                self.non_resource_authz(r)?;
                if r.accept.contains("protobuf") {
                    let mut resp = Response::new(
                        Full::new(Bytes::from(openapi::v2_protobuf(&self.cfg.version))).boxed(),
                    );
                    resp.headers_mut().insert(
                        "content-type",
                        hyper::header::HeaderValue::from_static(
                            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                        ),
                    );
                    Ok(resp)
                } else {
                    Ok(json_response(200, &openapi::v2_json(&self.cfg.version)))
                }
            }
            ["openapi", "v3"] => {
                self.non_resource_authz(r)?;
                let c = self.refresh_catalog().await?;
                Ok(json_response(
                    200,
                    &openapi::v3_index(&c, &self.cfg.version),
                ))
            }
            ["openapi", "v3", rest @ ..] => {
                self.non_resource_authz(r)?;
                let c = self.refresh_catalog().await?;
                let (g, v) = match rest {
                    ["api", v] => ("", *v),
                    ["apis", g, v] => (*g, *v),
                    _ => {
                        return Err(ApiError::not_found_plain(
                            "the server could not find the requested resource",
                        ));
                    }
                };
                openapi::v3_document(&c, g, v, &self.cfg.version)
                    .map(|d| json_response(200, &d))
                    .ok_or_else(|| {
                        ApiError::not_found_plain(
                            "the server could not find the requested resource",
                        )
                    })
            }
            ["api", "v1", rest @ ..] => self.resource_route(r, "", "v1", rest).await,
            ["apis", g, v, rest @ ..] => self.resource_route(r, g, v, rest).await,
            _ => {
                self.non_resource_authz(r)?;
                Err(ApiError::not_found_plain(
                    "the server could not find the requested resource",
                ))
            }
        }
    }

    fn group_list(&self, c: &Catalog) -> Value {
        let groups: Vec<Value> = c
            .groups()
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    fn version_info(&self) -> Value {
        let v = self.cfg.version.trim_start_matches('v');
        let mut parts = v.split('.');
        let major = parts.next().unwrap_or("1");
        let minor = parts.next().unwrap_or("0");
        json!({"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "gitVersion": self.cfg.version, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
            "compiler": "gc", "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"))})
    }

    async fn health(&self, which: &str, r: &Req) -> Response<Body> {
        // Liveness does not depend on etcd (like the real server); readiness and healthz do.
        // All three wait for the start-up objects (the bootstrap post-start hooks).
        let etcd_ok = which == "livez" || self.cfg.etcd.health().await.is_ok();
        let booted = self.bootstrapped.load(std::sync::atomic::Ordering::Relaxed);
        let mark = |ok: bool| if ok { "[+]" } else { "[-]" };
        let hook = if booted { "ok" } else { "failed: not finished" };
        let etcd = if etcd_ok {
            "ok"
        } else {
            "failed: reason withheld"
        };
        let mut body = "[+]ping ok\n".to_owned();
        if which != "livez" {
            body.push_str(&format!("{}etcd {etcd}\n", mark(etcd_ok)));
        }
        body.push_str(&format!(
            "{}poststarthook/bootstrap-controller {hook}\n",
            mark(booted)
        ));
        if etcd_ok && booted {
            if r.query.contains_key("verbose") {
                return text_response(200, &format!("{body}{which} check passed\n"));
            }
            return text_response(200, "ok");
        }
        text_response(500, &format!("{body}{which} check failed\n"))
    }

    async fn resource_route(
        self: &Arc<Self>,
        r: &Req,
        group: &str,
        version: &str,
        rest: &[&str],
    ) -> Result<Response<Body>, ApiError> {
        let not_found =
            || ApiError::not_found_plain("the server could not find the requested resource");
        let (ns, rest): (Option<String>, &[&str]) = match rest {
            ["namespaces", ns, res, tail @ ..]
                if !(group.is_empty()
                    && tail.is_empty()
                    && matches!(*res, "status" | "finalize")) =>
            {
                (Some((*ns).to_owned()), &rest[2..])
            }
            _ => (None, rest),
        };
        let (res, name, sub) = match rest {
            [res] => (*res, None, None),
            [res, name] => (*res, Some((*name).to_owned()), None),
            [res, name, sub] => (*res, Some((*name).to_owned()), Some((*sub).to_owned())),
            _ => return Err(not_found()),
        };
        let mut cat = self.catalog();
        if cat.find(group, version, res).is_none() {
            cat = self.refresh_catalog().await?;
        }
        let rt = cat
            .find(group, version, res)
            .cloned()
            .ok_or_else(not_found)?;
        if (rt.namespaced && ns.is_none() && name.is_some()) || (!rt.namespaced && ns.is_some()) {
            return Err(not_found());
        }
        if let Some(s) = &sub
            && !rt.subresources.contains(s)
        {
            return Err(not_found());
        }
        let verb = match (&r.method, &name, &sub) {
            (&Method::GET, None, _) if matches!(r.q("watch"), Some("1" | "true")) => "watch",
            (&Method::GET, None, _) => "list",
            (&Method::GET, Some(_), _) => "get",
            (&Method::POST, _, _) => "create",
            (&Method::PUT, Some(_), _) => "update",
            (&Method::PATCH, Some(_), _) => "patch",
            (&Method::DELETE, Some(_), _) => "delete",
            (&Method::DELETE, None, _) => "deletecollection",
            _ => return Err(ApiError::method_not_allowed()),
        };
        let attr_res = match &sub {
            Some(s) => format!("{}/{s}", rt.resource),
            None => rt.resource.clone(),
        };
        auth::authorize(
            &r.user,
            &Attributes {
                verb,
                path: &r.path,
                resource: Some((
                    &rt.group,
                    &attr_res,
                    ns.as_deref().unwrap_or(""),
                    name.as_deref().unwrap_or(""),
                )),
            },
        )?;
        let t = Target {
            rt,
            version: version.to_owned(),
            ns,
            name,
            sub,
        };
        self.clone().dispatch(r, &t, verb).await
    }
}

/// Serve HTTPS on `addr` until the process ends.
pub async fn serve(
    server: Arc<Server>,
    tls: rustls::ServerConfig,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen on {addr}: {e}"))?;
    eprintln!("Serving securely on {addr}");
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| auth::user_from_cert(c.as_ref()));
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let cu = cert_user.clone();
                async move { Ok::<_, Infallible>(server.handle(req, cu).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
