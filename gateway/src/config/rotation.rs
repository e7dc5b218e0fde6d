//! Key rotation settings: `[key] rotation_*` (SPEC sections 4 and 7, `docs/rotation.md`).

use std::time::Duration;

use ztgw_rotation::machine::Timing;
use ztgw_rotation::schedule::{Schedule, Window};

use super::error::{ConfigError, bad};

/// When and how this gateway rotates its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationConfig {
    /// `rotation_max_age`, `rotation_lead`, `rotation_window`, `rotation_jitter`.
    pub schedule: Schedule,
    /// `rotation_announce_timeout`, `rotation_verify_deadline`.
    pub timing: Timing,
    /// Test only (`--test-rotation-hold`): the phase in which a rotation stops.
    pub hold: Option<String>,
}

/// The `[key] rotation_*` keys as written.
#[derive(Debug, Default)]
pub(super) struct RawRotation {
    pub max_age: Option<String>,
    pub lead: Option<String>,
    pub window: Option<String>,
    pub jitter: Option<String>,
    pub announce_timeout: Option<String>,
    pub verify_deadline: Option<String>,
}

const DAY: u64 = 86_400;

pub(super) fn validate(raw: RawRotation) -> Result<RotationConfig, ConfigError> {
    let defaults = RotationConfig::default();
    let max_age = duration(
        "key.rotation_max_age",
        raw.max_age,
        defaults.schedule.max_age,
        (Duration::from_secs(DAY), Duration::from_secs(3650 * DAY)),
        "\"90d\"",
    )?;
    let lead = duration(
        "key.rotation_lead",
        raw.lead.clone(),
        defaults.schedule.lead,
        (Duration::ZERO, Duration::from_secs(365 * DAY)),
        "\"5d\"",
    )?;
    if lead >= max_age {
        return Err(bad(
            "key.rotation_lead",
            raw.lead.as_deref().unwrap_or("5d"),
            "must be shorter than key.rotation_max_age",
        ));
    }
    let window = match raw.window {
        None => None,
        Some(text) => Some(text.parse::<Window>().map_err(|_| {
            bad(
                "key.rotation_window",
                &text,
                "expected a daily UTC range HH:MM-HH:MM, e.g. \"22:00-02:00\"",
            )
        })?),
    };
    let jitter = duration(
        "key.rotation_jitter",
        raw.jitter,
        defaults.schedule.jitter,
        (Duration::ZERO, Duration::from_secs(DAY)),
        "\"30m\"",
    )?;
    let announce_timeout = duration(
        "key.rotation_announce_timeout",
        raw.announce_timeout,
        defaults.timing.announce_timeout,
        (Duration::from_secs(5), Duration::from_secs(3600)),
        "\"60s\"",
    )?;
    let verify_deadline = duration(
        "key.rotation_verify_deadline",
        raw.verify_deadline,
        defaults.timing.verify_deadline,
        (Duration::from_secs(5), Duration::from_secs(3600)),
        "\"60s\"",
    )?;
    Ok(RotationConfig {
        schedule: Schedule {
            max_age,
            lead,
            window,
            jitter,
        },
        timing: Timing {
            announce_timeout,
            verify_deadline,
            retry_every: defaults.timing.retry_every,
        },
        hold: None,
    })
}

fn duration(
    key: &str,
    value: Option<String>,
    default: Duration,
    (min, max): (Duration, Duration),
    example: &str,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    humantime::parse_duration(&text)
        .ok()
        .filter(|d| (min..=max).contains(d))
        .ok_or_else(|| {
            bad(
                key,
                &text,
                &format!(
                    "expected a duration from {} to {}, e.g. {example}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            )
        })
}
