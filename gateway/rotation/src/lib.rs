//! ZT Gateway's static-key rotation, as pure decisions (SPEC section 7).
//!
//! A gateway rotates its WireGuard static key in four steps: **stage** (the next key is
//! written to the key store as *next* before anything else), **announce** (every peer is told
//! the next public key over the control channel and acknowledges once it has recorded it),
//! **commit** (the key store holds the new key as current and the old one as previous; the
//! data plane switches) and **verify** (a handshake with every peer under the new key), or it
//! rolls back.
//!
//! - [`schedule`]: when a rotation starts (key age, maintenance window, jitter, and what
//!   blocks it);
//! - [`machine`]: the initiator's rotation, a persisted record driven by events, telling its
//!   adapters what to do next;
//! - [`resume`]: what a gateway that restarts mid-rotation does, from what its key store
//!   holds;
//! - [`responder`]: a peer's side, checking `rotate.announce`, `rotate.complete` and
//!   `rotate.abort`.
//!
//! Nothing here performs IO, reads a clock, draws random numbers or runs async code: time
//! (`now`) and random values (the rotation id, the next key) are arguments. The adapters that
//! talk to the key store, the control channel and the data plane live elsewhere.
#![warn(missing_docs)]

mod id;
mod key_text;
pub mod machine;
pub mod responder;
pub mod resume;
pub mod schedule;
#[cfg(test)]
mod test_support;

pub use id::{IdError, RotationId};
pub use ztgw_model::key::PublicKey;
