//! Handshake messages made without keys, as an attacker on the underlay can: MAC1 needs only
//! the gateway's public key.

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};

/// Returns a handshake response from sender index `sender` to receiver index `receiver`, with
/// a valid MAC1 for the responder key `public` and garbage where the handshake would be.
pub fn handshake_response(public: &[u8; 32], sender: u32, receiver: u32) -> Vec<u8> {
    let mut message = vec![0u8; 92];
    message[0] = 2;
    message[4..8].copy_from_slice(&sender.to_le_bytes());
    message[8..12].copy_from_slice(&receiver.to_le_bytes());
    for (i, byte) in message[12..60].iter_mut().enumerate() {
        *byte = u8::try_from(i).unwrap_or(0).wrapping_mul(53) ^ 0x5a;
    }
    let key = Blake2s256::new()
        .chain_update(b"mac1----")
        .chain_update(public)
        .finalize();
    // A 32-byte key is always a valid BLAKE2s key.
    if let Ok(mut mac) = Blake2sMac::<U16>::new_from_slice(&key) {
        Update::update(&mut mac, &message[..60]);
        message[60..76].copy_from_slice(&mac.finalize_fixed());
    }
    message
}
