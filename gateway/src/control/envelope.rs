//! The versioned message envelope and the message bodies (`docs/control-channel.md`): pure
//! parsing and validation of bytes that come from outside, and the encoding of what we send.
//!
//! Every message, request and answer alike, is one JSON object:
//! `{"type": "hello", "version": 1, "from": "<cluster>", "id": "<request id>", "body": {...}}`.
//! Nothing parsed here is ever echoed back or logged: callers only learn *which* rule failed.

use crate::core::validate::is_dns_label;
use serde::{Deserialize, Serialize};

use crate::core::key::PublicKey;
pub use ztgw_rotation::RotationId;
pub use ztgw_rotation::machine::AnnounceBody;
pub use ztgw_rotation::responder::Ack;

/// The only envelope version this build speaks.
pub const VERSION: u32 = 1;

/// Largest request or answer body in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most capabilities a hello may list.
pub const MAX_CAPABILITIES: usize = 32;

/// The capabilities every build announces: the message types it serves.
pub const CAPABILITIES: [&str; 1] = ["hello"];

/// The capabilities a gateway that takes part in key rotations announces besides `hello`.
pub const ROTATION_CAPABILITIES: [&str; 3] = ["rotate.announce", "rotate.complete", "rotate.abort"];

/// A message type this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageType {
    /// `hello`: who we are, what we speak, which key we run.
    Hello,
    /// `rotate.announce`: the sender's next public key, bound to both current keys.
    RotateAnnounce,
    /// `rotate.ack`: the answer to an announcement, once it is stored (an answer only).
    RotateAck,
    /// `rotate.complete`: the sender's next key is its key now.
    RotateComplete,
    /// `rotate.abort`: the sender's next key is discarded.
    RotateAbort,
}

impl MessageType {
    /// Every known type, for metric series that exist from the start.
    pub const ALL: [Self; 5] = [
        Self::Hello,
        Self::RotateAnnounce,
        Self::RotateAck,
        Self::RotateComplete,
        Self::RotateAbort,
    ];

    /// The wire name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::RotateAnnounce => "rotate.announce",
            Self::RotateAck => "rotate.ack",
            Self::RotateComplete => "rotate.complete",
            Self::RotateAbort => "rotate.abort",
        }
    }

    /// Returns the known type named `text`, if any.
    pub fn from_wire(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// The metric label of a message whose type is `kind`: a known type's name, or `unknown`.
pub fn type_label(kind: Option<MessageType>) -> &'static str {
    kind.map_or("unknown", MessageType::as_str)
}

/// Why a message was not understood. The wording is ours, never the sender's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JSON envelope, or a field out of its bounds.
    Malformed,
    /// A `type` this build does not know.
    UnknownType,
    /// A `version` this build does not speak.
    UnsupportedVersion,
}

impl Rejection {
    /// The code sent in the error answer and written in logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownType => "unknown_type",
            Self::UnsupportedVersion => "unsupported_version",
        }
    }
}

/// An envelope as read from the wire, its body not yet interpreted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawEnvelope {
    /// `type`, as sent.
    #[serde(rename = "type")]
    pub kind: String,
    /// `version`, as sent.
    pub version: u64,
    /// `from`: the sender's cluster name (a DNS label).
    pub from: String,
    /// `id`: the sender's request id, repeated in the answer.
    pub id: String,
    /// `body`, as sent.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// A message understood and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's cluster name.
    pub from: String,
    /// The request id.
    pub id: String,
    /// What it says.
    pub body: Body,
}

impl Message {
    /// Its type.
    pub fn kind(&self) -> MessageType {
        self.body.kind()
    }
}

/// The body of a known message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `hello`.
    Hello(Hello),
    /// `rotate.announce`.
    RotateAnnounce(AnnounceBody),
    /// `rotate.ack`.
    RotateAck(Ack),
    /// `rotate.complete`.
    RotateComplete(EndBody),
    /// `rotate.abort`.
    RotateAbort(EndBody),
}

impl Body {
    /// Its type.
    pub fn kind(&self) -> MessageType {
        match self {
            Body::Hello(_) => MessageType::Hello,
            Body::RotateAnnounce(_) => MessageType::RotateAnnounce,
            Body::RotateAck(_) => MessageType::RotateAck,
            Body::RotateComplete(_) => MessageType::RotateComplete,
            Body::RotateAbort(_) => MessageType::RotateAbort,
        }
    }
}

/// The body of `rotate.complete` and `rotate.abort`, in the request and in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndBody {
    /// The rotation that ends.
    pub rotation_id: RotationId,
}

