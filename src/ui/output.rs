//! Progress and results: indicatif bars on a TTY (one line per host), plain lines otherwise,
//! or one JSON event per line with `--output json`. All text is redacted first.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome", content = "detail")]
pub enum TaskOutcome {
    Ok,
    Changed,
    Skipped(String),
    Failed(String),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    PhaseStarted {
        phase: String,
    },
    /// A phase ended (ran, skipped or failed): its wall time and the SSH work inside it.
    PhaseFinished {
        phase: String,
        elapsed_ms: u128,
        skipped: bool,
        ssh_round_trips: u64,
        /// Wall time with a remote command or connect in flight on some host.
        ssh_busy_ms: u64,
    },
    TaskStarted {
        host: String,
        task: String,
    },
    TaskFinished {
        host: String,
        task: String,
        #[serde(flatten)]
        outcome: TaskOutcome,
        elapsed_ms: u128,
    },
    HostMessage {
        host: String,
        level: Level,
        message: String,
    },
    Message {
        level: Level,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Cheap to clone; every phase and task reports through it.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    mode: OutputMode,
    redactor: Redactor,
    bars: Option<MultiProgress>,
    state: Mutex<State>,
    verbose: bool,
}

#[derive(Default)]
struct State {
    host_bars: HashMap<String, (ProgressBar, Instant)>,
    changed: usize,
    failed: usize,
    /// JSON documents (a verb's result) held back so that they stay the last lines of the
    /// run, after the SSH summary: scripts read the result from the last line.
    results: Vec<String>,
}

impl Reporter {
    pub fn new(mode: OutputMode, redactor: Redactor, verbose: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && mode == OutputMode::Text;
        let bars = tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            inner: Arc::new(Inner {
                mode,
                redactor,
                bars,
                state: Mutex::new(State::default()),
                verbose,
            }),
        }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    pub fn mode(&self) -> OutputMode {
        self.inner.mode
    }

