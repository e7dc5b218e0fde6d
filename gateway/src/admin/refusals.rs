//! How often refused admin requests are logged: a client hammering the TCP listener with bad
//! tokens must not flood the log.

use std::time::Duration;

/// At most one log line per this interval for refused requests.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts refused requests and decides which of them get a log line.
#[derive(Debug)]
pub struct Refusals {
    every: Duration,
    last_logged: Option<Duration>,
    suppressed: u64,
}

impl Refusals {
    /// Logs at most one refusal per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Records a refusal at `now` (monotonic time, e.g. [`crate::clock::monotonic`]). Returns `Some(n)` when it is to be logged, `n` being how
    /// many refusals went unlogged since the previous line; `None` when it is not.
    pub fn record(&mut self, now: Duration) -> Option<u64> {
        match self.last_logged {
            Some(last) if now.saturating_sub(last) < self.every => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_those_not_logged() {
        let start = Duration::from_secs(1_000);
        let mut refusals = Refusals::new(Duration::from_secs(10));
        assert_eq!(refusals.record(start), Some(0));
        for ms in 1..1000 {
            assert_eq!(refusals.record(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(refusals.record(start + Duration::from_secs(10)), Some(999));
        assert_eq!(refusals.record(start + Duration::from_secs(11)), None);
        assert_eq!(refusals.record(start + Duration::from_secs(30)), Some(1));
        assert_eq!(refusals.record(start + Duration::from_secs(45)), Some(0));
    }
}
