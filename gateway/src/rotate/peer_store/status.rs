//! The peer store's Kubernetes backend: each peer's [`PeerRotationState`] in its
//! `WireGuardPeer`'s status, `status.rotation`, with `status.activePublicKey`,
//! `status.nextPublicKey` (only while a rotation is pending) and the [`KEY_CURRENT`] condition
//! for the operator.
//!
//! Written with server-side apply on the status subresource under a field manager of its own
//! ([`FIELD_MANAGER`]): the peer source's status writer (`zt-gateway`) owns `Ready`,
//! `Connected` and the counters, this one its four fields, so neither ever takes or removes
//! the other's. `spec` is never written: a declaration left behind by a rotation is reported
//! by the condition, which names the key to declare.
//!
//! A write counts only once the API server answers it with the state as sent. (A CRD
//! installed before `status.rotation` existed makes the API server refuse the apply, "field
//! not declared in schema"; an answer that still lacks the state is an error too, since
//! nothing would survive a restart.)

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as ApiCondition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource as _};
use serde_json::Value;
use ztgw_rotation::responder::{Declared, PeerRotationState, declared};

use super::StoreError;
use crate::core::key::PublicKey;
use crate::crd::{WireGuardPeer, WireGuardPeerStatus};

/// Field manager of the rotation state's writes.
pub const FIELD_MANAGER: &str = "zt-gateway-rotation";

/// `type` of the condition saying whether `spec.publicKey` names the key the peer runs under.
pub const KEY_CURRENT: &str = "KeyCurrent";

/// How long listing the namespace's peers at start may take.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one status write may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `WireGuardPeer`s of one namespace, as the peer store's backend.
#[derive(Debug)]
pub(super) struct StatusStore {
    api: Api<DynamicObject>,
    namespace: String,
    /// Held across a write and the update of the store's shared view, so that two writes
    /// (a message's, a condition's refresh) never interleave.
    writing: tokio::sync::Mutex<()>,
    /// The [`KEY_CURRENT`] condition each peer's status holds, as last read or written.
    conditions: Mutex<BTreeMap<String, ApiCondition>>,
    /// Whether a refresh of conditions is under way.
    refreshing: AtomicBool,
    /// Whether the last refresh failed: the next failure is logged at debug level only.
    failing: AtomicBool,
}

impl StatusStore {
    /// Lists `namespace`'s `WireGuardPeer`s once (within [`LIST_TIMEOUT`]) and reads each
    /// one's stored state.
    ///
    /// # Errors
    /// [`StoreError::Api`] or [`StoreError::TimedOut`] when the list fails;
    /// [`StoreError::DamagedStatus`] when a stored state does not parse.
    pub(super) async fn open(
        client: Client,
        namespace: &str,
    ) -> Result<(Self, BTreeMap<String, PeerRotationState>), StoreError> {
        let resource = ApiResource::erase::<WireGuardPeer>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
        let what = format!("WireGuardPeers in namespace {namespace}");
        let listed =
            match tokio::time::timeout(LIST_TIMEOUT, api.list(&ListParams::default())).await {
                Ok(Ok(listed)) => listed,
                Ok(Err(e)) => {
                    return Err(StoreError::Api {
                        action: "list",
                        resource: what,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(StoreError::TimedOut {
                        action: "list",
                        resource: what,
                        seconds: LIST_TIMEOUT.as_secs(),
                    });
                }
            };
        let mut states = BTreeMap::new();
        let mut conditions = BTreeMap::new();
        for object in listed.items {
            let Some(name) = object.metadata.name.clone() else {
                continue;
            };
            let status = object.data.get("status");
            match read_state(status) {
                Ok(Some(state)) => {
                    states.insert(name.clone(), state);
                }
                Ok(None) => {}
                Err(what) => {
                    return Err(StoreError::DamagedStatus {
                        resource: resource_name(namespace, &name),
                        what,
                    });
                }
            }
            if let Some(condition) = read_condition(status) {
                conditions.insert(name, condition);
            }
        }
        let store = Self {
            api,
            namespace: namespace.to_owned(),
            writing: tokio::sync::Mutex::new(()),
            conditions: Mutex::new(conditions),
            refreshing: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        };
        Ok((store, states))
    }

    /// Waits until no other write is under way; writes are serialised while the guard lives.
    pub(super) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// Writes `peer`'s `state`, with the condition for the declaration naming `declared`
    /// (`None`: not known), and returns once the API server holds it.
    ///
    /// # Errors
    /// [`StoreError`] when the API server refused the write, did not answer within
    /// [`WRITE_TIMEOUT`], or did not keep the state; the condition last written stays known.
    pub(super) async fn write(
        &self,
        peer: &str,
        state: &PeerRotationState,
        declared: Option<&PublicKey>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let resource = resource_name(&self.namespace, peer);
        let previous = self.condition(peer);
        let condition = to_condition(key_condition(state, declared), previous.as_ref(), now);
        let body = apply_body(state, &condition).map_err(|e| StoreError::Api {
            action: "encode the status of",
            resource: resource.clone(),
            reason: e.to_string(),
        })?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(body);
        let answer =
            match tokio::time::timeout(WRITE_TIMEOUT, self.api.patch_status(peer, &params, &patch))
                .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    return Err(StoreError::Api {
                        action: "write the status of",
                        resource,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(StoreError::TimedOut {
                        action: "write the status of",
                        resource,
                        seconds: WRITE_TIMEOUT.as_secs(),
                    });
                }
            };
        if !matches!(read_state(answer.data.get("status")), Ok(Some(kept)) if kept == *state) {
            return Err(StoreError::NotKept { resource });
        }
        if let Ok(mut conditions) = self.conditions.lock() {
            conditions.insert(peer.to_owned(), condition);
        }
        Ok(())
    }

    /// Returns whether the condition `peer`'s status holds is not the one for `state` and the
    /// declaration naming `declared`.
    pub(super) fn is_stale(
        &self,
        peer: &str,
        state: &PeerRotationState,
        declared: &PublicKey,
    ) -> bool {
        let wanted = key_condition(state, Some(declared));
        self.condition(peer)
            .is_none_or(|held| !wanted.is_held_by(&held))
    }

    /// Marks a refresh as started; returns `false` when one already runs.
    pub(super) fn begin_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Marks the refresh as ended.
    pub(super) fn end_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }

    /// Records how a refresh write went; returns whether a failure is the first of a run
    /// (worth a warning).
    pub(super) fn record_refresh(&self, ok: bool) -> bool {
        let was_failing = self.failing.swap(!ok, Ordering::AcqRel);
        !ok && !was_failing
    }

    fn condition(&self, peer: &str) -> Option<ApiCondition> {
        let conditions = match self.conditions.lock() {
            Ok(conditions) => conditions,
            Err(poisoned) => poisoned.into_inner(),
        };
        conditions.get(peer).cloned()
    }
}

/// What the [`KEY_CURRENT`] condition says, before it gets its transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyCondition {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// One CamelCase word.
    pub reason: &'static str,
    /// Details for the operator.
    pub message: String,
}

