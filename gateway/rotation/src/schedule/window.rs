//! The maintenance window: a daily range of UTC time in which a scheduled rotation may start.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

const MINUTES_PER_DAY: u16 = 24 * 60;
const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// A daily range of UTC time, `[start, end)` to the minute, written `"HH:MM-HH:MM"`.
///
/// The range may wrap past midnight: `"22:00-02:00"` is open from 22:00 to 02:00 the next
/// day. A start equal to the end is refused (the window would be empty, or the whole day,
/// and neither is what an operator means by a window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    /// Minutes after midnight UTC at which the window opens.
    start: u16,
    /// Minutes after midnight UTC at which it closes.
    end: u16,
}

/// Why a string is not a window. The message states the rule and never repeats the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not of the form `HH:MM-HH:MM` with two digits per field.
    #[error("a window is written HH:MM-HH:MM in UTC, e.g. 02:00-04:00")]
    Format,
    /// An hour above 23 or a minute above 59.
    #[error("window hours run from 00 to 23 and minutes from 00 to 59")]
    OutOfRange,
    /// The start equals the end.
    #[error("a window's start and end must differ")]
    Empty,
}

impl Window {
    /// Builds a window from its start and end in minutes after midnight UTC.
    ///
    /// # Errors
    /// [`WindowError::OutOfRange`] when a value is a day or more, [`WindowError::Empty`] when
    /// they are equal.
    pub fn from_minutes(start: u16, end: u16) -> Result<Self, WindowError> {
        if start >= MINUTES_PER_DAY || end >= MINUTES_PER_DAY {
            return Err(WindowError::OutOfRange);
        }
        if start == end {
            return Err(WindowError::Empty);
        }
        Ok(Self { start, end })
    }

    /// Returns whether `t` lies inside the window.
    pub fn contains(&self, t: SystemTime) -> bool {
        let minute = minute_of_day(t);
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// Returns the first instant at or after `t` inside the window: `t` itself when the window
    /// is open, otherwise the next opening.
    pub fn next_open(&self, t: SystemTime) -> SystemTime {
        if self.contains(t) {
            return t;
        }
        let start = i128::from(self.start) * 60 * 1_000_000_000;
        let wait = (start - nanos_of_day(t)).rem_euclid(NANOS_PER_DAY);
        // `wait` is below one day, so it fits a u64 of nanoseconds.
        let wait = Duration::from_nanos(u64::try_from(wait).unwrap_or(0));
        t.checked_add(wait).unwrap_or(t)
    }
}

/// Nanoseconds since midnight UTC, in `[0, NANOS_PER_DAY)`; also before 1970.
fn nanos_of_day(t: SystemTime) -> i128 {
    let since_epoch = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(0),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(0),
    };
    since_epoch.rem_euclid(NANOS_PER_DAY)
}

fn minute_of_day(t: SystemTime) -> u16 {
    u16::try_from(nanos_of_day(t) / (60 * 1_000_000_000)).unwrap_or(0)
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, WindowError> {
        let (start, end) = text.split_once('-').ok_or(WindowError::Format)?;
        Self::from_minutes(parse_time(start)?, parse_time(end)?)
    }
}

/// Parses `HH:MM` into minutes after midnight.
fn parse_time(text: &str) -> Result<u16, WindowError> {
    let bytes = text.as_bytes();
    let [h1, h2, b':', m1, m2] = bytes else {
        return Err(WindowError::Format);
    };
    let digit = |b: &u8| {
        b.is_ascii_digit()
            .then(|| u16::from(b - b'0'))
            .ok_or(WindowError::Format)
    };
    let hours = digit(h1)? * 10 + digit(h2)?;
    let minutes = digit(m1)? * 10 + digit(m2)?;
    if hours > 23 || minutes > 59 {
        return Err(WindowError::OutOfRange);
    }
    Ok(hours * 60 + minutes)
}

impl TryFrom<String> for Window {
    type Error = WindowError;

    fn try_from(text: String) -> Result<Self, WindowError> {
        text.parse()
    }
}

impl From<Window> for String {
    fn from(window: Window) -> Self {
        window.to_string()
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

#[cfg(test)]
mod tests;
