//! This gateway's own key rotations: the driving loop over [`Rotation`] (`docs/rotation.md`),
//! started by the schedule or by the operator, resumed or rolled back at start.
//!
//! The loop performs what the machine asks, each action through a thin adapter: the key
//! slots beside the key file (`FileKeySlots`), the native data plane's handle, and the
//! control channel (requests run as tasks whose answers come back as events). The record is
//! persisted before anything it asks for is performed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use kms_client::PrivateKey;
use tokio::sync::{mpsc, oneshot};
use ztgw_rotation::RotationId;
use ztgw_rotation::machine::{Event, Participant, Phase, Rotation, Timing};
use ztgw_rotation::resume::{self, Resume, StoredState};

mod actions;
mod views;

use super::peer_store::PeerStore;
use super::plane::Plane;
use super::responder::Responder;
use super::slots::KeySlots;
use crate::audit::Audit;
use crate::config::RotationConfig;
use crate::core::key::PublicKey;
use crate::metrics::Metrics;
use crate::status::{RotationPlan, StatusBoard, unix_seconds};

/// How often the loop looks at the schedule, the peers' pending keys and the deadlines.
const POLL: Duration = Duration::from_secs(1);

/// How often it looks while a rotation of ours is in flight.
const POLL_ROTATING: Duration = Duration::from_millis(100);

/// How often the schedule is consulted.
const SCHEDULE_EVERY: Duration = Duration::from_secs(10);

/// An operator's request, from the admin API.
#[derive(Debug)]
pub enum Command {
    /// What would happen now (`peerctl rotate --plan`).
    Plan {
        /// Peers the operator handles out of band.
        manual: Vec<String>,
        /// Where the plan goes.
        reply: oneshot::Sender<RotationPlan>,
    },
    /// Start a rotation now (`--now`).
    Start {
        /// Peers the operator handles out of band.
        manual: Vec<String>,
        /// The started rotation's id, or why it did not start.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Roll the rotation in flight back (`--abort`).
    Abort {
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The admin API's handle on the rotation loop. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    commands: mpsc::Sender<Command>,
}

impl Control {
    /// Returns what would happen now.
    ///
    /// # Errors
    /// When the loop is gone.
    pub async fn plan(&self, manual: Vec<String>) -> Result<RotationPlan, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Plan { manual, reply }).await?;
        answer.await.map_err(|_| gone())
    }

    /// Starts a rotation now; returns its id.
    ///
    /// # Errors
    /// Why it did not start, in our words.
    pub async fn start(&self, manual: Vec<String>) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Start { manual, reply }).await?;
        answer.await.map_err(|_| gone())?
    }

    /// Rolls the rotation in flight back.
    ///
    /// # Errors
    /// Why it cannot, in our words.
    pub async fn abort(&self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Abort { reply }).await?;
        answer.await.map_err(|_| gone())?
    }

    async fn send(&self, command: Command) -> Result<(), String> {
        self.commands.send(command).await.map_err(|_| gone())
    }
}

fn gone() -> String {
    "the rotation service has stopped".to_owned()
}

/// Everything the rotation loop works with.
#[derive(Debug)]
pub struct Engine {
    /// `cluster.name`.
    pub cluster: String,
    /// `[interface] address`.
    pub tunnel: IpNet,
    /// `control.port`.
    pub control_port: u16,
    /// `[key] rotation_*`.
    pub config: RotationConfig,
    /// The key store's slots.
    pub slots: KeySlots,
    /// The data plane.
    pub plane: Plane,
    /// Peers, channels, our key; where the rotation status goes.
    pub board: StatusBoard,
    /// The peers' rotation states.
    pub store: PeerStore,
    /// The peers' side, reconciled every second; `None` on a plane that cannot take a
    /// peer's next key (the kernel).
    pub responder: Option<Responder>,
    /// Rotation metrics.
    pub metrics: Metrics,
    /// Every step is recorded.
    pub audit: Option<Audit>,
    /// No rotation starts before the driver applied the declared peers once: a rotation
    /// that does not know a peer would leave it behind on the old key.
    pub readiness: std::sync::Arc<std::sync::RwLock<crate::core::health::Readiness>>,
}

/// A request to a peer finished: the peer, and the event it settles (`None`: retry later).
type Answer = (String, Option<Event>);

