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

fn options(
    books: &Playbooks,
    forks: usize,
    mode: Mode,
    logs: Option<crate::ui::HostLogs>,
) -> RunOptions {
    RunOptions {
        forks,
        mode,
        reporter: Reporter::new(OutputMode::Text, Redactor::new(), false),
        logs,
        playbooks: books.clone(),
    }
}

async fn run_demo(books: &Playbooks, mode: Mode, context: serde_json::Value) -> HostReport {
    let playbook = books.load("demo").expect("playbook loads");
    let opts = options(books, 4, mode, None);
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
    let why = r.failure.expect("host failed").to_string();
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
    let why = r.failure.expect("fails").to_string();
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

#[tokio::test]
async fn rejected_config_never_replaces_the_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("app.conf");
    std::fs::write(&dest, "good\n").unwrap();
    let yaml = format!(
        "name: demo\ntasks:\n  - name: config\n    template: {{src: app.conf.j2, dest: {d}, owner: {u}, group: {g}, validate: \"grep -q '^good' %s\"}}\n",
        d = dest.display(),
        u = whoami("-un"),
        g = whoami("-gn"),
    );
    let books = playbooks(
        &tmp.path().join("pb"),
        &yaml,
        &[("app.conf.j2", "{{ body }}\n")],
    );
    let bad = run_demo(&books, Mode::Apply, json!({"body": "bad"})).await;
    let why = bad
        .failure
        .expect("validation must fail the task")
        .to_string();
    assert!(why.contains("rejected the new"), "{why}");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "good\n");
    assert!(
        !tmp.path().join("app.conf.installer-new").exists(),
        "candidate removed"
    );
    let good = run_demo(&books, Mode::Apply, json!({"body": "good v2"})).await;
    assert!(good.failure.is_none(), "{:?}", good.failure);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "good v2\n");
}

#[tokio::test]
async fn serial_playbook_stops_at_the_first_failed_host() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: demo\nserial: true\ntasks:\n  - name: only host b fails\n    shell: test {{ me }} != b\n";
    let books = playbooks(tmp.path(), yaml, &[]);
    let playbook = books.load("demo").unwrap();
    let opts = options(&books, 4, Mode::Apply, None);
    let hosts = ["a", "b", "c"]
        .into_iter()
        .map(|n| HostTarget {
            name: n.into(),
            remote: LocalShell,
            context: json!({"me": n}),
        })
        .collect();
    let reports = run(&playbook, hosts, &opts).await;
    let names: Vec<&str> = reports.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(
        names,
        vec!["a", "b"],
        "c must not be touched after b failed"
    );
    assert!(reports[1].failure.is_some());
}

#[tokio::test]
async fn parallel_playbook_runs_hosts_concurrently_within_forks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir_all(dir.join("active")).unwrap();
    // Each host waits (bounded) until two hosts have started: serial execution would fail.
    // While active, each records how many hosts are active at once.
    let yaml = format!(
        "name: demo\ntasks:\n  - name: meet\n    shell: |\n      d={d}\n      touch $d/active/{{{{ me }}}}\n      ls $d/active | wc -l >> $d/concurrency\n      echo {{{{ me }}}} >> $d/started\n      n=0\n      while [ $(wc -l < $d/started) -lt 2 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done\n      rm $d/active/{{{{ me }}}}\n      [ $(wc -l < $d/started) -ge 2 ]\n",
        d = dir.display()
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let playbook = books.load("demo").unwrap();
    let opts = options(&books, 2, Mode::Apply, None);
    let hosts = (0..4)
        .map(|i| HostTarget {
            name: format!("h{i}"),
            remote: LocalShell,
            context: json!({"me": format!("h{i}")}),
        })
        .collect();
    let reports = run(&playbook, hosts, &opts).await;
    assert!(
        reports.iter().all(|r| r.failure.is_none()),
        "hosts did not run concurrently: {reports:?}"
    );
    let seen: Vec<u32> = std::fs::read_to_string(dir.join("concurrency"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|&n| n <= 2),
        "more hosts than --forks at once: {seen:?}"
    );
}

