//! What the rotation loop performs for the machine's actions: the key slots, the data plane
//! and the peers' control channels, each call settling an event or leaving it to the
//! answer that comes back later.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use ztgw_rotation::machine::{Action, Event};

use super::Runner;
use crate::control::channel::Failure;
use crate::control::client::{self, Target};
use crate::control::envelope::{Body, EndBody};
use crate::core::key::PublicKey;

impl Runner {
    /// Performs one action; returns the event it settled at once, if any.
    pub(super) async fn perform(&mut self, action: Action, now: SystemTime) -> Option<Event> {
        let plane = self.engine.plane.clone();
        match action {
            Action::StoreNext => {
                let Some(next) = &self.next_key else {
                    // Only a rotation started in this run reaches staging with a key.
                    return Some(Event::NextStoreFailed);
                };
                Some(match self.engine.slots.write_next(next).await {
                    Ok(()) => Event::NextStored,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot store the next key");
                        Event::NextStoreFailed
                    }
                })
            }
            Action::StageInPlane => {
                let Some(next) = &self.next_key else {
                    return Some(Event::StageFailed);
                };
                Some(match plane.stage(next) {
                    Ok(()) => Event::Staged,
                    Err(e) => {
                        tracing::warn!(error = %e, "the data plane refused the next key");
                        Event::StageFailed
                    }
                })
            }
            Action::Announce { peer, body } => {
                self.send(
                    &peer,
                    "announce",
                    now,
                    Body::RotateAnnounce(body.clone()),
                    move |answer| match answer {
                        Ok(Body::RotateAck(ack)) if ack.confirms(&body) => Some(Event::Acked {
                            peer: String::new(),
                        }),
                        Ok(_) => None,
                        Err(Failure::Declined("unavailable")) => None,
                        Err(Failure::Declined(_)) => Some(Event::AnnounceRefused {
                            peer: String::new(),
                        }),
                        Err(_) => None,
                    },
                );
                None
            }
            Action::PrintManual { peer } => {
                if let Some(line) = self.manual_line(&peer) {
                    tracing::warn!(peer = %peer, command = %line, "manual peer: run this on the peer to give it our next key");
                }
                Some(Event::ManualConfirmed { peer })
            }
            Action::StoreCurrent => {
                let Some(next) = &self.next_key else {
                    return Some(Event::CurrentStoreFailed);
                };
                Some(match self.engine.slots.commit(next).await {
                    Ok(()) => Event::CurrentStored,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot store the new key as current");
                        Event::CurrentStoreFailed
                    }
                })
            }
            Action::PromoteInPlane => {
                let next = self.next_key.clone()?;
                Some(match plane.promote(&next).await {
                    Ok(()) => {
                        self.promoted_at = Some(now);
                        self.key_moved(true, now).await;
                        Event::Promoted
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the data plane did not switch to the new key");
                        Event::PromoteFailed
                    }
                })
            }
            Action::Initiate { peer } => {
                let key = self.peer_key(&peer)?;
                let since = self.promoted_at.unwrap_or(now);
                if plane.handshook(&key, since).await {
                    return Some(Event::HandshakeUnderNew { peer });
                }
                if self.due(("initiate", peer.clone()), now) {
                    plane.initiate(&key);
                }
                None
            }
            Action::DropPreviousInPlane => {
                plane.drop_previous();
                Some(Event::PreviousDropped)
            }
            Action::TellComplete { peer } => {
                let id = self.rotation.as_ref()?.id().clone();
                self.send(
                    &peer,
                    "complete",
                    now,
                    Body::RotateComplete(EndBody { rotation_id: id }),
                    end_told,
                );
                None
            }
            Action::TellAbort { peer } => {
                let id = self.rotation.as_ref()?.id().clone();
                self.send(
                    &peer,
                    "abort",
                    now,
                    Body::RotateAbort(EndBody { rotation_id: id }),
                    end_told,
                );
                None
            }
            Action::RestoreStore => {
                let committed = self.rotation.as_ref().is_some_and(|r| {
                    matches!(r.store(), ztgw_rotation::machine::StoreState::Committed)
                });
                let restored = if committed {
                    self.engine.slots.restore_previous().await
                } else {
                    self.engine.slots.discard_next().await
                };
                match restored {
                    Ok(()) => Some(Event::RolledBackStored),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot restore the key slots; retrying");
                        None
                    }
                }
            }
            Action::DemoteInPlane => {
                // The store is restored first: its current key is the old one.
                let slots = &self.engine.slots;
                let old = async || match slots.read().await {
                    Ok(held) => Some(held.current.key),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot read the restored key; retrying");
                        None
                    }
                };
                if let Err(e) = plane.demote(old).await {
                    tracing::warn!(error = %e, "the data plane did not go back to the old key; retrying");
                    return None;
                }
                self.key_moved(false, now).await;
                Some(Event::Demoted)
            }
            Action::UnstageInPlane => {
                plane.unstage();
                Some(Event::Unstaged)
            }
            Action::Wait { .. } | Action::Finished => None,
        }
    }

    /// Tells the board, the metrics and the log that the running key moved to the new key
    /// (`forward`) or back to the old one.
    async fn key_moved(&self, forward: bool, now: SystemTime) {
        let Some(rotation) = &self.rotation else {
            return;
        };
        let key = if forward {
            rotation.next_public()
        } else {
            rotation.old_public()
        };
        let created = if forward {
            Some(now)
        } else {
            self.engine
                .slots
                .read()
                .await
                .ok()
                .and_then(|s| s.current.created_at)
        };
        self.engine.board.set_key(key.to_string(), created);
        if let Some(created) = created {
            self.engine.metrics.set_key_created(created);
        }
    }

    /// Whether an (action, peer) is due again: never sent, or sent `retry_every` ago.
    fn due(&mut self, what: (&'static str, String), now: SystemTime) -> bool {
        let every = self.timing().retry_every;
        let due = self
            .last_sent
            .get(&what)
            .is_none_or(|at| now.duration_since(*at).unwrap_or_default() >= every);
        if due {
            self.last_sent.insert(what, now);
        }
        due
    }

    /// Sends `body` to `peer` unless a request to it is in flight or was sent less than
    /// `retry_every` ago; `settle` maps the answer to the event it settles.
    pub(super) fn send(
        &mut self,
        peer: &str,
        what: &'static str,
        now: SystemTime,
        body: Body,
        settle: impl FnOnce(Result<Body, Failure>) -> Option<Event> + Send + 'static,
    ) {
        if self.in_flight.contains(peer) || !self.due((what, peer.to_owned()), now) {
            return;
        }
        let Some((address, cluster)) = self.channel_of(peer) else {
            return;
        };
        self.ids = self.ids.wrapping_add(1);
        let id = format!("{}-r{}", self.engine.cluster, self.ids);
        let local = self.engine.tunnel.addr();
        let remote = SocketAddr::new(address, self.engine.control_port);
        let from = self.engine.cluster.clone();
        let answers = self.answers.clone();
        let name = peer.to_owned();
        self.in_flight.insert(name.clone());
        tokio::spawn(async move {
            let target = Target {
                local,
                remote,
                from: &from,
                id: &id,
                expected: &cluster,
            };
            let answer = client::request(&target, &body).await;
            if let Err(failure) = &answer {
                tracing::debug!(peer = %name, ?failure, what, "rotation message not taken");
            }
            let event = settle(answer).map(|event| with_peer(event, &name));
            let _ = answers.send((name, event)).await;
        });
    }

    /// The peer's channel address and cluster, from the latest snapshot.
    fn channel_of(&self, peer: &str) -> Option<(IpAddr, String)> {
        let status = self.engine.board.latest()?;
        let channel = status.channels.iter().find(|c| c.peer == peer)?;
        let address = channel.address.as_deref()?.parse().ok()?;
        Some((address, channel.cluster.clone()))
    }

    /// The key the device runs `peer` under.
    fn peer_key(&self, peer: &str) -> Option<PublicKey> {
        crate::rotate::responder::running_key(&self.engine.board, &self.engine.store, peer)
    }

    /// The `wg set` line that gives a manual peer our next key: run on the peer (its
    /// interface name is the one thing we do not know), it moves the allowed IPs the peer
    /// gives our old key to the new key, then removes the old key. Our first handshake under
    /// the new key gives the peer our endpoint.
    pub(super) fn manual_line(&self, peer: &str) -> Option<String> {
        let rotation = self.rotation.as_ref()?;
        let status = self.engine.board.latest()?;
        status.peers.iter().find(|p| p.name == peer)?;
        Some(format!(
            "wg set <interface> peer {next} allowed-ips \"$(wg show <interface> allowed-ips | awk '$1 == \"{old}\" {{ $1 = \"\"; print }}' | xargs | tr ' ' ,)\" && wg set <interface> peer {old} remove",
            next = rotation.next_public(),
            old = rotation.old_public(),
        ))
    }
}

/// `rotate.complete` and `rotate.abort` are told once the peer answered with the same body,
/// or refused it as ended already the same way (an answer lost before).
fn end_told(answer: Result<Body, Failure>) -> Option<Event> {
    match answer {
        Ok(Body::RotateComplete(_) | Body::RotateAbort(_)) => Some(Event::EndTold {
            peer: String::new(),
        }),
        // The peer does not know the rotation (it never took the announcement, or forgot
        // it): there is nothing to tell it.
        Err(Failure::Declined("unknown_rotation")) => Some(Event::EndTold {
            peer: String::new(),
        }),
        _ => None,
    }
}

/// The event with its peer filled in.
fn with_peer(event: Event, peer: &str) -> Event {
    let peer = peer.to_owned();
    match event {
        Event::Acked { .. } => Event::Acked { peer },
        Event::AnnounceRefused { .. } => Event::AnnounceRefused { peer },
        Event::EndTold { .. } => Event::EndTold { peer },
        other => other,
    }
}