impl Engine {
    /// Starts the loop; it runs until the returned task is aborted.
    pub fn start(self) -> (Control, tokio::task::JoinHandle<()>) {
        let (commands, inbox) = mpsc::channel(8);
        let task = tokio::spawn(self.run(inbox));
        (Control { commands }, task)
    }

    async fn run(self, mut inbox: mpsc::Receiver<Command>) {
        let (answers, mut answered) = mpsc::channel::<Answer>(64);
        let mut runner = Runner {
            engine: self,
            rotation: None,
            next_key: None,
            inconsistent: None,
            in_flight: BTreeSet::new(),
            promoted_at: None,
            last_sent: BTreeMap::new(),
            answers,
            ids: 0,
            last_schedule: None,
            schedule_note: None,
            unsaved: false,
        };
        runner.resume_at_start().await;
        loop {
            runner.drive().await;
            runner.publish();
            // A rotation in flight looks at the data plane often: a handshake under the new
            // key shows there, not as a message.
            let pause = if runner.in_flight() {
                POLL_ROTATING
            } else {
                POLL
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {
                    if let Some(responder) = &runner.engine.responder {
                        responder.reconcile().await;
                    }
                    runner.consult_schedule().await;
                }
                Some(command) = inbox.recv() => runner.command(command).await,
                Some((peer, event)) = answered.recv() => {
                    runner.in_flight.remove(&peer);
                    if let Some(event) = event {
                        runner.feed(event).await;
                    }
                }
            }
        }
    }
}

struct Runner {
    engine: Engine,
    rotation: Option<Rotation>,
    /// The next private key, from its generation until the commit.
    next_key: Option<PrivateKey>,
    /// Why the stored rotation cannot be resumed: no new rotation starts until the operator
    /// looked.
    inconsistent: Option<String>,
    /// Peers with a request in flight.
    in_flight: BTreeSet<String>,
    /// When the data plane switched to the new key (or this run resumed a switched one).
    promoted_at: Option<SystemTime>,
    /// When each (action, peer) was last sent, to pace the retries.
    last_sent: BTreeMap<(&'static str, String), SystemTime>,
    answers: mpsc::Sender<Answer>,
    ids: u64,
    last_schedule: Option<SystemTime>,
    schedule_note: Option<String>,
    /// The record changed and could not be written: nothing more is performed until it is.
    unsaved: bool,
}

impl Runner {
    fn timing(&self) -> Timing {
        self.engine.config.timing
    }

    /// Reads the slots and the record, and resumes, rolls back or reports an inconsistency.
    async fn resume_at_start(&mut self) {
        let slots = match self.engine.slots.read().await {
            Ok(slots) => slots,
            Err(e) => {
                self.inconsistent = Some(format!("cannot read the key slots: {e:#}"));
                return;
            }
        };
        let record = match slots
            .record
            .as_deref()
            .map(serde_json::from_str::<Rotation>)
        {
            None => None,
            Some(Ok(record)) => Some(record),
            Some(Err(_)) => {
                self.inconsistent = Some(format!(
                    "the rotation record {} is damaged",
                    self.engine.slots.describe()
                ));
                return;
            }
        };
        let public = |key: &PrivateKey| PublicKey::from_bytes(key.public_key());
        let stored = StoredState {
            current: public(&slots.current.key),
            current_created: slots.current.created_at,
            next: slots.next.as_ref().map(public),
            previous: slots.previous.as_ref().map(public),
            record: record.clone(),
        };
        match resume::resume(&stored, crate::clock::now()) {
            Ok(Resume::Nothing) => self.rotation = record,
            Ok(Resume::RollBack(rotation)) => {
                tracing::warn!(rotation_id = %rotation.id(), "a key rotation was interrupted before its commit; rolling it back");
                self.audit_step(&rotation, "resumed", "roll back");
                self.rotation = Some(rotation);
                self.persist().await;
            }
            Ok(Resume::Verify(rotation)) => {
                tracing::warn!(rotation_id = %rotation.id(), "a key rotation was interrupted after its commit; verifying the new key again");
                self.audit_step(&rotation, "resumed", "verify");
                self.rotation = Some(rotation);
                self.persist().await;
            }
            Err(inconsistency) => {
                let text = format!(
                    "the key slots {} and the rotation record disagree ({}): look at them before rotating again",
                    self.engine.slots.describe(),
                    inconsistency.as_str()
                );
                tracing::error!("{text}");
                self.inconsistent = Some(text);
                self.rotation = record;
            }
        }
    }

