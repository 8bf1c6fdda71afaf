//! Secrets written into the inventory are never shown back: not in the quoted source line,
//! not in a message that quotes a value, not in JSON output.
//!
//! The file may be broken YAML, so this reads lines rather than a parsed tree. A value is
//! masked when its key names a secret (`password`, `token`, `privateKey`, ...) or when it has
//! a secret's shape (a bootstrap token, a PEM block, private-key base64), and so are the lines
//! that continue it (block scalars, folded plain scalars, the body of a PEM block).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// What a hidden value is replaced with.
pub const MASK: &str = "****";

/// A `key:` as YAML writes it, bare or quoted, in block or flow style.
static KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s{,\[])(?:-\s+)*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_][A-Za-z0-9_.\-/]*))[ \t]*:(?:[ \t]|$)"#)
        .expect("key pattern is valid")
});

/// Values that are secrets whatever their key: bootstrap tokens and private-key base64.
static SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b|\bb3BlbnNzaC1rZXktdjE[A-Za-z0-9+/=]*|\bMII[A-Za-z0-9+/]{20,}={0,2}",
    )
    .expect("shape pattern is valid")
});

/// A PEM block in a message (the value was decoded, so it may span lines), or its start.
static PEM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN[\s\S]*?(?:-----END[A-Za-z0-9 ]*-----|\z)")
        .expect("PEM pattern is valid")
});

static PEM_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-----END[A-Za-z0-9 ]*-----").expect("PEM end pattern is valid"));

/// The inventory as it may be shown: every line with its secrets masked, and the masked
/// values themselves so that messages quoting one can be scrubbed too.
#[derive(Clone, Default)]
pub struct SourceView {
    lines: Vec<ShownLine>,
    secrets: Vec<String>,
}

#[derive(Clone)]
struct ShownLine {
    text: String,
    /// Masked ranges of the original line, in chars, ascending and disjoint.
    masked: Vec<(usize, usize)>,
}

// Written by hand: a derived Debug would print the secrets this type exists to hide.
impl fmt::Debug for SourceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceView")
            .field("lines", &self.lines.len())
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl SourceView {
    pub fn new(source: &str) -> Self {
        let mut scanner = Scanner::default();
        let lines = source.lines().map(|l| scanner.line(l)).collect();
        let mut secrets = scanner.secrets;
        secrets.retain(|s| !s.trim().is_empty());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        SourceView { lines, secrets }
    }

    /// Line `line` (1-based) as it may be shown: secrets masked, control characters replaced.
    pub fn line(&self, line: u32) -> Option<&str> {
        let index = (line as usize).checked_sub(1)?;
        self.lines.get(index).map(|l| l.text.as_str())
    }

    /// Where column `column` (1-based, in chars) of the original line falls in the shown one:
    /// after a mask it moves by the length difference, inside a mask it points at the mask.
    pub fn column(&self, line: u32, column: u32) -> u32 {
        let Some(shown) = (line as usize)
            .checked_sub(1)
            .and_then(|i| self.lines.get(i))
        else {
            return column;
        };
        let original = (column as usize).saturating_sub(1);
        let mut moved = original as isize;
        for &(start, end) in &shown.masked {
            if original >= end {
                moved += MASK.chars().count() as isize - (end - start) as isize;
            } else if original >= start {
                moved -= (original - start) as isize;
                break;
            }
        }
        (moved.max(0) as u32).saturating_add(1)
    }

    /// `text` with every secret of the file and every secret-shaped value replaced by the mask,
    /// and control characters escaped so a message stays on one line.
    pub fn scrub(&self, text: &str) -> String {
        // A decoded PEM block first, while its BEGIN and END lines are still there to match.
        let mut out = PEM.replace_all(text, MASK).into_owned();
        for secret in &self.secrets {
            out = replace_delimited(&out, secret);
        }
        out = SHAPES.replace_all(&out, MASK).into_owned();
        out.chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect()
    }
}

