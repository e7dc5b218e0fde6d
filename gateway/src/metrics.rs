//! Prometheus metrics (SPEC section 9; names, types and meaning in `docs/metrics.md`).
//!
//! Per-peer values are read from the device by the driver and exported as they are at the
//! last reconcile; counters come straight from the device's counters (a peer re-created by the
//! device starts again from zero, which Prometheus reads as a reset). Labels stay bounded:
//! `cluster` (a validated DNS label), `interface` (the configured name), and fixed sets
//! (`state`, `reason`, `operation`, `result`, `source`) besides `version`; never a key or
//! packet data.

use std::sync::{Arc, Mutex};

use kms_client::{Operation, Origin};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::core::health::PeerCounts;
use crate::device::DropReason;

/// The `type` label values of `zt_wireguard_control_messages_total`.
pub const CONTROL_TYPES: [&str; 6] = [
    "hello",
    "rotate.announce",
    "rotate.ack",
    "rotate.complete",
    "rotate.abort",
    "unknown",
];

/// The `result` label values of `zt_wireguard_control_messages_total`.
pub const CONTROL_RESULTS: [&str; 7] = [
    "accepted",
    "refused",
    "malformed",
    "unsupported",
    "too_large",
    "timeout",
    "busy",
];

/// The audit record kinds, each exported from the start.
const AUDIT_KINDS: [&str; 10] = [
    ztgw_audit::kind::START,
    ztgw_audit::kind::STOP,
    ztgw_audit::kind::KEY_LOAD,
    ztgw_audit::kind::PEER_CHANGE,
    ztgw_audit::kind::ADMIN_CALL,
    ztgw_audit::kind::CONTROL_MESSAGE,
    ztgw_audit::kind::CHECKPOINT,
    ztgw_audit::kind::RECOVERED,
    ztgw_audit::kind::KEY_ROTATION,
    ztgw_audit::kind::PEER_ROTATION,
];

/// One peer's values at the last reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSample {
    /// The peer's cluster name (the only label).
    pub cluster: String,
    /// Whether it counts as connected (see `core::health::is_peer_up`).
    pub up: bool,
    /// Unix time of the last handshake; 0 when there was none.
    pub last_handshake_seconds: f64,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

/// The gateway's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    peers: Arc<PeerCollector>,
    peer_states: IntGaugeVec,
    /// Reconcile passes or operations that failed.
    pub reconcile_errors: IntCounter,
    kms_requests: IntCounterVec,
    key_created: prometheus::GaugeVec,
    key_source: IntGaugeVec,
    dropped_packets: IntCounterVec,
    control_messages: IntCounterVec,
    audit_records: IntCounterVec,
    audit_write_errors: IntCounter,
    key_rotations: IntCounterVec,
    rotation_phase: IntGaugeVec,
    rotation_last_duration: prometheus::Gauge,
}

