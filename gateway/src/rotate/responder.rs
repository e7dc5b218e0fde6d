//! The peer's side of a rotation (`rotate.announce`, `rotate.complete`, `rotate.abort`): the
//! decisions are [`ztgw_rotation::responder`]'s; this adapter reads the peer's running key
//! and our own key, stores the new state durably, then tells the data plane, and only then
//! answers. One message is handled at a time.

use std::sync::Arc;

use tokio::sync::Mutex;
use ztgw_rotation::RotationId;
use ztgw_rotation::machine::AnnounceBody;
use ztgw_rotation::responder::{self, Ack, PeerRotationState};

use super::peer_store::PeerStore;
use crate::audit::Audit;
use crate::core::key::PublicKey;
use crate::device::native::handle::DeviceHandle;
use crate::status::StatusBoard;

/// The refusal word when the gateway cannot take the message now (its store or its data
/// plane refused); the sender retries, and its deadline decides.
pub const UNAVAILABLE: &str = "unavailable";

/// Answers the peers' rotation messages. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Responder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: PeerStore,
    device: DeviceHandle,
    board: StatusBoard,
    audit: Option<Audit>,
    serial: Mutex<()>,
}

impl Responder {
    /// A responder over the peers' durable states, our device and the status board.
    pub fn new(
        store: PeerStore,
        device: DeviceHandle,
        board: StatusBoard,
        audit: Option<Audit>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                device,
                board,
                audit,
                serial: Mutex::new(()),
            }),
        }
    }

    /// Returns the peers' durable states.
    pub fn store(&self) -> &PeerStore {
        &self.inner.store
    }

    /// Takes `peer`'s announcement: stores it, lets the device accept the next key, and
    /// returns the ack to answer with.
    ///
    /// # Errors
    /// A fixed refusal word; nothing changed then.
    pub async fn announce(&self, peer: &str, body: &AnnounceBody) -> Result<Ack, &'static str> {
        let inner = &self.inner;
        let _serial = inner.serial.lock().await;
        let running = self.running_key(peer).ok_or(UNAVAILABLE)?;
        let ours = PublicKey::from_base64(&inner.board.public_key()).map_err(|_| UNAVAILABLE)?;
        let state = self.state(peer, running);
        let (next, ack) = match responder::on_announce(&state, body, &ours) {
            Ok(taken) => taken,
            Err(refusal) => {
                self.audit(peer, "rotate.announce", refusal.as_str(), &body.rotation_id);
                return Err(refusal.as_str());
            }
        };
        if next != state {
            inner.store.put(peer, next).await.map_err(|e| {
                tracing::warn!(peer, error = %e, "cannot store a peer's announced key");
                UNAVAILABLE
            })?;
        }
        if let Err(e) = inner
            .device
            .accept_peer_next_key(&running, &body.next_public_key)
        {
            tracing::warn!(peer, error = %e, "the data plane refused a peer's next key");
            if let Err(e) = inner.store.put(peer, state).await {
                tracing::warn!(peer, error = %e, "cannot restore a peer's rotation state");
            }
            self.audit(peer, "rotate.announce", UNAVAILABLE, &body.rotation_id);
            return Err(UNAVAILABLE);
        }
        tracing::info!(peer, next_public_key = %body.next_public_key, "peer announced its next key; accepted");
        self.audit(peer, "rotate.announce", "acked", &body.rotation_id);
        Ok(ack)
    }

    /// Takes `peer`'s `rotate.complete`: its next key is its key now.
    ///
    /// # Errors
    /// A fixed refusal word; nothing changed then.
    pub async fn complete(&self, peer: &str, rotation_id: &RotationId) -> Result<(), &'static str> {
        self.end(peer, rotation_id, true).await
    }

    /// Takes `peer`'s `rotate.abort`: its next key is forgotten.
    ///
    /// # Errors
    /// A fixed refusal word; nothing changed then.
    pub async fn abort(&self, peer: &str, rotation_id: &RotationId) -> Result<(), &'static str> {
        self.end(peer, rotation_id, false).await
    }

    async fn end(&self, peer: &str, id: &RotationId, complete: bool) -> Result<(), &'static str> {
        let inner = &self.inner;
        let kind = if complete {
            "rotate.complete"
        } else {
            "rotate.abort"
        };
        let _serial = inner.serial.lock().await;
        let running = self.running_key(peer).ok_or(UNAVAILABLE)?;
        let state = self.state(peer, running);
        let decided = if complete {
            responder::on_complete(&state, id)
        } else {
            responder::on_abort(&state, id)
        };
        let next = match decided {
            Ok(next) => next,
            Err(refusal) => {
                self.audit(peer, kind, refusal.as_str(), id);
                return Err(refusal.as_str());
            }
        };
        if next == state {
            return Ok(());
        }
        inner.store.put(peer, next.clone()).await.map_err(|e| {
            tracing::warn!(peer, error = %e, "cannot store the end of a peer's rotation");
            UNAVAILABLE
        })?;
        // The store decides which key the driver runs the peer under; the device follows
        // now, or the driver's next pass replaces the key if the device had forgotten the
        // next key (a restart).
        let moved = match state.next_public_key() {
            Some(next_key) if complete => inner.device.complete_peer_key(next_key),
            _ => inner.device.forget_peer_next_key(&running),
        };
        if let Err(e) = moved {
            tracing::debug!(peer, error = %e, "the data plane had no next key for the peer; the driver reconciles it");
        }
        if complete {
            tracing::info!(peer, public_key = %next.active_public_key(), "peer completed its key rotation");
        } else {
            tracing::info!(peer, "peer aborted its key rotation");
        }
        self.audit(
            peer,
            kind,
            if complete { "completed" } else { "aborted" },
            id,
        );
        Ok(())
    }

    /// Gives the device back the next keys of peers whose rotation is pending (after a
    /// restart, or once the driver re-added the peer), and publishes the peers' states.
    pub async fn reconcile(&self) {
        let inner = &self.inner;
        let _serial = inner.serial.lock().await;
        for (peer, state) in inner.store.all() {
            let Some(next) = state.next_public_key() else {
                continue;
            };
            let Some(running) = self.running_key(&peer) else {
                continue;
            };
            if running == *state.active_public_key()
                && inner.device.peer_next_key(&running) != Some(*next)
                && let Err(e) = inner.device.accept_peer_next_key(&running, next)
            {
                tracing::debug!(peer = %peer, error = %e, "cannot give the data plane a peer's pending next key yet");
            }
        }
    }

    /// The state of `peer`, rebased when the device runs it under a key the state does not
    /// know (the operator declared a new key).
    fn state(&self, peer: &str, running: PublicKey) -> PeerRotationState {
        match self.inner.store.get(peer) {
            Some(state) if *state.active_public_key() == running => state,
            Some(state) => state.rebase(running),
            None => PeerRotationState::new(running),
        }
    }

    /// The key the device runs `peer` under: the latest snapshot's, which may lag a
    /// rotation of the peer that just completed by one pass, so read through its state.
    fn running_key(&self, peer: &str) -> Option<PublicKey> {
        running_key(&self.inner.board, &self.inner.store, peer)
    }

    fn audit(&self, peer: &str, kind: &str, outcome: &str, id: &RotationId) {
        if let Some(audit) = &self.inner.audit {
            audit.record(
                ztgw_audit::kind::PEER_ROTATION,
                peer,
                kind,
                outcome,
                crate::audit::details([("rotation_id", id.as_str().into())]),
            );
        }
    }
}

/// The key the device runs `peer` under: the latest snapshot's key, read through the peer's
/// rotation state (a snapshot taken before the peer's rotation completed still names the
/// key it rotated away from).
pub fn running_key(board: &StatusBoard, store: &PeerStore, peer: &str) -> Option<PublicKey> {
    let status = board.latest()?;
    let applied = status.peers.into_iter().find(|p| p.name == peer)?;
    let shown = PublicKey::from_base64(&applied.public_key).ok()?;
    Some(store.running_key(peer, shown))
}