/// Does a key of this name hold a secret (as opposed to the name of a variable holding one)?
pub fn names_a_secret(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    const WORDS: [&str; 9] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "private",
        "credential",
        "keydata",
        "apikey",
    ];
    WORDS.iter().any(|w| k.contains(w))
        || matches!(k.as_str(), "pass" | "pwd")
        || k.ends_with("key")
}

/// `passwordEnv`, `sudoPasswordEnv`, `identityPassphraseEnv`: the value names a variable.
fn names_a_secret_variable(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.strip_suffix("env")
        .or_else(|| k.strip_suffix("_env"))
        .is_some_and(|stem| !stem.is_empty() && names_a_secret(stem))
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

#[derive(Default)]
struct Scanner {
    /// Non-blank lines indented deeper than this many chars continue a secret value.
    continues_deeper_than: Option<usize>,
    in_pem: bool,
    secrets: Vec<String>,
}

impl Scanner {
    fn line(&mut self, line: &str) -> ShownLine {
        let content = line.len() - line.trim_start().len();
        let blank = line.trim().is_empty();
        if let Some(limit) = self.continues_deeper_than {
            if blank {
                return self.shown(line, Vec::new());
            }
            if line[..content].chars().count() > limit {
                return self.mask_rest(line, content);
            }
            self.continues_deeper_than = None;
        }
        if self.in_pem {
            if blank {
                return self.shown(line, Vec::new());
            }
            if line.contains("-----END") {
                self.in_pem = false;
            }
            return self.mask_rest(line, content);
        }
        let mut shapes: Vec<(usize, usize)> = SHAPES
            .find_iter(line)
            .map(|m| (m.start(), m.end()))
            .collect();
        if let Some(begin) = line.find("-----BEGIN") {
            let end = match PEM_END.find_at(line, begin) {
                Some(m) => m.end(),
                None => {
                    self.in_pem = true;
                    line.len()
                }
            };
            shapes.push((begin, end));
        }
        for &(s, e) in &shapes {
            self.secrets.push(line[s..e].trim_end().to_string());
        }
        let mut spans = self.keyed_values(line);
        spans.extend(shapes);
        self.shown(line, spans)
    }

    /// Spans of the values of secret keys on this line; remembers when the next lines continue one.
    fn keyed_values(&mut self, line: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        if !line.contains(':') {
            return spans;
        }
        for caps in KEY.captures_iter(line) {
            let Some(key) = caps.get(1).or(caps.get(2)).or(caps.get(3)) else {
                continue;
            };
            let whole = caps.get(0).map(|m| m.end()).unwrap_or(key.end());
            let start = whole + (line[whole..].len() - line[whole..].trim_start().len());
            let block = line[..key.start()]
                .trim_start()
                .trim_start_matches(|c: char| {
                    c == '-' || c == '"' || c == '\'' || c.is_whitespace()
                })
                .is_empty();
            let end = value_end(line, start, block);
            let value = line[start..end].trim_end();
            if names_a_secret_variable(key.as_str()) {
                if is_env_name(unquote(value).as_str()) || value.is_empty() {
                    continue;
                }
            } else if !names_a_secret(key.as_str()) {
                continue;
            }
            if block {
                // A block scalar, a folded plain scalar or a quoted string may go on below.
                self.continues_deeper_than = Some(line[..key.start()].chars().count());
            }
            if value.is_empty() || value.starts_with(['|', '>']) {
                continue;
            }
            self.remember(value);
            if let Some((before_comment, _)) = value.split_once(" #") {
                self.remember(before_comment.trim_end());
            }
            spans.push((start, end));
        }
        spans
    }

    /// Keeps a masked value for scrubbing messages; of a quoted one, the text inside the
    /// quotes (messages quote values their own way).
    fn remember(&mut self, value: &str) {
        let inner = unquote(value);
        if inner != value {
            self.secrets.push(inner.replace("''", "'"));
        }
        self.secrets.push(inner);
    }

    fn mask_rest(&mut self, line: &str, from: usize) -> ShownLine {
        self.remember(line[from..].trim_end());
        self.shown(line, vec![(from, line.len())])
    }

    /// Builds the shown line from byte spans: merged, masked, measured in chars.
    fn shown(&self, line: &str, mut spans: Vec<(usize, usize)>) -> ShownLine {
        spans.retain(|(s, e)| s < e);
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let mut text = String::with_capacity(line.len());
        let mut masked = Vec::with_capacity(merged.len());
        let mut at = 0;
        for (s, e) in merged {
            text.push_str(&line[at..s]);
            text.push_str(MASK);
            let start = line[..s].chars().count();
            masked.push((start, start + line[s..e].chars().count()));
            at = e;
        }
        text.push_str(&line[at..]);
        // One char for one char, so columns still line up; tabs stay for the caret line.
        let text = text
            .chars()
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
            .collect();
        ShownLine { text, masked }
    }
}

/// Where a value starting at byte `start` ends: a closing quote or bracket, the end of a flow
/// item, or the end of the line (a block value, comment included, is masked whole).
fn value_end(line: &str, start: usize, block: bool) -> usize {
    let rest = &line[start..];
    let close = match rest.chars().next() {
        Some('"') => closing_double_quote(rest),
        Some('\'') => closing_single_quote(rest),
        Some('{' | '[') => closing_bracket(rest),
        Some(_) if !block => rest.find([',', '}', ']']),
        _ => None,
    };
    close.map(|i| start + i).unwrap_or(line.len())
}

/// Byte index just past the closing `"`, honouring backslash escapes.
fn closing_double_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Byte index just past the closing `'` (a doubled `''` is an escaped quote).
fn closing_single_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Byte index just past the bracket closing the one `s` starts with.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner.strip_suffix(q).unwrap_or(inner).to_string();
        }
    }
    v.to_string()
}

