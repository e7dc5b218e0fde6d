//! ZT Gateway daemon library: joins clusters with WireGuard.
//!
//! Layers: [`core`] decides (pure, no IO, no clock); [`source`], [`device`], [`lease`],
//! [`http`], [`admin`] and [`metrics`] are thin adapters; [`driver`] sequences them and
//! publishes [`metrics`] and the [`status`] snapshot. The `gateway` binary only parses
//! the command line and calls [`run`].

pub mod admin;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod core;
pub mod device;
pub mod driver;
pub mod http;
pub mod keys;
pub mod lease;
pub mod metrics;
pub mod rotate;
pub mod run;
pub mod source;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use run::run;

pub use ztgw_model::{CRD_FILE, crd, crd_yaml, status};
