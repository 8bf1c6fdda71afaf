//! Problems found before validation: bytes that are not UTF-8 text, an empty file, and what
//! the YAML parser reports, reworded as one message with a hint (secrets get their own).

use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};

use super::mask::names_a_secret;
use super::problem::{Problem, Severity};

/// The first byte that is not UTF-8, at its line and column.
pub fn not_utf8(bytes: &[u8], e: &std::str::Utf8Error) -> Problem {
    let valid = &bytes[..e.valid_up_to()];
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
    problem(
        line,
        column,
        format!("byte 0x{byte:02X} is not UTF-8 text"),
        "save the inventory as UTF-8 (e.g. `iconv -t UTF-8`); YAML files are text",
    )
}

/// A file with nothing but blank lines, comments and document markers.
pub fn is_empty(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

pub fn empty() -> Problem {
    problem(
        1,
        1,
        "the inventory is empty".into(),
        "start from inventory/hosts.yaml: apiVersion, kind, cluster and hosts are required",
    )
}

/// What the parser found, at its position, without its own "error:" and "line N column M:".
pub fn parser_problem(e: &Error) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((1, 1));
    let inner = original(e);
    let message = strip_parser_prefixes(&UserMessageFormatter.format_message(inner));
    let hint = match inner {
        Error::SerdeUnknownField {
            field, expected, ..
        } => secret_field_hint(field, expected).unwrap_or_else(|| {
            "check the spelling against inventory/hosts.yaml (fields are camelCase)".into()
        }),
        Error::SerdeMissingField { .. } => {
            "add the missing field; inventory/hosts.yaml shows every field".into()
        }
        Error::DuplicateMappingKey { .. } => {
            "a key may appear once per mapping; keep one and delete the other".into()
        }
        Error::MultipleDocuments { .. } => {
            "an inventory is one YAML document; remove the extra `---`".into()
        }
        Error::Unexpected { expected, .. } => type_hint(expected),
        Error::InvalidScalar { ty, .. } if ty.starts_with('u') => {
            "write a whole number here (ports are 1-65535)".into()
        }
        Error::InvalidScalar { ty: "bool", .. } | Error::InvalidBooleanStrict { .. } => {
            "write `true` or `false`".into()
        }
        Error::Budget { .. } => "this is far larger or deeper than any inventory; \
                                 check that -i names the right file"
            .into(),
        _ if message.contains("tab") => {
            "indent with spaces: YAML does not allow tabs for indentation".into()
        }
        _ => GENERIC_HINT.into(),
    };
    problem(line, column, message, &hint)
}

const GENERIC_HINT: &str = "fix the YAML at this position; inventory/hosts.yaml shows every field";

/// The parser expected one kind of node and found another.
fn type_hint(expected: &str) -> String {
    match expected {
        "sequence start" => "write a list here, e.g. `roles: [master]` or one `- item` per line",
        "mapping start" => {
            "write `key: value` pairs here; inventory/hosts.yaml shows the shape of every section"
        }
        "string scalar" => "write a single value here, not a list or a mapping",
        _ => GENERIC_HINT,
    }
    .into()
}

fn problem(line: usize, column: usize, message: String, hint: &str) -> Problem {
    Problem {
        severity: Severity::Error,
        line: (line as u32).max(1),
        column: (column as u32).max(1),
        message,
        hint: Some(hint.into()),
    }
}

/// The error itself, without the wrappers that add a snippet or an alias location.
fn original(mut e: &Error) -> &Error {
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = e {
        e = error;
    }
    e
}

/// The first line of a parser message without the parser's own "error:" and "line N column M:"
/// prefixes: we print the position and the word "error" once, ourselves.
fn strip_parser_prefixes(message: &str) -> String {
    let mut m = message.lines().next().unwrap_or_default().trim();
    loop {
        let before = m;
        if let Some(rest) = m.strip_prefix("error:") {
            m = rest.trim_start();
        }
        if let Some(rest) = m.strip_prefix("line ")
            && let Some((position, rest)) = rest.split_once(':')
            && position
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            m = rest.trim_start();
        }
        if m == before {
            return m.to_string();
        }
    }
}