    pub fn emit(&self, event: Event) {
        let event = self.redact_event(event);
        if let Ok(mut st) = self.inner.state.lock()
            && let Event::TaskFinished { outcome, .. } = &event
        {
            match outcome {
                TaskOutcome::Changed => st.changed += 1,
                TaskOutcome::Failed(_) => st.failed += 1,
                _ => {}
            }
        }
        match self.inner.mode {
            OutputMode::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                }
            }
            OutputMode::Text => self.text(&event),
        }
    }

    /// Tasks that reported a change so far — a re-run of a converged cluster must report none.
    pub fn changed_count(&self) -> usize {
        self.inner.state.lock().map(|s| s.changed).unwrap_or(0)
    }

    pub fn failed_count(&self) -> usize {
        self.inner.state.lock().map(|s| s.failed).unwrap_or(0)
    }

    pub fn phase(&self, phase: &str) {
        self.emit(Event::PhaseStarted {
            phase: phase.into(),
        });
    }

    pub fn info(&self, message: impl Into<String>) {
        self.emit(Event::Message {
            level: Level::Info,
            message: message.into(),
        });
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.emit(Event::Message {
            level: Level::Warn,
            message: message.into(),
        });
    }

    pub fn host_info(&self, host: &str, message: impl Into<String>) {
        self.emit(Event::HostMessage {
            host: host.into(),
            level: Level::Info,
            message: message.into(),
        });
    }

    /// The end of `phase`: wall time since `started` and SSH work since `before`.
    pub fn phase_finished(
        &self,
        phase: &str,
        started: Instant,
        before: &crate::ssh::SshStats,
        skipped: bool,
    ) {
        let ssh = crate::ssh::stats::snapshot().since(before);
        self.emit(Event::PhaseFinished {
            phase: phase.into(),
            elapsed_ms: started.elapsed().as_millis(),
            skipped,
            ssh_round_trips: ssh.round_trips,
            ssh_busy_ms: ssh.busy_ms,
        });
    }

    /// Ends the run: its SSH work (round trips, time waiting on hosts) against its wall time
    /// (a JSON line in json mode, a line on stderr with -v; nothing when no host was
    /// reached), then the verb's result documents, last.
    pub fn end_run(&self, wall: Duration) {
        self.ssh_summary(wall);
        let results = match self.inner.state.lock() {
            Ok(mut st) => std::mem::take(&mut st.results),
            Err(_) => Vec::new(),
        };
        let mut out = std::io::stdout().lock();
        for line in results {
            let _ = writeln!(out, "{line}");
        }
    }

    fn ssh_summary(&self, wall: Duration) {
        let ssh = crate::ssh::stats::snapshot();
        if ssh.connections == 0 && ssh.round_trips == 0 {
            return;
        }
        let wall_ms = wall.as_millis() as u64;
        let orchestration_ms = wall_ms.saturating_sub(ssh.busy_ms);
        match self.inner.mode {
            OutputMode::Json => {
                let line = serde_json::json!({
                    "ssh": ssh,
                    "wall_ms": wall_ms,
                    "orchestration_ms": orchestration_ms,
                });
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            OutputMode::Text if self.inner.verbose => {
                self.finish();
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "ssh: {} round trip(s) on {} connection(s); hosts busy {:.2}s of {:.2}s wall, orchestration {:.2}s (commands summed over hosts {:.2}s, connects {:.2}s)",
                    ssh.round_trips,
                    ssh.connections,
                    ssh.busy_ms as f64 / 1000.0,
                    wall_ms as f64 / 1000.0,
                    orchestration_ms as f64 / 1000.0,
                    ssh.remote_ms as f64 / 1000.0,
                    ssh.connect_ms as f64 / 1000.0,
                );
            }
            OutputMode::Text => {}
        }
    }

    /// Removes the progress lines; call before printing a final table.
    pub fn finish(&self) {
        if let Ok(mut st) = self.inner.state.lock() {
            for (_, (bar, _)) in st.host_bars.drain() {
                bar.finish_and_clear();
            }
        }
    }

    /// Prints a block of text (a table, a result) to stdout in text mode.
    pub fn print(&self, text: &str) {
        if self.inner.mode == OutputMode::Text {
            self.finish();
            let clean = self.inner.redactor.redact(text);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{clean}");
        }
    }

    /// One JSON document (a verb's result) for stdout in json mode, printed by
    /// [`Reporter::end_run`] after every event, in the order given.
    pub fn print_json(&self, value: &serde_json::Value) {
        if self.inner.mode == OutputMode::Json {
            let clean = self.inner.redactor.redact(&value.to_string());
            if let Ok(mut st) = self.inner.state.lock() {
                st.results.push(clean);
            }
        }
    }

    fn redact_event(&self, event: Event) -> Event {
        let r = &self.inner.redactor;
        match event {
            Event::TaskFinished {
                host,
                task,
                outcome,
                elapsed_ms,
            } => Event::TaskFinished {
                host,
                task: r.redact(&task),
                outcome: match outcome {
                    TaskOutcome::Failed(m) => TaskOutcome::Failed(r.redact(&m)),
                    TaskOutcome::Skipped(m) => TaskOutcome::Skipped(r.redact(&m)),
                    o => o,
                },
                elapsed_ms,
            },
            Event::HostMessage {
                host,
                level,
                message,
            } => Event::HostMessage {
                host,
                level,
                message: r.redact(&message),
            },
            Event::Message { level, message } => Event::Message {
                level,
                message: r.redact(&message),
            },
            Event::TaskStarted { host, task } => Event::TaskStarted {
                host,
                task: r.redact(&task),
            },
            e => e,
        }
    }

    fn text(&self, event: &Event) {
        match (&self.inner.bars, event) {
            (Some(bars), Event::TaskStarted { host, task }) => {
                if let Ok(mut st) = self.inner.state.lock() {
                    let (bar, _) = st.host_bars.entry(host.clone()).or_insert_with(|| {
                        let bar = bars.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{spinner} {prefix:<14} [{elapsed:>4}] {msg}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_prefix(host.clone());
                        bar.enable_steady_tick(Duration::from_millis(120));
                        (bar, Instant::now())
                    });
                    bar.set_message(task.clone());
                }
            }
            (
                Some(_),
                Event::TaskFinished {
                    outcome: TaskOutcome::Ok | TaskOutcome::Skipped(_),
                    ..
                },
            ) if !self.inner.verbose => {}
            (Some(bars), e) => {
                let _ = bars.println(render_line(e));
            }
            (_, Event::PhaseFinished { .. }) if !self.inner.verbose => {}
            (None, Event::TaskStarted { .. }) if !self.inner.verbose => {}
            (
                None,
                Event::TaskFinished {
                    outcome: TaskOutcome::Ok | TaskOutcome::Skipped(_),
                    ..
                },
            ) if !self.inner.verbose => {}
            (None, e) => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}", render_line(e));
            }
        }
    }
}

fn render_line(e: &Event) -> String {
    match e {
        Event::PhaseStarted { phase } => format!("==> {phase}"),
        Event::PhaseFinished {
            phase,
            elapsed_ms,
            ssh_round_trips,
            ..
        } => format!(
            "<== {phase} ({:.2}s, {ssh_round_trips} SSH round trip(s))",
            *elapsed_ms as f64 / 1000.0
        ),
        Event::TaskStarted { host, task } => format!("    {host}: {task} ..."),
        Event::TaskFinished {
            host,
            task,
            outcome,
            elapsed_ms,
        } => {
            let secs = *elapsed_ms as f64 / 1000.0;
            match outcome {
                TaskOutcome::Ok => format!("    {host}: ok       {task} ({secs:.1}s)"),
                TaskOutcome::Changed => format!("    {host}: changed  {task} ({secs:.1}s)"),
                TaskOutcome::Skipped(why) => format!("    {host}: skipped  {task} ({why})"),
                TaskOutcome::Failed(why) => format!("    {host}: FAILED   {task}: {why}"),
            }
        }
        Event::HostMessage {
            host,
            level,
            message,
        } => format!("    {host}: {}{message}", level_tag(*level)),
        Event::Message { level, message } => format!("{}{message}", level_tag(*level)),
    }
}

fn level_tag(l: Level) -> &'static str {
    match l {
        Level::Info => "",
        Level::Warn => "warning: ",
        Level::Error => "error: ",
    }
}
