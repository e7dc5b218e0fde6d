//! Preshared keys from Secrets of the watched namespace, read by name (the gateway needs
//! `get` on the Secrets it is pointed at, not `list`) and cached.
//!
//! Only Secrets labelled [`PSK_LABEL`]` = "true"` are used. Whoever may create a
//! `WireGuardPeer` may name any Secret of the namespace, so every Secret that cannot be used
//! (missing, denied, not labelled, no value under the key, a value that is not a key) gives
//! the same reason, [`UNUSABLE`]: a resource's status tells nothing about Secrets not meant
//! for the gateway. Which of these it was goes to the gateway's log, for the operator.
//!
//! A value read successfully is read again after [`REFRESH`]; a Secret that cannot be used,
//! every [`RETRY`] until it is fixed. When a refresh fails for a reason that may pass (the API
//! is unreachable), the last value read stays in use: a blip of the API never takes a working
//! peer down. A Secret that is gone, unlabelled, or no longer holds a key is not a blip: the
//! peer is removed (fail closed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use zeroize::{Zeroize as _, Zeroizing};

use crate::core::psk::{PresharedKey, SecretValue};

/// How long a value read successfully is used before it is read again.
pub(super) const REFRESH: Duration = Duration::from_secs(60);
/// How long before a Secret that could not be read is tried again.
pub(super) const RETRY: Duration = Duration::from_secs(5);
/// How long one read may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The label a Secret must carry, with the value `"true"`, for its keys to be used.
pub(super) const PSK_LABEL: &str = "zt.hanzo.ai/preshared-key";
/// The one reason given for every Secret that cannot be used.
pub(super) const UNUSABLE: &str = "not a usable preshared-key Secret (it must exist in this namespace, carry the label zt.hanzo.ai/preshared-key: \"true\" and hold base64 of 32 bytes under the key named)";

pub(super) struct SecretCache {
    api: Api<Secret>,
    namespace: String,
    entries: BTreeMap<(String, String), Entry>,
}

struct Entry {
    value: SecretValue,
    next_read: SystemTime,
    /// Why the Secret could not be used, for the log (never in a status).
    unusable: Option<&'static str>,
}

/// The result of one read.
enum Read {
    /// A preshared key.
    Key(SecretValue),
    /// The Secret cannot be used; why, for the log only.
    Unusable(&'static str),
    /// Failed for a reason that may pass; worded for the operator.
    Transient(String),
}

impl SecretCache {
    pub(super) fn new(api: Api<Secret>, namespace: &str) -> Self {
        Self {
            api,
            namespace: namespace.to_owned(),
            entries: BTreeMap::new(),
        }
    }

    /// Returns what Secret `name` holds under `key` at `now`, from the cache when it is fresh.
    pub(super) async fn lookup(&mut self, name: &str, key: &str, now: SystemTime) -> SecretValue {
        let id = (name.to_owned(), key.to_owned());
        if let Some(entry) = self.entries.get(&id)
            && now < entry.next_read
        {
            return entry.value.clone();
        }
        let mut unusable = None;
        let value = match self.read(name, key).await {
            Read::Key(value) => value,
            Read::Unusable(why) => {
                let previous = self.entries.get(&id).and_then(|entry| entry.unusable);
                if previous != Some(why) {
                    tracing::warn!(
                        secret = name,
                        key,
                        why,
                        "presharedKeySecretRef names a Secret the gateway does not use"
                    );
                }
                unusable = Some(why);
                SecretValue::Unavailable(UNUSABLE.to_owned())
            }
            Read::Transient(why) => match self.entries.get(&id) {
                Some(entry) if matches!(entry.value, SecretValue::Found { .. }) => {
                    tracing::warn!(secret = name, error = %why, "cannot refresh the preshared key; keeping the last value read");
                    entry.value.clone()
                }
                _ => SecretValue::Unavailable(why),
            },
        };
        let wait = match &value {
            SecretValue::Found { .. } => REFRESH,
            SecretValue::Unavailable(_) => RETRY,
        };
        self.entries.insert(
            id,
            Entry {
                value: value.clone(),
                next_read: now.checked_add(wait).unwrap_or(now),
                unusable,
            },
        );
        value
    }

    /// Forgets every entry no resource refers to any more.
    pub(super) fn retain(&mut self, used: &BTreeSet<(String, String)>) {
        self.entries.retain(|id, _| used.contains(id));
    }

    async fn read(&self, name: &str, key: &str) -> Read {
        let described = format!("Secret {name:?} in namespace {:?}", self.namespace);
        let secret = match tokio::time::timeout(TIMEOUT, self.api.get_opt(name)).await {
            Err(_) => return Read::Transient(format!("reading {described} timed out")),
            Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
                return Read::Unusable("access is denied: the gateway needs get on it");
            }
            Ok(Err(e)) => return Read::Transient(format!("cannot read {described}: {e}")),
            Ok(Ok(None)) => return Read::Unusable("it does not exist"),
            Ok(Ok(Some(secret))) => secret,
        };
        let labelled = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(PSK_LABEL))
            .is_some_and(|value| value == "true");
        let mut data = secret.data.unwrap_or_default();
        let value = data.remove(key).map(|bytes| Zeroizing::new(bytes.0));
        for (_, mut other) in data {
            other.0.zeroize();
        }
        if !labelled {
            return Read::Unusable(
                "it does not carry the label zt.hanzo.ai/preshared-key: \"true\"",
            );
        }
        let Some(value) = value else {
            return Read::Unusable("it has no value under the key named");
        };
        if PresharedKey::from_base64(&value).is_err() {
            return Read::Unusable("the value under the key named is not base64 of 32 bytes");
        }
        Read::Key(SecretValue::Found {
            secret: format!("{described} key {key:?}"),
            value,
        })
    }
}