/// A secret where a variable name belongs: say which field names the variable instead.
fn secret_field_hint(field: &str, expected: &[&str]) -> Option<String> {
    if !names_a_secret(field) {
        return None;
    }
    let key = field.to_ascii_lowercase();
    let offers = |f: &str| expected.contains(&f);
    let (what, env_field, example) = if key.contains("sudo") {
        ("sudo password", "sudoPasswordEnv", "SUDO_PASSWORD")
    } else if key.contains("passphrase") {
        (
            "key passphrase",
            "identityPassphraseEnv",
            "SSH_KEY_PASSPHRASE",
        )
    } else if key.contains("pass") || key == "pwd" {
        if offers("enabled") {
            ("Weave password", "passwordEnv", "WEAVE_PASSWORD")
        } else {
            ("SSH password", "passwordEnv", "SSH_PASSWORD")
        }
    } else {
        return Some(
            "secrets never go in the inventory: delete it (rotate it if the file was shared); \
             the inventory only names environment variables that hold secrets, e.g. `ssh.passwordEnv`"
                .into(),
        );
    };
    let rotate = "rotate it if this file was shared";
    Some(if offers(env_field) {
        format!(
            "never write the {what} itself: export it in an environment variable and name the \
             variable here, `{env_field}: {example}` ({rotate})"
        )
    } else if offers("address") && !offers("name") {
        format!(
            "the bastion logs in with the ssh settings: export the {what} in an environment \
             variable and name it with `ssh.{env_field}: {example}` ({rotate})"
        )
    } else {
        format!(
            "the {what} does not belong here: export it in an environment variable and name it \
             with `{env_field}: {example}` under `ssh:` ({rotate})"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_prefixes_are_stripped_once_and_for_all() {
        assert_eq!(
            strip_parser_prefixes("error: line 16 column 3: unknown field `password`"),
            "unknown field `password`"
        );
        assert_eq!(
            strip_parser_prefixes("error: error: line 1 column 1: x\n --> snippet"),
            "x"
        );
        assert_eq!(
            strip_parser_prefixes("line numbers: are fine"),
            "line numbers: are fine"
        );
    }

    #[test]
    fn password_hint_points_to_password_env_at_every_level() {
        let ssh = ["user", "port", "passwordEnv", "sudoPasswordEnv"];
        let hint = secret_field_hint("password", &ssh).unwrap();
        assert!(hint.contains("`passwordEnv: SSH_PASSWORD`"), "{hint}");
        let hint = secret_field_hint("sudoPassword", &ssh).unwrap();
        assert!(hint.contains("`sudoPasswordEnv: SUDO_PASSWORD`"), "{hint}");
        let hint = secret_field_hint("passphrase", &["identityPassphraseEnv"]).unwrap();
        assert!(hint.contains("`identityPassphraseEnv"), "{hint}");
        let weave = ["enabled", "version", "passwordEnv", "sha256"];
        let hint = secret_field_hint("password", &weave).unwrap();
        assert!(hint.contains("`passwordEnv: WEAVE_PASSWORD`"), "{hint}");
        let bastion = ["address", "user", "port"];
        let hint = secret_field_hint("password", &bastion).unwrap();
        assert!(hint.contains("`ssh.passwordEnv"), "{hint}");
        let host = ["name", "address", "roles", "ssh"];
        let hint = secret_field_hint("password", &host).unwrap();
        assert!(
            hint.contains("`passwordEnv: SSH_PASSWORD` under `ssh:`"),
            "{hint}"
        );
    }

    #[test]
    fn ordinary_unknown_field_gets_no_secret_hint() {
        assert_eq!(secret_field_hint("vipp", &["vip", "port"]), None);
    }

    #[test]
    fn first_bad_byte_is_located_by_line_and_column() {
        let bytes = b"a: 1\nbc: \xff\n".to_vec();
        let e = std::str::from_utf8(&bytes).unwrap_err();
        let p = not_utf8(&bytes, &e);
        assert_eq!((p.line, p.column), (2, 5));
        assert!(p.message.contains("0xFF"), "{}", p.message);
    }
}
