//! Runs a playbook's tasks on hosts: guards first, then the action, with retries and timeouts.
//! Hosts run in parallel (bounded by --forks) unless the playbook is serial.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::model::{Action, FileSpec, Playbook, Task};
use super::prefetch::{self, Answer, Guard, Prefetched};
use super::remote::{Remote, RemoteError};
use super::render::Renderer;
use super::source::Playbooks;
use crate::ui::{Event, HostLogs, Reporter, TaskOutcome};

const RUN_SCRIPT: &str = include_str!("run_script.sh");
const FILE_STATE: &str = include_str!("file_state.sh");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Change the hosts.
    Apply,
    /// Dry run: evaluate guards and read-only checks, change nothing; a failing check is
    /// reported as part of the plan, not as a host failure.
    Plan,
    /// Read what is on the hosts: only `check:` tasks may run, and any failure is the host's
    /// failure (a probe that cannot read must never look like "nothing there").
    Probe,
}

impl Mode {
    /// Progress lines are for changes; dry runs and probes print their own summaries.
    fn reports_progress(self) -> bool {
        self == Mode::Apply
    }
    /// Whether a failed task stops the host and is reported as its failure.
    fn fails_hosts(self) -> bool {
        matches!(self, Mode::Apply | Mode::Probe)
    }
}

/// Why a task failed. `transient`: the connection to the host failed, not the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub message: String,
    pub transient: bool,
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        TaskError {
            message,
            transient: false,
        }
    }
}

impl From<RemoteError> for TaskError {
    fn from(e: RemoteError) -> Self {
        TaskError {
            message: e.message,
            transient: e.transient,
        }
    }
}

/// Why a host stopped: the task, what happened, and whether the connection was to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task '{task}' failed: {message}")]
pub struct HostFailure {
    pub task: String,
    pub message: String,
    pub transient: bool,
}

/// A dropped connection is retried this many times for tasks that are safe to repeat.
const TRANSIENT_RETRIES: u32 = 2;

#[derive(Clone)]
pub struct RunOptions {
    pub forks: usize,
    pub mode: Mode,
    pub reporter: Reporter,
    pub logs: Option<HostLogs>,
    pub playbooks: Playbooks,
}

/// One host to run on, with the template context (inventory, host, facts, vars).
pub struct HostTarget<R> {
    pub name: String,
    pub remote: R,
    pub context: Value,
}

#[derive(Debug, Clone)]
pub struct TaskReport {
    pub task: String,
    pub outcome: TaskOutcome,
    pub stdout: String,
}

#[derive(Debug, Clone)]
pub struct HostReport {
    pub host: String,
    pub tasks: Vec<TaskReport>,
    /// Why the host stopped, naming the task and the command's output.
    pub failure: Option<HostFailure>,
    /// `register:`ed outputs, by name.
    pub registered: serde_json::Map<String, Value>,
    /// Whether each `register:`ed task changed the host (for "restart if the config changed").
    pub changed: serde_json::Map<String, Value>,
}

impl HostReport {
    pub fn changed(&self) -> bool {
        self.tasks.iter().any(|t| t.outcome == TaskOutcome::Changed)
    }
}

pub async fn run<R: Remote>(
    playbook: &Playbook,
    hosts: Vec<HostTarget<R>>,
    opts: &RunOptions,
) -> Vec<HostReport> {
    let renderer = Renderer::with_playbooks(opts.playbooks.clone());
    if playbook.serial {
        let mut reports = Vec::new();
        for host in hosts {
            let report = run_host(playbook, host, opts, &renderer).await;
            let failed = report.failure.is_some();
            reports.push(report);
            // Serial playbooks guard quorum: never continue past a failed host.
            if failed {
                break;
            }
        }
        return reports;
    }
    let limit = Arc::new(Semaphore::new(opts.forks.max(1)));
    let runs = hosts.into_iter().map(|host| {
        let limit = limit.clone();
        let renderer = renderer.clone();
        async move {
            let _permit = limit.acquire_owned().await.ok();
            run_host(playbook, host, opts, &renderer).await
        }
    });
    futures::future::join_all(runs).await
}

