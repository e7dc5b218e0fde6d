//! The reconcile loop: read the device, read the declarations, let the core decide, apply
//! what it decided, tell the source how each declaration fared, and publish metrics and the
//! admin status. It decides only *when* to call the core.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::audit::Audit;
use crate::core::health::{self, Liveness, PeerActivity, PeerCounts, Readiness, ReceiveMark};
use crate::core::key::PublicKey;
use crate::core::peer::{Endpoint, PeerConfig, PeerId, PeerSpec};
use crate::core::plan::{self, Change, Observed, Op, PeerMap};
use crate::core::status::{Link, PeerOutcome, Verdict};
use crate::core::transitions::{self, Observation, PeerStates, Transition};
use crate::core::uapi::DeviceReport;
use crate::core::validate::{self, Context, Outcome, Rejection};
use crate::device::{self, Device};
use crate::metrics::{Metrics, PeerSample};
use crate::source::PeerSource;
use crate::status::{PeerStatus, RejectedDeclaration, StatusBoard, unix_seconds};

/// How often the loop runs: declared changes take effect within two of these.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Where the driver publishes what it observed.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// `/readyz` checks.
    pub readiness: Arc<RwLock<Readiness>>,
    /// The admin API's status snapshot.
    pub status: StatusBoard,
    /// The audit log, when `[audit]` is on: every peer change applied, failed or rejected.
    pub audit: Option<Audit>,
}

/// The reconcile loop's state.
#[derive(Debug)]
pub struct Driver<D, S> {
    device: D,
    source: S,
    own_public_key: PublicKey,
    own_address: std::net::IpAddr,
    liveness: Liveness,
    metrics: Metrics,
    readiness: Arc<RwLock<Readiness>>,
    status: StatusBoard,
    /// For each declaration, the configuration (and so the key) its device peer was last
    /// given by us: a peer is known by its declaration, its key is an attribute.
    applied: PeerMap,
    /// For each declaration in `applied`, what it was accepted as when it was applied: a
    /// running peer that still claims the same wins conflicts against one edited since.
    running: BTreeMap<PeerId, PeerSpec>,
    /// Rejections of the previous pass, so each is logged once, not every second.
    last_rejections: Vec<Rejection>,
    last_source_error: Option<String>,
    /// Whether the last pass found the source not fully read yet (logged once).
    waiting_for_source: bool,
    /// Name and cluster of each accepted peer the device runs, by the key it runs under, for
    /// metric labels and the status.
    labels: BTreeMap<PublicKey, PeerLabel>,
    /// When traffic from each device peer was last seen.
    receive: BTreeMap<PublicKey, ReceiveMark>,
    /// Whether each accepted peer was up at the last pass, to log only its transitions.
    peer_states: PeerStates,
    audit: Option<Audit>,
    /// Device failures of the previous pass, so each is audited once, not every second.
    last_failures: BTreeMap<Option<PeerId>, String>,
    /// The peers' own key rotations: a peer that rotated runs under its new key while its
    /// declaration still names the old one.
    peer_store: Option<crate::rotate::PeerStore>,
}

#[derive(Debug, Clone)]
struct PeerLabel {
    id: PeerId,
    name: String,
    cluster: String,
}

impl<D: Device, S: PeerSource> Driver<D, S> {
    /// Creates a driver for a device that is up.
    pub fn new(
        device: D,
        source: S,
        own_public_key: PublicKey,
        own_address: std::net::IpAddr,
        liveness: Liveness,
        outputs: Outputs,
    ) -> Self {
        Self {
            device,
            source,
            own_public_key,
            own_address,
            liveness,
            metrics: outputs.metrics,
            readiness: outputs.readiness,
            status: outputs.status,
            applied: PeerMap::new(),
            running: BTreeMap::new(),
            last_rejections: Vec::new(),
            last_source_error: None,
            labels: BTreeMap::new(),
            receive: BTreeMap::new(),
            peer_states: PeerStates::default(),
            waiting_for_source: false,
            audit: outputs.audit,
            last_failures: BTreeMap::new(),
            peer_store: None,
        }
    }

    /// Runs each peer under the key its rotations say (see [`crate::rotate::PeerStore`]).
    #[must_use]
    pub fn with_peer_store(mut self, store: crate::rotate::PeerStore) -> Self {
        self.peer_store = Some(store);
        self
    }

