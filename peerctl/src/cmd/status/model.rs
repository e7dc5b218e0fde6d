//! The admin API's status document (schema 1, `docs/admin-api.md`), as far as `peerctl` reads
//! it. Unknown fields are ignored, as the schema allows.

use serde::Deserialize;

/// The schema version this peerctl understands.
pub const SCHEMA: u32 = 1;

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    pub schema: u32,
    pub now_unix: u64,
    pub gateway: Gateway,
    pub interface: Interface,
    pub peers: Vec<Peer>,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Gateway {
    pub version: String,
    pub cluster: String,
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Interface {
    pub name: String,
    pub public_key: String,
    pub listen_port: u16,
    pub address: String,
    pub key_age_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Peer {
    pub cluster: String,
    pub public_key: String,
    pub endpoint: Option<String>,
    pub connected: bool,
    pub last_handshake_unix: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub allowed_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rejected {
    pub origin: String,
    pub name: Option<String>,
    pub reason: String,
}

/// Parses the document and checks its schema version.
///
/// # Errors
/// When the body is not a status document of a schema this peerctl reads.
pub fn parse(body: &str) -> anyhow::Result<Status> {
    let status: Status = serde_json::from_str(body).map_err(|e| {
        anyhow::anyhow!("the gateway's status answer is not a status document ({e}): is --socket or --url a ZT Gateway admin API?")
    })?;
    if status.schema != SCHEMA {
        anyhow::bail!(
            "the gateway speaks admin schema {}, this peerctl reads schema {SCHEMA}: use the peerctl of the gateway's release",
            status.schema
        );
    }
    Ok(status)
}
