//! Every broken inventory in tests/inventory-corpus/ is refused by the real binary: exit code
//! 2, the problem at its `file:line:col` with a hint, one "error:" per problem, secrets never
//! shown (text or JSON), and no connection attempted — the hosts point at listeners of ours.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inventory-corpus");

/// Every address a corpus inventory uses for a host or a bastion.
const LOOPBACKS: [&str; 5] = [
    "127.0.0.1",
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.4",
    "127.0.0.5",
];

/// What a corpus file's header comments promise.
#[derive(Debug, Default)]
struct Expected {
    /// (line, column, fragment of the message), one per problem.
    problems: Vec<(u32, u32, String)>,
    must_not_leak: Vec<String>,
}

impl Expected {
    fn from_header(text: &str) -> Self {
        let mut expected = Expected::default();
        for line in text.lines().take_while(|l| l.starts_with('#')) {
            if let Some(rest) = line.strip_prefix("# expect: ") {
                let (position, fragment) = rest.split_once(' ').expect("expect: LINE:COL fragment");
                let (l, c) = position.split_once(':').expect("LINE:COL");
                expected.problems.push((
                    l.parse().expect("line number"),
                    c.parse().expect("column number"),
                    fragment.to_string(),
                ));
            } else if let Some(secret) = line.strip_prefix("# must-not-leak: ") {
                expected.must_not_leak.push(secret.to_string());
            }
        }
        expected
    }
}

/// Listeners on one port of every loopback address the corpus uses; any connection shows.
struct Listeners {
    port: u16,
    sockets: Vec<TcpListener>,
}

impl Listeners {
    fn open() -> Self {
        for _ in 0..50 {
            let first = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            let port = first.local_addr().expect("local address").port();
            let others: Result<Vec<_>, _> = LOOPBACKS[1..]
                .iter()
                .map(|a| TcpListener::bind((*a, port)))
                .collect();
            if let Ok(mut sockets) = others {
                sockets.insert(0, first);
                return Listeners { port, sockets };
            }
        }
        panic!("no port free on all of {LOOPBACKS:?}");
    }

    fn assert_untouched(&self) {
        for socket in &self.sockets {
            socket.set_nonblocking(true).expect("non-blocking");
            match socket.accept() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept failed: {e}"),
                Ok((_, peer)) => panic!(
                    "{peer} connected to {:?}: an invalid inventory reached the network",
                    socket.local_addr()
                ),
            }
        }
    }
}

fn installer(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_installer"))
        .args(args)
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("INSTALLER_INVENTORY")
        .output()
        .expect("run installer")
}

