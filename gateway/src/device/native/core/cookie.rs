//! The device's MAC check on handshake messages (whitepaper sections 5.4.4 and 5.4.7).
//!
//! MAC1 is keyed by `HASH("mac1----" || our static public key)` and proves only that the
//! sender knows which key it addresses. Past [`HANDSHAKE_RATE_LIMIT`] handshake messages in a
//! rate window the device is *under load*: a handshake message is then accepted only if its
//! MAC2 is keyed by the cookie of its source, `MAC(R_m, source IP bytes || source UDP port)`;
//! any other gets a cookie reply carrying that cookie and goes no further. `R_m` is a random
//! secret, made when first needed and replaced when older than [`SECRET_LIFETIME`], so a
//! cookie is good for at most that long and only from the address and port that earned it.
//!
//! boringtun's own `RateLimiter` binds its cookie to the source IP alone and reads its own
//! clock; this check takes time as an argument.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{HANDSHAKE_RATE_LIMIT, RATE_LIMIT_WINDOW, canonical};

/// How long a cookie secret `R_m` is used before a new one replaces it.
pub(super) const SECRET_LIFETIME: Duration = Duration::from_secs(120);
const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";
const MAC_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// Length of a cookie reply: type, receiver, nonce, the encrypted cookie and its tag.
const COOKIE_REPLY_LEN: usize = 8 + NONCE_LEN + MAC_LEN + 16;
/// A cookie reply's message type.
const COOKIE_REPLY: u8 = 3;

/// What one of the device's static keys gives the check: the key of the MAC1 its handshake
/// messages carry and the key its cookie replies are encrypted with. Both are derived from
/// the public key.
pub(super) struct MacKeys {
    mac1: [u8; 32],
    cookie: [u8; 32],
}

impl MacKeys {
    pub(super) fn new(public: &[u8; 32]) -> Self {
        Self {
            mac1: hash(LABEL_MAC1, public),
            cookie: hash(LABEL_COOKIE, public),
        }
    }

    /// Returns whether `message`, a handshake message of a valid length, carries a MAC1 for
    /// this key (compared in constant time).
    pub(super) fn mac1_valid(&self, message: &[u8]) -> bool {
        let Some((alpha, mac1, _)) = split(message) else {
            return false;
        };
        mac(&self.mac1, alpha).is_some_and(|m| bool::from(m.ct_eq(mac1)))
    }

    /// Writes into `buf` a cookie reply to `message` carrying `cookie`: to the message's
    /// sender index, under a random nonce, encrypted with this key's cookie key with the
    /// message's MAC1 as associated data.
    fn cookie_reply<'b>(
        &self,
        message: &[u8],
        cookie: &[u8; MAC_LEN],
        buf: &'b mut [u8],
    ) -> Option<&'b [u8]> {
        let (_, mac1, _) = split(message)?;
        let sender = message.get(4..8)?;
        let reply = buf.get_mut(..COOKIE_REPLY_LEN)?;
        let (header, rest) = reply.split_at_mut(8);
        let (nonce, sealed) = rest.split_at_mut(NONCE_LEN);
        header[..4].copy_from_slice(&[COOKIE_REPLY, 0, 0, 0]);
        header[4..].copy_from_slice(sender);
        getrandom::fill(nonce).ok()?;
        let (plaintext, tag) = sealed.split_at_mut(MAC_LEN);
        plaintext.copy_from_slice(cookie);
        let cipher = XChaCha20Poly1305::new(&self.cookie.into());
        let sealed_tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(nonce), mac1, plaintext)
            .ok()?;
        tag.copy_from_slice(&sealed_tag);
        Some(reply)
    }
}

/// The secret `R_m` and when it was made.
struct Secret {
    bytes: Zeroizing<[u8; 32]>,
    made: Duration,
}

/// What the check says about a handshake message whose MAC1 is valid.
#[derive(Debug)]
pub(super) enum Verdict<'b> {
    /// Not under load, or MAC2 carries the source's cookie: the message goes on.
    Accept,
    /// Under load without the source's cookie: this cookie reply goes back to the source,
    /// and the message goes no further.
    CookieReply(&'b [u8]),
    /// Under load, and no cookie could be made (no randomness): the message is dropped.
    Drop,
}

