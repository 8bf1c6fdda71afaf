//! Batched guards: before a host runs a playbook, every `creates`, `unless` and file-state
//! probe of its tasks is asked in one round trip (one per privilege) instead of one each.
//!
//! An answer is what the live guard would have said only while nothing has changed the host
//! since it was asked, so the runner uses the batch only until a task's action has run (a
//! non-check command or an upload), and only when the guard renders to the same text with
//! the context of that moment. Everything else, and any batch that fails, falls back to the
//! guard asked live, so the guards' meaning is unchanged: this saves round trips, nothing else.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::model::{Action, Playbook};
use super::remote::Remote;
use super::render::Renderer;

pub(super) const MARK: &str = "@@installer-guard";

/// What one guard is, rendered: the key the runner looks answers up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Guard {
    /// `test -e PATH`
    Creates(String),
    /// The `unless` command.
    Unless(String),
    /// The file-state probe of DEST.
    FileState(String),
    /// A read-only check task's own script (one that registers nothing): a pass in the batch
    /// is its whole answer; a failure is asked again live, which reports it (and retries).
    Check(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// Exit status of `test -e` or of the `unless` command.
    Status(u32),
    /// What the file-state probe printed (one line).
    State(String),
}

/// Answers by task index and guard; empty when nothing was batched.
#[derive(Debug, Default)]
pub(super) struct Prefetched {
    answers: HashMap<(usize, Guard), Answer>,
}

impl Prefetched {
    pub(super) fn get(&self, task: usize, guard: &Guard) -> Option<&Answer> {
        self.answers.get(&(task, guard.clone()))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.answers.len()
    }
}

/// The guards of `playbook` that render with `ctx` (the context before any task ran),
/// per task index and privilege. Guards that need what earlier tasks register do not
/// render yet and are asked live.
pub(super) fn guards(
    playbook: &Playbook,
    renderer: &Renderer,
    ctx: &Value,
) -> Vec<(usize, bool, Guard)> {
    let mut out = Vec::new();
    for (i, task) in playbook.tasks.iter().enumerate() {
        let render = |what: &str, text: &str| renderer.render(what, text, ctx).ok();
        if let Some(path) = task.creates.as_deref().and_then(|p| render("creates", p)) {
            out.push((i, task.privileged, Guard::Creates(path)));
        }
        if let Some(cmd) = task.unless.as_deref().and_then(|c| render("unless", c)) {
            out.push((i, task.privileged, Guard::Unless(cmd)));
        }
        if let Action::Template(spec) | Action::Copy(spec) = &task.action
            && let Some(dest) = render("dest", &spec.dest)
        {
            out.push((i, task.privileged, Guard::FileState(dest)));
        }
        if let Action::Shell(source) = &task.action
            && task.check
            && task.register.is_none()
            && !task.no_log
            && task.when.is_none()
            && let Some(script) = render(&task.name, source)
        {
            out.push((i, task.privileged, Guard::Check(script)));
        }
    }
    out
}

/// One shell script asking every guard, printing `MARK INDEX STATUS [STATE]` per guard.
/// Guards are read-only by contract; their output is dropped as the live ones' is ignored.
pub(super) fn script(guards: &[(usize, Guard)], file_state: &str) -> Result<String, String> {
    let q = |s: &str| {
        shlex::try_quote(s)
            .map(|q| q.into_owned())
            .map_err(|_| format!("{s:?} contains a NUL byte"))
    };
    let mut text = String::from("set +e\n");
    let state_probe = q(file_state)?;
    for (k, guard) in guards.iter().enumerate() {
        let line = match &guard.1 {
            Guard::Creates(path) => format!(
                "test -e {} </dev/null >/dev/null 2>&1; echo \"{MARK} {k} $?\"\n",
                q(path)?
            ),
            Guard::Unless(cmd) | Guard::Check(cmd) => format!(
                "sh -ec {} </dev/null >/dev/null 2>&1; echo \"{MARK} {k} $?\"\n",
                q(cmd)?
            ),
            Guard::FileState(dest) => format!(
                "s=$(sh -c {state_probe} sh {} </dev/null 2>/dev/null); echo \"{MARK} {k} $? $s\"\n",
                q(dest)?
            ),
        };
        text.push_str(&line);
    }
    Ok(text)
}

/// Reads the script's answers back; a line that does not parse is no answer (asked live).
pub(super) fn parse(guards: &[(usize, Guard)], stdout: &str) -> Prefetched {
    let mut answers = HashMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix(MARK).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(k), Some(status)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(k), Ok(status)) = (k.parse::<usize>(), status.parse::<u32>()) else {
            continue;
        };
        let Some((task, guard)) = guards.get(k) else {
            continue;
        };
        let answer = match guard {
            Guard::FileState(_) if status == 0 => {
                Answer::State(parts.next().unwrap_or_default().to_string())
            }
            // A state probe that failed is asked again live, which reports the failure.
            Guard::FileState(_) => continue,
            _ => Answer::Status(status),
        };
        answers.insert((*task, guard.clone()), answer);
    }
    Prefetched { answers }
}

