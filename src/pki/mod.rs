//! The cluster PKI, as plain data and local files (no SSH, no hosts):
//!
//! - [`ClusterCa`]: the eight files kubeadm shares between control-plane nodes
//!   ([`SHARED_FILES`], relative to [`KUBEADM_PKI_DIR`]) — generated like `kubeadm init`
//!   does, saved to / loaded from the local state directory, or rebuilt from files read
//!   back from a master; always validated. Keys are wiped on drop and never in `Debug`.
//! - [`BootstrapToken`]: a kubeadm join token whose secret stays wrapped.
//! - [`discovery_hash`], [`cert_expiry`], [`days_left`]: facts about any PEM certificate.

mod bundle;
mod cert;
mod error;
mod pem;
mod rotation;
mod rsa;
mod store;
mod token;

pub use bundle::{CaKind, ClusterCa, KUBEADM_PKI_DIR, SHARED_FILES, SharedFile};
pub use cert::{cert_expiry, days_left, discovery_hash};
pub use error::PkiError;
pub use rotation::ca_bundle;
pub use token::BootstrapToken;

#[cfg(test)]
mod tests;