    /// Returns the device, for shutdown.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Returns the device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Returns the device, for a rotation's request on a device the loop owns.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Returns the source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Runs one reconcile pass at `now`.
    pub async fn tick(&mut self, now: SystemTime) {
        let report = match self.device.report().await {
            Ok(report) => report,
            Err(e) => {
                self.metrics.reconcile_errors.inc();
                tracing::warn!(error = %format!("{e:#}"), "cannot read the device; retrying");
                return;
            }
        };
        let mut observed = self.observed(&report);
        let declarations = match self.source.declarations(now).await {
            Ok(Some(declarations)) => {
                self.last_source_error = None;
                self.waiting_for_source = false;
                declarations
            }
            Ok(None) => {
                if !self.waiting_for_source {
                    tracing::info!("waiting for the peer source's first complete read");
                }
                self.waiting_for_source = true;
                self.publish(&report, now);
                return;
            }
            Err(e) => {
                let message = format!("{:#}", anyhow::Error::from(e));
                if self.last_source_error.as_ref() != Some(&message) {
                    tracing::warn!(error = %message, "cannot read peers; keeping the current peers");
                }
                self.last_source_error = Some(message);
                self.metrics.reconcile_errors.inc();
                self.publish(&report, now);
                return;
            }
        };
        let underlay_addresses = match self.device.underlay_addresses() {
            Ok(addresses) => addresses,
            Err(e) => {
                self.metrics.reconcile_errors.inc();
                tracing::warn!(error = %e, "cannot list the host's addresses; retrying");
                self.publish(&report, now);
                return;
            }
        };
        let ctx = Context {
            own_public_key: self.own_public_key,
            own_address: self.own_address,
            underlay_addresses,
            resolved_endpoints: observed
                .declared
                .iter()
                .filter_map(|(id, config)| Some((id.clone(), config.endpoint?.ip())))
                .collect(),
            incumbents: self
                .running
                .iter()
                .filter(|(id, _)| observed.declared.contains_key(*id))
                .map(|(id, spec)| (id.clone(), spec.clone()))
                .collect(),
            supports_secret_refs: self.source.supports_secret_refs(),
        };
        let outcome = validate::validate(declarations, &ctx);
        self.log_rejections(&outcome.rejected);
        let desired = self.desired(&outcome.accepted, &observed.declared).await;
        for (id, config) in observed.adopt(&desired) {
            self.record(id, config);
        }

        let changes = plan::plan(&desired, &observed);
        let mut failures: BTreeMap<Option<PeerId>, String> = BTreeMap::new();
        // What the device holds under each key as the changes go (routes move from it).
        let mut held = observed.by_key();
        for change in &changes {
            let key = change.op.device_key();
            match self.device.apply(&change.op, held.get(&key)).await {
                Ok(()) => {
                    log_applied(change);
                    if let Some(audit) = &self.audit {
                        audit.peer_op(&change.op, change.peer.as_ref().map(PeerId::name), None);
                    }
                    held.remove(&key);
                    if let Op::UpsertPeer(config) | Op::ReplaceKey { config, .. } = &change.op {
                        held.insert(config.public_key, config.clone());
                    }
                    match (&change.op, &change.peer) {
                        (Op::RemovePeer(_), Some(id)) => {
                            self.applied.remove(id);
                        }
                        (Op::UpsertPeer(config) | Op::ReplaceKey { config, .. }, Some(id)) => {
                            self.record(id.clone(), config.clone());
                        }
                        (_, None) => {}
                    }
                }
                Err(e) => {
                    let message = format!("{:#}", anyhow::Error::from(e));
                    self.metrics.reconcile_errors.inc();
                    tracing::warn!(error = %message, op = ?op_summary(change), "peer change failed; will retry");
                    if let Some(audit) = &self.audit
                        && self.last_failures.get(&change.peer) != Some(&message)
                    {
                        audit.peer_op(
                            &change.op,
                            change.peer.as_ref().map(PeerId::name),
                            Some(&message),
                        );
                    }
                    failures.insert(change.peer.clone(), message);
                }
            }
        }
        self.remember_running(&outcome.accepted, &failures);
        // What is published (and read by readiness and the rotation schedule) is the device
        // after the changes, not before them.
        let mut fresh = true;
        let report = if changes.is_empty() {
            report
        } else {
            match self.device.report().await {
                Ok(after) => after,
                Err(e) => {
                    self.metrics.reconcile_errors.inc();
                    tracing::warn!(error = %format!("{e:#}"), "cannot read the device after the changes; retrying");
                    fresh = false;
                    report
                }
            }
        };
        self.labels = outcome
            .accepted
            .iter()
            .filter_map(|s| {
                let running = self.applied.get(&s.id)?;
                let label = PeerLabel {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    cluster: s.cluster.clone(),
                };
                Some((running.public_key, label))
            })
            .collect();
        self.publish(&report, now);
        self.last_failures.clone_from(&failures);
        let outcomes = outcomes(&outcome, &failures, &self.applied, &report);
        self.source.publish(&outcomes, now).await;
        if failures.is_empty()
            && fresh
            && let Ok(mut readiness) = self.readiness.write()
        {
            readiness.peers_reconciled = true;
        }
    }

