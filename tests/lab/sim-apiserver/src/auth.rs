//! Authentication (client certificates, bootstrap tokens, service-account JWTs, anonymous)
//! and the small authorizer the simulator applies on top.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::errors::ApiError;
use crate::obj;

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub uid: String,
}

impl User {
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            uid: String::new(),
        }
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    fn authenticated(name: String, mut groups: Vec<String>, uid: String) -> User {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User { name, groups, uid }
    }
}

/// User from a verified client certificate: CN is the user, each O a group.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(User::authenticated(cn, groups, String::new()))
}

/// `[a-z0-9]{6}.[a-z0-9]{16}` → (id, secret).
pub fn parse_bootstrap_token(t: &str) -> Option<(&str, &str)> {
    let (id, secret) = t.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

fn secret_field(secret: &Value, key: &str) -> Option<String> {
    let raw = secret["data"][key].as_str()?;
    String::from_utf8(B64.decode(raw).ok()?).ok()
}

/// Check a bootstrap token against its Secret (`kube-system/bootstrap-token-<id>`).
pub fn user_from_bootstrap_secret(secret: &Value, token_secret: &str) -> Option<User> {
    if secret["type"].as_str() != Some("bootstrap.kubernetes.io/token") {
        return None;
    }
    let id = secret_field(secret, "token-id")?;
    let stored = secret_field(secret, "token-secret")?;
    // Compare digests so the comparison time does not depend on the secret's bytes.
    if Sha256::digest(stored.as_bytes()) != Sha256::digest(token_secret.as_bytes()) {
        return None;
    }
    if secret_field(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    if let Some(exp) = secret_field(secret, "expiration") {
        match obj::parse_time(&exp) {
            Some(t) if t > time::OffsetDateTime::now_utc() => {}
            _ => return None,
        }
    }
    let mut groups = vec!["system:bootstrappers".to_owned()];
    if let Some(extra) = secret_field(secret, "auth-extra-groups") {
        groups.extend(
            extra
                .split(',')
                .map(str::trim)
                .filter(|g| g.starts_with("system:bootstrappers:"))
                .map(str::to_owned),
        );
    }
    Some(User::authenticated(
        format!("system:bootstrap:{id}"),
        groups,
        String::new(),
    ))
}

/// Service-account token verification (RS256/ES256 against `--service-account-key-file`).
pub struct SaVerifier {
    keys: Vec<(DecodingKey, Algorithm)>,
    issuers: Vec<String>,
    audiences: Vec<String>,
}

fn decoding_keys(pem: &[u8]) -> Vec<(DecodingKey, Algorithm)> {
    let mut out = vec![];
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        out.push((k, Algorithm::RS256));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        out.push((k, Algorithm::ES256));
    }
    out
}

/// Claims of a verified service-account token.
pub struct SaClaims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl SaVerifier {
    pub fn new(
        key_files: &[String],
        issuers: Vec<String>,
        audiences: Vec<String>,
    ) -> anyhow::Result<SaVerifier> {
        let mut keys = vec![];
        for f in key_files {
            let pem = std::fs::read(f)
                .map_err(|e| anyhow::anyhow!("reading --service-account-key-file {f}: {e}"))?;
            let k = decoding_keys(&pem);
            if k.is_empty() {
                anyhow::bail!("--service-account-key-file {f}: no RSA or ECDSA public key found");
            }
            keys.extend(k);
        }
        let audiences = if audiences.is_empty() {
            issuers.clone()
        } else {
            audiences
        };
        Ok(SaVerifier {
            keys,
            issuers,
            audiences,
        })
    }

    pub fn verify(&self, token: &str) -> Option<SaClaims> {
        for (key, alg) in &self.keys {
            let mut v = Validation::new(*alg);
            v.set_audience(&self.audiences);
            if !self.issuers.is_empty() {
                v.set_issuer(&self.issuers);
            }
            v.leeway = 0;
            if let Ok(data) = jsonwebtoken::decode::<Value>(token, key, &v) {
                let c = data.claims;
                let k8s = &c["kubernetes.io"];
                let (ns, name, uid) = if k8s.is_object() {
                    (
                        k8s["namespace"].as_str()?,
                        k8s["serviceaccount"]["name"].as_str()?,
                        k8s["serviceaccount"]["uid"].as_str().unwrap_or(""),
                    )
                } else {
                    (
                        c["kubernetes.io/serviceaccount/namespace"].as_str()?,
                        c["kubernetes.io/serviceaccount/service-account.name"].as_str()?,
                        c["kubernetes.io/serviceaccount/service-account.uid"]
                            .as_str()
                            .unwrap_or(""),
                    )
                };
                return Some(SaClaims {
                    namespace: ns.into(),
                    name: name.into(),
                    uid: uid.into(),
                });
            }
        }
        None
    }
}

pub fn sa_user(c: &SaClaims) -> User {
    User::authenticated(
        format!("system:serviceaccount:{}:{}", c.namespace, c.name),
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", c.namespace),
        ],
        c.uid.clone(),
    )
}

