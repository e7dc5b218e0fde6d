//! What the fuzz targets run, kept out of the target files so the seed writer
//! (`examples/write_seeds.rs`) speaks the same input formats.
//!
//! - [`udp`]: two native cores, `a` (under attack) and `b` (its peer), driven by a script of
//!   operations: datagrams from the network, packets from either TUN device, tampered and
//!   replayed messages, timers and configuration changes.
//! - [`uapi`]: UAPI requests against a keyed core, with invariants checked on the answers.

pub mod uapi;
pub mod udp;

use boringtun::x25519::{PublicKey, StaticSecret};

/// Size of the buffers the native IO threads hand the core.
pub const BUF_SIZE: usize = 65536 + 148;

/// Returns the private key made of `seed` bytes and its public key.
pub fn key_pair(seed: u8) -> ([u8; 32], [u8; 32]) {
    let private = [seed; 32];
    let public = PublicKey::from(&StaticSecret::from(private)).to_bytes();
    (private, public)
}

/// Lowercase hex of a key, as the UAPI writes it.
pub fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
