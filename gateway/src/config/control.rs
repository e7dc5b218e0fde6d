//! The `[control]` section: the control channel on the tunnel address (SPEC section 8,
//! `docs/control-channel.md`).

use std::time::Duration;

use serde::Deserialize;

use super::error::{ConfigError, bad};

/// The `[control]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlConfig {
    /// `control.enabled` (default `true`): serve the channel and say hello to peers.
    pub enabled: bool,
    /// `control.port` (default 51821): the TCP port on the tunnel address.
    pub port: u16,
    /// `control.hello_interval` (default 30 s): how often each peer is greeted.
    pub hello_interval: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: DEFAULT_PORT,
            hello_interval: DEFAULT_HELLO_INTERVAL,
        }
    }
}

/// `control.port` when not set.
pub const DEFAULT_PORT: u16 = 51821;
const DEFAULT_HELLO_INTERVAL: Duration = Duration::from_secs(30);
const HELLO_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    enabled: Option<bool>,
    port: Option<i64>,
    hello_interval: Option<String>,
}

pub(super) fn validate(raw: RawControl) -> Result<ControlConfig, ConfigError> {
    let port = raw.port.unwrap_or(i64::from(DEFAULT_PORT));
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("control.port", port, "expected a TCP port from 1 to 65535"))?;
    let hello_interval = match raw.hello_interval {
        None => DEFAULT_HELLO_INTERVAL,
        Some(text) => {
            let (min, max) = HELLO_INTERVAL_RANGE;
            humantime::parse_duration(&text)
                .ok()
                .filter(|d| (min..=max).contains(d))
                .ok_or_else(|| {
                    bad(
                        "control.hello_interval",
                        &text,
                        "expected a duration from 1s to 1h, e.g. \"30s\"",
                    )
                })?
        }
    };
    Ok(ControlConfig {
        enabled: raw.enabled.unwrap_or(true),
        port,
        hello_interval,
    })
}