/// The phases `zt_wireguard_rotation_phase` reports, `idle` when no rotation runs.
pub const ROTATION_PHASES: [&str; 6] = [
    "idle",
    "staging",
    "announcing",
    "committing",
    "verifying",
    "rolling_back",
];

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    /// Only on a programming error (a name registered twice).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let peers = Arc::new(PeerCollector::new()?);
        registry.register(Box::new(PeerCollectorRef(peers.clone())))?;
        let reconcile_errors = IntCounter::new(
            "zt_wireguard_reconcile_errors_total",
            "Reconcile passes or peer operations that failed.",
        )?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        let kms_requests = IntCounterVec::new(
            Opts::new(
                "zt_wireguard_kms_requests_total",
                "HTTP requests to the KMS, by operation (login, renew, read, write) and result (ok, error).",
            ),
            &["operation", "result"],
        )?;
        registry.register(Box::new(kms_requests.clone()))?;
        // No series until the creation time is known: a 0 would read as a key from 1970.
        let key_created = prometheus::GaugeVec::new(
            Opts::new(
                "zt_wireguard_private_key_created_timestamp_seconds",
                "Unix time the running private key was created (KMS version metadata, or the key file's modification time).",
            ),
            &[],
        )?;
        registry.register(Box::new(key_created.clone()))?;
        let key_source = IntGaugeVec::new(
            Opts::new(
                "zt_wireguard_private_key_source",
                "Where the running private key came from: 1 for the source in use (kms, cache or file), 0 for the others.",
            ),
            &["source"],
        )?;
        registry.register(Box::new(key_source.clone()))?;
        // No series unless the data plane counts drops (only `native` does).
        let dropped_packets = IntCounterVec::new(
            Opts::new(
                "zt_wireguard_dropped_packets_total",
                "Packets the data plane dropped, by interface and reason (invalid, unknown_peer, no_route, no_endpoint, bad_source, key_exhausted); native data plane only.",
            ),
            &["interface", "reason"],
        )?;
        registry.register(Box::new(dropped_packets.clone()))?;
        let control_messages = IntCounterVec::new(
            Opts::new(
                "zt_wireguard_control_messages_total",
                "Requests to the control channel by message type (hello, or unknown when not read) and result (accepted, refused, malformed, unsupported, too_large, timeout, busy).",
            ),
            &["type", "result"],
        )?;
        registry.register(Box::new(control_messages.clone()))?;
        let peer_states = IntGaugeVec::new(
            Opts::new(
                "zt_wireguard_peers",
                "Declared peers by state: connected, disconnected (applied, no recent handshake) or rejected (invalid declaration, not applied).",
            ),
            &["state"],
        )?;
        registry.register(Box::new(peer_states.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "zt_wireguard_build_info",
                "Always 1; the version label names the running gateway build.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let audit_records = IntCounterVec::new(
            Opts::new(
                "zt_wireguard_audit_records_total",
                "Records appended to the audit log, by kind (start, stop, key_load, peer_change, admin_call, control_message, checkpoint, recovered, key_rotation, peer_rotation).",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(audit_records.clone()))?;
        let audit_write_errors = IntCounter::new(
            "zt_wireguard_audit_write_errors_total",
            "Audit records that could not be written (the gateway is not ready while the last write failed).",
        )?;
        registry.register(Box::new(audit_write_errors.clone()))?;
        let key_rotations = IntCounterVec::new(
            Opts::new(
                "zt_wireguard_key_rotations_total",
                "Rotations of this gateway's static key by result: completed, or failed (counted when its rollback begins).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(key_rotations.clone()))?;
        let rotation_phase = IntGaugeVec::new(
            Opts::new(
                "zt_wireguard_rotation_phase",
                "1 for the phase this gateway's key rotation is in (idle, staging, announcing, committing, verifying, rolling_back), 0 for the others.",
            ),
            &["phase"],
        )?;
        registry.register(Box::new(rotation_phase.clone()))?;
        let rotation_last_duration = prometheus::Gauge::new(
            "zt_wireguard_rotation_last_duration_seconds",
            "How long the last key rotation that ended took, from its start to its end.",
        )?;
        registry.register(Box::new(rotation_last_duration.clone()))?;
        let metrics = Self {
            key_rotations,
            rotation_phase,
            rotation_last_duration,
            registry,
            audit_records,
            audit_write_errors,
            peers,
            peer_states,
            reconcile_errors,
            kms_requests,
            key_created,
            key_source,
            dropped_packets,
            control_messages,
        };
        metrics.set_peer_counts(PeerCounts::default());
        // Every series a rule's increase() looks at exists from the start, at 0.
        for operation in [
            Operation::Login,
            Operation::Renew,
            Operation::Read,
            Operation::Write,
        ] {
            for result in ["ok", "error"] {
                metrics
                    .kms_requests
                    .with_label_values(&[operation.as_str(), result]);
            }
        }
        for origin in Origin::ALL {
            metrics.key_source.with_label_values(&[origin.as_str()]);
        }
        for kind in CONTROL_TYPES {
            for result in CONTROL_RESULTS {
                metrics.control_messages.with_label_values(&[kind, result]);
            }
        }
        for kind in AUDIT_KINDS {
            metrics.audit_records.with_label_values(&[kind]);
        }
        for result in ["completed", "failed"] {
            metrics.key_rotations.with_label_values(&[result]);
        }
        metrics.set_rotation_phase("idle");
        Ok(metrics)
    }

    /// Counts one audit record written (`zt_wireguard_audit_records_total{kind}`); `kind` is
    /// one of the fixed record kinds.
    pub fn observe_audit_record(&self, kind: &str) {
        self.audit_records.with_label_values(&[kind]).inc();
    }

    /// Counts one audit record that could not be written.
    pub fn observe_audit_write_error(&self) {
        self.audit_write_errors.inc();
    }

    /// Sets `zt_wireguard_peers{state}`; every state is always exported, zero included.
    pub fn set_peer_counts(&self, counts: PeerCounts) {
        for (state, count) in counts.by_state() {
            self.peer_states
                .with_label_values(&[state])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Counts one KMS request.
    pub fn observe_kms(&self, operation: Operation, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.kms_requests
            .with_label_values(&[operation.as_str(), result])
            .inc();
    }

    /// Sets `zt_wireguard_rotation_phase`: 1 for `phase`, 0 for the others.
    pub fn set_rotation_phase(&self, phase: &str) {
        for candidate in ROTATION_PHASES {
            self.rotation_phase
                .with_label_values(&[candidate])
                .set(i64::from(candidate == phase));
        }
    }

    /// Counts a rotation that failed: it started rolling back.
    pub fn rotation_failed(&self) {
        self.key_rotations.with_label_values(&["failed"]).inc();
    }

    /// Records a rotation that ended after `duration`, counting it when it completed (a
    /// failed one was counted when its rollback began).
    pub fn rotation_ended(&self, completed: bool, duration: std::time::Duration) {
        if completed {
            self.key_rotations.with_label_values(&["completed"]).inc();
        }
        self.rotation_last_duration.set(duration.as_secs_f64());
    }

    /// Moves the key creation time to a key that became current while running (a rotation's
    /// switch or its rollback).
    pub fn set_key_created(&self, created_at: std::time::SystemTime) {
        if let Ok(age) = created_at.duration_since(std::time::UNIX_EPOCH) {
            self.key_created
                .with_label_values::<&str>(&[])
                .set(age.as_secs_f64());
        }
    }

    /// Records where the running key came from and when it was created.
    pub fn set_key(&self, origin: Origin, created_at: Option<std::time::SystemTime>) {
        for candidate in Origin::ALL {
            self.key_source
                .with_label_values(&[candidate.as_str()])
                .set(i64::from(candidate == origin));
        }
        if let Some(seconds) = created_at
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64())
        {
            self.key_created.with_label_values::<&str>(&[]).set(seconds);
        }
    }

    /// Publishes a data plane's drop counts: its own totals since it started, which only
    /// grow (a lower one is ignored).
    pub fn set_dropped_packets(&self, interface: &str, drops: &[(DropReason, u64)]) {
        for (reason, count) in drops {
            let counter = self
                .dropped_packets
                .with_label_values(&[interface, reason.as_str()]);
            let delta = count.saturating_sub(counter.get());
            if delta > 0 {
                counter.inc_by(delta);
            }
        }
    }

    /// Counts one control-channel request; `kind` and `result` must be among
    /// [`CONTROL_TYPES`] and [`CONTROL_RESULTS`] (anything else is counted as `unknown` /
    /// `malformed`, so the label sets stay bounded).
    pub fn observe_control(&self, kind: &str, result: &str) {
        let kind = if CONTROL_TYPES.contains(&kind) {
            kind
        } else {
            "unknown"
        };
        let result = if CONTROL_RESULTS.contains(&result) {
            result
        } else {
            "malformed"
        };
        self.control_messages
            .with_label_values(&[kind, result])
            .inc();
    }

    /// Replaces the per-peer samples.
    pub fn set_peers(&self, samples: Vec<PeerSample>) {
        if let Ok(mut guard) = self.peers.samples.lock() {
            *guard = samples;
        }
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

struct PeerCollector {
    descs: Vec<Desc>,
    samples: Mutex<Vec<PeerSample>>,
}

const PEER_UP: (&str, &str) = (
    "zt_wireguard_peer_up",
    "1 when the peer is connected: its last handshake is younger than 180 s plus its keepalive interval plus 5 s; else 0.",
);
const PEER_HANDSHAKE: (&str, &str) = (
    "zt_wireguard_peer_last_handshake_timestamp_seconds",
    "Unix time of the peer's last completed handshake; 0 if none.",
);
const PEER_RX: (&str, &str) = (
    "zt_wireguard_peer_receive_bytes_total",
    "Bytes received from the peer through the tunnel.",
);
const PEER_TX: (&str, &str) = (
    "zt_wireguard_peer_transmit_bytes_total",
    "Bytes sent to the peer through the tunnel.",
);

impl PeerCollector {
    fn new() -> prometheus::Result<Self> {
        let descs = [PEER_UP, PEER_HANDSHAKE, PEER_RX, PEER_TX]
            .into_iter()
            .map(|(name, help)| {
                Desc::new(
                    name.to_owned(),
                    help.to_owned(),
                    vec!["cluster".to_owned()],
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(Self {
            descs,
            samples: Mutex::new(Vec::new()),
        })
    }
}

impl std::fmt::Debug for PeerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCollector").finish_non_exhaustive()
    }
}

struct PeerCollectorRef(Arc<PeerCollector>);

impl Collector for PeerCollectorRef {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let samples = self.0.samples.lock().map(|s| s.clone()).unwrap_or_default();
        let gauge = |value: f64| {
            let mut g = Gauge::default();
            g.set_value(value);
            g
        };
        let counter = |value: u64| {
            let mut c = Counter::default();
            #[allow(
                clippy::cast_precision_loss,
                reason = "byte counters fit f64 exactly up to 2^53"
            )]
            c.set_value(value as f64);
            c
        };
        let family = |(name, help): (&str, &str),
                      kind: MetricType,
                      fill: &dyn Fn(&PeerSample, &mut Metric)| {
            let mut mf = MetricFamily::default();
            mf.set_name(name.to_owned());
            mf.set_help(help.to_owned());
            mf.set_field_type(kind);
            for sample in &samples {
                let mut label = LabelPair::default();
                label.set_name("cluster".to_owned());
                label.set_value(sample.cluster.clone());
                let mut metric = Metric::default();
                metric.set_label(vec![label]);
                fill(sample, &mut metric);
                mf.mut_metric().push(metric);
            }
            mf
        };
        vec![
            family(PEER_UP, MetricType::GAUGE, &|s, m| {
                m.set_gauge(gauge(if s.up { 1.0 } else { 0.0 }));
            }),
            family(PEER_HANDSHAKE, MetricType::GAUGE, &|s, m| {
                m.set_gauge(gauge(s.last_handshake_seconds));
            }),
            family(PEER_RX, MetricType::COUNTER, &|s, m| {
                m.set_counter(counter(s.rx_bytes))
            }),
            family(PEER_TX, MetricType::COUNTER, &|s, m| {
                m.set_counter(counter(s.tx_bytes))
            }),
        ]
    }
}

#[cfg(test)]
mod tests;
