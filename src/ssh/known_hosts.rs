//! OpenSSH `known_hosts` lookups with honest line numbers.
//!
//! Entries are parsed by `ssh-key`; matching (globs, negations, `[host]:port`, hashed
//! `|1|salt|hash` names) follows OpenSSH's rules. Only the host name as given is checked
//! (OpenSSH's `CheckHostIP` is off by default too).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::ssh_key::{Algorithm, PublicKey};
use sha1::Sha1;

/// What known_hosts says about the key a host offered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known,
    Unknown,
    /// A key of the same type is recorded for this host, but a different one.
    Changed {
        line: usize,
    },
    Revoked {
        line: usize,
    },
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// Entries of `path` that apply to `host:port`, with their 1-based line numbers.
/// A missing file has no entries; unparseable lines are skipped like OpenSSH does.
fn entries_for(path: &Path, host: &str, port: u16) -> io::Result<Vec<(usize, Entry)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let name = lookup_name(host, port);
    let mut found = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // ssh-key splits fields on single spaces; OpenSSH allows any run of blanks.
        let normalized = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match normalized.parse::<Entry>() {
            Ok(entry) if matches_host(entry.host_patterns(), &name) => {
                found.push((index + 1, entry));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(
                path = %path.display(),
                line = index + 1,
                "skipping unreadable known_hosts line: {e}"
            ),
        }
    }
    Ok(found)
}

/// Checks `key` against what `path` records for `host:port`.
pub(crate) fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let entries = entries_for(path, host, port)?;
    let offered = key.key_data();
    if let Some((line, _)) = entries
        .iter()
        .find(|(_, e)| e.marker() == Some(&Marker::Revoked) && e.public_key().key_data() == offered)
    {
        return Ok(Verdict::Revoked { line: *line });
    }
    // Host certificates are not requested, so @cert-authority lines play no part.
    let plain: Vec<&(usize, Entry)> = entries
        .iter()
        .filter(|(_, e)| e.marker().is_none())
        .collect();
    if plain
        .iter()
        .any(|(_, e)| e.public_key().key_data() == offered)
    {
        return Ok(Verdict::Known);
    }
    let algorithm = offered.algorithm();
    match plain
        .iter()
        .find(|(_, e)| e.public_key().key_data().algorithm() == algorithm)
    {
        Some((line, _)) => Ok(Verdict::Changed { line: *line }),
        None => Ok(Verdict::Unknown),
    }
}

/// Key types already recorded for `host:port`, so the handshake can ask for one of them
/// first (as OpenSSH does) instead of tripping over an unrecorded type.
pub(crate) fn known_algorithms(path: &Path, host: &str, port: u16) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    if let Ok(entries) = entries_for(path, host, port) {
        for (_, entry) in entries.iter().filter(|(_, e)| e.marker().is_none()) {
            let algorithm = entry.public_key().algorithm();
            if !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
    }
    algorithms
}

/// Appends `key` for `host:port`, creating the file (0600) and its directory (0700).
pub(crate) fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let encoded = key.to_openssh().map_err(io::Error::other)?;
    // Drop the key comment: it is whatever the server sent and means nothing here.
    let mut fields = encoded.split_whitespace();
    let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
        return Err(io::Error::other("host key has no OpenSSH encoding"));
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)?;
    let needs_newline = std::fs::read(path)?.last().is_some_and(|b| *b != b'\n');
    let line = format!(
        "{}{} {kind} {blob}\n",
        if needs_newline { "\n" } else { "" },
        lookup_name(host, port)
    );
    // One write so parallel connects never interleave half lines.
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

fn matches_host(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut positive = false;
            for pattern in list {
                let pattern = pattern.to_ascii_lowercase();
                if let Some(negated) = pattern.strip_prefix('!') {
                    if glob(negated.as_bytes(), name.as_bytes()) {
                        return false;
                    }
                } else if glob(pattern.as_bytes(), name.as_bytes()) {
                    positive = true;
                }
            }
            positive
        }
    }
}

/// OpenSSH pattern matching: `*` any run, `?` any one character, nothing else special.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key parses")
    }

    fn write(lines: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, lines).expect("write known_hosts");
        (dir, path)
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).expect("hmac key");
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(hash))
    }

    #[test]
    fn lookup_name_brackets_non_default_ports() {
        assert_eq!(lookup_name("Master-1", 22), "master-1");
        assert_eq!(lookup_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }

    #[test]
    fn recorded_key_is_known_and_other_key_of_same_type_is_changed_with_line_number() {
        let (_dir, path) = write(&format!(
            "# comment\n\nother {KEY_B}\n[10.0.0.1]:2222\t{KEY_A} some comment\n"
        ));
        assert_eq!(
            check(&path, "10.0.0.1", 2222, &key(KEY_A)).ok(),
            Some(Verdict::Known)
        );
        assert_eq!(
            check(&path, "10.0.0.1", 2222, &key(KEY_B)).ok(),
            Some(Verdict::Changed { line: 4 })
        );
        assert_eq!(
            check(&path, "10.0.0.1", 22, &key(KEY_A)).ok(),
            Some(Verdict::Unknown)
        );
    }

    #[test]
    fn hashed_names_match_only_their_host() {
        let entry = hashed("[10.0.0.1]:2222", b"0123456789abcdefghij");
        let (_dir, path) = write(&format!("{entry} {KEY_A}\n"));
        assert_eq!(
            check(&path, "10.0.0.1", 2222, &key(KEY_A)).ok(),
            Some(Verdict::Known)
        );
        assert_eq!(
            check(&path, "10.0.0.2", 2222, &key(KEY_A)).ok(),
            Some(Verdict::Unknown)
        );
    }

    #[test]
    fn globs_and_negations_follow_openssh() {
        let (_dir, path) = write(&format!("*.lab,!bad.lab {KEY_A}\n"));
        assert_eq!(
            check(&path, "node1.lab", 22, &key(KEY_A)).ok(),
            Some(Verdict::Known)
        );
        assert_eq!(
            check(&path, "bad.lab", 22, &key(KEY_A)).ok(),
            Some(Verdict::Unknown)
        );
        assert_eq!(
            check(&path, "node1.lan", 22, &key(KEY_A)).ok(),
            Some(Verdict::Unknown)
        );
    }

    #[test]
    fn revoked_key_is_reported() {
        let (_dir, path) = write(&format!("@revoked * {KEY_A}\nhost {KEY_A}\n"));
        assert_eq!(
            check(&path, "host", 22, &key(KEY_A)).ok(),
            Some(Verdict::Revoked { line: 1 })
        );
    }

    #[test]
    fn learn_creates_private_file_and_appends_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("known_hosts");
        learn(&path, "10.0.0.1", 2222, &key(KEY_A)).expect("learn");
        learn(&path, "host", 22, &key(KEY_B)).expect("learn");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("[10.0.0.1]:2222 {KEY_A}\nhost {KEY_B}\n"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("metadata").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            check(&path, "10.0.0.1", 2222, &key(KEY_A)).ok(),
            Some(Verdict::Known)
        );
        assert_eq!(
            known_algorithms(&path, "host", 22),
            vec![Algorithm::Ed25519]
        );
    }
}