/// Signs TokenRequests with `--service-account-signing-key-file`.
pub struct SaSigner {
    key: EncodingKey,
    alg: Algorithm,
    pub issuer: String,
    pub audiences: Vec<String>,
}

impl SaSigner {
    pub fn new(key_file: &str, issuer: String, audiences: Vec<String>) -> anyhow::Result<SaSigner> {
        let pem = std::fs::read(key_file).map_err(|e| {
            anyhow::anyhow!("reading --service-account-signing-key-file {key_file}: {e}")
        })?;
        let (key, alg) = if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
            (k, Algorithm::RS256)
        } else if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
            (k, Algorithm::ES256)
        } else {
            anyhow::bail!(
                "--service-account-signing-key-file {key_file}: not an RSA or ECDSA private key"
            );
        };
        let audiences = if audiences.is_empty() {
            vec![issuer.clone()]
        } else {
            audiences
        };
        Ok(SaSigner {
            key,
            alg,
            issuer,
            audiences,
        })
    }

    /// A bound token for the service account; returns (token, expiry unix seconds).
    pub fn sign(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        seconds: i64,
    ) -> anyhow::Result<(String, i64)> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let exp = now + seconds;
        let aud = if audiences.is_empty() {
            self.audiences.clone()
        } else {
            audiences.to_vec()
        };
        let claims = json!({
            "aud": aud, "exp": exp, "iat": now, "nbf": now, "iss": self.issuer,
            "jti": obj::new_uid(),
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
            "sub": format!("system:serviceaccount:{ns}:{name}"),
        });
        let token = jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key)?;
        Ok((token, exp))
    }
}

/// What a request wants to do, for authorization.
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub path: &'a str,
    /// (group, resource, namespace, name) for resource requests.
    pub resource: Option<(&'a str, &'a str, &'a str, &'a str)>,
}

const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

fn forbidden(user: &User, a: &Attributes) -> ApiError {
    match a.resource {
        None => ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User \"{}\" cannot {} path \"{}\"",
                user.name, a.verb, a.path
            ),
        ),
        Some((group, resource, ns, name)) => {
            let qualified = if group.is_empty() {
                resource.to_owned()
            } else {
                format!("{resource}.{group}")
            };
            let head = if name.is_empty() {
                qualified.clone()
            } else {
                format!("{qualified} \"{name}\"")
            };
            let scope = if ns.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace \"{ns}\"")
            };
            let mut e = ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{head} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{group}\" {scope}",
                    user.name, a.verb
                ),
            );
            e.details = json!({"name": name, "kind": resource, "group": group});
            e
        }
    }
}