/// Writes `bytes` (with `__PORT__` filled in) as `dir/name`, runs `check` on it in text and in
/// JSON mode and returns every way the output falls short of `expected`.
fn refusals(dir: &Path, name: &str, bytes: &[u8], port: u16, expected: &Expected) -> Vec<String> {
    let path = dir.join(name);
    std::fs::write(
        &path,
        replace(bytes, b"__PORT__", port.to_string().as_bytes()),
    )
    .expect("write inventory");
    let file = path.to_str().expect("UTF-8 temp path");
    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(format!("{name}: {what}"));
    if expected.problems.is_empty() {
        fail("the header has no `# expect: LINE:COL fragment` line".into());
    }

    let text = installer(&["check", "-i", file], dir);
    let (stdout, stderr) = (lossy(&text.stdout), lossy(&text.stderr));
    if text.status.code() != Some(2) {
        fail(format!(
            "exit code {:?}, want 2\n{stderr}",
            text.status.code()
        ));
    }
    if !stdout.is_empty() {
        fail(format!("text mode wrote to stdout: {stdout}"));
    }
    for (line, column, fragment) in &expected.problems {
        let head = format!("{file}:{line}:{column}: error: ");
        if !stderr
            .lines()
            .any(|l| l.starts_with(&head) && l.contains(fragment.as_str()))
        {
            fail(format!("no `{head}…{fragment}…` in:\n{stderr}"));
        }
    }
    let errors = stderr.matches("error:").count();
    if errors != expected.problems.len() {
        fail(format!(
            "{errors} \"error:\" for {} problem(s):\n{stderr}",
            expected.problems.len()
        ));
    }
    let hints = stderr.lines().filter(|l| l.starts_with("  hint: ")).count();
    if hints != expected.problems.len() {
        fail(format!(
            "{hints} hint line(s) for {} problem(s):\n{stderr}",
            expected.problems.len()
        ));
    }

    let json = installer(&["--output", "json", "check", "-i", file], dir);
    let (json_out, json_err) = (lossy(&json.stdout), lossy(&json.stderr));
    if json.status.code() != Some(2) {
        fail(format!(
            "JSON mode: exit code {:?}, want 2",
            json.status.code()
        ));
    }
    if !json_err.is_empty() {
        fail(format!("JSON mode wrote to stderr: {json_err}"));
    }
    let events: Vec<serde_json::Value> = json_out
        .lines()
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(v) => Some(v),
            Err(e) => {
                fail(format!(
                    "JSON mode printed a line that is not JSON ({e}): {l}"
                ));
                None
            }
        })
        .collect();
    let json_errors = events.iter().filter(|e| e["level"] == "error").count();
    if json_errors != expected.problems.len() {
        fail(format!(
            "{json_errors} JSON error object(s) for {} problem(s): {json_out}",
            expected.problems.len()
        ));
    }
    for (line, column, fragment) in &expected.problems {
        let found = events.iter().any(|e| {
            e["event"] == "inventory_problem"
                && e["file"] == file
                && e["line"] == *line
                && e["col"] == *column
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(fragment.as_str()))
                && e["hint"].as_str().is_some_and(|h| !h.is_empty())
        });
        if !found {
            fail(format!(
                "no JSON object at {line}:{column} with {fragment:?} and a hint: {json_out}"
            ));
        }
    }

    for secret in &expected.must_not_leak {
        for (mode, output) in [("text", &text), ("JSON", &json)] {
            if lossy(&output.stdout).contains(secret.as_str())
                || lossy(&output.stderr).contains(secret.as_str())
            {
                fail(format!("{mode} output shows the secret {secret:?}"));
            }
        }
    }
    failures
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .expect("tests/inventory-corpus exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_inventory_is_refused_at_its_position_without_contacting_a_host() {
    let files = corpus_files();
    assert!(
        files.len() >= 40,
        "the corpus has only {} files",
        files.len()
    );
    let listeners = Listeners::open();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("read corpus file");
        let expected = Expected::from_header(&String::from_utf8_lossy(&bytes));
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        failures.extend(refusals(
            dir.path(),
            name,
            &bytes,
            listeners.port,
            &expected,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    listeners.assert_untouched();
    assert!(
        !dir.path().join(".installer").exists(),
        "nothing is written for an invalid inventory"
    );
}

#[test]
fn empty_file_is_refused_at_its_start() {
    let listeners = Listeners::open();
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = Expected {
        problems: vec![(1, 1, "the inventory is empty".into())],
        must_not_leak: Vec::new(),
    };
    let failures = refusals(dir.path(), "empty.yaml", b"", listeners.port, &expected);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    listeners.assert_untouched();
}

#[test]
fn huge_inventory_is_refused_at_its_last_host_in_seconds() {
    const HOSTS: u32 = 20_000;
    let mut text = String::from(
        "apiVersion: installer/v1\nkind: Inventory\ncluster:\n  name: huge\n  kubernetes: 1.36.2\n  \
         controlPlane:\n    vip: 127.255.255.254\nssh:\n  port: __PORT__\nhosts:\n",
    );
    for i in 1..=HOSTS {
        let role = if i <= 3 { "master" } else { "worker" };
        text.push_str(&format!(
            "  - name: node-{i}\n    address: 127.0.{}.{}\n    roles: [{role}]\n",
            i / 256,
            i % 256
        ));
    }
    // The last host repeats the first one's address.
    text.push_str("  - name: last\n    address: 127.0.0.1\n    roles: [worker]\n");
    let last_address_line = text.lines().count() as u32 - 1;
    let listeners = Listeners::open();
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = Expected {
        problems: vec![(
            last_address_line,
            14,
            "address 127.0.0.1 is used twice".into(),
        )],
        must_not_leak: Vec::new(),
    };
    let started = Instant::now();
    let failures = refusals(
        dir.path(),
        "huge.yaml",
        text.as_bytes(),
        listeners.port,
        &expected,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Two runs (text and JSON) of a ~1 MB file; quadratic work would take minutes.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    listeners.assert_untouched();
}
