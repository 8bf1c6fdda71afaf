//! The inventory loader and the template renderer take input from users: whatever they are
//! given, they answer with a value or an error, never a panic. Case counts are kept modest so
//! this file runs in seconds.

use std::path::Path;

use installer::inventory::{self, InventoryError};
use installer::playbook::Renderer;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../inventory/hosts.yaml");

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // A failure prints its minimal input; no regression files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What every refusal must satisfy, besides not panicking.
fn assert_well_formed(e: &InventoryError) {
    assert!(!e.problems.is_empty(), "an error without problems");
    for p in &e.problems {
        assert!(p.line >= 1 && p.column >= 1, "{p:?}");
        assert!(p.hint.is_some(), "no hint: {p:?}");
    }
    let text = e.to_string();
    assert!(!text.contains("error: error:"), "{text}");
    let json = e.json_lines();
    for line in json.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("JSON lines are JSON");
    }
}

fn load(bytes: &[u8]) {
    if let Err(e) = inventory::parse_bytes(Path::new("/corpus/hosts.yaml"), bytes) {
        assert_well_formed(&e);
    }
}

/// One random edit of a file.
#[derive(Debug, Clone)]
enum Edit {
    SetByte(usize, u8),
    InsertByte(usize, u8),
    DeleteByte(usize),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to YAML are more likely than others.
    let byte = prop_oneof![
        3 => proptest::sample::select(b":-[]{}\"'#|>&*!%@,\t \n".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::SetByte(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::InsertByte(i, b)),
        any::<usize>().prop_map(Edit::DeleteByte),
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *e {
            Edit::SetByte(i, b) => {
                let line = &mut lines[i % n];
                if !line.is_empty() {
                    let at = (i / n) % line.len();
                    line[at] = b;
                }
            }
            Edit::InsertByte(i, b) => {
                let line = &mut lines[i % n];
                let at = (i / n) % (line.len() + 1);
                line.insert(at, b);
            }
            Edit::DeleteByte(i) => {
                let line = &mut lines[i % n];
                if !line.is_empty() {
                    let at = (i / n) % line.len();
                    line.remove(at);
                }
            }
            Edit::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) => {
                let copy = lines[i % n].clone();
                lines.insert(i % n, copy);
            }
            Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
        }
    }
    lines.join(&b'\n')
}

/// The example with its key file commented out, so an unedited copy is valid.
fn example() -> String {
    EXAMPLE.replace("identityFile: ~/.ssh/id_ed25519", "# identityFile")
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn loader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load(&bytes);
    }

    #[test]
    fn loader_never_panics_on_arbitrary_text(text in any::<String>()) {
        load(text.as_bytes());
    }

    #[test]
    fn loader_never_panics_on_yaml_shaped_text(text in "[a-zA-Z0-9 :,.\\-\\[\\]{}\"'#|>&*!?\n\t]{0,300}") {
        load(text.as_bytes());
    }

    #[test]
    fn loader_never_panics_on_mutated_example(edits in proptest::collection::vec(edit(), 1..8)) {
        load(&apply(&example(), &edits));
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn secret_written_into_the_ssh_section_is_never_shown(
        secret in "[A-Za-z0-9][A-Za-z0-9!@%^&*()_+=.\\-]{7,23}",
        key in proptest::sample::select(vec!["password", "sudoPassword", "passphrase", "token"]),
    ) {
        let text = example().replace("  user: ops ", &format!("  {key}: {secret}\n  user: ops "));
        prop_assume!(text.contains(secret.as_str()));
        let e = inventory::parse(Path::new("/corpus/hosts.yaml"), &text)
            .expect_err("an unknown secret field is refused");
        assert_well_formed(&e);
        prop_assert!(!e.to_string().contains(secret.as_str()), "{}", e);
        prop_assert!(!e.json_lines().contains(secret.as_str()), "{}", e.json_lines());
        prop_assert!(!format!("{e:?}").contains(secret.as_str()), "Debug shows the secret");
    }
}

/// JSON values of every kind, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-z0-9 {}%]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Template source built from Jinja tokens, names the contexts use, and small literals.
fn template() -> impl Strategy<Value = String> {
    let token = proptest::sample::select(vec![
        "{{ ",
        " }}",
        "{% ",
        " %}",
        "{# ",
        " #}",
        "if ",
        "else",
        "elif ",
        "endif",
        "for ",
        " in ",
        "endfor",
        "set ",
        "= ",
        "a",
        "b",
        "c",
        "x",
        "a.b",
        "a[0]",
        "x.y",
        "loop.index",
        " | ",
        "quote",
        "to_yaml",
        "length",
        "default(1)",
        "join(',')",
        "upper",
        "(",
        ")",
        "[",
        "]",
        ",",
        "'s'",
        "\"t\"",
        "1",
        "2",
        " + ",
        " ~ ",
        " == ",
        " and ",
        " not ",
        "true",
        "none",
        "\n",
        "text ",
        "-",
        "macro m()",
        "endmacro",
        "m()",
        "include 'x'",
    ]);
    proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn renderer_never_panics_on_arbitrary_source(source in any::<String>(), ctx in json()) {
        let _ = Renderer::new().render("t", &source, &ctx);
    }

    #[test]
    fn renderer_never_panics_on_jinja_shaped_source(source in template(), ctx in json()) {
        let _ = Renderer::new().render("t", &source, &ctx);
    }

    #[test]
    fn guard_expressions_never_panic(expr in template(), ctx in json()) {
        let _ = Renderer::new().eval_bool(&expr, &ctx);
    }
}

#[test]
fn macro_that_calls_itself_is_an_error_not_a_crash() {
    let source = "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}";
    let result = Renderer::new().render("t", source, &serde_json::json!({}));
    assert!(result.is_err(), "{result:?}");
}
