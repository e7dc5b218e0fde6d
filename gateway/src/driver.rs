//! The reconcile loop: read the device, read the declarations, let the core decide, apply
//! what it decided, tell the source how each declaration fared, and publish metrics and the
//! admin status. It decides only *when* to call the core.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::audit::Audit;
use crate::core::health::{self, Liveness, PeerActivity, PeerCounts, Readiness, ReceiveMark};
use crate::core::key::PublicKey;
use crate::core::peer::{Endpoint, PeerSpec};
use crate::core::plan::{self, Op, PeerMap};
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
    /// The configuration each device peer was last given by us.
    applied: PeerMap,
    /// Rejections of the previous pass, so each is logged once, not every second.
    last_rejections: Vec<Rejection>,
    last_source_error: Option<String>,
    /// Whether the last pass found the source not fully read yet (logged once).
    waiting_for_source: bool,
    /// Name and cluster of each accepted peer, for metric labels and the status.
    labels: BTreeMap<PublicKey, PeerLabel>,
    /// When traffic from each device peer was last seen.
    receive: BTreeMap<PublicKey, ReceiveMark>,
    /// Whether each accepted peer was up at the last pass, to log only its transitions.
    peer_states: PeerStates,
    audit: Option<Audit>,
    /// Device failures of the previous pass, so each is audited once, not every second.
    last_failures: BTreeMap<PublicKey, String>,
}

#[derive(Debug, Clone)]
struct PeerLabel {
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
            last_rejections: Vec::new(),
            last_source_error: None,
            labels: BTreeMap::new(),
            receive: BTreeMap::new(),
            peer_states: PeerStates::default(),
            waiting_for_source: false,
            audit: outputs.audit,
            last_failures: BTreeMap::new(),
        }
    }

    /// Returns the device, for shutdown.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Returns the device.
    pub fn device(&self) -> &D {
        &self.device
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
        let observed = self.observed(&report);
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
                .iter()
                .filter_map(|(key, config)| Some((*key, config.endpoint?.ip())))
                .collect(),
            incumbents: observed.keys().copied().collect(),
            supports_secret_refs: self.source.supports_secret_refs(),
        };
        let outcome = validate::validate(declarations, &ctx);
        self.log_rejections(&outcome.rejected);
        let desired = self.desired(&outcome.accepted, &observed).await;
        self.labels = outcome
            .accepted
            .iter()
            .map(|s| {
                let label = PeerLabel {
                    name: s.name.clone(),
                    cluster: s.cluster.clone(),
                };
                (s.public_key, label)
            })
            .collect();

        let ops = plan::plan(&desired, &observed);
        let mut failures: BTreeMap<PublicKey, String> = BTreeMap::new();
        for op in &ops {
            let key = op.device_key();
            let previous = observed.get(&key);
            match self.device.apply(op, previous).await {
                Ok(()) => {
                    log_applied(op, &outcome.accepted);
                    if let Some(audit) = &self.audit {
                        audit.peer_op(op, peer_name(op, &outcome.accepted), None);
                    }
                    match op {
                        Op::RemovePeer(key) => {
                            self.applied.remove(key);
                        }
                        Op::UpsertPeer(config) => {
                            self.applied.insert(config.public_key, config.clone());
                        }
                        Op::ReplaceKey { old, config } => {
                            self.applied.remove(old);
                            self.applied.insert(config.public_key, config.clone());
                        }
                    }
                }
                Err(e) => {
                    let message = format!("{:#}", anyhow::Error::from(e));
                    self.metrics.reconcile_errors.inc();
                    tracing::warn!(error = %message, op = ?op_summary(op), "peer change failed; will retry");
                    if let Some(audit) = &self.audit
                        && self.last_failures.get(&key) != Some(&message)
                    {
                        audit.peer_op(op, peer_name(op, &outcome.accepted), Some(&message));
                    }
                    failures.insert(key, message);
                }
            }
        }
        self.publish(&report, now);
        self.last_failures.clone_from(&failures);
        let outcomes = outcomes(&outcome, &failures, &report);
        self.source.publish(&outcomes, now).await;
        if failures.is_empty()
            && let Ok(mut readiness) = self.readiness.write()
        {
            readiness.peers_reconciled = true;
        }
    }

    /// Builds the observed state: for a peer we configured, what we gave it (so a learned
    /// endpoint does not count as drift); for any other peer, what the device says.
    fn observed(&mut self, report: &DeviceReport) -> PeerMap {
        let present: BTreeSet<PublicKey> = report.peers.iter().map(|p| p.public_key).collect();
        self.applied.retain(|key, _| present.contains(key));
        report
            .peers
            .iter()
            .map(|p| {
                let config = self
                    .applied
                    .get(&p.public_key)
                    .cloned()
                    .unwrap_or_else(|| p.config());
                (p.public_key, config)
            })
            .collect()
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
                            observed.get(&spec.public_key).and_then(|c| c.endpoint);
                        tracing::warn!(peer = %spec.name, endpoint = %format!("{host}:{port}"), error = %e, kept = ?kept, "cannot resolve endpoint; keeping the previous address");
                        kept
                    }
                },
            };
            desired.insert(spec.public_key, spec.to_config(endpoint));
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
                    public_key: p.public_key,
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
            let up = self.peer_states.is_up(&p.public_key).unwrap_or(false);
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
    failures: &BTreeMap<PublicKey, String>,
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
        let verdict = match failures.get(&spec.public_key) {
            Some(message) => Verdict::NotApplied {
                message: message.clone(),
            },
            None => Verdict::Applied,
        };
        let link = report
            .peers
            .iter()
            .find(|p| p.public_key == spec.public_key)
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

/// The declared name of the peer an op acts on, when it is still declared.
fn peer_name<'a>(op: &Op, accepted: &'a [PeerSpec]) -> Option<&'a str> {
    let key = match op {
        Op::RemovePeer(key) => key,
        Op::UpsertPeer(config) | Op::ReplaceKey { config, .. } => &config.public_key,
    };
    accepted
        .iter()
        .find(|s| s.public_key == *key)
        .map(|s| s.name.as_str())
}

fn op_summary(op: &Op) -> String {
    match op {
        Op::RemovePeer(key) => format!("remove {key}"),
        Op::UpsertPeer(config) => format!("upsert {}", config.public_key),
        Op::ReplaceKey { old, config } => format!("replace key {old} by {}", config.public_key),
    }
}

fn log_applied(op: &Op, accepted: &[PeerSpec]) {
    match op {
        Op::RemovePeer(key) => tracing::info!(public_key = %key, "peer removed"),
        Op::UpsertPeer(config) | Op::ReplaceKey { config, .. } => {
            let name = accepted
                .iter()
                .find(|s| s.public_key == config.public_key)
                .map_or("-", |s| s.name.as_str());
            let allowed: Vec<String> = config.allowed_ips.iter().map(ToString::to_string).collect();
            tracing::info!(
                peer = name,
                public_key = %config.public_key,
                endpoint = ?config.endpoint,
                allowed_ips = %allowed.join(","),
                "peer applied"
            );
        }
    }
}

#[cfg(test)]
mod tests;
