//! The admin API's status document (schema 1, `docs/admin-api.md`), read with the gateway's
//! own types. Unknown fields are ignored, as the schema allows.

pub use ztgw_model::status::{
    ChannelState, ChannelStatus as Channel, PeerStatus as Peer, SCHEMA_VERSION as SCHEMA, Status,
};

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
