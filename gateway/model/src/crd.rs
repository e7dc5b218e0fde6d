//! The `WireGuardPeer` custom resource (`zt.hanzo.ai/v1alpha1`, namespaced; SPEC section 5).
//!
//! The CRD in `manifests/crds/` is generated from these types by `crdgen`; a test fails when
//! the two drift. The schema checks what a schema can (key shape, CIDR syntax, at least one
//! allowed IP, keepalive range); the gateway validates everything again, because the directory
//! source has no API server in front of it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::peer::PeerId;
use crate::validate::RawPeer;

/// What an operator declares about one peer cluster's gateway.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats type_ = ...; they are separate columns"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zt.hanzo.ai",
    version = "v1alpha1",
    kind = "WireGuardPeer",
    namespaced,
    status = "WireGuardPeerStatus",
    shortname = "wgp",
    category = "zt",
    doc = "A WireGuard peer of this cluster's ZT Gateway: another cluster's gateway.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(
        name = "Connected",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Connected\")].status"
    ),
    printcolumn(
        name = "Last Handshake",
        type_ = "date",
        json_path = ".status.lastHandshakeTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WireGuardPeerSpec {
    /// The peer's cluster name (a DNS label); the `cluster` label of the gateway's metrics.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub cluster: String,
    /// The peer gateway's WireGuard public key: base64 of 32 bytes (44 characters).
    #[schemars(
        length(min = 44, max = 44),
        regex(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
    )]
    pub public_key: String,
    /// `host:port` of the peer gateway (DNS names allowed); absent for a passive peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 261))]
    pub endpoint: Option<String>,
    /// Networks routed to this peer: its tunnel address and its cluster's pod and service
    /// CIDRs.
    #[serde(rename = "allowedIPs")]
    // Bounded so the API server's CEL cost estimate accepts the rule.
    #[schemars(length(min = 1, max = 64), inner(length(max = 43)))]
    #[x_kube(validation = "self.all(c, isCIDR(c) || isIP(c))")]
    pub allowed_ips: Vec<String>,
    /// Persistent keepalive in seconds (0 turns it off); 25 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65535))]
    pub persistent_keepalive: Option<i64>,
    /// A Secret in the same namespace holding a base64 preshared key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key_secret_ref: Option<SecretKeyRef>,
    /// The peer's SPIFFE trust domain (federation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// The peer's Ed25519 policy-signing public key, base64 (policy sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_signing_key: Option<String>,
}

/// A key in a Secret of the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key within the Secret's data.
    pub key: String,
}

/// What the gateway reports about the peer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WireGuardPeerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The key the peer uses now (differs from `spec.publicKey` after the peer rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_public_key: Option<String>,
    /// A key the peer announced and does not use yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_public_key: Option<String>,
    /// Time of the last completed handshake (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake_time: Option<String>,
    /// Bytes received from the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    /// Bytes sent to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    /// What the gateway holds of the peer's key rotations (its active key, a pending next
    /// key, the last sequence taken, the keys it rotated away from): the gateway's own record,
    /// written before it acknowledges a rotation message. Not for editing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rotation_schema")]
    pub rotation: Option<serde_json::Map<String, serde_json::Value>>,
    /// `Ready` (accepted and applied, or why not), `Connected` (recent handshake) and
    /// `KeyCurrent` (whether `spec.publicKey` names the key the peer runs under).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".to_owned(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".to_owned(),
        serde_json::json!(["type"]),
    );
    schema
}

/// A JSON object the API server keeps as written, replaced whole by each apply.
fn rotation_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-map-type": "atomic",
    })
}

impl WireGuardPeerSpec {
    /// Returns the declaration the core validates: this spec, declared as `id`, with `origin`
    /// naming where for the operator. The one conversion both sources use.
    pub fn to_raw(&self, id: PeerId, origin: String) -> RawPeer {
        RawPeer {
            name: id.name().to_owned(),
            id,
            origin,
            cluster: self.cluster.clone(),
            public_key: self.public_key.clone(),
            endpoint: self.endpoint.clone(),
            allowed_ips: self.allowed_ips.clone(),
            persistent_keepalive: self.persistent_keepalive,
            has_preshared_key_ref: self.preshared_key_secret_ref.is_some(),
            preshared_key: None,
        }
    }
}

impl WireGuardPeer {
    /// Returns the declaration the core validates, identified and named by the resource's
    /// `namespace/name`.
    pub fn to_raw(&self) -> RawPeer {
        let namespace = self.metadata.namespace.as_deref().unwrap_or("-");
        let name = self.metadata.name.as_deref().unwrap_or_default();
        self.spec.to_raw(
            PeerId::resource(namespace, name),
            format!("{namespace}/{name}"),
        )
    }
}

#[cfg(test)]
mod tests;
