//! Bounded polling: the one place in the harness that sleeps between attempts.

use std::time::{Duration, Instant};

use anyhow::Result;

/// Polls `check` until it returns `Ok`, or `timeout` passes.
///
/// Attempts start 20 ms apart and back off to 200 ms. The check itself should be quick (or
/// bounded); it always runs at least once.
///
/// # Errors
/// Returns the last error of `check`, with the timeout and the number of attempts as context.
#[allow(
    clippy::disallowed_methods,
    reason = "eventually() is the harness's one sanctioned sleep and clock reader"
)]
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match check() {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(error.context(format!(
                "condition not met within {timeout:?} ({attempts} attempts)"
            )));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Returns the wall-clock time since the Unix epoch, to compare with handshake timestamps.
#[allow(
    clippy::disallowed_methods,
    reason = "tests compare the device's wall-clock handshake times with now"
)]
pub fn unix_time() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