async fn run_host<R: Remote>(
    playbook: &Playbook,
    host: HostTarget<R>,
    opts: &RunOptions,
    renderer: &Renderer,
) -> HostReport {
    let mut report = HostReport {
        host: host.name.clone(),
        tasks: Vec::new(),
        failure: None,
        registered: serde_json::Map::new(),
        changed: serde_json::Map::new(),
    };
    let prefetched = prefetch_guards(playbook, &host, opts, renderer).await;
    // Batched answers hold until something may have changed the host.
    let mut pristine = true;
    for (index, task) in playbook.tasks.iter().enumerate() {
        let mut ctx = host.context.clone();
        if let Value::Object(map) = &mut ctx {
            map.insert(
                "registered".into(),
                Value::Object(report.registered.clone()),
            );
            map.insert("changed".into(), Value::Object(report.changed.clone()));
        }
        let runner = TaskRun {
            playbook,
            task,
            host: &host,
            opts,
            renderer,
            ctx: &ctx,
            index,
            prefetched: pristine.then_some(&prefetched),
            acted: AtomicBool::new(false),
        };
        opts.reporter.emit(Event::TaskStarted {
            host: host.name.clone(),
            task: task.name.clone(),
        });
        let started = Instant::now();
        // In a dry run, a check that follows a would-be change would test a host state that
        // does not exist yet: report it as part of the work instead of running it.
        let after_change = opts.mode == Mode::Plan && report.changed();
        let mut transient = false;
        let (outcome, stdout) = match (after_change, task.check) {
            (true, true) => (TaskOutcome::Changed, String::new()),
            _ if opts.mode == Mode::Probe && !task.check => (
                TaskOutcome::Failed(format!(
                    "it is not a read-only (check) task, and {}/main.yaml is run as a probe",
                    playbook.dir
                )),
                String::new(),
            ),
            _ => match runner.run_with_reconnects().await {
                Ok(done) => done,
                Err(e) => {
                    transient = e.transient;
                    (TaskOutcome::Failed(e.message), String::new())
                }
            },
        };
        if runner.acted.load(Ordering::SeqCst) || matches!(outcome, TaskOutcome::Failed(_)) {
            pristine = false;
        }
        // A dry run prints its own summary; per-task progress would read as real changes.
        if opts.mode.reports_progress() || matches!(outcome, TaskOutcome::Failed(_)) {
            opts.reporter.emit(Event::TaskFinished {
                host: host.name.clone(),
                task: task.name.clone(),
                outcome: outcome.clone(),
                elapsed_ms: started.elapsed().as_millis(),
            });
        }
        if let Some(name) = &task.register {
            if let TaskOutcome::Ok | TaskOutcome::Changed = &outcome {
                report
                    .registered
                    .insert(name.clone(), Value::String(stdout.trim().to_string()));
            }
            report
                .changed
                .insert(name.clone(), Value::Bool(outcome == TaskOutcome::Changed));
        }
        let failed = match &outcome {
            TaskOutcome::Failed(why) if opts.mode.fails_hosts() => Some(HostFailure {
                task: task.name.clone(),
                message: if transient {
                    format!(
                        "{why} (the connection failed; the task may or may not have finished: run the command again, every task checks what is already done)"
                    )
                } else {
                    why.clone()
                },
                transient,
            }),
            _ => None,
        };
        report.tasks.push(TaskReport {
            task: task.name.clone(),
            outcome,
            stdout,
        });
        if let Some(why) = failed {
            report.failure = Some(why);
            break;
        }
    }
    report
}

struct TaskRun<'a, R> {
    playbook: &'a Playbook,
    task: &'a Task,
    host: &'a HostTarget<R>,
    opts: &'a RunOptions,
    renderer: &'a Renderer,
    ctx: &'a Value,
    /// This task's position in the playbook (batched guard answers are keyed by it).
    index: usize,
    /// Guard answers batched before the first task ran; `None` once an action has run.
    prefetched: Option<&'a Prefetched>,
    /// Whether this task ran something that may change the host (a command that is not a
    /// check, an upload).
    acted: AtomicBool,
}

