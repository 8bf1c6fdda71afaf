//! The engine on this machine's own shell: guards, retries, change reporting, templates.

use std::path::Path;

use serde_json::json;

use super::remote::LocalShell;
use super::*;
use crate::ui::{OutputMode, Redactor, Reporter, TaskOutcome};

fn playbooks(dir: &Path, yaml: &str, files: &[(&str, &str)]) -> Playbooks {
    std::fs::create_dir_all(dir.join("demo")).unwrap();
    std::fs::write(dir.join("demo/main.yaml"), yaml).unwrap();
    for (name, body) in files {
        std::fs::write(dir.join("demo").join(name), body).unwrap();
    }
    Playbooks::Dir(dir.to_path_buf())
}

async fn run_demo(books: &Playbooks, mode: Mode, context: serde_json::Value) -> HostReport {
    let playbook = books.load("demo").expect("playbook loads");
    let opts = RunOptions {
        forks: 4,
        mode,
        reporter: Reporter::new(OutputMode::Text, Redactor::new(), false),
        logs: None,
        playbooks: books.clone(),
    };
    let host = HostTarget {
        name: "local".into(),
        remote: LocalShell,
        context,
    };
    run(&playbook, vec![host], &opts).await.remove(0)
}

fn outcomes(r: &HostReport) -> Vec<&TaskOutcome> {
    r.tasks.iter().map(|t| &t.outcome).collect()
}

#[tokio::test]
async fn guards_skip_tasks_whose_work_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    std::fs::write(&marker, "x").unwrap();
    let yaml = format!(
        "name: demo
tasks:
  - name: skipped by when
    shell: exit 1
    when: facts.swap_kb > 0
  - name: skipped by creates
    shell: exit 1
    creates: {m}
  - name: skipped by unless
    shell: exit 1
    unless: test -f {m}
  - name: runs
    shell: echo ran
",
        m = marker.display()
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let r = run_demo(&books, Mode::Apply, json!({"facts": {"swap_kb": 0}})).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert!(matches!(r.tasks[0].outcome, TaskOutcome::Skipped(ref w) if w.contains("when")));
    assert!(matches!(r.tasks[1].outcome, TaskOutcome::Skipped(ref w) if w.contains("exists")));
    assert!(matches!(r.tasks[2].outcome, TaskOutcome::Skipped(ref w) if w.contains("unless")));
    assert_eq!(r.tasks[3].outcome, TaskOutcome::Changed);
    assert_eq!(r.tasks[3].stdout.trim(), "ran");
}

#[tokio::test]
async fn failing_task_stops_the_host_and_names_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: demo\ntasks:\n  - name: breaks\n    shell: |\n      echo 'E: Unable to locate package kubeadm' >&2; exit 100\n  - name: never\n    shell: \"true\"\n";
    let books = playbooks(tmp.path(), yaml, &[]);
    let r = run_demo(&books, Mode::Apply, json!({})).await;
    let why = r.failure.expect("host failed");
    assert!(
        why.contains("breaks")
            && why.contains("exit 100")
            && why.contains("Unable to locate package"),
        "{why}"
    );
    assert_eq!(r.tasks.len(), 1, "later tasks must not run");
}

#[tokio::test]
async fn retries_until_success() {
    let tmp = tempfile::tempdir().unwrap();
    let count = tmp.path().join("count");
    let yaml = format!(
        "name: demo\ntasks:\n  - name: flaky\n    retries: 3\n    delay: 0\n    shell: |\n      echo x >> {c}\n      [ $(wc -l < {c}) -ge 3 ]\n",
        c = count.display()
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let r = run_demo(&books, Mode::Apply, json!({})).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);
}

#[tokio::test]
async fn changed_when_and_check_tasks_report_no_change() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: demo\ntasks:\n  - name: probe\n    check: true\n    shell: echo 5\n    register: five\n  - name: idempotent\n    shell: echo unchanged\n    changed_when: \"(stdout | trim) == 'changed'\"\n  - name: uses register\n    shell: test {{ registered.five }} = 5\n    changed_when: 'false'\n";
    let books = playbooks(tmp.path(), yaml, &[]);
    let r = run_demo(&books, Mode::Apply, json!({})).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(
        outcomes(&r),
        vec![&TaskOutcome::Ok, &TaskOutcome::Ok, &TaskOutcome::Ok]
    );
    assert!(!r.changed());
}

#[tokio::test]
async fn template_is_laid_down_once_then_reported_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("haproxy.cfg");
    let yaml = format!(
        "name: demo\ntasks:\n  - name: config\n    template: {{src: haproxy.cfg.j2, dest: {d}, mode: \"0600\", owner: {u}, group: {g}}}\n",
        d = dest.display(),
        u = whoami("-un"),
        g = whoami("-gn"),
    );
    let books = playbooks(
        &tmp.path().join("pb"),
        &yaml,
        &[("haproxy.cfg.j2", "bind {{ vip }}:{{ port }}\n")],
    );
    let ctx = json!({"vip": "10.0.0.100", "port": 8443});
    let first = run_demo(&books, Mode::Apply, ctx.clone()).await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    assert_eq!(outcomes(&first), vec![&TaskOutcome::Changed]);
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        "bind 10.0.0.100:8443\n"
    );
    let second = run_demo(&books, Mode::Apply, ctx.clone()).await;
    assert_eq!(
        outcomes(&second),
        vec![&TaskOutcome::Ok],
        "same content must not be rewritten"
    );
    let changed = run_demo(
        &books,
        Mode::Plan,
        json!({"vip": "10.0.0.101", "port": 8443}),
    )
    .await;
    assert_eq!(
        outcomes(&changed),
        vec![&TaskOutcome::Changed],
        "plan sees the difference"
    );
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        "bind 10.0.0.100:8443\n",
        "plan changed nothing"
    );
}

#[tokio::test]
async fn plan_mode_runs_checks_but_not_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let touched = tmp.path().join("touched");
    let yaml = format!(
        "name: demo\ntasks:\n  - name: probe\n    check: true\n    shell: echo probed\n  - name: change\n    shell: touch {t}\n",
        t = touched.display()
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let r = run_demo(&books, Mode::Plan, json!({})).await;
    assert_eq!(r.tasks[0].stdout.trim(), "probed");
    assert_eq!(
        r.tasks[1].outcome,
        TaskOutcome::Changed,
        "reported as would-change"
    );
    assert!(!touched.exists(), "plan must not run mutating tasks");
}

#[tokio::test]
async fn undefined_template_variable_fails_the_task_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: demo\ntasks:\n  - name: typo\n    shell: echo {{ clusterr.name }}\n";
    let books = playbooks(tmp.path(), yaml, &[]);
    let r = run_demo(&books, Mode::Apply, json!({"cluster": {"name": "x"}})).await;
    let why = r.failure.expect("fails");
    assert!(why.contains("undefined"), "{why}");
}

#[test]
fn embedded_playbooks_all_load() {
    let books = Playbooks::Embedded;
    let names = books.names();
    assert!(!names.is_empty());
    for name in names {
        books.load(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn whoami(flag: &str) -> String {
    let out = std::process::Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
