//! The sans-IO core: validated peer model, the reconcile plan, UAPI text, health rules,
//! resource status and the lease election.
//!
//! Nothing in here performs IO, reads a clock, or depends on tokio, kube, sockets or a
//! WireGuard implementation; a test (`core_boundary`) checks the imports.
#![warn(missing_docs)]

pub mod allowed_ips;
pub use ztgw_model::{key, peer, psk, validate};
pub mod health;
pub mod lease;
pub mod plan;
pub mod status;
pub mod transitions;
pub mod uapi;

#[cfg(test)]
mod boundary_tests;