/// Asks the guards of `playbook` on `host` in one round trip, before any task runs.
async fn prefetch_guards<R: Remote>(
    playbook: &Playbook,
    host: &HostTarget<R>,
    opts: &RunOptions,
    renderer: &Renderer,
) -> Prefetched {
    let mut ctx = host.context.clone();
    if let Value::Object(map) = &mut ctx {
        map.insert("registered".into(), json!({}));
        map.insert("changed".into(), json!({}));
    }
    let log = |text: &str| {
        if let Some(logs) = &opts.logs {
            logs.write(&host.name, text);
        }
    };
    prefetch::prefetch(
        playbook,
        renderer,
        &ctx,
        &host.remote,
        RUN_SCRIPT,
        FILE_STATE,
        log,
    )
    .await
}

impl<R: Remote> TaskRun<'_, R> {
    /// The batched answer to `guard`, if it was batched and still holds.
    fn prefetched(&self, guard: Guard) -> Option<&Answer> {
        let answer = self.prefetched?.get(self.index, &guard);
        if answer.is_some() {
            self.log(&format!("$ [{guard:?}] answered by the batch: {answer:?}"));
        }
        answer
    }

    /// Safe to run twice: it reads only, its guard notices work already done, or it lays down
    /// a file atomically.
    fn idempotent(&self) -> bool {
        self.task.check
            || self.task.unless.is_some()
            || self.task.creates.is_some()
            || matches!(self.task.action, Action::Template(_) | Action::Copy(_))
    }

    /// Runs the task; a dropped connection is retried when the task is safe to repeat.
    async fn run_with_reconnects(&self) -> Result<(TaskOutcome, String), TaskError> {
        let mut tries = 0;
        loop {
            match self.run().await {
                Err(e) if e.transient && self.idempotent() && tries < TRANSIENT_RETRIES => {
                    tries += 1;
                    tracing::info!(host = %self.host.name, task = %self.task.name, "connection failed ({}); trying again ({tries} of {TRANSIENT_RETRIES})", e.message);
                    self.log(&format!(
                        "connection failed: {}; trying the task again",
                        e.message
                    ));
                    tokio::time::sleep(Duration::from_secs(self.task.delay)).await;
                }
                other => return other,
            }
        }
    }

    async fn run(&self) -> Result<(TaskOutcome, String), TaskError> {
        if let Some(skip) = self.guard().await? {
            return Ok((TaskOutcome::Skipped(skip), String::new()));
        }
        match &self.task.action {
            Action::Shell(source) => self.shell(source).await,
            Action::Template(spec) => {
                let (name, source) = self.file_source(spec)?;
                let body = self.renderer.render(&name, &source, self.ctx)?;
                self.file(spec, body.into_bytes()).await
            }
            Action::Copy(spec) => {
                let (_, body) = self.file_source(spec)?;
                self.file(spec, body.into_bytes()).await
            }
        }
    }

    /// The text of a file task: its `src` beside the playbook, or its inline `content`.
    fn file_source(&self, spec: &FileSpec) -> Result<(String, String), String> {
        match (&spec.src, &spec.content) {
            (Some(src), None) => {
                let path = format!("{}/{}", self.playbook.dir, src);
                let text = self.opts.playbooks.read(&path).map_err(|e| e.to_string())?;
                Ok((src.clone(), text))
            }
            (None, Some(content)) => Ok((format!("{} (inline)", self.task.name), content.clone())),
            _ => Err(format!(
                "task '{}' in {}/main.yaml needs exactly one of `src` and `content`",
                self.task.name, self.playbook.dir
            )),
        }
    }

    /// `Some(reason)` when a guard says the task has nothing to do here.
    async fn guard(&self) -> Result<Option<String>, TaskError> {
        if let Some(expr) = &self.task.when
            && !self.renderer.eval_bool(expr, self.ctx)?
        {
            return Ok(Some(format!("when: {expr}")));
        }
        if let Some(path) = &self.task.creates {
            let path = self.renderer.render("creates", path, self.ctx)?;
            let exists = match self.prefetched(Guard::Creates(path.clone())) {
                Some(Answer::Status(status)) => *status == 0,
                _ => {
                    let quoted = shlex::try_quote(&path).map_err(|e| e.to_string())?;
                    self.exec(&format!("test -e {quoted}"), None, "creates")
                        .await?
                        .success()
                }
            };
            if exists {
                return Ok(Some(format!("{path} exists")));
            }
        }
        if let Some(cmd) = &self.task.unless {
            let cmd = self.renderer.render("unless", cmd, self.ctx)?;
            let holds = match self.prefetched(Guard::Unless(cmd.clone())) {
                Some(Answer::Status(status)) => *status == 0,
                _ => self
                    .exec(RUN_SCRIPT, Some(cmd.clone().into_bytes()), "unless")
                    .await?
                    .success(),
            };
            if holds {
                return Ok(Some(format!("unless: {}", first_line(&cmd))));
            }
        }
        Ok(None)
    }

    async fn shell(&self, source: &str) -> Result<(TaskOutcome, String), TaskError> {
        let script = self.renderer.render(&self.task.name, source, self.ctx)?;
        if self.opts.mode == Mode::Plan && !self.task.check {
            return Ok((TaskOutcome::Changed, String::new()));
        }
        if !self.task.check {
            self.acted.store(true, Ordering::SeqCst);
        }
        if self.task.check
            && self.task.register.is_none()
            && matches!(
                self.prefetched(Guard::Check(script.clone())),
                Some(Answer::Status(0))
            )
        {
            return Ok((TaskOutcome::Ok, String::new()));
        }
        let mut attempt = 0;
        let out = loop {
            let out = self
                .exec(
                    RUN_SCRIPT,
                    Some(script.clone().into_bytes()),
                    &self.task.name,
                )
                .await?;
            if out.success() || attempt >= self.task.retries {
                break out;
            }
            attempt += 1;
            tracing::info!(host = %self.host.name, task = %self.task.name, "failed (exit {:?}); retry {attempt} of {} in {}s", out.status, self.task.retries, self.task.delay);
            tokio::time::sleep(Duration::from_secs(self.task.delay)).await;
        };
        if !out.success() {
            let shown = if self.task.no_log {
                super::RemoteOutput {
                    stdout: String::new(),
                    ..out.clone()
                }
            } else {
                out.clone()
            };
            return Err(failure_message(&shown, attempt + 1).into());
        }
        let changed = if self.task.check {
            false
        } else if let Some(expr) = &self.task.changed_when {
            let ctx = json!({"stdout": out.stdout, "stderr": out.stderr, "rc": out.status});
            self.renderer.eval_bool(expr, &ctx)?
        } else {
            true
        };
        Ok((
            if changed {
                TaskOutcome::Changed
            } else {
                TaskOutcome::Ok
            },
            out.stdout,
        ))
    }

    /// Lays down a file only when content, mode or ownership differ.
    async fn file(
        &self,
        spec: &FileSpec,
        body: Vec<u8>,
    ) -> Result<(TaskOutcome, String), TaskError> {
        let dest = self.renderer.render("dest", &spec.dest, self.ctx)?;
        let mode = u32::from_str_radix(spec.mode.trim_start_matches("0o"), 8)
            .map_err(|_| format!("mode {:?} is not octal (write it like \"0644\")", spec.mode))?;
        let want = format!(
            "{:o} {} {} {}",
            mode,
            spec.owner,
            spec.group,
            hex::encode(Sha256::digest(&body))
        );
        let current = match self.prefetched(Guard::FileState(dest.clone())) {
            Some(Answer::State(state)) => Some(state.trim().to_string()),
            _ => {
                let probe = format!("{FILE_STATE}\n");
                let state = self
                    .exec(
                        &format!(
                            "sh -s -- {}",
                            shlex::try_quote(&dest).map_err(|e| e.to_string())?
                        ),
                        Some(probe.into_bytes()),
                        "file state",
                    )
                    .await?;
                state.success().then(|| state.stdout.trim().to_string())
            }
        };
        if current.as_deref() == Some(want.as_str()) {
            return Ok((TaskOutcome::Ok, String::new()));
        }
        if self.opts.mode == Mode::Plan {
            return Ok((TaskOutcome::Changed, String::new()));
        }
        self.acted.store(true, Ordering::SeqCst);
        self.log(&format!(
            "$ upload {dest} (mode {:o}, {}:{}, {} bytes)",
            mode,
            spec.owner,
            spec.group,
            body.len()
        ));
        if let Some(parent) = std::path::Path::new(&dest)
            .parent()
            .and_then(|p| p.to_str())
            .filter(|p| !p.is_empty())
        {
            let quoted = shlex::try_quote(parent).map_err(|e| e.to_string())?;
            let made = self
                .exec(&format!("mkdir -p {quoted}"), None, "parent directory")
                .await?;
            if !made.success() {
                return Err(format!("cannot create {parent}: {}", made.stderr.trim()).into());
            }
        }
        let privileged = self.task.privileged;
        let remote = &self.host.remote;
        let Some(validate) = &spec.validate else {
            remote
                .upload(&dest, body, mode, &spec.owner, &spec.group, privileged)
                .await?;
            return Ok((TaskOutcome::Changed, String::new()));
        };
        // Lay the candidate beside the destination, let the program that will read it judge
        // it, and only then move it into place: a bad config never replaces a good one.
        let candidate = format!("{dest}.installer-new");
        remote
            .upload(&candidate, body, mode, &spec.owner, &spec.group, privileged)
            .await?;
        let q = |s: &str| {
            shlex::try_quote(s)
                .map(|q| q.into_owned())
                .map_err(|e| e.to_string())
        };
        let check = validate.replace("%s", &q(&candidate)?);
        let checked = self
            .exec(RUN_SCRIPT, Some(check.clone().into_bytes()), "validate")
            .await?;
        if !checked.success() {
            let _ = self
                .exec(
                    &format!("rm -f {}", q(&candidate)?),
                    None,
                    "discard candidate",
                )
                .await;
            return Err(format!(
                "`{check}` rejected the new {dest}: {}",
                failure_message(&checked, 1)
            )
            .into());
        }
        let moved = self
            .exec(
                &format!("mv -f {} {}", q(&candidate)?, q(&dest)?),
                None,
                "install",
            )
            .await?;
        if !moved.success() {
            return Err(format!(
                "cannot move the new {dest} into place: {}",
                moved.stderr.trim()
            )
            .into());
        }
        Ok((TaskOutcome::Changed, String::new()))
    }

    async fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        what: &str,
    ) -> Result<super::RemoteOutput, RemoteError> {
        let shown = match (&stdin, command == RUN_SCRIPT) {
            (Some(script), true) => String::from_utf8_lossy(script).into_owned(),
            _ => command.to_string(),
        };
        self.log(&format!("$ [{what}] {shown}"));
        tracing::debug!(host = %self.host.name, task = %self.task.name, "$ [{what}] {}", first_line(&shown));
        let out = self
            .host
            .remote
            .exec(
                command,
                stdin,
                self.task.privileged,
                Duration::from_secs(self.task.timeout),
            )
            .await
            .map_err(|mut e| {
                // The transport names the command it ran; for a task that is the wrapper script,
                // many lines long, which would push the reason out of the one-line summary.
                if command == RUN_SCRIPT {
                    e.message = e
                        .message
                        .replace(&format!("`{RUN_SCRIPT}`"), "the task's script");
                }
                e
            })?;
        let status = out
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "signal".into());
        if self.task.no_log {
            self.log(&format!("  exit {status} (output hidden: no_log)"));
        } else {
            self.log(&format!(
                "  exit {status}\n{}{}",
                indent(&out.stdout, "  out| "),
                indent(&out.stderr, "  err| ")
            ));
        }
        Ok(out)
    }

    fn log(&self, text: &str) {
        if let Some(logs) = &self.opts.logs {
            logs.write(&self.host.name, text);
        }
    }
}