/// The simulator's authorizer: anonymous users reach only the public endpoints and
/// kubeadm's discovery ConfigMap, bootstrap-token users only what joining needs (the
/// bindings kubeadm creates), everyone else authenticated is allowed (RBAC is not evaluated).
pub fn authorize(user: &User, a: &Attributes) -> Result<(), ApiError> {
    let public = PUBLIC_PATHS
        .iter()
        .any(|p| a.path == *p || a.path.starts_with(&format!("{p}/")));
    if user.in_group("system:unauthenticated") {
        let cluster_info = matches!(
            a.resource,
            Some(("", "configmaps", "kube-public", "cluster-info"))
        );
        if (public || cluster_info) && a.verb == "get" {
            return Ok(());
        }
        return Err(forbidden(user, a));
    }
    if user.in_group("system:bootstrappers") {
        let allowed = match a.resource {
            None => {
                public
                    || a.path == "/api"
                    || a.path == "/apis"
                    || a.path.starts_with("/api/")
                    || a.path.starts_with("/apis/")
                    || a.path.starts_with("/openapi")
            }
            Some(("certificates.k8s.io", "certificatesigningrequests", _, _)) => {
                matches!(a.verb, "create" | "get" | "list" | "watch")
            }
            Some(("", "configmaps", "kube-system" | "kube-public", _)) => a.verb == "get",
            Some(("", "nodes", _, _)) => a.verb == "get",
            // system:basic-user (bound to all authenticated users): self reviews.
            Some(
                ("authentication.k8s.io", "selfsubjectreviews", _, _)
                | ("authorization.k8s.io", "selfsubjectaccessreviews", _, _),
            ) => a.verb == "create",
            _ => false,
        };
        return if allowed {
            Ok(())
        } else {
            Err(forbidden(user, a))
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_secret(exp: Option<&str>) -> Value {
        let e = |s: &str| B64.encode(s);
        let mut data = json!({"token-id": e("abcdef"), "token-secret": e("0123456789abcdef"),
            "usage-bootstrap-authentication": e("true"),
            "auth-extra-groups": e("system:bootstrappers:kubeadm:default-node-token")});
        if let Some(x) = exp {
            data["expiration"] = json!(e(x));
        }
        json!({"type": "bootstrap.kubernetes.io/token", "data": data})
    }

    #[test]
    fn bootstrap_token_authenticates_with_extra_groups() {
        let u = user_from_bootstrap_secret(&token_secret(None), "0123456789abcdef").unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert!(u.in_group("system:bootstrappers:kubeadm:default-node-token"));
        assert!(u.in_group("system:bootstrappers"));
    }

    #[test]
    fn wrong_bootstrap_secret_is_rejected() {
        assert!(user_from_bootstrap_secret(&token_secret(None), "0123456789abcdee").is_none());
    }

    #[test]
    fn expired_bootstrap_token_is_rejected() {
        assert!(
            user_from_bootstrap_secret(
                &token_secret(Some("2001-01-01T00:00:00Z")),
                "0123456789abcdef"
            )
            .is_none()
        );
        assert!(
            user_from_bootstrap_secret(
                &token_secret(Some("2999-01-01T00:00:00Z")),
                "0123456789abcdef"
            )
            .is_some()
        );
    }

    #[test]
    fn malformed_bootstrap_tokens_do_not_parse() {
        assert!(parse_bootstrap_token("abcdef.0123456789abcdef").is_some());
        assert!(parse_bootstrap_token("ABCDEF.0123456789abcdef").is_none());
        assert!(parse_bootstrap_token("abcdef.0123").is_none());
    }

    #[test]
    fn anonymous_may_read_health_and_cluster_info_only() {
        let anon = User::anonymous();
        let get = |path, resource| Attributes {
            verb: "get",
            path,
            resource,
        };
        assert!(authorize(&anon, &get("/readyz", None)).is_ok());
        assert!(
            authorize(
                &anon,
                &get(
                    "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                    Some(("", "configmaps", "kube-public", "cluster-info"))
                )
            )
            .is_ok()
        );
        let e = authorize(&anon, &get("/api/v1/nodes", Some(("", "nodes", "", "")))).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "nodes is forbidden: User \"system:anonymous\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
        );
    }

    #[test]
    fn bootstrap_user_may_create_csrs_but_not_list_secrets() {
        let u = user_from_bootstrap_secret(&token_secret(None), "0123456789abcdef").unwrap();
        let csr = Attributes {
            verb: "create",
            path: "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            resource: Some(("certificates.k8s.io", "certificatesigningrequests", "", "")),
        };
        assert!(authorize(&u, &csr).is_ok());
        let sec = Attributes {
            verb: "list",
            path: "/api/v1/secrets",
            resource: Some(("", "secrets", "", "")),
        };
        assert!(authorize(&u, &sec).is_err());
    }
}
