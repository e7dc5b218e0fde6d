//! Counting one stream's arrivals: distinct, duplicated and reordered sequence numbers, and
//! the longest silence. Pure: the receiver passes every arrival's time in.

use std::time::{Duration, Instant};

use super::StreamStats;

/// Sequence numbers from here on are taken for garbage: they bound the tally's memory (32 MiB),
/// and at 1,000 packets/s a stream reaches them after three days.
pub(super) const MAX_SEQ: u64 = 1 << 28;

/// The arrivals of one stream, counted as they come; the pure part of a receiver.
#[derive(Debug)]
pub(super) struct Tally {
    /// The previous arrival, or the start before the first.
    last: Instant,
    max_gap: Duration,
    highest: Option<u64>,
    /// One bit per sequence number received.
    seen: Vec<u64>,
    received: u64,
    distinct: u64,
    duplicates: u64,
    reordered: u64,
}

impl Tally {
    pub(super) fn new(start: Instant) -> Self {
        Self {
            last: start,
            max_gap: Duration::ZERO,
            highest: None,
            seen: Vec::new(),
            received: 0,
            distinct: 0,
            duplicates: 0,
            reordered: 0,
        }
    }

    /// Records the arrival of `seq` at `at` (arrivals come in time order).
    pub(super) fn record(&mut self, seq: u64, at: Instant) {
        if seq >= MAX_SEQ {
            return;
        }
        self.received += 1;
        self.max_gap = self.max_gap.max(at.saturating_duration_since(self.last));
        self.last = self.last.max(at);
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.distinct += 1;
        if self.highest.is_some_and(|highest| seq < highest) {
            self.reordered += 1;
        }
        self.highest = self.highest.max(Some(seq));
    }

    /// Returns the number of distinct sequence numbers received.
    pub(super) fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Returns the figures for a sender that sent `sent` datagrams and stopped at `end`.
    pub(super) fn stats(&self, sent: u64, end: Instant) -> StreamStats {
        let max_gap = self.max_gap.max(end.saturating_duration_since(self.last));
        StreamStats {
            sent,
            received: self.received,
            lost: sent.saturating_sub(self.distinct),
            duplicates: self.duplicates,
            reordered: self.reordered,
            max_gap_ms: u64::try_from(max_gap.as_millis()).unwrap_or(u64::MAX),
            longest_loss: self.longest_loss(sent.min(MAX_SEQ)),
            send_errors: 0,
        }
    }

    /// Returns the longest run of consecutive sequence numbers below `sent` not received.
    fn longest_loss(&self, sent: u64) -> u64 {
        let (mut longest, mut run) = (0, 0);
        for seq in 0..sent {
            let word = self.seen.get((seq / 64) as usize).copied().unwrap_or(0);
            if word & (1u64 << (seq % 64)) == 0 {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        longest
    }
}