/// Replaces `secret` in `text` wherever it stands as a whole token; very short secrets only
/// where quoted, so that a one-letter password does not eat every "a" of a message.
fn replace_delimited(text: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let quote = |c: Option<char>| c.is_some_and(|c| matches!(c, '"' | '\'' | '`'));
    let short = secret.chars().count() < 3;
    let starts_word = word(secret.chars().next());
    let ends_word = word(secret.chars().last());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(secret) {
        let before = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let after = rest[i + secret.len()..].chars().next();
        let glued = (starts_word && word(before)) || (ends_word && word(after));
        let ok = if short {
            quote(before) && quote(after)
        } else {
            !glued
        };
        out.push_str(&rest[..i]);
        if ok {
            out.push_str(MASK);
        } else {
            out.push_str(secret);
        }
        rest = &rest[i + secret.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(source: &str, line: u32) -> String {
        SourceView::new(source).line(line).unwrap().to_string()
    }

    #[test]
    fn password_value_is_masked_in_snippet() {
        assert_eq!(shown("ssh:\n  password: hunter2\n", 2), "  password: ****");
    }

    #[test]
    fn keys_that_name_no_secret_are_shown_as_written() {
        let text = "ssh:\n  user: ops\n  identityFile: ~/.ssh/id_ed25519\n  knownHosts: kh\n";
        let view = SourceView::new(text);
        for (n, line) in text.lines().enumerate() {
            assert_eq!(view.line(n as u32 + 1), Some(line));
        }
    }

    #[test]
    fn caret_column_follows_the_mask() {
        let view = SourceView::new("  ssh: {password: correct-horse-battery, port: x}\n");
        assert_eq!(view.line(1), Some("  ssh: {password: ****, port: x}"));
        // Before the value: unchanged. Inside it: the mask. After it: shifted left.
        assert_eq!(view.column(1, 9), 9);
        assert_eq!(view.column(1, 25), 19);
        let port_value = "  ssh: {password: correct-horse-battery, port: ".len() as u32 + 1;
        assert_eq!(
            view.column(1, port_value),
            "  ssh: {password: ****, port: ".len() as u32 + 1
        );
    }

    #[test]
    fn secret_keys_in_flow_mappings_of_host_entries_are_masked() {
        assert_eq!(
            shown(
                "  - {name: a, sudoPassword: 's3cr''et', roles: [master]}\n",
                1
            ),
            "  - {name: a, sudoPassword: ****, roles: [master]}"
        );
    }

    #[test]
    fn env_variable_names_stay_visible_but_secrets_in_their_place_do_not() {
        assert_eq!(
            shown("  passwordEnv: SSH_PASSWORD\n", 1),
            "  passwordEnv: SSH_PASSWORD"
        );
        assert_eq!(shown("  passwordEnv: hunter2!\n", 1), "  passwordEnv: ****");
    }

    #[test]
    fn bootstrap_token_is_masked_under_any_key() {
        assert_eq!(
            shown("  note: abcdef.0123456789abcdef here\n", 1),
            "  note: **** here"
        );
    }

    #[test]
    fn pem_block_pasted_as_block_scalar_is_masked_line_by_line() {
        let text = "ssh:\n  identityFile: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    AAAAsecretbody\n    -----END OPENSSH PRIVATE KEY-----\n  user: ops\n";
        let view = SourceView::new(text);
        assert_eq!(view.line(2), Some("  identityFile: |"));
        assert_eq!(view.line(3), Some("    ****"));
        assert_eq!(view.line(4), Some("    ****"));
        assert_eq!(view.line(5), Some("    ****"));
        assert_eq!(view.line(6), Some("  user: ops"));
    }

    #[test]
    fn block_scalar_under_a_secret_key_is_masked_until_the_indentation_drops() {
        let text = "ssh:\n  password: >\n    part one\n\n    part two\n  user: ops\n";
        let view = SourceView::new(text);
        assert_eq!(view.line(3), Some("    ****"));
        assert_eq!(view.line(5), Some("    ****"));
        assert_eq!(view.line(6), Some("  user: ops"));
    }

    #[test]
    fn password_in_a_message_is_masked_where_quoted() {
        let view = SourceView::new("ssh:\n  password: hunter2\n");
        assert_eq!(
            view.scrub("invalid type: string \"hunter2\", expected u16"),
            "invalid type: string \"****\", expected u16"
        );
        // Only whole tokens: a word that merely contains the secret is left alone.
        assert_eq!(view.scrub("hunter2x"), "hunter2x");
    }

    #[test]
    fn decoded_pem_in_a_message_is_masked_whole() {
        let view = SourceView::new("");
        assert_eq!(
            view.scrub("identity file -----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY----- does not exist"),
            "identity file **** does not exist"
        );
    }

    #[test]
    fn one_letter_secret_is_masked_only_where_quoted() {
        let view = SourceView::new("  password: a\n");
        assert_eq!(
            view.scrub("expected a string, found \"a\""),
            "expected a string, found \"****\""
        );
    }

    #[test]
    fn debug_output_does_not_contain_the_secret() {
        let view = SourceView::new("  password: hunter2\n");
        assert!(!format!("{view:?}").contains("hunter2"));
    }

    #[test]
    fn secret_looking_key_names_are_recognised() {
        for key in [
            "password",
            "sudoPassword",
            "passphrase",
            "token",
            "bootstrap_token",
            "clientSecret",
            "privateKey",
            "key",
            "client-key-data",
        ] {
            assert!(names_a_secret(key), "{key}");
        }
        for key in [
            "user",
            "identityFile",
            "knownHosts",
            "hostKeyPolicy",
            "name",
        ] {
            assert!(!names_a_secret(key), "{key}");
        }
    }
}
