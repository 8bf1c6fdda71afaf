//! kubeadm bootstrap tokens: `[a-z0-9]{6}.[a-z0-9]{16}`, an id anyone may see and a secret
//! nobody should.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use super::error::PkiError;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

/// A bootstrap token. `Display` shows only the id; `Debug` hides the secret.
#[derive(Clone)]
pub struct BootstrapToken {
    id: String,
    secret: SecretString,
}

impl BootstrapToken {
    /// A fresh random token (thread-local CSPRNG, reseeded from the OS).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect()
        };
        let id = pick(ID_LEN);
        let secret = SecretString::from(pick(SECRET_LEN));
        Self { id, secret }
    }

    /// Parses `id.secret`; surrounding whitespace (a trailing newline) is ignored. The
    /// error never repeats the input.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let (id, secret) = text.trim().split_once('.').ok_or(PkiError::InvalidToken(
            "it has no '.' between id and secret",
        ))?;
        if id.len() != ID_LEN {
            return Err(PkiError::InvalidToken("the id is not 6 characters long"));
        }
        if secret.len() != SECRET_LEN {
            return Err(PkiError::InvalidToken(
                "the secret is not 16 characters long",
            ));
        }
        let allowed = |s: &str| s.bytes().all(|b| ALPHABET.contains(&b));
        if !allowed(id) || !allowed(secret) {
            return Err(PkiError::InvalidToken(
                "only lowercase letters a-z and digits 0-9 are allowed",
            ));
        }
        Ok(Self {
            id: id.to_string(),
            secret: SecretString::from(secret.to_string()),
        })
    }

    /// The public half, e.g. for `kubeadm token list` matching.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret half.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// The whole `id.secret` for kubeadm, still wrapped as a secret.
    pub fn to_secret_string(&self) -> SecretString {
        // Sized exactly, so no reallocation leaves a stray copy of the secret behind.
        let mut whole = String::with_capacity(ID_LEN + 1 + SECRET_LEN);
        whole.push_str(&self.id);
        whole.push('.');
        whole.push_str(self.secret.expose_secret());
        SecretString::from(whole)
    }
}

impl FromStr for BootstrapToken {
    type Err = PkiError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeadm_shape(s: &str) -> bool {
        regex::Regex::new(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
            .unwrap()
            .is_match(s)
    }

    #[test]
    fn generated_token_has_kubeadm_shape() {
        let token = BootstrapToken::generate();
        assert!(kubeadm_shape(token.to_secret_string().expose_secret()));
    }

    #[test]
    fn generated_tokens_differ() {
        let a = BootstrapToken::generate();
        let b = BootstrapToken::generate();
        assert_ne!(
            a.to_secret_string().expose_secret(),
            b.to_secret_string().expose_secret()
        );
    }

    #[test]
    fn generated_tokens_use_the_whole_alphabet() {
        // 200 tokens draw 4400 characters: every one of the 36 shows up unless the
        // generator is broken.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.extend(
                BootstrapToken::generate()
                    .to_secret_string()
                    .expose_secret()
                    .chars(),
            );
        }
        seen.remove(&'.');
        assert_eq!(seen.len(), ALPHABET.len());
    }

    #[test]
    fn display_and_debug_show_only_the_id() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(token.to_string(), "abcdef");
        let debug = format!("{token:?}");
        assert!(debug.contains("abcdef"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
    }

    #[test]
    fn parsed_token_round_trips() {
        let token: BootstrapToken = " abcdef.0123456789abcdef\n".parse().unwrap();
        assert_eq!(token.id(), "abcdef");
        assert_eq!(token.secret().expose_secret(), "0123456789abcdef");
        assert_eq!(
            token.to_secret_string().expose_secret(),
            "abcdef.0123456789abcdef"
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_them() {
        for bad in [
            "qwertyzyxwvutsrqponmlk",
            "qwert.zyxwvutsrqponmlk",
            "qwerty.zyxwvutsrqponml",
            "QWERTY.zyxwvutsrqponmlk",
            "qwerty.zyxwvutsrqponmlK",
            "qwerty.zyxwvutsrqpon-lk",
            "qwerty.zyxwvutsrqponmlk.x",
        ] {
            let err = BootstrapToken::parse(bad).err().unwrap().to_string();
            assert!(!err.contains("qwert") && !err.contains("zyxwv"), "{err}");
        }
        assert!(BootstrapToken::parse("").is_err());
    }
}
