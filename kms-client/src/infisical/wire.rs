//! The JSON bodies of the Infisical API, as documented: requests we send and the answers we
//! accept. Secret values and tokens are deserialized straight into zeroizing strings.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::Token;
use crate::Error;
use crate::store::{Operation, Secret, WriteOutcome};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LoginRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RenewRequest<'a> {
    pub access_token: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WriteRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<&'a str>,
    pub environment: &'a str,
    pub secret_path: &'a str,
    pub secret_value: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    access_token: Option<Zeroizing<String>>,
    expires_in: Option<u64>,
}

/// Shortest token lifetime we schedule for, so a server answering 0 cannot make us spin.
const MIN_TOKEN_TTL: Duration = Duration::from_secs(5);
/// Longest token lifetime we schedule for: a server answering a huge `expiresIn` gets its
/// token renewed within a day instead of overflowing the clock arithmetic.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

pub(super) fn token_from(operation: Operation, body: &[u8]) -> Result<Token, Error> {
    let malformed = |what: &str| Error::MalformedResponse {
        operation: operation.as_str(),
        what: what.to_owned(),
    };
    let answer: TokenAnswer = serde_json::from_slice(body)
        .map_err(|e| malformed(&format!("not JSON: {}", json_error(&e))))?;
    let value = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("accessToken missing"))?;
    let ttl = Duration::from_secs(
        answer
            .expires_in
            .ok_or_else(|| malformed("expiresIn missing"))?,
    )
    .clamp(MIN_TOKEN_TTL, MAX_TOKEN_TTL);
    let now = Instant::now();
    // Renew at two thirds of the lifetime, as the Infisical SDKs do.
    Ok(Token {
        value,
        renew_at: now + ttl.mul_f64(2.0 / 3.0),
        expires_at: now + ttl,
    })
}

#[derive(Deserialize)]
struct SecretAnswer {
    secret: Option<SecretBody>,
    value: Option<Zeroizing<String>>,
    version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretBody {
    secret_value: Option<Zeroizing<String>>,
    value: Option<Zeroizing<String>>,
    version: Option<u64>,
    created_at: Option<String>,
    updated_at: Option<String>,
    secret_value_hidden: Option<bool>,
}

pub(super) fn secret_from(name: &str, body: &[u8]) -> Result<Secret, Error> {
    let malformed = |what: String| Error::MalformedResponse {
        operation: Operation::Read.as_str(),
        what,
    };
    let answer: SecretAnswer = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not JSON: {}", json_error(&e))))?;
    let (value, version, created) = match answer.secret {
        Some(secret) => {
            if secret.secret_value_hidden == Some(true) {
                return Err(malformed(format!(
                    "the value of secret {name} is hidden from this identity (it needs permission to read secret values)"
                )));
            }
            let created = secret.updated_at.or(secret.created_at);
            (
                secret.secret_value.or(secret.value),
                secret.version,
                created,
            )
        }
        None => (answer.value, answer.version, None),
    };
    let value = value.ok_or_else(|| malformed(format!("secret {name} has no secretValue")))?;
    let version = version.ok_or_else(|| malformed(format!("secret {name} has no version")))?;
    let created_at = match created {
        Some(text) => Some(
            parse_time(&text)
                .ok_or_else(|| malformed(format!("secret {name} has an unreadable timestamp")))?,
        ),
        None => None,
    };
    // The KMS trims values on write but keeps one trailing newline; keys never contain spaces.
    let trimmed = Zeroizing::new(value.trim().to_owned());
    Ok(Secret {
        name: name.to_owned(),
        value: trimmed,
        version,
        created_at,
    })
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

#[derive(Deserialize)]
struct WriteAnswer {
    secret: Option<WrittenSecret>,
    approval: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WrittenSecret {
    version: Option<u64>,
}

pub(super) fn write_outcome(name: &str, body: &[u8]) -> Result<WriteOutcome, Error> {
    let malformed = |what: String| Error::MalformedResponse {
        operation: Operation::Write.as_str(),
        what,
    };
    let answer: WriteAnswer = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not JSON: {}", json_error(&e))))?;
    if answer.approval.is_some() {
        return Ok(WriteOutcome::PendingApproval);
    }
    let version = answer.secret.and_then(|s| s.version).ok_or_else(|| {
        malformed(format!(
            "the answer for secret {name} has neither secret.version nor approval"
        ))
    })?;
    Ok(WriteOutcome::Applied { version })
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    message: Option<serde_json::Value>,
}

/// Returns the `error` kind and a one-line `message` of an error body
/// (`{reqId, statusCode, message, error}`); tolerant of anything else.
pub(super) fn error_body(body: &[u8]) -> (String, String) {
    let Ok(answer) = serde_json::from_slice::<ErrorAnswer>(body) else {
        return (String::new(), "no error body".to_owned());
    };
    let message = match answer.message {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.get("message")
                    .and_then(|m| m.as_str())
                    .map_or_else(|| i.to_string(), str::to_owned)
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
        None => "no message".to_owned(),
    };
    let one_line: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = one_line.chars().take(300).collect();
    (answer.error.unwrap_or_default(), short)
}

/// Describes a JSON error by category and position only: serde's messages can quote input,
/// and the input may hold a secret.
fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}
