//! The reconcile loop: read the device, read the declarations, let the core decide, apply
//! what it decided, tell the source how each declaration fared, and publish metrics. It
//! decides only *when* to call the core.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::core::health::{self, Readiness};
use crate::core::key::PublicKey;
use crate::core::peer::{Endpoint, PeerSpec};
use crate::core::plan::{self, Op, PeerMap};
use crate::core::status::{Link, PeerOutcome, Verdict};
use crate::core::uapi::DeviceReport;
use crate::core::validate::{self, Context, Outcome, Rejection};
use crate::device::{self, Device};
use crate::metrics::{Metrics, PeerSample};
use crate::source::PeerSource;

/// How often the loop runs: declared changes take effect within two of these.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The reconcile loop's state.
#[derive(Debug)]
pub struct Driver<D, S> {
    device: D,
    source: S,
    own_public_key: PublicKey,
    own_address: std::net::IpAddr,
    metrics: Metrics,
    readiness: Arc<RwLock<Readiness>>,
    /// The configuration each device peer was last given by us.
    applied: PeerMap,
    /// Rejections of the previous pass, so each is logged once, not every second.
    last_rejections: Vec<Rejection>,
    last_source_error: Option<String>,
    /// Whether the last pass found the source not fully read yet (logged once).
    waiting_for_source: bool,
    /// Cluster name of each accepted peer, for metric labels.
    clusters: BTreeMap<PublicKey, String>,
}

impl<D: Device, S: PeerSource> Driver<D, S> {
    /// Creates a driver for a device that is up.
    pub fn new(
        device: D,
        source: S,
        own_public_key: PublicKey,
        own_address: std::net::IpAddr,
        metrics: Metrics,
        readiness: Arc<RwLock<Readiness>>,
    ) -> Self {
        Self {
            device,
            source,
            own_public_key,
            own_address,
            metrics,
            readiness,
            applied: PeerMap::new(),
            last_rejections: Vec::new(),
            last_source_error: None,
            waiting_for_source: false,
            clusters: BTreeMap::new(),
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
        let ctx = Context {
            own_public_key: self.own_public_key,
            own_address: self.own_address,
            incumbents: observed.keys().copied().collect(),
            supports_secret_refs: self.source.supports_secret_refs(),
        };
        let outcome = validate::validate(declarations, &ctx);
        self.log_rejections(&outcome.rejected);
        let desired = self.desired(&outcome.accepted, &observed).await;
        self.clusters = outcome
            .accepted
            .iter()
            .map(|s| (s.public_key, s.cluster.clone()))
            .collect();

        let ops = plan::plan(&desired, &observed);
        let mut failures: BTreeMap<PublicKey, String> = BTreeMap::new();
        for op in &ops {
            let key = match op {
                Op::RemovePeer(key) => key,
                Op::UpsertPeer(config) => &config.public_key,
            };
            let previous = observed.get(key);
            match self.device.apply(op, previous).await {
                Ok(()) => {
                    log_applied(op, &outcome.accepted);
                    match op {
                        Op::RemovePeer(key) => {
                            self.applied.remove(key);
                        }
                        Op::UpsertPeer(config) => {
                            self.applied.insert(config.public_key, config.clone());
                        }
                    }
                }
                Err(e) => {
                    let message = format!("{:#}", anyhow::Error::from(e));
                    self.metrics.reconcile_errors.inc();
                    tracing::warn!(error = %message, op = ?op_summary(op), "peer change failed; will retry");
                    failures.insert(*key, message);
                }
            }
        }
        self.publish(&report, now);
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
            }
        }
        self.last_rejections = rejected.to_vec();
    }

    fn publish(&self, report: &DeviceReport, now: SystemTime) {
        let samples = report
            .peers
            .iter()
            .filter_map(|p| {
                let cluster = self.clusters.get(&p.public_key)?.clone();
                let last = p.last_handshake.map(|d| SystemTime::UNIX_EPOCH + d);
                Some(PeerSample {
                    cluster,
                    up: health::is_peer_up(last, p.persistent_keepalive, now),
                    last_handshake_seconds: p.last_handshake.map_or(0.0, |d| d.as_secs_f64()),
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                })
            })
            .collect();
        self.metrics.set_peers(samples);
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

fn op_summary(op: &Op) -> String {
    match op {
        Op::RemovePeer(key) => format!("remove {key}"),
        Op::UpsertPeer(config) => format!("upsert {}", config.public_key),
    }
}

fn log_applied(op: &Op, accepted: &[PeerSpec]) {
    match op {
        Op::RemovePeer(key) => tracing::info!(public_key = %key, "peer removed"),
        Op::UpsertPeer(config) => {
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
