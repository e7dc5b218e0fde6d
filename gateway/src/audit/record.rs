//! What each kind of record says: subjects and details built from the gateway's own types.
//! No secret is ever put in a record: peers are described by name, public key, endpoint and
//! allowed IPs, never their preshared key; keys by source, version and public key.

use serde_json::{Map, Value};

use super::Audit;
use crate::core::plan::Op;
use crate::core::validate::Rejection;
use ztgw_audit::kind;

/// The longest string a record field holds; longer ones are cut (outside input is bounded).
const MAX_FIELD: usize = 1024;

/// Builds a `details` object from pairs.
pub fn details<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

impl Audit {
    /// Records a peer change the device applied (`outcome` `applied`) or refused (`failed`,
    /// with the error).
    pub fn peer_op(&self, op: &Op, name: Option<&str>, error: Option<&str>) {
        let (action, config, old) = match op {
            Op::RemovePeer(key) => ("remove", None, Some(key)),
            Op::UpsertPeer(config) => ("upsert", Some(config), None),
            Op::ReplaceKey { old, config } => ("replace_key", Some(config), Some(old)),
        };
        let mut d = details([("action", Value::from(action))]);
        if let Some(config) = config {
            d.insert(
                "public_key".to_owned(),
                Value::from(config.public_key.to_string()),
            );
            d.insert(
                "allowed_ips".to_owned(),
                Value::from(
                    config
                        .allowed_ips
                        .iter()
                        .map(|ip| Value::from(ip.to_string()))
                        .collect::<Vec<_>>(),
                ),
            );
            d.insert(
                "endpoint".to_owned(),
                config
                    .endpoint
                    .map_or(Value::Null, |e| Value::from(e.to_string())),
            );
            d.insert(
                "persistent_keepalive".to_owned(),
                Value::from(config.persistent_keepalive),
            );
            d.insert(
                "preshared_key".to_owned(),
                Value::from(config.preshared_key.is_some()),
            );
        }
        if let Some(old) = old {
            let field = if config.is_some() {
                "old_public_key"
            } else {
                "public_key"
            };
            d.insert(field.to_owned(), Value::from(old.to_string()));
        }
        if let Some(error) = error {
            d.insert("error".to_owned(), Value::from(bounded(error)));
        }
        let subject = match (name, config, old) {
            (Some(name), _, _) => name.to_owned(),
            (None, Some(config), _) => config.public_key.to_string(),
            (None, None, Some(old)) => old.to_string(),
            (None, None, None) => "-".to_owned(),
        };
        let outcome = if error.is_some() { "failed" } else { "applied" };
        self.record(kind::PEER_CHANGE, super::GATEWAY, &subject, outcome, d);
    }

    /// Records a rejected peer declaration, with the reason.
    pub fn peer_rejected(&self, rejection: &Rejection) {
        let d = details([
            ("origin", Value::from(bounded(&rejection.origin))),
            ("problem", Value::from(rejection.kind.as_str())),
            ("reason", Value::from(bounded(&rejection.reason))),
        ]);
        let subject = rejection.name.as_deref().unwrap_or(&rejection.origin);
        self.record(kind::PEER_CHANGE, super::GATEWAY, subject, "rejected", d);
    }

    /// Records a key load (never the key): `subject` names the key (`wireguard`, `audit-key`).
    pub fn key_load(&self, subject: &str, source: &str, version: Option<u64>, public_key: &str) {
        self.record(
            kind::KEY_LOAD,
            super::GATEWAY,
            subject,
            "ok",
            key_load(source, version, public_key, None),
        );
    }
}

pub(super) fn key_load(
    source: &str,
    version: Option<u64>,
    public_key: &str,
    key_id: Option<&str>,
) -> Map<String, Value> {
    let mut d = details([
        ("source", Value::from(source)),
        ("version", version.map_or(Value::Null, Value::from)),
        ("public_key", Value::from(public_key)),
    ]);
    if let Some(id) = key_id {
        d.insert("key_id".to_owned(), Value::from(id));
    }
    d
}

pub(super) fn recovered(
    reason: &str,
    unsigned: u64,
    torn: Option<(usize, usize)>,
) -> Map<String, Value> {
    let mut d = details([
        ("reason", Value::from(reason)),
        ("unsigned_records", Value::from(unsigned)),
    ]);
    if let Some((line, bytes)) = torn {
        d.insert("torn_line".to_owned(), Value::from(line));
        d.insert("torn_bytes".to_owned(), Value::from(bytes));
    }
    d
}

/// Cuts `text` to [`MAX_FIELD`] characters.
pub(super) fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_FIELD) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