    /// Builds the observed state: for a peer we configured, by its declaration, what we gave
    /// it (so a learned endpoint does not count as drift); any other device peer as the
    /// device reports it, by key.
    fn observed(&mut self, report: &DeviceReport) -> Observed {
        let device: BTreeMap<PublicKey, PeerConfig> = report
            .peers
            .iter()
            .map(|p| (p.public_key, p.config()))
            .collect();
        self.applied
            .retain(|_, config| device.contains_key(&config.public_key));
        Observed::new(&self.applied, &device)
    }

    /// Keeps, for each declaration the device runs, the accepted spec it was last applied
    /// from (a spec whose change failed leaves the previous one).
    fn remember_running(
        &mut self,
        accepted: &[PeerSpec],
        failures: &BTreeMap<Option<PeerId>, String>,
    ) {
        for spec in accepted {
            let failed = failures.contains_key(&Some(spec.id.clone()));
            if self.applied.contains_key(&spec.id)
                && (!failed || !self.running.contains_key(&spec.id))
            {
                self.running.insert(spec.id.clone(), spec.clone());
            }
        }
        let applied = &self.applied;
        self.running.retain(|id, _| applied.contains_key(id));
    }

    /// Records that the device runs `config` for declaration `id`; no other declaration
    /// holds that key any longer (the device has one peer per key).
    fn record(&mut self, id: PeerId, config: PeerConfig) {
        self.applied
            .retain(|other, held| *other == id || held.public_key != config.public_key);
        self.applied.insert(id, config);
    }

    async fn desired(&self, accepted: &[PeerSpec], observed: &PeerMap) -> PeerMap {
        let mut desired = PeerMap::new();
        for spec in accepted {
            let endpoint = match &spec.endpoint {
                None => None,
                Some(Endpoint::Addr(addr)) => Some(*addr),
                Some(Endpoint::Host { host, port }) => match device::resolve(host, *port).await {
                    Ok(addr) => Some(addr),
                    Err(e) => {
                        let kept: Option<SocketAddr> =
                            observed.get(&spec.id).and_then(|c| c.endpoint);
                        tracing::warn!(peer = %spec.name, endpoint = %format!("{host}:{port}"), error = %e, kept = ?kept, "cannot resolve endpoint; keeping the previous address");
                        kept
                    }
                },
            };
            let mut config = spec.to_config(endpoint);
            if let Some(store) = &self.peer_store {
                config.public_key = store.running_key(&spec.name, spec.public_key);
            }
            desired.insert(spec.id.clone(), config);
        }
        if let Some(store) = &self.peer_store {
            store.set_declared(
                accepted
                    .iter()
                    .map(|spec| (spec.name.clone(), spec.public_key))
                    .collect(),
            );
        }
        desired
    }

    fn log_rejections(&mut self, rejected: &[Rejection]) {
        for rejection in rejected {
            if !self.last_rejections.contains(rejection) {
                tracing::warn!(
                    origin = %rejection.origin,
                    kind = rejection.kind.as_str(),
                    name = rejection.name.as_deref().unwrap_or("-"),
                    reason = %rejection.reason,
                    "rejected peer declaration {}: {}",
                    rejection.origin,
                    rejection.reason
                );
                if let Some(audit) = &self.audit {
                    audit.peer_rejected(rejection);
                }
            }
        }
        self.last_rejections = rejected.to_vec();
    }