#[tokio::test]
async fn no_log_output_stays_out_of_the_host_log_and_inline_content_is_laid_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ca.key");
    let yaml = format!(
        "name: demo\ntasks:\n  - name: read key\n    check: true\n    no_log: true\n    register: key\n    shell: echo KEYMATERIAL-$((1000+234))\n  - name: write key\n    template: {{content: \"{{{{ vars.key }}}}\", dest: {d}, mode: \"0600\", owner: {u}, group: {g}}}\n",
        d = dest.display(),
        u = whoami("-un"),
        g = whoami("-gn"),
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let playbook = books.load("demo").unwrap();
    let logs = crate::ui::HostLogs::open(&tmp.path().join("logs"), Redactor::new()).unwrap();
    let opts = options(&books, 1, Mode::Apply, Some(logs.clone()));
    let host = HostTarget {
        name: "local".into(),
        remote: LocalShell,
        context: json!({"vars": {"key": "SECRET-KEY-BYTES"}}),
    };
    let report = run(&playbook, vec![host], &opts).await.remove(0);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(
        report.registered["key"], "KEYMATERIAL-1234",
        "no_log still registers"
    );
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "SECRET-KEY-BYTES");
    let log = std::fs::read_to_string(logs.path_for("local")).unwrap();
    assert!(!log.contains("KEYMATERIAL-1234"), "{log}");
    assert!(
        !log.contains("SECRET-KEY-BYTES"),
        "uploaded contents are never logged: {log}"
    );
}

#[tokio::test]
async fn probe_mode_reports_a_failing_check_as_the_hosts_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: demo\ntasks:\n  - name: read\n    check: true\n    register: result\n    shell: |\n      echo 'permission denied' >&2; exit 1\n";
    let books = playbooks(tmp.path(), yaml, &[]);
    let r = run_demo(&books, Mode::Probe, json!({})).await;
    let why = r
        .failure
        .expect("a failed probe is a failure, not an empty answer");
    assert!(why.message.contains("permission denied"), "{why}");
    assert!(!r.registered.contains_key("result"));
    // The same playbook as a dry run reports the failure as part of the plan instead.
    let planned = run_demo(&books, Mode::Plan, json!({})).await;
    assert!(planned.failure.is_none());
}

#[tokio::test]
async fn probe_mode_refuses_tasks_that_change_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("touched");
    let yaml = format!(
        "name: demo\ntasks:\n  - name: writes\n    shell: touch {}\n",
        marker.display()
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let r = run_demo(&books, Mode::Probe, json!({})).await;
    let why = r.failure.expect("refused");
    assert!(why.message.contains("not a read-only"), "{why}");
    assert!(!marker.exists(), "a probe must never change the host");
}

/// A host whose connection drops on the first `fail_first` commands.
#[derive(Clone)]
struct FlakyLink {
    calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    fail_first: u32,
}

impl Remote for FlakyLink {
    async fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        privileged: bool,
        timeout: std::time::Duration,
    ) -> Result<RemoteOutput, RemoteError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < self.fail_first {
            // As the SSH layer words it: naming the command it was given.
            return Err(RemoteError {
                message: format!("cannot run `{command}` on flaky: connection reset by peer"),
                transient: true,
            });
        }
        LocalShell.exec(command, stdin, privileged, timeout).await
    }

    async fn upload(
        &self,
        dest: &str,
        contents: Vec<u8>,
        mode: u32,
        owner: &str,
        group: &str,
        privileged: bool,
    ) -> Result<(), RemoteError> {
        LocalShell
            .upload(dest, contents, mode, owner, group, privileged)
            .await
    }
}

async fn run_flaky(yaml: &str, dir: &Path, fail_first: u32) -> HostReport {
    let books = playbooks(dir, yaml, &[]);
    let playbook = books.load("demo").unwrap();
    let mut opts = options(&books, 1, Mode::Apply, None);
    opts.forks = 1;
    let host = HostTarget {
        name: "flaky".into(),
        remote: FlakyLink {
            calls: Default::default(),
            fail_first,
        },
        context: json!({}),
    };
    run(&playbook, vec![host], &opts).await.remove(0)
}

#[tokio::test]
async fn dropped_connection_is_retried_for_a_guarded_task() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: demo\ntasks:\n  - name: guarded\n    unless: \"false\"\n    delay: 0\n    shell: echo done\n";
    let r = run_flaky(yaml, tmp.path(), 1).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(r.tasks[0].outcome, TaskOutcome::Changed);
}

#[tokio::test]
async fn dropped_connection_stops_an_unguarded_task_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: demo\ntasks:\n  - name: one-shot\n    delay: 0\n    shell: echo done\n";
    let r = run_flaky(yaml, tmp.path(), 1).await;
    let why = r.failure.expect("not retried");
    assert!(
        why.transient,
        "the transport's transient flag survives: {why:?}"
    );
    assert!(
        why.to_string().contains("one-shot") && why.to_string().contains("run the command again"),
        "{why}"
    );
    // The summary shows a failure's first line: it must carry the reason, not the wrapper script.
    let first = why
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.contains("connection reset by peer") && first.contains("the task's script"),
        "{first}"
    );
}

