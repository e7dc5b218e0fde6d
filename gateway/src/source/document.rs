//! The `WireGuardPeer` document as written in YAML (SPEC section 5), and its conversion to the
//! core's unchecked [`RawPeer`].

use serde::Deserialize;

use crate::core::validate::{Declaration, RawPeer};

/// `apiVersion` of the resource.
pub const API_VERSION: &str = "zt.hanzo.ai/v1alpha1";
/// `kind` of the resource.
pub const KIND: &str = "WireGuardPeer";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    cluster: String,
    public_key: String,
    endpoint: Option<String>,
    #[serde(rename = "allowedIPs")]
    allowed_ips: Vec<String>,
    persistent_keepalive: Option<i64>,
    preshared_key_secret_ref: Option<SecretRef>,
    #[allow(dead_code)]
    trust_domain: Option<String>,
    #[allow(dead_code)]
    policy_signing_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRef {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    key: String,
}

/// Parses the text of one file into declarations, one per non-empty YAML document. `origin`
/// names the file; with several documents each gets ` (document N)`.
pub fn parse_file(origin: &str, text: &str) -> Vec<Declaration> {
    let values: Vec<serde_json::Value> = match serde_saphyr::from_multiple(text) {
        Ok(values) => values,
        Err(e) => {
            return vec![Declaration::Unreadable {
                origin: origin.to_owned(),
                reason: format!("unparseable YAML: {}", one_line(&e.to_string())),
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
            parse_document(origin, value)
        })
        .collect()
}

fn parse_document(origin: String, value: serde_json::Value) -> Declaration {
    let document: Document = match serde_json::from_value(value) {
        Ok(document) => document,
        Err(e) => {
            return Declaration::Unreadable {
                origin,
                reason: format!("not a WireGuardPeer: {}", one_line(&e.to_string())),
            };
        }
    };
    if document.api_version != API_VERSION || document.kind != KIND {
        return Declaration::Unreadable {
            origin,
            reason: format!(
                "apiVersion/kind is {}/{}; expected {API_VERSION}/{KIND}",
                document.api_version, document.kind
            ),
        };
    }
    let spec = document.spec;
    Declaration::Peer(RawPeer {
        origin,
        name: document.metadata.name.unwrap_or_default(),
        cluster: spec.cluster,
        public_key: spec.public_key,
        endpoint: spec.endpoint,
        allowed_ips: spec.allowed_ips,
        persistent_keepalive: spec.persistent_keepalive,
        has_preshared_key_ref: spec.preshared_key_secret_ref.is_some(),
        preshared_key: None,
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