fn failure_message(out: &super::RemoteOutput, attempts: u32) -> String {
    let status = out
        .status
        .map(|s| format!("exit {s}"))
        .unwrap_or_else(|| "killed by a signal".into());
    // stderr last: that is where a command says why it failed, and the tail is what is kept.
    let tail: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = tail[tail.len().saturating_sub(5)..].join(" | ");
    let tries = if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    };
    format!("{status}{tries}: {tail}")
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// Renders every template of `playbook` (shell snippets, guards, files) against `context`
/// without running anything: what would be sent to a host, task by task. Used to check
/// playbooks and their variables together, and for golden files.
pub fn render_all(
    playbook: &Playbook,
    context: &Value,
    playbooks: &Playbooks,
) -> Result<Vec<(String, String)>, String> {
    let renderer = Renderer::with_playbooks(playbooks.clone());
    // What earlier tasks would register is unknown before they run: empty, unchanged.
    let names = playbook.tasks.iter().filter_map(|t| t.register.clone());
    let registered: serde_json::Map<String, Value> =
        names.clone().map(|n| (n, json!(""))).collect();
    let changed: serde_json::Map<String, Value> = names.map(|n| (n, json!(false))).collect();
    let mut ctx = context.clone();
    if let Value::Object(map) = &mut ctx {
        map.insert("registered".into(), Value::Object(registered));
        map.insert("changed".into(), Value::Object(changed));
    }
    let mut out = Vec::new();
    for task in &playbook.tasks {
        let at = |e: String| format!("{}/main.yaml, task '{}': {e}", playbook.dir, task.name);
        if let Some(expr) = &task.when {
            renderer.eval_bool(expr, &ctx).map_err(at)?;
        }
        for (what, text) in [("creates", &task.creates), ("unless", &task.unless)] {
            if let Some(text) = text {
                out.push((
                    format!("{} [{what}]", task.name),
                    renderer.render(what, text, &ctx).map_err(at)?,
                ));
            }
        }
        let body = match &task.action {
            Action::Shell(source) => renderer.render(&task.name, source, &ctx),
            Action::Template(spec) | Action::Copy(spec) => {
                let (name, source) = match (&spec.src, &spec.content) {
                    (Some(src), None) => {
                        let path = format!("{}/{}", playbook.dir, src);
                        (
                            src.clone(),
                            playbooks.read(&path).map_err(|e| at(e.to_string()))?,
                        )
                    }
                    (None, Some(content)) => (task.name.clone(), content.clone()),
                    _ => return Err(at("needs exactly one of `src` and `content`".into())),
                };
                renderer.render("dest", &spec.dest, &ctx).map_err(at)?;
                match task.action {
                    Action::Template(_) => renderer.render(&name, &source, &ctx),
                    _ => Ok(source),
                }
            }
        };
        out.push((task.name.clone(), body.map_err(at)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::failure_message;
    use crate::playbook::RemoteOutput;

    #[test]
    fn a_failure_ends_with_the_error_lines_the_command_printed_on_stderr() {
        // apt: progress on stdout, the reason on stderr (printed last).
        let out = RemoteOutput {
            status: Some(100),
            stdout: "Reading package lists...\nBuilding dependency tree...\nReading state information...\n\
                     Package kubernetes-cni is not available, but is referred to by another package.\n\
                     This may mean that the package is missing, has been obsoleted, or\n\
                     is only available from another source\n"
                .into(),
            stderr: "E: Package 'kubernetes-cni' has no installation candidate\n".into(),
        };
        let message = failure_message(&out, 3);
        assert!(
            message.starts_with("exit 100 after 3 attempts: "),
            "{message}"
        );
        assert!(
            message.ends_with("| E: Package 'kubernetes-cni' has no installation candidate"),
            "{message}"
        );
    }
}