impl KeyCondition {
    /// Returns whether `held` says the same (its transition time aside).
    fn is_held_by(&self, held: &ApiCondition) -> bool {
        held.status == self.status && held.reason == self.reason && held.message == self.message
    }
}

/// Reads the state stored in a `WireGuardPeer`'s `status`: `None` when there is none.
///
/// # Errors
/// What is wrong with it, in our words (never its content).
pub(super) fn read_state(
    status: Option<&Value>,
) -> Result<Option<PeerRotationState>, &'static str> {
    match status.and_then(|status| status.get("rotation")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(rotation)) => {
            serde_json::from_value::<PeerRotationState>(Value::Object(rotation.clone()))
                .map(Some)
                .map_err(|_| "not a peer rotation state")
        }
        Some(_) => Err("not a JSON object"),
    }
}

/// Reads the [`KEY_CURRENT`] condition of a `WireGuardPeer`'s `status`, when it has one that
/// parses.
pub(super) fn read_condition(status: Option<&Value>) -> Option<ApiCondition> {
    status?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(KEY_CURRENT))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
}

/// Says whether the declaration naming `declared` (`None`: not known) names the key the peer
/// runs under, by `state`; when it names a key the peer rotated away from, the message gives
/// the key to declare.
pub(super) fn key_condition(
    state: &PeerRotationState,
    declared_key: Option<&PublicKey>,
) -> KeyCondition {
    let Some(declared_key) = declared_key else {
        return KeyCondition {
            status: "Unknown",
            reason: "DeclarationUnknown",
            message: "the gateway has not accepted a declaration of this peer yet".to_owned(),
        };
    };
    match declared(state, declared_key) {
        Declared::Current => KeyCondition {
            status: "True",
            reason: "DeclarationCurrent",
            message: "spec.publicKey is the key the peer runs under".to_owned(),
        },
        Declared::Outdated { active } => KeyCondition {
            status: "False",
            reason: "DeclarationOutdated",
            message: format!(
                "the peer rotated its key and spec.publicKey names the key it rotated away \
                 from; the gateway runs the peer under {active}: set spec.publicKey to {active}"
            ),
        },
        Declared::New => KeyCondition {
            status: "True",
            reason: "NewKeyDeclared",
            message: "spec.publicKey names a key the peer never announced; the gateway runs \
                      the peer under it"
                .to_owned(),
        },
    }
}

/// Gives `condition` its transition time: `previous`'s when its status is the same, else
/// `now` (to the second).
pub(super) fn to_condition(
    condition: KeyCondition,
    previous: Option<&ApiCondition>,
    now: SystemTime,
) -> ApiCondition {
    let last_transition_time = previous
        .filter(|p| p.status == condition.status)
        .map_or_else(|| Time(timestamp(now)), |p| p.last_transition_time.clone());
    ApiCondition {
        type_: KEY_CURRENT.to_owned(),
        status: condition.status.to_owned(),
        reason: condition.reason.to_owned(),
        message: condition.message,
        last_transition_time,
        observed_generation: None,
    }
}

/// The server-side apply body: apiVersion and kind (required for apply), and the four status
/// fields this manager owns. `nextPublicKey` is left out when no rotation is pending, so the
/// apply removes it; `status.rotation` carries no nulls (an absent field reads the same).
///
/// # Errors
/// When `state` cannot be encoded as a JSON object.
pub(super) fn apply_body(
    state: &PeerRotationState,
    condition: &ApiCondition,
) -> Result<Value, serde_json::Error> {
    let rotation: serde_json::Map<String, Value> =
        serde_json::from_value(without_nulls(serde_json::to_value(state)?))?;
    let status = WireGuardPeerStatus {
        active_public_key: Some(state.active_public_key().to_string()),
        next_public_key: state.next_public_key().map(ToString::to_string),
        rotation: Some(rotation),
        conditions: vec![condition.clone()],
        ..WireGuardPeerStatus::default()
    };
    Ok(serde_json::json!({
        "apiVersion": WireGuardPeer::api_version(&()),
        "kind": WireGuardPeer::kind(&()),
        "status": status,
    }))
}

/// Names a peer's resource for the operator: `WireGuardPeer namespace/name`.
fn resource_name(namespace: &str, peer: &str) -> String {
    format!("WireGuardPeer {namespace}/{peer}")
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Converts to a Kubernetes timestamp, to the second.
fn timestamp(at: SystemTime) -> Timestamp {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
