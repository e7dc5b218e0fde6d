//! The `[key]` section: a key file, or a KMS with its optional survival cache.

use std::path::PathBuf;
use std::time::Duration;

use kms_client::cache::CacheConfig;
use kms_client::infisical::{ApiVersion, InfisicalConfig};
use kms_client::retry::RetryPolicy;

use super::{ConfigError, KeyConfig, KmsConfig, RawKey, bad, non_empty_path};

const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// The longest accepted values: far beyond any sensible setting, far below what makes time
/// arithmetic overflow.
const MAX_DEADLINE: Duration = DAY;
const MAX_REQUEST_TIMEOUT: Duration = HOUR;
const MAX_CACHE_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

pub(super) fn validate(raw: RawKey) -> Result<KeyConfig, ConfigError> {
    match raw.source.as_deref().unwrap_or("file") {
        "file" => {
            if let Some((key, value)) = kms_only(&raw).into_iter().next() {
                return Err(bad(key, value, "only applies to source = \"kms\""));
            }
            Ok(KeyConfig::File {
                path: non_empty_path("key.path", raw.path, "/etc/zt-gateway/private.key")?,
            })
        }
        "kms" => kms(raw).map(|c| KeyConfig::Kms(Box::new(c))),
        other => Err(bad("key.source", other, "expected \"file\" or \"kms\"")),
    }
}

fn kms_only(raw: &RawKey) -> Vec<(&'static str, &str)> {
    [
        ("key.backend", &raw.backend),
        ("key.url", &raw.url),
        ("key.api", &raw.api),
        ("key.project_id", &raw.project_id),
        ("key.environment", &raw.environment),
        ("key.secret_path", &raw.secret_path),
        ("key.secret_name", &raw.secret_name),
        ("key.client_id_file", &raw.client_id_file),
        ("key.client_secret_file", &raw.client_secret_file),
        ("key.ca_file", &raw.ca_file),
        ("key.deadline", &raw.deadline),
        ("key.request_timeout", &raw.request_timeout),
        ("key.cache_path", &raw.cache_path),
        ("key.cache_kek_file", &raw.cache_kek_file),
        ("key.cache_max_age", &raw.cache_max_age),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.as_deref().map(|v| (key, v)))
    .collect()
}

fn kms(raw: RawKey) -> Result<KmsConfig, ConfigError> {
    if let Some(path) = &raw.path {
        return Err(bad("key.path", path, "only applies to source = \"file\""));
    }
    match raw.backend.as_deref().unwrap_or("infisical") {
        "infisical" => {}
        other => return Err(bad("key.backend", other, "expected \"infisical\"")),
    }
    let required = |key: &str, value: Option<String>, what: &str| -> Result<String, ConfigError> {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            bad(
                key,
                "",
                &format!("is required with source = \"kms\": {what}"),
            )
        })
    };
    let url = required(
        "key.url",
        raw.url,
        "the KMS base URL, e.g. https://kms.hanzo.ai",
    )?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(bad("key.url", &url, "expected an https:// URL"));
    }
    let api = match raw.api.as_deref().unwrap_or("v4") {
        "v4" => ApiVersion::V4,
        "v3" => ApiVersion::V3,
        other => return Err(bad("key.api", other, "expected \"v4\" or \"v3\"")),
    };
    let secret_path = raw.secret_path.unwrap_or_else(|| "/".to_owned());
    if !secret_path.starts_with('/') {
        return Err(bad(
            "key.secret_path",
            &secret_path,
            "expected a path starting with '/'",
        ));
    }
    let store = InfisicalConfig {
        url: url.trim_end_matches('/').to_owned(),
        api,
        project_id: required("key.project_id", raw.project_id, "the KMS project id")?,
        environment: required(
            "key.environment",
            raw.environment,
            "the environment slug, e.g. prod",
        )?,
        secret_path,
        client_id_file: PathBuf::from(required(
            "key.client_id_file",
            raw.client_id_file,
            "the file holding the machine identity's client id",
        )?),
        client_secret_file: PathBuf::from(required(
            "key.client_secret_file",
            raw.client_secret_file,
            "the file holding the machine identity's client secret",
        )?),
        ca_file: raw.ca_file.map(PathBuf::from),
        request_timeout: duration(
            "key.request_timeout",
            raw.request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
            MAX_REQUEST_TIMEOUT,
        )?,
        retry: RetryPolicy::default(),
    };
    let cache = match (raw.cache_path, raw.cache_kek_file) {
        (None, None) => {
            if let Some(age) = raw.cache_max_age {
                return Err(bad(
                    "key.cache_max_age",
                    age,
                    "only applies with key.cache_path",
                ));
            }
            None
        }
        (Some(path), Some(kek_file)) => Some(CacheConfig {
            path: PathBuf::from(path),
            kek_file: PathBuf::from(kek_file),
            max_age: duration(
                "key.cache_max_age",
                raw.cache_max_age,
                DEFAULT_CACHE_MAX_AGE,
                MAX_CACHE_MAX_AGE,
            )?,
        }),
        (Some(_), None) => {
            return Err(bad(
                "key.cache_kek_file",
                "",
                "is required with key.cache_path: the file holding the key-encryption key",
            ));
        }
        (None, Some(kek)) => {
            return Err(bad(
                "key.cache_kek_file",
                kek,
                "only applies with key.cache_path",
            ));
        }
    };
    Ok(KmsConfig {
        store,
        secret_name: required(
            "key.secret_name",
            raw.secret_name,
            "the secret holding the private key",
        )?,
        deadline: duration("key.deadline", raw.deadline, DEFAULT_DEADLINE, MAX_DEADLINE)?,
        cache,
    })
}

fn duration(
    key: &str,
    value: Option<String>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let parsed = humantime::parse_duration(&text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| bad(key, &text, "expected a duration such as 30s, 5m or 24h"))?;
    if parsed > max {
        return Err(bad(
            key,
            &text,
            &format!("expected at most {}", humantime::format_duration(max)),
        ));
    }
    Ok(parsed)
}
