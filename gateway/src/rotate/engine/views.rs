//! What the rotation loop shows: the plan a rotation started now would follow, the peers as
//! the schedule sees them, and the rotation section of the status.

use std::time::{Duration, SystemTime};

use ztgw_rotation::machine::{Phase, Rotation};
use ztgw_rotation::schedule::{self, Blocker, Channel, Decision, PeerReadiness, ScheduleInput};

use super::Runner;
use crate::core::key::PublicKey;
use crate::status::{
    ChannelState, PlanPeer, RotationPeer, RotationPlan, RotationRun, RotationStatus, unix_seconds,
};

impl Runner {
    /// The peers as the schedule sees them, from the latest snapshot.
    fn readiness(&self, manual: &[String]) -> Vec<PeerReadiness> {
        let Some(status) = self.engine.board.latest() else {
            return Vec::new();
        };
        let store = &self.engine.store;
        let due_after = self
            .engine
            .config
            .schedule
            .max_age
            .saturating_sub(self.engine.config.schedule.lead);
        status
            .peers
            .iter()
            .filter_map(|peer| {
                let shown = PublicKey::from_base64(&peer.public_key).ok()?;
                // The snapshot may lag a peer's rotation that just completed.
                let public_key = store.running_key(&peer.name, shown);
                let hello = status.channels.iter().find(|c| c.peer == peer.name);
                let channel = match hello.map(|c| c.state) {
                    Some(ChannelState::Up) => Channel::Up {
                        can_rotate: hello.is_some_and(|c| {
                            c.capabilities.iter().any(|cap| cap == "rotate.announce")
                        }),
                    },
                    Some(ChannelState::Plain) => Channel::Plain,
                    Some(ChannelState::None) => Channel::None,
                    _ => Channel::Down,
                };
                let peer_due = hello
                    .and_then(|c| c.key_age_seconds)
                    .is_some_and(|age| Duration::from_secs(age) >= due_after);
                Some(PeerReadiness {
                    name: peer.name.clone(),
                    public_key,
                    channel,
                    tunnel_up: peer.connected,
                    rotating: store
                        .get(&peer.name)
                        .is_some_and(|s| s.next_public_key().is_some()),
                    peer_due,
                    manual: manual.contains(&peer.name),
                })
            })
            .collect()
    }

    pub(super) fn schedule_input(&self, manual: &[String]) -> Option<ScheduleInput> {
        let reconciled = self
            .engine
            .readiness
            .read()
            .is_ok_and(|r| r.peers_reconciled);
        if !reconciled {
            return None;
        }
        let identity = self.engine.board.identity();
        Some(ScheduleInput {
            own_public_key: PublicKey::from_base64(&identity.public_key).ok()?,
            key_created: identity.key_created,
            schedule: self.engine.config.schedule.clone(),
            rotation_in_flight: self.in_flight() || self.inconsistent.is_some(),
            peers: self.readiness(manual),
        })
    }

    pub(super) fn plan(&self, manual: &[String], now: Option<SystemTime>) -> RotationPlan {
        let Some(input) = self.schedule_input(manual) else {
            return RotationPlan {
                decision: "blocked".to_owned(),
                blockers: vec![
                    "the gateway has not applied its declared peers yet: try again in a few seconds"
                        .to_owned(),
                ],
                peers: Vec::new(),
                due_unix: None,
            };
        };
        let decision = match now {
            Some(now) => schedule::decide(&input, now),
            None => schedule::decide_now(&input),
        };
        let blockers: Vec<Blocker> = match &decision {
            Decision::Blocked(blockers) => blockers.clone(),
            _ => Vec::new(),
        };
        let mut lines: Vec<String> = blockers.iter().map(ToString::to_string).collect();
        if let (Some(text), true) = (
            &self.inconsistent,
            blockers.contains(&Blocker::OwnRotationInFlight),
        ) {
            lines.push(text.clone());
        }
        let peers = input
            .peers
            .iter()
            .map(|p| {
                let blocker = blockers.iter().find(|b| b.peer() == Some(p.name.as_str()));
                PlanPeer {
                    name: p.name.clone(),
                    how: if blocker.is_some() {
                        "blocked"
                    } else if p.manual {
                        "manual"
                    } else {
                        "announce"
                    }
                    .to_owned(),
                    blocker: blocker.map(ToString::to_string),
                }
            })
            .collect();
        let unknown: Vec<String> = manual
            .iter()
            .filter(|m| !input.peers.iter().any(|p| &p.name == *m))
            .map(|m| format!("--manual-peer {m}: no applied peer has that name"))
            .collect();
        let blocked = !unknown.is_empty();
        lines.extend(unknown);
        RotationPlan {
            decision: match decision {
                Decision::Start if blocked => "blocked",
                Decision::Start => "start",
                Decision::Blocked(_) => "blocked",
                Decision::NotDue { .. } => "not_due",
                Decision::WaitingForWindow { .. } => "waiting_for_window",
                Decision::KeyAgeUnknown => "key_age_unknown",
            }
            .to_owned(),
            blockers: lines,
            peers,
            due_unix: input.key_created.map(|created| {
                unix_seconds(schedule::due_at(
                    created,
                    &input.schedule,
                    &input.own_public_key,
                ))
            }),
        }
    }

    /// Publishes the rotation section of the status and the phase metric.
    pub(super) fn publish(&self) {
        let current = self.rotation.as_ref().map(|r| self.run_status(r));
        let phase = match self.rotation.as_ref().map(Rotation::phase) {
            None | Some(Phase::Complete | Phase::RolledBack) => "idle",
            Some(phase) => phase.name(),
        };
        self.engine.metrics.set_rotation_phase(phase);
        let identity = self.engine.board.identity();
        let due_unix = identity.key_created.and_then(|created| {
            let own = PublicKey::from_base64(&identity.public_key).ok()?;
            Some(unix_seconds(schedule::due_at(
                created,
                &self.engine.config.schedule,
                &own,
            )))
        });
        self.engine.board.publish_rotation(RotationStatus {
            available: true,
            detail: self.inconsistent.clone(),
            current,
            due_unix,
            schedule: self.schedule_note.clone(),
            peers: self.engine.store.statuses(),
        });
    }

    fn run_status(&self, rotation: &Rotation) -> RotationRun {
        let (rollback_reason, finished_unix) = match (rotation.phase(), rotation.outcome()) {
            (Phase::RollingBack { reason, .. }, _) => (Some(reason.to_string()), None),
            (_, Some(ztgw_rotation::machine::Outcome::RolledBack { reason, .. })) => (
                Some(reason.to_string()),
                Some(unix_seconds(rotation.phase_since())),
            ),
            (_, Some(_)) => (None, Some(unix_seconds(rotation.phase_since()))),
            _ => (None, None),
        };
        RotationRun {
            id: rotation.id().to_string(),
            sequence: rotation.sequence(),
            phase: rotation.phase().name().to_owned(),
            started_unix: unix_seconds(rotation.started_at()),
            phase_since_unix: unix_seconds(rotation.phase_since()),
            finished_unix,
            old_public_key: rotation.old_public().to_string(),
            next_public_key: rotation.next_public().to_string(),
            rollback_reason,
            peers: rotation
                .peers()
                .iter()
                .map(|(name, p)| RotationPeer {
                    name: name.clone(),
                    acked: p.acked,
                    handshake: p.handshake_under_new,
                    told_end: p.told_end,
                    manual: p.manual,
                    manual_line: if p.manual && !rotation.is_finished() {
                        self.manual_line(name)
                    } else {
                        None
                    },
                })
                .collect(),
        }
    }
}