/// The device's handshake load and its cookie secret.
#[derive(Default)]
pub(super) struct Load {
    /// Handshake messages with a valid MAC1 since the window started.
    count: u64,
    window_start: Duration,
    secret: Option<Secret>,
}

impl fmt::Debug for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Load")
            .field("count", &self.count)
            .field("window_start", &self.window_start)
            .finish_non_exhaustive()
    }
}

impl Load {
    /// Starts a new rate window if the last one began [`RATE_LIMIT_WINDOW`] before `now`.
    pub(super) fn tick(&mut self, now: Duration) {
        if now.saturating_sub(self.window_start) >= RATE_LIMIT_WINDOW {
            self.count = 0;
            self.window_start = now;
        }
    }

    /// Counts `message`, a handshake message from `src` whose MAC1 `keys` found valid, and
    /// says whether it goes on; under load it must carry the cookie of `src` in MAC2, or it
    /// gets a cookie reply written into `buf`.
    pub(super) fn check<'b>(
        &mut self,
        keys: &MacKeys,
        src: SocketAddr,
        message: &[u8],
        now: Duration,
        buf: &'b mut [u8],
    ) -> Verdict<'b> {
        let under_load = self.count >= HANDSHAKE_RATE_LIMIT;
        self.count = self.count.saturating_add(1);
        if !under_load {
            return Verdict::Accept;
        }
        let Some(cookie) = self.cookie(src, now) else {
            return Verdict::Drop;
        };
        let Some((_, _, mac2)) = split(message) else {
            return Verdict::Drop;
        };
        let beta = &message[..message.len() - MAC_LEN];
        if mac(&*cookie, beta).is_some_and(|m| bool::from(m.ct_eq(mac2))) {
            return Verdict::Accept;
        }
        match keys.cookie_reply(message, &cookie, buf) {
            Some(reply) => Verdict::CookieReply(reply),
            None => Verdict::Drop,
        }
    }

    /// Returns the cookie of `src` at `now`, first replacing the secret if it is older than
    /// [`SECRET_LIFETIME`] (or making one if there is none).
    fn cookie(&mut self, src: SocketAddr, now: Duration) -> Option<Zeroizing<[u8; MAC_LEN]>> {
        let fresh = self
            .secret
            .as_ref()
            .is_some_and(|s| now.saturating_sub(s.made) < SECRET_LIFETIME);
        if !fresh {
            // The old secret goes first: a failed refill leaves none rather than a stale one.
            self.secret = None;
            let mut bytes = Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut *bytes).ok()?;
            self.secret = Some(Secret { bytes, made: now });
        }
        let secret = self.secret.as_ref()?;
        // The source's address bytes (4 or 16) and then its port: an IPv4-mapped IPv6
        // address counts as the IPv4 address it maps.
        let src = canonical(src);
        let mut source = [0u8; 18];
        let len = match src.ip() {
            IpAddr::V4(ip) => {
                source[..4].copy_from_slice(&ip.octets());
                4
            }
            IpAddr::V6(ip) => {
                source[..16].copy_from_slice(&ip.octets());
                16
            }
        };
        source[len..len + 2].copy_from_slice(&src.port().to_be_bytes());
        mac(&*secret.bytes, &source[..len + 2]).map(Zeroizing::new)
    }
}

/// Splits a handshake message into what MAC1 covers, MAC1 and MAC2.
fn split(message: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let alpha_len = message.len().checked_sub(2 * MAC_LEN)?;
    let (alpha, macs) = message.split_at(alpha_len);
    let (mac1, mac2) = macs.split_at(MAC_LEN);
    Some((alpha, mac1, mac2))
}

/// `HASH(label || public)`: BLAKE2s-256.
fn hash(label: &[u8], public: &[u8; 32]) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(label)
        .chain_update(public)
        .finalize()
        .into()
}

/// `MAC(key, data)`: keyed BLAKE2s with a 16-byte output. `None` only for a key longer than
/// 32 bytes, which no caller passes.
fn mac(key: &[u8], data: &[u8]) -> Option<[u8; MAC_LEN]> {
    let mut mac = Blake2sMac::<U16>::new_from_slice(key).ok()?;
    Update::update(&mut mac, data);
    Some(mac.finalize_fixed().into())
}
