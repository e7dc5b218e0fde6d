//! Writes `WireGuardPeer` status with server-side apply on the status subresource, when the
//! core says a write is due ([`status::should_write`]).
//!
//! Every write applies the whole status this gateway owns (field manager [`FIELD_MANAGER`],
//! forced), so a field it stops reporting (the counters of a rejected peer) is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as ApiCondition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};

use super::{FIELD_MANAGER, Listed};
use crate::core::status::{self, Memo, PeerOutcome, PeerStatus};
use crate::crd::{WireGuardPeer, WireGuardPeerStatus};

/// How long one status write may take.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct StatusWriter {
    api: Api<DynamicObject>,
    /// By resource uid, so a resource deleted and created again starts afresh.
    memos: BTreeMap<String, Memo>,
    /// Uids whose last write failed: the next failure is logged at debug level only.
    failing: BTreeSet<String>,
}

impl StatusWriter {
    pub(super) fn new(api: Api<DynamicObject>) -> Self {
        Self {
            api,
            memos: BTreeMap::new(),
            failing: BTreeSet::new(),
        }
    }

    /// Writes the status of each listed resource whose write is due at `now`.
    pub(super) async fn publish(
        &mut self,
        listed: &BTreeMap<String, Listed>,
        outcomes: &[PeerOutcome],
        now: SystemTime,
    ) {
        self.memos
            .retain(|uid, _| listed.values().any(|item| &item.uid == uid));
        self.failing
            .retain(|uid| listed.values().any(|item| &item.uid == uid));
        for outcome in outcomes {
            let Some(item) = listed.get(&outcome.origin) else {
                continue;
            };
            let memo = self.memos.entry(item.uid.clone()).or_default();
            let previous = memo.conditions().unwrap_or(&item.conditions);
            let next = status::build(
                item.generation,
                &outcome.verdict,
                outcome.link.as_ref(),
                previous,
                now,
            );
            if !status::should_write(memo, &next, now) {
                continue;
            }
            let patch = Patch::Apply(apply_body(&next));
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let written =
                tokio::time::timeout(TIMEOUT, self.api.patch_status(&item.name, &params, &patch))
                    .await;
            let error = match written {
                Ok(Ok(_)) => {
                    tracing::debug!(peer = %item.name, "status written");
                    memo.wrote(next, now);
                    self.failing.remove(&item.uid);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            memo.failed(now);
            if self.failing.insert(item.uid.clone()) {
                tracing::warn!(peer = %item.name, error = %error, "cannot write status; retrying");
            } else {
                tracing::debug!(peer = %item.name, error = %error, "status write failed again");
            }
        }
    }
}

/// The server-side apply body: apiVersion and kind (required for apply), and the status.
fn apply_body(status: &PeerStatus) -> serde_json::Value {
    let conditions = status
        .conditions
        .iter()
        .map(|c| ApiCondition {
            type_: c.kind.clone(),
            status: if c.status { "True" } else { "False" }.to_owned(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: Time(timestamp(c.last_transition)),
            observed_generation: status.observed_generation,
        })
        .collect();
    let body = WireGuardPeerStatus {
        observed_generation: status.observed_generation,
        last_handshake_time: status.last_handshake.map(|t| timestamp(t).to_string()),
        rx_bytes: status.rx_bytes,
        tx_bytes: status.tx_bytes,
        conditions,
        ..WireGuardPeerStatus::default()
    };
    serde_json::json!({
        "apiVersion": WireGuardPeer::api_version(&()),
        "kind": WireGuardPeer::kind(&()),
        "status": body,
    })
}

/// Converts to a Kubernetes timestamp, to the second (RFC 3339, e.g. `2026-11-23T10:00:00Z`).
fn timestamp(at: SystemTime) -> Timestamp {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}
