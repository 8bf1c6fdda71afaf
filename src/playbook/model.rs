//! What a playbook file says.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    /// One host at a time (e.g. control-plane joins), else all hosts in parallel up to --forks.
    #[serde(default)]
    pub serial: bool,
    pub tasks: Vec<Task>,
    /// Directory name inside `playbooks/`; templates and files are looked up there.
    #[serde(skip)]
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub name: String,
    #[serde(flatten)]
    pub action: Action,
    /// Expression over the context; the task is skipped when false.
    #[serde(default)]
    pub when: Option<String>,
    /// Remote path; the task is skipped when it exists.
    #[serde(default)]
    pub creates: Option<String>,
    /// Remote read-only command; the task is skipped when it succeeds.
    #[serde(default)]
    pub unless: Option<String>,
    #[serde(default)]
    pub retries: u32,
    /// Seconds between retries.
    #[serde(default = "default_delay")]
    pub delay: u64,
    /// Seconds before the command is abandoned.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Run as root (sudo when the SSH user is not root).
    #[serde(default = "default_true", rename = "become")]
    pub privileged: bool,
    /// Expression over `stdout`, `stderr`, `rc`: did the task change the host? Default: it did.
    #[serde(default)]
    pub changed_when: Option<String>,
    /// A read-only task (a check or a probe): never reports a change, runs in `plan` too.
    #[serde(default)]
    pub check: bool,
    /// Keep this task's output out of logs and the terminal (it carries secrets).
    #[serde(default)]
    pub no_log: bool,
    /// Store trimmed stdout as `registered.<name>` for later tasks on the same host.
    #[serde(default)]
    pub register: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A shell snippet (rendered as a template first), run with `sh -e`.
    Shell(String),
    /// A template beside the playbook, rendered and laid down atomically.
    Template(FileSpec),
    /// A file beside the playbook, laid down verbatim.
    Copy(FileSpec),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// A file beside the playbook...
    #[serde(default)]
    pub src: Option<String>,
    /// ...or the template text inline (for data handed in through `vars`, e.g. certificates).
    #[serde(default)]
    pub content: Option<String>,
    pub dest: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_root")]
    pub owner: String,
    #[serde(default = "default_root")]
    pub group: String,
    /// Command that must accept the new file before it replaces the old one; `%s` is its path
    /// (e.g. `haproxy -c -f %s`).
    #[serde(default)]
    pub validate: Option<String>,
}

fn default_delay() -> u64 {
    2
}
fn default_timeout() -> u64 {
    300
}
fn default_true() -> bool {
    true
}
fn default_mode() -> String {
    "0644".into()
}
fn default_root() -> String {
    "root".into()
}
