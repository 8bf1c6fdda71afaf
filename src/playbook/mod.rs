//! The playbook engine: YAML playbooks of named tasks (shell snippets, files, templates) that
//! run on hosts in parallel or one at a time, with guards, retries and timeouts.
//!
//! Playbooks live in `playbooks/<concern>/main.yaml`, templates beside them; they are embedded
//! in the binary and can be overridden with `--playbooks DIR`. The engine knows nothing of
//! Kubernetes: callers hand it a JSON context (inventory, host, facts, vars) for templates.

mod model;
mod prefetch;
mod remote;
mod render;
mod runner;
mod source;

pub use model::{Action, FileSpec, Playbook, Task};
pub use remote::{LocalShell, Remote, RemoteError, RemoteOutput, SshRemote};
pub use render::Renderer;
pub use runner::{
    HostFailure, HostReport, HostTarget, Mode, RunOptions, TaskReport, render_all, run,
};
pub use source::{PlaybookError, Playbooks};

#[cfg(test)]
mod tests;