    /// Publishes metrics and the status snapshot from one device report, every peer judged
    /// by the same connected rule, and logs the peers that came up or went down.
    fn publish(&mut self, report: &DeviceReport, now: SystemTime) {
        self.receive = report
            .peers
            .iter()
            .map(|p| {
                let previous = self.receive.get(&p.public_key).copied();
                let mark = health::observe_receive(previous, p.rx_bytes, now);
                (p.public_key, mark)
            })
            .collect();
        let observations: Vec<Observation> = report
            .peers
            .iter()
            .filter_map(|p| {
                let label = self.labels.get(&p.public_key)?;
                Some(Observation {
                    id: label.id.clone(),
                    name: label.name.clone(),
                    activity: PeerActivity {
                        last_handshake: p.last_handshake.map(|d| SystemTime::UNIX_EPOCH + d),
                        last_receive: self.receive.get(&p.public_key).and_then(|m| m.at),
                        keepalive: p.persistent_keepalive,
                    },
                })
            })
            .collect();
        let (states, changes) =
            transitions::observe(&self.peer_states, &observations, &self.liveness, now);
        self.peer_states = states;
        changes.iter().for_each(log_transition);
        let mut samples = Vec::new();
        let mut peers = Vec::new();
        let mut counts = PeerCounts {
            rejected: self.last_rejections.len(),
            ..PeerCounts::default()
        };
        for p in &report.peers {
            let Some(label) = self.labels.get(&p.public_key) else {
                continue;
            };
            let last_handshake = p.last_handshake.map(|d| SystemTime::UNIX_EPOCH + d);
            let up = self.peer_states.is_up(&label.id).unwrap_or(false);
            if up {
                counts.connected += 1;
            } else {
                counts.disconnected += 1;
            }
            samples.push(PeerSample {
                cluster: label.cluster.clone(),
                up,
                last_handshake_seconds: p.last_handshake.map_or(0.0, |d| d.as_secs_f64()),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            });
            peers.push(PeerStatus {
                name: label.name.clone(),
                cluster: label.cluster.clone(),
                public_key: p.public_key.to_string(),
                endpoint: p.endpoint.map(|e| e.to_string()),
                connected: up,
                last_handshake_unix: last_handshake.map(unix_seconds),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
                persistent_keepalive: p.persistent_keepalive,
            });
        }
        self.metrics.set_peers(samples);
        self.metrics.set_peer_counts(counts);
        self.metrics
            .set_dropped_packets(self.device.name(), &self.device.dropped_packets());
        let rejected = self
            .last_rejections
            .iter()
            .map(|r| RejectedDeclaration {
                origin: r.origin.clone(),
                name: r.name.clone(),
                reason: r.reason.clone(),
            })
            .collect();
        self.status.publish(now, peers, rejected);
    }
}

/// Says how each declaration fared: rejected, applied, or refused by the device.
fn outcomes(
    outcome: &Outcome,
    failures: &BTreeMap<Option<PeerId>, String>,
    applied: &PeerMap,
    report: &DeviceReport,
) -> Vec<PeerOutcome> {
    let mut outcomes: Vec<PeerOutcome> = outcome
        .rejected
        .iter()
        .map(|r| PeerOutcome {
            origin: r.origin.clone(),
            verdict: Verdict::Rejected {
                kind: r.kind,
                message: r.reason.clone(),
            },
            link: None,
        })
        .collect();
    outcomes.extend(outcome.accepted.iter().map(|spec| {
        let verdict = match failures.get(&Some(spec.id.clone())) {
            Some(message) => Verdict::NotApplied {
                message: message.clone(),
            },
            None => Verdict::Applied,
        };
        let running = applied.get(&spec.id).map(|c| c.public_key);
        let link = report
            .peers
            .iter()
            .find(|p| Some(p.public_key) == running)
            .map(|p| Link {
                last_handshake: p.last_handshake.map(|d| SystemTime::UNIX_EPOCH + d),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                persistent_keepalive: p.persistent_keepalive,
            });
        PeerOutcome {
            origin: spec.origin.clone(),
            verdict,
            link,
        }
    }));
    outcomes
}

/// Logs one peer's transition by its declared name (never its key).
fn log_transition(transition: &Transition) {
    let peer = transition.name.as_str();
    if transition.up {
        tracing::info!(peer, "peer up");
    } else {
        tracing::warn!(peer, "peer down");
    }
}

fn op_summary(change: &Change) -> String {
    match &change.op {
        Op::RemovePeer(key) => format!("remove {key}"),
        Op::UpsertPeer(config) => format!("upsert {}", config.public_key),
        Op::ReplaceKey { old, config } => format!("replace key {old} by {}", config.public_key),
    }
}

/// Logs an applied change by the peer's declared name (a peer nobody declares by its key).
fn log_applied(change: &Change) {
    let name = change.peer.as_ref().map_or("-", PeerId::name);
    match &change.op {
        Op::RemovePeer(key) => tracing::info!(public_key = %key, peer = name, "peer removed"),
        Op::UpsertPeer(config) => {
            let allowed: Vec<String> = config.allowed_ips.iter().map(ToString::to_string).collect();
            tracing::info!(
                peer = name,
                public_key = %config.public_key,
                endpoint = ?config.endpoint,
                allowed_ips = %allowed.join(","),
                "peer applied"
            );
        }
        Op::ReplaceKey { old, config } => {
            let allowed: Vec<String> = config.allowed_ips.iter().map(ToString::to_string).collect();
            tracing::info!(
                peer = name,
                public_key = %config.public_key,
                old_public_key = %old,
                endpoint = ?config.endpoint,
                allowed_ips = %allowed.join(","),
                "peer key replaced"
            );
        }
    }
}

#[cfg(test)]
mod tests;
