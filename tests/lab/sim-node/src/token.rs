//! Bootstrap tokens, their Secrets, and the detached JWS that signs cluster-info.

use anyhow::{Result, anyhow, bail};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub const DEFAULT_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// `[a-z0-9]{6}.[a-z0-9]{16}`. Debug output hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<redacted>)", self.id)
    }
}

fn is_token_part(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl Token {
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once('.') {
            Some((id, secret)) if is_token_part(id, 6) && is_token_part(secret, 16) => Ok(Self {
                id: id.into(),
                secret: secret.into(),
            }),
            // The real message quotes the token; the simulator does not print secrets.
            _ => bail!(
                "the bootstrap token does not match the regular expression \"^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$\""
            ),
        }
    }

    pub fn generate() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        Self {
            id: pick(6),
            secret: pick(16),
        }
    }

    pub fn full(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The `kube-system/bootstrap-token-<id>` Secret kubeadm creates.
    pub fn secret_object(
        &self,
        description: &str,
        ttl: Option<Duration>,
        usages: &[String],
        groups: &[String],
    ) -> Value {
        let mut data = serde_json::Map::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.into(), Value::String(B64.encode(v)));
        };
        put("token-id", &self.id);
        put("token-secret", &self.secret);
        if !description.is_empty() {
            put("description", description);
        }
        if let Some(ttl) = ttl.filter(|t| !t.is_zero()) {
            let exp = time::OffsetDateTime::now_utc() + ttl;
            put("expiration", &crate::util::format_rfc3339(exp));
        }
        let usages: Vec<String> = if usages.is_empty() {
            vec!["signing".into(), "authentication".into()]
        } else {
            usages.to_vec()
        };
        for u in &usages {
            put(&format!("usage-bootstrap-{u}"), "true");
        }
        let groups: Vec<String> = if groups.is_empty() {
            vec![DEFAULT_GROUP.into()]
        } else {
            groups.to_vec()
        };
        put("auth-extra-groups", &groups.join(","));
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{}", self.id), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "data": data,
        })
    }
}

/// Validates `usages` and `groups` the way kubeadm does.
pub fn validate_usages_groups(usages: &[String], groups: &[String]) -> Result<()> {
    for u in usages {
        if u != "signing" && u != "authentication" {
            bail!(
                "invalid bootstrap token usage string: {u}, valid usage options: authentication, signing"
            );
        }
    }
    for g in groups {
        if !g.starts_with("system:bootstrappers:") {
            bail!(
                "bootstrap group {g:?} is invalid (must match ^system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]$)"
            );
        }
    }
    Ok(())
}

/// A detached JWS (`header..signature`, HS256 keyed by the token secret) over `content`.
pub fn sign_detached(content: &str, token: &Token) -> String {
    let header = B64URL.encode(json!({"alg": "HS256", "kid": token.id}).to_string());
    let payload = B64URL.encode(content);
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.secret.as_bytes());
    let sig = hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    format!("{header}..{}", B64URL.encode(sig.as_ref()))
}

