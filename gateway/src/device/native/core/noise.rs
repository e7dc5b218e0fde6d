//! The responder's reading of a handshake initiation (whitepaper section 5.4.2) up to its
//! timestamp: which peer sent it and when, so the core can refuse a replay before the
//! initiation reaches a `Tunn` (whose own record covers only the sessions on one key, and
//! starts empty when the tunnel is new).

use blake2::{Blake2s256, Digest};
use boringtun::x25519::{PublicKey, StaticSecret};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

/// An initiation's TAI64N timestamp, as sent (big-endian seconds then nanoseconds, so the
/// byte order is the time order).
pub(crate) type Timestamp = [u8; 12];

/// `HASH(CONSTRUCTION)`.
const INITIAL_CHAIN_KEY: [u8; 32] = [
    96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235, 66, 6, 248,
    114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54,
];
/// `HASH(HASH(CONSTRUCTION) || IDENTIFIER)`.
const INITIAL_CHAIN_HASH: [u8; 32] = [
    34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108, 102, 34,
    147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243,
];
const INIT_LEN: usize = 148;
const BLOCK: usize = 64;

/// Opens an initiation addressed to our static key `private`/`public`: `Some(None)` when its
/// sender's static key decrypts but `is_peer` does not know it, `Some(Some((key, timestamp)))`
/// for a peer's, `None` when it does not decrypt.
pub(super) fn open_initiation(
    private: &StaticSecret,
    public: &PublicKey,
    init: &[u8],
    is_peer: impl FnOnce(&[u8; 32]) -> bool,
) -> Option<Option<([u8; 32], Timestamp)>> {
    if init.len() != INIT_LEN || init.first() != Some(&1) {
        return None;
    }
    let ephemeral: [u8; 32] = init.get(8..40)?.try_into().ok()?;
    let encrypted_static = init.get(40..88)?;
    let encrypted_timestamp = init.get(88..116)?;

    let mut hash = hash2(&INITIAL_CHAIN_HASH, public.as_bytes());
    hash = hash2(&hash, &ephemeral);
    let mut chain = Zeroizing::new(hmac(&hmac(&INITIAL_CHAIN_KEY, &ephemeral), &[1]));
    let shared = private.diffie_hellman(&PublicKey::from(ephemeral));
    let key = kdf2(&mut chain, shared.as_bytes());
    let mut peer = [0u8; 32];
    open(&key, encrypted_static, &hash, &mut peer)?;
    if !is_peer(&peer) {
        return Some(None);
    }
    hash = hash2(&hash, encrypted_static);
    let shared = private.diffie_hellman(&PublicKey::from(peer));
    let key = kdf2(&mut chain, shared.as_bytes());
    let mut timestamp = [0u8; 12];
    open(&key, encrypted_timestamp, &hash, &mut timestamp)?;
    Some(Some((peer, timestamp)))
}

/// `temp = HMAC(chain, input); chain = HMAC(temp, 0x1)`; returns `HMAC(temp, chain || 0x2)`.
fn kdf2(chain: &mut Zeroizing<[u8; 32]>, input: &[u8]) -> Zeroizing<[u8; 32]> {
    let temp = Zeroizing::new(hmac(chain.as_ref(), input));
    **chain = hmac(temp.as_ref(), &[1]);
    let mut last = Zeroizing::new([0u8; 33]);
    last[..32].copy_from_slice(chain.as_ref());
    last[32] = 2;
    Zeroizing::new(hmac(temp.as_ref(), last.as_ref()))
}

fn hash2(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut hash = Blake2s256::new();
    hash.update(a);
    hash.update(b);
    hash.finalize().into()
}

/// HMAC-BLAKE2s (RFC 2104) with a key of at most one block.
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut pad = Zeroizing::new([0u8; BLOCK]);
    pad[..key.len().min(BLOCK)].copy_from_slice(&key[..key.len().min(BLOCK)]);
    let mut inner = Blake2s256::new();
    inner.update(Zeroizing::new(pad.map(|b| b ^ 0x36)).as_ref());
    inner.update(data);
    let inner = Zeroizing::new(<[u8; 32]>::from(inner.finalize()));
    let mut outer = Blake2s256::new();
    outer.update(Zeroizing::new(pad.map(|b| b ^ 0x5c)).as_ref());
    outer.update(inner.as_ref());
    outer.finalize().into()
}

/// AEAD-opens `sealed` (ciphertext and tag) with counter 0 into `out`.
fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8], out: &mut [u8]) -> Option<()> {
    let (ciphertext, tag) = sealed.split_at_checked(out.len())?;
    out.copy_from_slice(ciphertext);
    ChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(&Nonce::default(), aad, out, Tag::from_slice(tag))
        .ok()
}

#[cfg(test)]
mod tests;
