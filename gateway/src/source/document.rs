//! The `WireGuardPeer` document as written in YAML (SPEC section 5), read into the CRD's own
//! types and converted to the core's unchecked [`RawPeer`] as a resource is.
//!
//! [`RawPeer`]: crate::core::validate::RawPeer

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::core::peer::PeerId;
use crate::core::validate::Declaration;
use crate::crd::WireGuardPeerSpec;

/// `apiVersion` of the resource.
pub const API_VERSION: &str = "zt.hanzo.ai/v1alpha1";
/// `kind` of the resource.
pub const KIND: &str = "WireGuardPeer";

/// A file document: the resource's envelope around the CRD's own spec type, so files and
/// resources share one schema ([`WireGuardPeerSpec`]) and one conversion
/// ([`WireGuardPeerSpec::to_raw`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: WireGuardPeerSpec,
    // Status is written by the controller; a copied resource may carry it. It is ignored.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde_json::Value>,
}

// Kubernetes object metadata carries many server-set fields (uid, resourceVersion, …); a
// resource copied from `kubectl get -o yaml` must still load, so only `name` is read.
#[derive(Debug, Deserialize)]
struct Metadata {
    name: Option<String>,
}

/// Parses the text of one file into declarations, one per non-empty YAML document. `path` is
/// the file's path relative to the peers directory: with each document's `metadata.name` it
/// identifies the peer, and it is the origin (with several documents each gets
/// ` (document N)`).
pub fn parse_file(path: &str, text: &str) -> Vec<Declaration> {
    let origin = path;
    let values: Vec<serde_json::Value> = match serde_saphyr::from_multiple(text) {
        Ok(values) => values,
        Err(e) => {
            return vec![Declaration::Unreadable {
                origin: origin.to_owned(),
                reason: yaml_error(&e),
            }];
        }
    };
    let documents: Vec<serde_json::Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    let several = documents.len() > 1;
    documents
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let origin = if several {
                format!("{origin} (document {})", i + 1)
            } else {
                origin.to_owned()
            };
            parse_document(path, origin, value)
        })
        .collect()
}

fn parse_document(path: &str, origin: String, value: serde_json::Value) -> Declaration {
    let document: Document = match from_value(value, "") {
        Ok(document) => document,
        Err(why) => {
            return Declaration::Unreadable {
                origin,
                reason: format!("not a WireGuardPeer: {why}"),
            };
        }
    };
    if document.api_version != API_VERSION || document.kind != KIND {
        return Declaration::Unreadable {
            origin,
            reason: format!("apiVersion/kind must be {API_VERSION}/{KIND}"),
        };
    }
    let id = PeerId::file(path, document.metadata.name.unwrap_or_default());
    Declaration::Peer(document.spec.to_raw(id, origin))
}

/// Words a YAML syntax error by its position only: the parser's own message quotes the
/// source around the error, which may be anything the file holds (a key, if the file is a
/// link to one).
fn yaml_error(e: &serde_saphyr::Error) -> String {
    match e.location() {
        Some(at) => format!(
            "unparseable YAML at line {}, column {}",
            at.line(),
            at.column()
        ),
        None => "unparseable YAML".to_owned(),
    }
}

/// Deserializes `value` into `T`. On failure, says where (the field path, under `prefix`)
/// and what kind of problem it is, never the value found: the reason reaches logs, the admin
/// API and resource status, and the value may be anything.
///
/// # Errors
/// The reason, worded for the operator.
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        let mut segments: Vec<&serde_path_to_error::Segment> = e.path().iter().collect();
        if message.starts_with("unknown field") {
            // The last segment is the unknown key itself: input, not schema.
            segments.pop();
        }
        let mut path = prefix.to_owned();
        for segment in segments {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    path.push_str(&format!("[{index}]"));
                }
                serde_path_to_error::Segment::Map { key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(if is_identifier(key) { key } else { "?" });
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push('?');
                }
            }
        }
        let what = describe(&message);
        if path.is_empty() {
            what
        } else {
            format!("{path}: {what}")
        }
    })
}

/// Turns a serde message into its kind and what the schema expected, dropping the value it
/// quotes (`invalid type: string "…", expected …`).
fn describe(message: &str) -> String {
    // The schema's side of the message: field names come from the types, not the input.
    let expected = || {
        message
            .rfind(", expected ")
            .map(|at| &message[at + ", expected ".len()..])
            .filter(|tail| is_schema_text(tail))
    };
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name)
            .filter(|name| is_identifier(name))
    };
    let kind = if let Some(field) = named("missing field `") {
        return format!("missing field `{field}`");
    } else if let Some(field) = named("duplicate field `") {
        return format!("duplicate field `{field}`");
    } else if message.starts_with("unknown field") {
        return "unknown field".to_owned();
    } else if message.starts_with("invalid type") {
        "wrong type"
    } else if message.starts_with("invalid value") {
        "invalid value"
    } else if message.starts_with("invalid length") {
        "wrong number of items"
    } else {
        return "does not match the schema".to_owned();
    };
    match expected() {
        Some(expected) => format!("{kind}, expected {expected}"),
        None => kind.to_owned(),
    }
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_schema_text(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" _-`,.".contains(&b))
}

#[cfg(test)]
mod tests;