/// Verifies a detached JWS made by the bootstrap signer over `content`.
pub fn verify_detached(jws: &str, content: &str, token: &Token) -> Result<()> {
    let parts: Vec<&str> = jws.split('.').collect();
    if parts.len() != 3 || !parts[1].is_empty() {
        bail!("the JWS is not in detached compact form");
    }
    let header: Value = serde_json::from_slice(
        &B64URL
            .decode(parts[0])
            .map_err(|_| anyhow!("bad JWS header"))?,
    )
    .map_err(|_| anyhow!("bad JWS header"))?;
    if header["alg"] != "HS256" {
        bail!("unexpected JWS algorithm {}", header["alg"]);
    }
    if header["kid"].as_str().is_some_and(|k| k != token.id) {
        bail!("JWS key id does not match the token id");
    }
    let sig = B64URL
        .decode(parts[2])
        .map_err(|_| anyhow!("bad JWS signature encoding"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.secret.as_bytes());
    let signing_input = format!("{}.{}", parts[0], B64URL.encode(content));
    hmac::verify(&key, signing_input.as_bytes(), &sig).map_err(|_| anyhow!("signature mismatch"))
}

/// Normalises and validates a `sha256:<hex>` discovery hash.
pub fn parse_ca_hash(h: &str) -> Result<String> {
    let Some((kind, hex_part)) = h.split_once(':') else {
        bail!("invalid hash {h:?}, expected a \"type:value\" hash like \"sha256:<hex>\"");
    };
    if kind != "sha256" {
        bail!("unknown hash type {kind:?}, expected sha256");
    }
    let bytes =
        hex::decode(hex_part).map_err(|_| anyhow!("invalid hash {h:?}: not hex encoded"))?;
    if bytes.len() != 32 {
        bail!(
            "invalid hash {h:?}, expected a 32 byte SHA-256 hash, found {} bytes",
            bytes.len()
        );
    }
    Ok(format!("sha256:{}", hex::encode(bytes)))
}

/// pubkeypin `Set.CheckAny` (cmd/kubeadm/app/util/pubkeypin): discovery trusts the CA data of
/// cluster-info when ANY of its certificates (a bundle may hold several) has a pinned
/// public key; otherwise every certificate's hash is listed, joined by ":".
pub fn check_any_pin(ca_pem: &str, pinned: &[String]) -> Result<()> {
    let mut hashes = vec![];
    for der in crate::pki::certs_from_pem(ca_pem)? {
        let info = crate::pki::CertInfo::from_der(&der)?;
        let hash = format!("sha256:{}", hex::encode(Sha256::digest(&info.spki_der)));
        if pinned.contains(&hash) {
            return Ok(());
        }
        hashes.push(hash);
    }
    bail!("none of the public keys {:?} are pinned", hashes.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_certificate_of_a_cluster_info_bundle_may_carry_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let ca = |d: &std::path::Path| {
            crate::pki::Ca::load_or_generate(
                d,
                "ca",
                "kubernetes",
                crate::pki::KeyAlgo::EcdsaP256,
                crate::pki::CA_VALIDITY,
            )
            .unwrap()
            .0
        };
        let a = ca(dir.path());
        let other = tempfile::tempdir().unwrap();
        let b = ca(other.path());
        let bundle = format!("{}{}", a.cert_pem, b.cert_pem);
        let (pa, pb) = (a.pin().unwrap(), b.pin().unwrap());
        assert!(check_any_pin(&bundle, std::slice::from_ref(&pb)).is_ok());
        assert!(check_any_pin(&bundle, std::slice::from_ref(&pa)).is_ok());
        let err = check_any_pin(&bundle, &[format!("sha256:{}", "00".repeat(32))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("none of the public keys \"{pa}:{pb}\" are pinned")
        );
    }

    #[test]
    fn token_format_is_enforced() {
        assert!(Token::parse("abcdef.0123456789abcdef").is_ok());
        for bad in [
            "abcdef.0123456789ABCDEF",
            "abcde.0123456789abcdef",
            "abcdef0123456789abcdef",
            "",
        ] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
        let t = Token::generate();
        assert!(Token::parse(&t.full()).is_ok());
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn detached_jws_verifies_only_with_the_right_secret_and_content() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let jws = sign_detached("kubeconfig", &t);
        assert!(verify_detached(&jws, "kubeconfig", &t).is_ok());
        assert!(verify_detached(&jws, "kubeconfig2", &t).is_err());
        let wrong = Token::parse("abcdef.0123456789abcdeg").unwrap();
        assert!(verify_detached(&jws, "kubeconfig", &wrong).is_err());
    }

    #[test]
    fn malformed_discovery_hashes_are_refused() {
        assert!(parse_ca_hash("sha256:00").is_err());
        assert!(parse_ca_hash("md5:00").is_err());
        assert!(parse_ca_hash("abc").is_err());
        let good = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            parse_ca_hash(&good).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn token_secret_has_kubeadm_keys() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let s = t.secret_object("", Some(DEFAULT_TTL), &[], &[]);
        assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
        for k in [
            "token-id",
            "token-secret",
            "expiration",
            "usage-bootstrap-signing",
            "usage-bootstrap-authentication",
            "auth-extra-groups",
        ] {
            assert!(s["data"].get(k).is_some(), "{k}");
        }
        assert!(validate_usages_groups(&["signing".into()], &["system:nodes".into()]).is_err());
    }
}
