//! Secret redaction: known secret values plus patterns of secrets we may not know by value.

use std::sync::{Arc, RwLock};

use regex::Regex;

const MASK: &str = "[REDACTED]";

/// Shared by every writer of output and logs; secrets are registered as soon as they exist.
#[derive(Clone)]
pub struct Redactor {
    known: Arc<RwLock<Vec<String>>>,
    patterns: Arc<Vec<(Regex, &'static str)>>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    pub fn new() -> Self {
        // Each pattern keeps its non-secret prefix (group 1) so the log still says what was hidden.
        let patterns = [
            // kubeadm bootstrap tokens: [a-z0-9]{6}.[a-z0-9]{16}
            (r"\b()[a-z0-9]{6}\.[a-z0-9]{16}\b", "${1}[REDACTED]"),
            // --certificate-key / certificate key values (64 hex chars)
            (r"(--certificate-key[= ]+)[0-9a-fA-F]{64}", "${1}[REDACTED]"),
            (
                r"(?i)((?:password|passwd|secret|token)[\x22']?\s*[:=]\s*[\x22']?)[^\s\x22',}]+",
                "${1}[REDACTED]",
            ),
            (r"(?i)(authorization:\s*bearer\s+)\S+", "${1}[REDACTED]"),
            // PEM private keys of any kind, whole block
            (
                r"()-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?-----END ([A-Z0-9 ]*)PRIVATE KEY-----",
                "${1}[REDACTED PRIVATE KEY]",
            ),
            // base64 PEM keys inside kubeconfigs (client-key-data: LS0t...)
            (r"(client-key-data:\s*)\S+", "${1}[REDACTED]"),
        ];
        let patterns = patterns
            .into_iter()
            .map(|(re, rep)| (Regex::new(re).expect("redaction patterns are valid"), rep))
            .collect();
        Redactor {
            known: Arc::new(RwLock::new(Vec::new())),
            patterns: Arc::new(patterns),
        }
    }

    /// Registers a secret value; it is masked wherever it appears from now on.
    pub fn add_secret(&self, secret: &str) {
        // Very short values would mask ordinary words and say nothing useful.
        if secret.len() < 4 {
            return;
        }
        if let Ok(mut known) = self.known.write()
            && !known.iter().any(|k| k == secret)
        {
            known.push(secret.to_string());
            // Longest first, so a secret containing another is masked whole.
            known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(known) = self.known.read() {
            for secret in known.iter() {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), MASK);
                }
            }
        }
        for (re, rep) in self.patterns.iter() {
            if re.is_match(&out) {
                out = re.replace_all(&out, *rep).into_owned();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secret_is_masked_everywhere() {
        let r = Redactor::new();
        r.add_secret("s3cr3t-sudo-pw");
        let out = r.redact("echo s3cr3t-sudo-pw | sudo -S true; again s3cr3t-sudo-pw");
        assert!(!out.contains("s3cr3t-sudo-pw"), "{out}");
        assert_eq!(out.matches("[REDACTED]").count(), 2);
    }

    #[test]
    fn bootstrap_token_is_masked_without_registration() {
        let r = Redactor::new();
        let out = r.redact("kubeadm join 10.0.0.1:8443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234");
        assert!(!out.contains("abcdef.0123456789abcdef"), "{out}");
        assert!(
            out.contains("sha256:1234"),
            "the CA hash is public and must stay: {out}"
        );
    }

    #[test]
    fn certificate_key_is_masked() {
        let key = "a".repeat(64);
        let out = Redactor::new().redact(&format!("join --control-plane --certificate-key {key}"));
        assert!(!out.contains(&key), "{out}");
        assert!(out.contains("--certificate-key [REDACTED]"));
    }

    #[test]
    fn pem_private_key_block_is_masked() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\nabc\n-----END RSA PRIVATE KEY-----";
        let out = Redactor::new().redact(&format!("cat key:\n{pem}\ndone"));
        assert!(!out.contains("MIIEowIBAAKCAQEAx"), "{out}");
        assert!(out.contains("done"));
    }

    #[test]
    fn kubeconfig_client_key_data_is_masked() {
        let out = Redactor::new()
            .redact("    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=");
        assert!(!out.contains("LS0tLS1CRUdJTi"), "{out}");
    }

    #[test]
    fn password_assignments_are_masked() {
        let out = Redactor::new().redact("WEAVE_PASSWORD=hunter22 and {\"token\": \"eyJhbGciOi\"}");
        assert!(
            !out.contains("hunter22") && !out.contains("eyJhbGciOi"),
            "{out}"
        );
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "installed kubelet 1.36.2-1.1 on master-1 (10.0.0.11)";
        assert_eq!(Redactor::new().redact(text), text);
    }
}