    fn in_flight(&self) -> bool {
        self.rotation.as_ref().is_some_and(|r| !r.is_finished())
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Plan { manual, reply } => {
                let _ = reply.send(self.plan(&manual, None));
            }
            Command::Start { manual, reply } => {
                let _ = reply.send(self.start(&manual, "operator").await);
            }
            Command::Abort { reply } => {
                let _ = reply.send(self.abort().await);
            }
        }
    }

    async fn consult_schedule(&mut self) {
        let now = crate::clock::now();
        if self
            .last_schedule
            .is_some_and(|at| now.duration_since(at).unwrap_or_default() < SCHEDULE_EVERY)
        {
            return;
        }
        self.last_schedule = Some(now);
        let plan = self.plan(&[], Some(now));
        let note = match plan.decision.as_str() {
            "start" => {
                if let Err(e) = self.start(&[], "schedule").await {
                    tracing::warn!(error = %e, "the scheduled key rotation did not start");
                }
                None
            }
            "blocked" => Some(format!("blocked: {}", plan.blockers.join("; "))),
            other => Some(other.to_owned()),
        };
        if note != self.schedule_note {
            if let Some(text) = &note
                && text.starts_with("blocked")
            {
                tracing::warn!(schedule = %text, "the key is due for rotation and cannot rotate now");
            }
            self.schedule_note = note;
        }
    }

    /// Starts a rotation: generates the next key and persists a new record.
    async fn start(&mut self, manual: &[String], by: &str) -> Result<String, String> {
        let plan = self.plan(manual, None);
        if plan.decision != "start" {
            return Err(format!(
                "the rotation cannot start: {}",
                plan.blockers.join("; ")
            ));
        }
        let input = self.schedule_input(manual).ok_or_else(|| {
            "the gateway has not applied its declared peers yet: try again in a few seconds"
                .to_owned()
        })?;
        let next = PrivateKey::generate().map_err(|_| "the system RNG failed".to_owned())?;
        let mut id_bytes = [0u8; 8];
        getrandom::fill(&mut id_bytes).map_err(|_| "the system RNG failed".to_owned())?;
        let now = crate::clock::now();
        let last = self.rotation.as_ref().map_or(0, Rotation::sequence);
        // A sequence no lower than the clock's seconds survives a lost record: peers refuse
        // one that does not advance.
        let sequence = last.saturating_add(1).max(unix_seconds(now));
        let participants: Vec<Participant> = input.peers.iter().map(Participant::from).collect();
        let rotation = Rotation::new(
            RotationId::from_bytes(id_bytes),
            sequence,
            input.own_public_key,
            PublicKey::from_bytes(next.public_key()),
            participants,
            now,
        )
        .map_err(|e| e.to_string())?;
        let id = rotation.id().to_string();
        tracing::info!(rotation_id = %id, by, peers = rotation.peers().len(), "key rotation started");
        self.audit_step(&rotation, "started", by);
        self.rotation = Some(rotation);
        self.next_key = Some(next);
        self.in_flight.clear();
        self.last_sent.clear();
        if !self.persist().await {
            self.rotation = None;
            self.next_key = None;
            self.unsaved = false;
            self.engine.metrics.rotation_failed();
            return Err(format!(
                "the rotation record cannot be written to the key store {}: nothing was changed",
                self.engine.slots.describe()
            ));
        }
        Ok(id)
    }

    async fn abort(&mut self) -> Result<(), String> {
        let Some(rotation) = &self.rotation else {
            return Err("no key rotation is under way".to_owned());
        };
        if rotation.is_finished() {
            return Err("no key rotation is under way".to_owned());
        }
        self.feed_checked(Event::Abort {
            reason: "peerctl rotate --abort".to_owned(),
        })
        .await
    }

    async fn feed(&mut self, event: Event) {
        if let Err(e) = self.feed_checked(event).await {
            tracing::debug!(error = %e, "rotation event not taken");
        }
    }

    async fn feed_checked(&mut self, event: Event) -> Result<(), String> {
        let now = crate::clock::now();
        let Some(rotation) = &mut self.rotation else {
            return Err("no key rotation is under way".to_owned());
        };
        let before = rotation.clone();
        rotation.on(event, now).map_err(|e| e.to_string())?;
        if *rotation != before {
            self.after_change(&before).await;
        }
        Ok(())
    }

