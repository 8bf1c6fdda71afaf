//! `installer` brings up a highly available Kubernetes cluster on bare-metal hosts over SSH.
//!
//! Layers, bottom up: `ssh` (transport, knows nothing of Kubernetes), `playbook` (runs
//! host-side tasks from `playbooks/`), `facts`, `pki`, `inventory`, then `cluster` (the
//! pipelines, one file per verb) and `ui` (progress, output, redaction).

pub mod addons;
pub mod cluster;
pub mod facts;
pub mod inventory;
pub mod local_fs;
pub mod pki;
pub mod playbook;
pub mod ssh;
pub mod ui;
