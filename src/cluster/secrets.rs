//! Secrets named by the inventory (`passwordEnv`, `sudoPasswordEnv`, ...) are read from the
//! environment or, on a terminal, prompted for; never from the inventory file itself.

use std::collections::HashMap;
use std::io::IsTerminal;

use secrecy::{ExposeSecret, SecretString};

use crate::ui::Redactor;

#[derive(Default)]
pub struct SecretSource {
    cache: HashMap<String, SecretString>,
}

impl SecretSource {
    /// The secret in environment variable `name`, prompting for it on a TTY when unset.
    pub fn get(
        &mut self,
        name: &str,
        what: &str,
        redactor: &Redactor,
    ) -> Result<SecretString, String> {
        if let Some(s) = self.cache.get(name) {
            return Ok(s.clone());
        }
        let value = match std::env::var(name) {
            Ok(v) if !v.is_empty() => v,
            _ if std::io::stdin().is_terminal() => {
                rpassword::prompt_password(format!("{what} (${name}): "))
                    .map_err(|e| format!("cannot read {what} from the terminal: {e}"))?
            }
            _ => {
                return Err(format!(
                    "the inventory names ${name} for the {what}, but it is not set; export it (or run on a terminal to be asked)"
                ));
            }
        };
        let secret = SecretString::from(value);
        redactor.add_secret(secret.expose_secret());
        self.cache.insert(name.to_string(), secret.clone());
        Ok(secret)
    }
}