/// Asks the guards of `playbook` on `remote`, one round trip per privilege that has at
/// least two of them (a single guard costs the same asked live). Never fails: a batch that
/// cannot run leaves its guards to be asked live.
pub(super) async fn prefetch<R: Remote>(
    playbook: &Playbook,
    renderer: &Renderer,
    ctx: &Value,
    remote: &R,
    run_script: &str,
    file_state: &str,
    log: impl Fn(&str),
) -> Prefetched {
    let all = guards(playbook, renderer, ctx);
    let mut prefetched = Prefetched::default();
    for privileged in [true, false] {
        let batch: Vec<(usize, Guard)> = all
            .iter()
            .filter(|(_, p, _)| *p == privileged)
            .map(|(i, _, g)| (*i, g.clone()))
            .collect();
        if batch.len() < 2 {
            continue;
        }
        let timeout = batch
            .iter()
            .map(|(i, _)| playbook.tasks[*i].timeout)
            .max()
            .unwrap_or(60);
        let Ok(text) = script(&batch, file_state) else {
            continue;
        };
        log(&format!("$ [guards, batched] {text}"));
        match remote
            .exec(
                run_script,
                Some(text.into_bytes()),
                privileged,
                Duration::from_secs(timeout),
            )
            .await
        {
            Ok(out) if out.success() => {
                log(&format!("  exit 0\n{}", out.stdout));
                let got = parse(&batch, &out.stdout);
                prefetched.answers.extend(got.answers);
            }
            Ok(out) => log(&format!(
                "  exit {:?}: guards will be asked one by one\n{}",
                out.status, out.stderr
            )),
            Err(e) => log(&format!(
                "  failed ({}): guards will be asked one by one",
                e.message
            )),
        }
    }
    prefetched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_back_by_position_and_garbage_is_no_answer() {
        let guards = vec![
            (0, Guard::Creates("/etc/a".into())),
            (2, Guard::Unless("grep -q x /etc/b".into())),
            (3, Guard::FileState("/etc/c".into())),
            (4, Guard::FileState("/etc/d".into())),
        ];
        let out = format!(
            "noise\n{MARK} 0 1\n{MARK} 1 0\n{MARK} 2 0 644 root root abc123\n{MARK} 3 2 \n{MARK} 9 0\n{MARK} x 0\n"
        );
        let p = parse(&guards, &out);
        assert_eq!(
            p.get(0, &Guard::Creates("/etc/a".into())),
            Some(&Answer::Status(1))
        );
        assert_eq!(
            p.get(2, &Guard::Unless("grep -q x /etc/b".into())),
            Some(&Answer::Status(0))
        );
        assert_eq!(
            p.get(3, &Guard::FileState("/etc/c".into())),
            Some(&Answer::State("644 root root abc123".into()))
        );
        // A failed state probe, an unknown index and a bad line: asked live.
        assert_eq!(p.get(4, &Guard::FileState("/etc/d".into())), None);
        assert_eq!(p.len(), 3);
        // Another task's guard with the same text is not this task's answer.
        assert_eq!(p.get(1, &Guard::Creates("/etc/a".into())), None);
    }

    #[test]
    fn the_script_answers_as_the_live_guards_would_even_for_awkward_names() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = tmp.path().join("it's $HOME \"here\"");
        std::fs::write(&odd, "x").unwrap();
        let odd = odd.to_str().unwrap().to_string();
        let missing = tmp.path().join("missing").to_str().unwrap().to_string();
        let guards = vec![
            (0, Guard::Creates(odd.clone())),
            (1, Guard::Creates(missing.clone())),
            (
                2,
                Guard::Unless(format!(
                    "test -f '{}' && echo 'noise'",
                    odd.replace('\'', "'\\''")
                )),
            ),
            (3, Guard::Unless("false\necho multi-line".into())),
            (4, Guard::FileState(odd.clone())),
        ];
        let file_state = include_str!("file_state.sh");
        let text = script(&guards, file_state).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&text)
            .output()
            .unwrap();
        let p = parse(&guards, &String::from_utf8_lossy(&out.stdout));
        assert_eq!(p.get(0, &guards[0].1), Some(&Answer::Status(0)), "{text}");
        assert_eq!(p.get(1, &guards[1].1), Some(&Answer::Status(1)));
        assert_eq!(p.get(2, &guards[2].1), Some(&Answer::Status(0)));
        // `sh -e`: the first failing line fails the guard, as the live guard's `sh -e`.
        assert_eq!(p.get(3, &guards[3].1), Some(&Answer::Status(1)));
        let Some(Answer::State(state)) = p.get(4, &guards[4].1) else {
            panic!("no state: {text}")
        };
        assert!(
            state.ends_with("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"),
            "{state}"
        );
        assert_eq!(p.len(), 5);
    }
}
