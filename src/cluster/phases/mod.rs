//! One small file per phase.

mod connect;
mod gather_facts;
mod load_balancer;
mod preflight;
mod prepare_hosts;

pub use connect::Connect;
pub use gather_facts::GatherFacts;
pub use load_balancer::LoadBalancer;
pub use preflight::{HostVerdict, Preflight, Verdict};
pub use prepare_hosts::PrepareHosts;
