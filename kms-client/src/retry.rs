//! Retry timing: capped exponential backoff with jitter, honouring `Retry-After`. Pure: the
//! caller supplies the attempt number and the random draw.

use std::time::Duration;

/// How often and how patiently a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt (before jitter).
    pub base: Duration,
    /// Longest delay between attempts, `Retry-After` included.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Returns how long to wait after failed attempt number `attempt` (1-based). `jitter` is a
    /// uniform draw in `[0, 1)`: the wait is between half and all of the exponential step
    /// ("equal jitter"), never shorter than the server's `Retry-After`, never longer than
    /// `cap`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let step = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let half = step / 2;
        let jittered = half + half.mul_f64(jitter.clamp(0.0, 1.0));
        jittered.max(retry_after.unwrap_or_default()).min(self.cap)
    }
}

/// Returns a uniform draw in `[0, 1)` from the operating system's random source (0.5 if it
/// fails: jitter is a courtesy, not a safety property).
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests;
