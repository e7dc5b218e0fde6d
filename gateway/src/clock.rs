//! The only code in the gateway that reads the clock.

use std::time::SystemTime;

/// Returns the current wall-clock time.
#[allow(
    clippy::disallowed_methods,
    reason = "clock.rs is the one place that reads time"
)]
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Returns monotonic time since the first call in this process: the clock the native data
/// plane schedules its timers with.
#[allow(
    clippy::disallowed_methods,
    reason = "clock.rs is the one place that reads time"
)]
pub fn monotonic() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}
