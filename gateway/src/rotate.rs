//! Static-key rotation's adapters (SPEC section 7, `docs/rotation.md`): the decisions are
//! the `ztgw-rotation` crate's; this module gives them the key store, the data plane, the
//! control channel, the admin API, metrics and the audit log.
//!
//! - [`peer_store`]: what this gateway holds, durably, of its peers' rotations;
//! - [`responder`]: the peer's side (`rotate.announce`, `rotate.complete`, `rotate.abort`);
//! - [`engine`]: this gateway's own rotations, started by the schedule or the operator.

pub mod engine;
pub mod peer_store;
pub mod plane;
pub mod responder;
pub mod slots;

pub use engine::{Command, Control, Engine};
pub use peer_store::PeerStore;
pub use plane::{KernelRequest, Plane};
pub use responder::Responder;
pub use slots::KeySlots;