    /// Persists, audits and reports a record that changed.
    async fn after_change(&mut self, before: &Rotation) {
        let Some(rotation) = self.rotation.clone() else {
            return;
        };
        self.persist().await;
        if rotation.phase() != before.phase() {
            let phase = rotation.phase().name();
            tracing::info!(rotation_id = %rotation.id(), phase, "key rotation phase");
            let detail = match rotation.phase() {
                Phase::RollingBack { reason, .. } => reason.to_string(),
                _ => String::new(),
            };
            self.audit_step(&rotation, phase, &detail);
            if matches!(rotation.phase(), Phase::RollingBack { .. }) {
                // Failed now: the rollback may wait for the key store to come back.
                self.engine.metrics.rotation_failed();
            }
            if rotation.is_finished() {
                self.finished(&rotation);
            }
        }
    }

    fn finished(&mut self, rotation: &Rotation) {
        let completed = matches!(rotation.phase(), Phase::Complete);
        let took = crate::clock::now()
            .duration_since(rotation.started_at())
            .unwrap_or_default();
        self.engine.metrics.rotation_ended(completed, took);
        self.next_key = None;
        if completed {
            tracing::info!(rotation_id = %rotation.id(), seconds = took.as_secs_f64(), public_key = %rotation.next_public(), "key rotation complete");
        } else {
            tracing::warn!(rotation_id = %rotation.id(), seconds = took.as_secs_f64(), "key rotation rolled back");
        }
    }

    /// Writes the record; `false` when it could not be written (nothing is performed then).
    async fn persist(&mut self) -> bool {
        let Some(rotation) = &self.rotation else {
            return true;
        };
        let written = match serde_json::to_string_pretty(rotation) {
            Ok(text) => self
                .engine
                .slots
                .write_record(&text)
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        };
        self.unsaved = written.is_err();
        match written {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the rotation record; retrying");
                false
            }
        }
    }

    /// Performs what the rotation asks until nothing changes.
    async fn drive(&mut self) {
        for _ in 0..32 {
            // The record is written before anything it asks for is performed.
            if self.unsaved && !self.persist().await {
                self.store_unreachable().await;
                return;
            }
            let Some(rotation) = &mut self.rotation else {
                return;
            };
            if rotation.is_finished() {
                return;
            }
            if self.engine.config.hold.as_deref() == Some(rotation.phase().name()) {
                // Test only: the gateway is to be killed at this boundary.
                return;
            }
            let now = crate::clock::now();
            let timing = self.engine.config.timing;
            let before = rotation.clone();
            if rotation.tick(now, &timing) {
                self.after_change(&before).await;
                continue;
            }
            let actions = rotation.next_actions(now, &timing);
            for action in actions {
                let Some(event) = self.perform(action, now).await else {
                    continue;
                };
                let phase = self.rotation.as_ref().map(|r| r.phase().clone());
                self.feed(event).await;
                if self.rotation.as_ref().map(|r| r.phase().clone()) != phase {
                    break;
                }
            }
            if self.rotation.as_ref() == Some(&before) {
                return;
            }
        }
    }

    /// The record cannot be written (the key store is unreachable): nothing is performed,
    /// but deadlines still apply, and a rotation not committed yet fails now (it would need
    /// the store to go on), so that it is counted and rolls back as soon as the store is
    /// back.
    async fn store_unreachable(&mut self) {
        let now = crate::clock::now();
        let timing = self.timing();
        let Some(rotation) = &mut self.rotation else {
            return;
        };
        let before = rotation.clone();
        rotation.tick(now, &timing);
        let failed = match (rotation.phase(), rotation.store()) {
            (Phase::Staging, _) => Some(Event::NextStoreFailed),
            (Phase::Committing, ztgw_rotation::machine::StoreState::NextStored) => {
                Some(Event::CurrentStoreFailed)
            }
            _ => None,
        };
        if let Some(event) = failed {
            let _ = rotation.on(event, now);
        }
        if *rotation != before {
            self.after_change(&before).await;
        }
    }

    fn audit_step(&self, rotation: &Rotation, step: &str, detail: &str) {
        if let Some(audit) = &self.engine.audit {
            audit.record(
                ztgw_audit::kind::KEY_ROTATION,
                &self.engine.cluster,
                rotation.id().as_str(),
                step,
                crate::audit::details([
                    ("sequence", rotation.sequence().into()),
                    ("old_public_key", rotation.old_public().to_string().into()),
                    ("next_public_key", rotation.next_public().to_string().into()),
                    ("detail", detail.into()),
                ]),
            );
        }
    }
}
