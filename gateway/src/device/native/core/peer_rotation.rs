//! The receiving side of a peer's rotation: a peer known under a second, *next* public key.
//!
//! When a peer rotates its static key it announces the next public key, then switches to it
//! and initiates under it. Between the announcement and the end of its rotation the device
//! accepts initiations from either of the peer's keys ([`Core::accept_peer_next_key`]). A
//! session opened under the next key lives in a second tunnel of that peer (our current key,
//! its next key), in the position our own second key would use otherwise (`table.rs`): the
//! device refuses to hold a second key of its own while a peer has a next key, and refuses a
//! peer's next key while it holds one, so a peer never needs more than two tunnels.
//!
//! Outgoing traffic stays on the peer's active tunnel, the old key's, until the peer
//! confirms a session on the next key's (our answer to its initiation, then its first data
//! on that session: the rule of `rotation.rs`); the old key's sessions keep decrypting until
//! they expire or the rotation ends. [`Core::complete_peer_key`] ends it (the peer is known
//! under the next key only), [`Core::forget_peer_next_key`] aborts it (the next key goes).
//!
//! Replays: the peer's newest accepted initiation timestamp covers both of its keys, and it
//! carries over when the rotation completes.

use super::Core;
use super::rotation::RotationError;
use super::table::Tunnel;

impl Core {
    /// Accepts the peer known as `current` under `next` too: initiations from `next` to our
    /// current key are answered, in a tunnel of their own. Accepting the same next key again
    /// changes nothing.
    ///
    /// # Errors
    /// [`RotationError::UnknownPeer`]; [`RotationError::SecondKeyHeld`] while the device
    /// holds a staged or previous key; [`RotationError::KeyInUse`] when `next` is `current`
    /// or another peer's key; [`RotationError::OtherNextKey`] when the peer already has
    /// another next key. Nothing changed then.
    pub fn accept_peer_next_key(
        &mut self,
        current: &[u8; 32],
        next: [u8; 32],
    ) -> Result<(), RotationError> {
        let index = *self.by_key.get(current).ok_or(RotationError::UnknownPeer)?;
        if self.key(self.current.other()).is_some() {
            return Err(RotationError::SecondKeyHeld);
        }
        let peer = self
            .slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or(RotationError::UnknownPeer)?;
        if peer.next == Some(next) {
            return Ok(());
        }
        if self.by_key.contains_key(&next) || self.by_next.contains_key(&next) {
            return Err(RotationError::KeyInUse);
        }
        if peer.next.is_some() {
            return Err(RotationError::OtherNextKey);
        }
        peer.next = Some(next);
        self.by_next.insert(next, index);
        Ok(())
    }

    /// Ends the rotation of the peer with next key `next`: it is known as `next` only. Its
    /// tunnels under its old key go; if outgoing traffic used one, it moves to the next key's
    /// tunnel (new if the peer never initiated under `next`; a handshake follows). Its
    /// record of the newest initiation stays. Completing again changes nothing.
    ///
    /// # Errors
    /// [`RotationError::UnknownPeer`] when no peer has `next` as next or current key;
    /// [`RotationError::KeyInUse`] when another peer was added under `next` meanwhile.
    pub fn complete_peer_key(&mut self, next: &[u8; 32]) -> Result<(), RotationError> {
        let Some(index) = self.by_next.get(next).copied() else {
            return if self.by_key.contains_key(next) {
                Ok(())
            } else {
                Err(RotationError::UnknownPeer)
            };
        };
        if self.by_key.get(next).is_some_and(|other| *other != index) {
            return Err(RotationError::KeyInUse);
        }
        let current = self.current;
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return Err(RotationError::UnknownPeer);
        };
        let old = peer.public;
        let moved = peer.drop_tunnels(|t| t.remote == old);
        self.by_next.remove(next);
        self.by_key.remove(&old);
        self.by_key.insert(*next, index);
        peer.public = *next;
        peer.next = None;
        if !moved {
            return Ok(());
        }
        if let Some(at) = peer.position(current, next) {
            peer.active = at;
        } else if let Some(own) = self.keys[current as usize].as_ref() {
            let at = peer.free_position(current).unwrap_or(current);
            let psk = peer.psk.as_ref().map(|k| **k);
            let tunnel = Tunnel::new(own, current, at, index, *next, psk);
            peer.replace_tunnel(at, Some(tunnel));
            peer.active = at;
        }
        Ok(())
    }

    /// Aborts the rotation of the peer known as `current`: its next key is forgotten with
    /// its tunnel, and if outgoing traffic used that tunnel it goes back to the current
    /// key's. Forgetting a next key the peer does not have changes nothing.
    ///
    /// # Errors
    /// [`RotationError::UnknownPeer`].
    pub fn forget_peer_next_key(&mut self, current: &[u8; 32]) -> Result<(), RotationError> {
        let index = *self.by_key.get(current).ok_or(RotationError::UnknownPeer)?;
        let own = self.current;
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return Err(RotationError::UnknownPeer);
        };
        let Some(next) = peer.next.take() else {
            return Ok(());
        };
        self.by_next.remove(&next);
        if !peer.drop_tunnels(|t| t.remote == next) {
            return Ok(());
        }
        match peer.position(own, current) {
            Some(at) => peer.active = at,
            None => {
                if let Some(at) = self.rebuild_tunn(index)
                    && let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut)
                {
                    peer.active = at;
                }
            }
        }
        Ok(())
    }

    /// Returns the next public key of the peer known as `current`, while it rotates.
    pub fn peer_next_key(&self, current: &[u8; 32]) -> Option<[u8; 32]> {
        self.by_key
            .get(current)
            .and_then(|i| self.slots.get(*i)?.as_ref())
            .and_then(|p| p.next)
    }

    /// Returns whether outgoing traffic to the peer known as `current` uses a session under
    /// its next key.
    pub fn uses_peer_next_key(&self, current: &[u8; 32]) -> bool {
        self.by_key
            .get(current)
            .and_then(|i| self.slots.get(*i)?.as_ref())
            .is_some_and(|p| {
                p.tunnels[p.active as usize]
                    .as_ref()
                    .is_some_and(|t| Some(t.remote) == p.next)
            })
    }
}
