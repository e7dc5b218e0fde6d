//! The one place where the outcome of every control request is concluded: counted in
//! `zt_wireguard_control_messages_total` and logged (at debug level: the counter is the
//! operator's signal, and a hostile source must not be able to flood the log). Whatever else
//! must see each accepted or refused message (an audit record) hooks in
//! [`Recorder::conclude`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use ztgw_audit::kind;

use super::envelope::{MessageType, type_label};
use crate::admin::refusals::{LOG_EVERY, Refusals};
use crate::audit::{Audit, details};
use crate::metrics::Metrics;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Understood, authenticated and answered.
    Accepted,
    /// 403: not from a peer gateway's tunnel address, or `from` is not that peer.
    Refused,
    /// Not a valid envelope, or not a request of the channel at all.
    Malformed,
    /// A type or version this build does not speak.
    Unsupported,
    /// Body or headers over their limits.
    TooLarge,
    /// Headers or body too slow.
    Timeout,
    /// Too many connections from one source.
    Busy,
}

impl Verdict {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Malformed => "malformed",
            Self::Unsupported => "unsupported",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::Busy => "busy",
        }
    }
}

/// One concluded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Its type, when it was read and known.
    pub kind: Option<MessageType>,
    /// How it ended.
    pub verdict: Verdict,
    /// The connection's source address.
    pub source: IpAddr,
    /// The peer it was authenticated as (declaration name), if it got that far.
    pub peer: Option<String>,
    /// A fixed word saying why (e.g. `source_behind_peer`), never request content.
    pub reason: &'static str,
}

/// Concludes outcomes.
#[derive(Debug, Clone)]
pub struct Recorder {
    metrics: Metrics,
    audit: Option<Audit>,
    /// Rejected requests are audited at most once per [`LOG_EVERY`], with the count of the
    /// others, so that a hostile source cannot fill the disk.
    refusals: Arc<Mutex<Refusals>>,
}

impl Recorder {
    /// Counts into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self::with_audit(metrics, None)
    }

    /// Counts into `metrics` and records each accepted message, and the rejected ones at a
    /// bounded rate, in `audit`.
    pub fn with_audit(metrics: Metrics, audit: Option<Audit>) -> Self {
        Self {
            metrics,
            audit,
            refusals: Arc::new(Mutex::new(Refusals::new(LOG_EVERY))),
        }
    }

    /// Counts, logs and audits one outcome. Every request of the channel passes here exactly
    /// once.
    pub fn conclude(&self, outcome: &Outcome) {
        let kind = type_label(outcome.kind);
        self.metrics.observe_control(kind, outcome.verdict.as_str());
        self.audit(outcome, kind);
        tracing::debug!(
            source = %outcome.source,
            peer = outcome.peer.as_deref().unwrap_or("-"),
            r#type = kind,
            result = outcome.verdict.as_str(),
            reason = outcome.reason,
            "control request"
        );
    }

    /// The audit record of one outcome: the actor is the peer it was authenticated as, or
    /// the source address of a rejected request; nothing of the request's content.
    fn audit(&self, outcome: &Outcome, kind_label: &str) {
        let Some(audit) = &self.audit else {
            return;
        };
        let actor = outcome.peer.as_ref().map_or_else(
            || format!("source:{}", outcome.source),
            |p| format!("peer:{p}"),
        );
        let subject = format!("control:{kind_label}");
        if outcome.verdict == Verdict::Accepted {
            audit.record(
                kind::CONTROL_MESSAGE,
                &actor,
                &subject,
                "accepted",
                details([("reason", Value::from(outcome.reason))]),
            );
            return;
        }
        let due = self
            .refusals
            .lock()
            .map(|mut refusals| refusals.record(crate::clock::monotonic()));
        if let Ok(Some(suppressed)) = due {
            audit.record(
                kind::CONTROL_MESSAGE,
                &actor,
                &subject,
                outcome.verdict.as_str(),
                details([
                    ("reason", Value::from(outcome.reason)),
                    ("suppressed", Value::from(suppressed)),
                ]),
            );
        }
    }
}
