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