/// LocalShell that counts the commands it runs (round trips, over SSH).
#[derive(Clone, Default)]
struct Counting {
    execs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Remote for Counting {
    async fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        privileged: bool,
        timeout: std::time::Duration,
    ) -> Result<RemoteOutput, RemoteError> {
        self.execs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        LocalShell.exec(command, stdin, privileged, timeout).await
    }

    async fn upload(
        &self,
        dest: &str,
        contents: Vec<u8>,
        mode: u32,
        owner: &str,
        group: &str,
        privileged: bool,
    ) -> Result<(), RemoteError> {
        self.execs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        LocalShell
            .upload(dest, contents, mode, owner, group, privileged)
            .await
    }
}

async fn run_counting(books: &Playbooks) -> (HostReport, usize) {
    let playbook = books.load("demo").expect("playbook loads");
    let remote = Counting::default();
    let host = HostTarget {
        name: "local".into(),
        remote: remote.clone(),
        context: json!({}),
    };
    let report = run(&playbook, vec![host], &options(books, 1, Mode::Apply, None))
        .await
        .remove(0);
    (
        report,
        remote.execs.load(std::sync::atomic::Ordering::SeqCst),
    )
}

#[tokio::test]
async fn a_converged_host_answers_all_guards_in_one_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().display();
    let (owner, group) = (whoami("-un"), whoami("-gn"));
    let yaml = format!(
        "name: demo
tasks:
  - name: config
    copy: {{src: conf, dest: {d}/conf, owner: {owner}, group: {group}}}
  - name: one
    unless: test -f {d}/conf
    shell: echo a > {d}/one
  - name: two
    creates: {d}/conf
    shell: exit 1
  - name: three
    unless: test -s {d}/conf
    shell: exit 1
"
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[("conf", "x=1\n")]);
    let (first, _) = run_counting(&books).await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    assert!(first.changed());
    let (again, execs) = run_counting(&books).await;
    assert!(again.failure.is_none(), "{:?}", again.failure);
    assert!(!again.changed(), "{:?}", outcomes(&again));
    assert_eq!(again.tasks[0].outcome, TaskOutcome::Ok);
    assert!(matches!(again.tasks[1].outcome, TaskOutcome::Skipped(ref w) if w.contains("unless")));
    assert!(matches!(again.tasks[2].outcome, TaskOutcome::Skipped(ref w) if w.contains("exists")));
    // Three guards and a file state, asked one by one, were four round trips.
    assert_eq!(execs, 1, "{:?}", outcomes(&again));
}

#[tokio::test]
async fn a_guard_after_a_change_is_asked_again_not_taken_from_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().display();
    // When the batch runs, `made` is absent: task two's batched answer says "run".
    // Task one then makes it, so task two must see it and be skipped.
    let yaml = format!(
        "name: demo
tasks:
  - name: one
    unless: test -e {d}/never
    shell: touch {d}/made
  - name: two
    unless: test -e {d}/made
    shell: touch {d}/wrong
  - name: three
    creates: {d}/made
    shell: touch {d}/wrong-too
"
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let (r, execs) = run_counting(&books).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(r.tasks[0].outcome, TaskOutcome::Changed);
    assert!(
        matches!(r.tasks[1].outcome, TaskOutcome::Skipped(_)),
        "{:?}",
        outcomes(&r)
    );
    assert!(
        matches!(r.tasks[2].outcome, TaskOutcome::Skipped(_)),
        "{:?}",
        outcomes(&r)
    );
    assert!(!tmp.path().join("wrong").exists());
    assert!(!tmp.path().join("wrong-too").exists());
    // The batch, task one's command, then tasks two's and three's guards live.
    assert_eq!(execs, 4);
}

#[tokio::test]
async fn a_passing_check_is_answered_by_the_batch_and_a_failing_one_is_asked_live() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().display();
    let yaml = format!(
        "name: demo
tasks:
  - name: present
    unless: test -e {d}
    shell: exit 1
  - name: passes
    check: true
    shell: test -d {d}
  - name: fails
    check: true
    shell: echo 'no such thing here' >&2; test -e {d}/absent
"
    );
    let books = playbooks(&tmp.path().join("pb"), &yaml, &[]);
    let (r, execs) = run_counting(&books).await;
    assert_eq!(r.tasks[1].outcome, TaskOutcome::Ok, "{:?}", outcomes(&r));
    // The failing check runs live and reports its own words.
    let failure = r.failure.clone().expect("the failing check fails the host");
    assert!(
        failure.message.contains("no such thing here"),
        "{failure:?}"
    );
    // The batch (a guard and both checks), then the failing check live: two round trips
    // where asking each was four.
    assert_eq!(execs, 2, "{:?}", outcomes(&r));
}
