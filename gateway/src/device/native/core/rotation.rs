//! The rotation hook: besides its current static key the device can hold a second one and
//! answer handshakes addressed to it. A handshake message's MAC1 is keyed by the responder's
//! public key, so it tells which of the two keys the sender used; a peer that initiates to
//! the second key gets its `Tunn` switched to that key (which restarts its session, as any
//! new handshake does). Peers that still use the current key are untouched. What promotes
//! the second key to the current one is the rotation logic's business (not built yet).
//!
//! Known gap, to close before anything sets a second key outside tests: the switch happens
//! before `Tunn` checks the initiation's timestamp, so a replayed initiation naming the other
//! key could restart that peer's session. With no second key set (the only state the gateway
//! uses today) nothing switches.

use std::sync::Arc;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};

use super::{Core, HANDSHAKE_RATE_LIMIT};

/// The second static key and its MAC1 checker.
pub(super) struct SecondKey {
    pub(super) private: StaticSecret,
    pub(super) public: PublicKey,
    pub(super) limiter: Arc<RateLimiter>,
}

impl Core {
    /// Sets (or with `None` drops) the second key. Dropping it moves peers that were using
    /// it back to the current key.
    pub fn set_second_key(&mut self, key: Option<[u8; 32]>) {
        self.second = key.map(|bytes| {
            let private = StaticSecret::from(bytes);
            let public = PublicKey::from(&private);
            let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
            SecondKey {
                private,
                public,
                limiter,
            }
        });
        for index in 0..self.slots.len() {
            if self.slots[index].as_ref().is_some_and(|p| p.on_second) {
                self.rebuild_tunn(index);
            }
        }
    }

    /// Returns whether the peer's tunnel runs on the second key.
    pub fn uses_second_key(&self, public: &[u8; 32]) -> bool {
        self.by_key
            .get(public)
            .and_then(|i| self.slots.get(*i)?.as_ref())
            .is_some_and(|p| p.on_second)
    }

    /// Makes sure the peer in slot `index` answers with the key its handshake named.
    pub(super) fn answer_with(&mut self, index: usize, second: bool) {
        let current = self
            .slots
            .get(index)
            .and_then(Option::as_ref)
            .map(|p| p.on_second);
        if current.is_none() || current == Some(second) {
            return;
        }
        if !second {
            self.rebuild_tunn(index);
            return;
        }
        let (Some(key), Some(peer)) = (
            self.second.as_ref(),
            self.slots.get_mut(index).and_then(Option::as_mut),
        ) else {
            return;
        };
        if let Some(tunn) = peer.tunn.as_mut() {
            tunn.set_static_private(key.private.clone(), key.public, Some(key.limiter.clone()));
            peer.on_second = true;
        }
    }
}
