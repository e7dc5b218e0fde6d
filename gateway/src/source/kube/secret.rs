//! Preshared keys from Secrets of the watched namespace, read by name (the gateway needs
//! `get` on the Secrets it is pointed at, not `list`) and cached.
//!
//! A value read successfully is read again after [`REFRESH`]; a Secret or key that is missing
//! or denied, or a value that is not a key, every [`RETRY`] until it is fixed. When a refresh fails for a reason that may
//! pass (the API is unreachable), the last value read stays in use: a blip of the API never
//! takes a working peer down. A Secret that is gone, or a key that is not in it, is not a
//! blip: the peer is removed (fail closed).

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

pub(super) struct SecretCache {
    api: Api<Secret>,
    namespace: String,
    entries: BTreeMap<(String, String), Entry>,
}

struct Entry {
    value: SecretValue,
    next_read: SystemTime,
}

/// The result of one read.
enum Read {
    Value(SecretValue),
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
        let value = match self.read(name, key).await {
            Read::Value(value) => value,
            Read::Transient(why) => match self.entries.get(&id) {
                Some(entry) if matches!(entry.value, SecretValue::Found { .. }) => {
                    tracing::warn!(secret = name, error = %why, "cannot refresh the preshared key; keeping the last value read");
                    entry.value.clone()
                }
                _ => SecretValue::Unavailable(why),
            },
        };
        // A value that is not a key is read again soon, like a missing one: the operator is
        // probably fixing it.
        let wait = match &value {
            SecretValue::Found { value, .. } if PresharedKey::from_base64(value).is_ok() => REFRESH,
            SecretValue::Found { .. } | SecretValue::Unavailable(_) => RETRY,
        };
        self.entries.insert(
            id,
            Entry {
                value: value.clone(),
                next_read: now + wait,
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
                return Read::Value(SecretValue::Unavailable(format!(
                    "access to {described} is denied: the gateway needs get on it"
                )));
            }
            Ok(Err(e)) => return Read::Transient(format!("cannot read {described}: {e}")),
            Ok(Ok(None)) => {
                return Read::Value(SecretValue::Unavailable(format!("{described} not found")));
            }
            Ok(Ok(Some(secret))) => secret,
        };
        let mut data = secret.data.unwrap_or_default();
        let value = data.remove(key).map(|bytes| Zeroizing::new(bytes.0));
        for (_, mut other) in data {
            other.0.zeroize();
        }
        Read::Value(match value {
            Some(value) => SecretValue::Found {
                secret: format!("{described} key {key:?}"),
                value,
            },
            None => SecretValue::Unavailable(format!("{described} has no key {key:?}")),
        })
    }
}
