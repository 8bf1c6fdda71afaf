//! What the user sees and what lands in the logs: progress (indicatif on a TTY, plain lines
//! otherwise, or one JSON event per line), per-host log files, and secret redaction that every
//! byte passes through before it is shown or written.

pub mod diagnostics;
mod hostlog;
mod output;
mod redact;

pub use hostlog::HostLogs;
pub use output::{Event, OutputMode, Reporter, TaskOutcome};
pub use redact::Redactor;