/// A `hello` body: the same in the request and in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's cluster name; equals the envelope's `from`.
    pub cluster: String,
    /// The sender's gateway release, e.g. `0.1.0`.
    pub version: String,
    /// The message types the sender serves.
    pub capabilities: Vec<String>,
    /// The sender's current WireGuard public key, base64.
    pub public_key: String,
    /// Age of that key in seconds, when the sender knows it.
    pub key_age_seconds: Option<u64>,
}

/// Parses the envelope of `bytes` without interpreting its body.
///
/// # Errors
/// [`Rejection::Malformed`] when `bytes` is not a JSON envelope, or `from` or `id` break
/// their bounds.
pub fn parse_envelope(bytes: &[u8]) -> Result<RawEnvelope, Rejection> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Rejection::Malformed);
    }
    let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|_| Rejection::Malformed)?;
    if !is_dns_label(&raw.from) || !is_request_id(&raw.id) {
        return Err(Rejection::Malformed);
    }
    Ok(raw)
}

impl RawEnvelope {
    /// The known type it names, if any.
    pub fn known_type(&self) -> Option<MessageType> {
        MessageType::from_wire(&self.kind)
    }

    /// Interprets the body according to the type and version.
    ///
    /// # Errors
    /// An unknown type, another version, or a body that breaks its type's rules.
    pub fn interpret(self) -> Result<Message, Rejection> {
        let kind = self.known_type().ok_or(Rejection::UnknownType)?;
        if self.version != u64::from(VERSION) {
            return Err(Rejection::UnsupportedVersion);
        }
        let body = match kind {
            MessageType::Hello => {
                let hello: Hello = from_value(self.body)?;
                if !hello.is_valid_from(&self.from) {
                    return Err(Rejection::Malformed);
                }
                Body::Hello(hello)
            }
            MessageType::RotateAnnounce => Body::RotateAnnounce(from_value(self.body)?),
            MessageType::RotateAck => Body::RotateAck(from_value(self.body)?),
            MessageType::RotateComplete => Body::RotateComplete(from_value(self.body)?),
            MessageType::RotateAbort => Body::RotateAbort(from_value(self.body)?),
        };
        Ok(Message {
            from: self.from,
            id: self.id,
            body,
        })
    }
}

/// Reads a body of type `T`: the key and id fields check their own format on the way.
fn from_value<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T, Rejection> {
    serde_json::from_value(body).map_err(|_| Rejection::Malformed)
}

impl Hello {
    /// Whether every field is within its bounds and `cluster` equals the envelope's `from`.
    fn is_valid_from(&self, from: &str) -> bool {
        self.cluster == from
            && is_token(&self.version, 32)
            && self.capabilities.len() <= MAX_CAPABILITIES
            && self.capabilities.iter().all(|c| is_token(c, 32))
            && PublicKey::from_base64(&self.public_key).is_ok()
    }
}

/// Encodes a message of ours.
///
/// # Errors
/// Only on a programming error (JSON encoding of our own types cannot fail).
pub fn encode(from: &str, id: &str, body: &Body) -> Result<Vec<u8>, serde_json::Error> {
    match body {
        Body::Hello(hello) => encode_as(body.kind(), from, id, hello),
        Body::RotateAnnounce(announce) => encode_as(body.kind(), from, id, announce),
        Body::RotateAck(ack) => encode_as(body.kind(), from, id, ack),
        Body::RotateComplete(end) | Body::RotateAbort(end) => encode_as(body.kind(), from, id, end),
    }
}

fn encode_as<B: Serialize>(
    kind: MessageType,
    from: &str,
    id: &str,
    body: &B,
) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct Out<'a, B: Serialize> {
        #[serde(rename = "type")]
        kind: &'static str,
        version: u32,
        from: &'a str,
        id: &'a str,
        body: &'a B,
    }
    serde_json::to_vec(&Out {
        kind: kind.as_str(),
        version: VERSION,
        from,
        id,
        body,
    })
}

/// The body of an error answer: a fixed code, nothing from the request.
pub fn error_body(code: &str) -> Vec<u8> {
    format!("{{\"error\":\"{code}\"}}\n").into_bytes()
}

/// A request id: 1 to 64 letters, digits, `-`, `_` and `.`.
fn is_request_id(text: &str) -> bool {
    is_token(text, 64)
}

/// 1 to `max` bytes of ASCII letters, digits, `-`, `_`, `.` and `+`.
fn is_token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

#[cfg(test)]
mod tests;
