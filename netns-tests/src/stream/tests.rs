//! Unit tests for the tally, the pacing deadlines, the datagram format and the checks.

use std::time::{Duration, Instant};

use super::datagram::{DATAGRAM_LEN, decode, encode};
use super::tally::{MAX_SEQ, Tally};
use super::{Pace, StreamStats, burst_deadline, check_in_order, check_no_loss, deadline};

const STREAM: u64 = 0x0123_4567_89ab_cdef;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Records `(seq, milliseconds after t0)` arrivals and returns the stats for `sent` datagrams
/// and a sender stopped at `end_ms`.
fn tally(arrivals: &[(u64, u64)], sent: u64, end_ms: u64) -> StreamStats {
    #[allow(
        clippy::disallowed_methods,
        reason = "an arbitrary origin for the test's times"
    )]
    let t0 = Instant::now();
    let mut tally = Tally::new(t0);
    for &(seq, at) in arrivals {
        tally.record(seq, t0 + ms(at));
    }
    tally.stats(sent, t0 + ms(end_ms))
}

#[test]
fn a_stream_arriving_whole_and_in_order_counts_nothing_lost() {
    let stats = tally(&[(0, 1), (1, 2), (2, 3), (3, 4)], 4, 4);

    assert_eq!(
        stats,
        StreamStats {
            sent: 4,
            received: 4,
            max_gap_ms: 1,
            ..StreamStats::default()
        }
    );
}

#[test]
fn missing_sequence_numbers_count_as_lost() {
    let stats = tally(&[(0, 1), (2, 3), (5, 6)], 6, 6);

    assert_eq!((stats.received, stats.lost, stats.reordered), (3, 3, 0));
}

#[test]
fn the_longest_run_of_missing_sequence_numbers_is_the_outage() {
    let stats = tally(&[(0, 1), (2, 3), (6, 7), (7, 8)], 10, 10);

    assert_eq!((stats.lost, stats.longest_loss), (6, 3));
}

#[test]
fn a_late_datagram_is_reordered_not_lost() {
    let stats = tally(&[(0, 1), (2, 2), (1, 3), (3, 4)], 4, 4);

    assert_eq!((stats.lost, stats.reordered, stats.duplicates), (0, 1, 0));
}

#[test]
fn each_datagram_below_the_highest_seen_counts_as_reordered() {
    let stats = tally(&[(3, 1), (0, 2), (1, 3), (2, 4)], 4, 4);

    assert_eq!((stats.lost, stats.reordered), (0, 3));
}

#[test]
fn a_repeated_datagram_is_a_duplicate_not_a_reordering() {
    let stats = tally(&[(0, 1), (1, 2), (0, 3), (1, 4), (2, 5)], 3, 5);

    assert_eq!(
        (
            stats.received,
            stats.duplicates,
            stats.reordered,
            stats.lost
        ),
        (5, 2, 0, 0)
    );
}

#[test]
fn the_longest_silence_between_arrivals_is_the_max_gap() {
    let stats = tally(&[(0, 1), (1, 2), (2, 250), (3, 251)], 4, 252);

    assert_eq!(stats.max_gap_ms, 248);
}

#[test]
fn silence_before_the_first_arrival_counts_as_a_gap() {
    let stats = tally(&[(0, 90), (1, 91)], 2, 92);

    assert_eq!(stats.max_gap_ms, 90);
}

#[test]
fn silence_after_the_last_arrival_until_the_sender_stopped_counts_as_a_gap() {
    let stats = tally(&[(0, 1), (1, 2)], 500, 500);

    assert_eq!((stats.max_gap_ms, stats.lost), (498, 498));
}

#[test]
fn a_stream_that_never_arrived_has_its_whole_run_as_gap() {
    let stats = tally(&[], 100, 100);

    assert_eq!(
        (stats.received, stats.lost, stats.max_gap_ms),
        (0, 100, 100)
    );
}

#[test]
fn sequence_numbers_past_the_limit_are_ignored() {
    let stats = tally(&[(0, 1), (MAX_SEQ, 2), (u64::MAX, 3)], 1, 3);

    assert_eq!((stats.received, stats.lost, stats.reordered), (1, 0, 0));
}

#[test]
fn a_burst_leaves_at_its_first_datagram_s_deadline_and_keeps_the_average_rate() {
    let pace = Pace {
        rate_pps: 1000,
        burst: 10,
    };
    assert_eq!(burst_deadline(0, pace), Duration::ZERO);
    assert_eq!(burst_deadline(9, pace), Duration::ZERO);
    assert_eq!(burst_deadline(10, pace), ms(10));
    assert_eq!(burst_deadline(19, pace), ms(10));
    assert_eq!(burst_deadline(10_000, pace), Duration::from_secs(10));
    let single = Pace {
        rate_pps: 1000,
        burst: 1,
    };
    for seq in [0, 1, 7, 10_001] {
        assert_eq!(burst_deadline(seq, single), deadline(seq, 1000));
    }
}

#[test]
fn deadlines_follow_the_rate_without_accumulating_rounding() {
    assert_eq!(deadline(0, 1000), Duration::ZERO);
    assert_eq!(deadline(1, 1000), ms(1));
    assert_eq!(deadline(10_000, 1000), Duration::from_secs(10));
    assert_eq!(deadline(1, 3), Duration::from_nanos(333_333_333));
    assert_eq!(deadline(3, 3), Duration::from_secs(1));
    assert_eq!(
        deadline(3_000_000_001, 3),
        Duration::new(1_000_000_000, 333_333_333)
    );
}

#[test]
fn a_datagram_decodes_to_its_sequence_number() {
    let datagram = encode(STREAM, 0x1122_3344_5566);

    assert_eq!(datagram.len(), DATAGRAM_LEN);
    assert_eq!(decode(&datagram, STREAM), Some(0x1122_3344_5566));
}

#[test]
fn another_stream_or_a_foreign_or_cut_datagram_is_rejected() {
    let datagram = encode(STREAM, 7);
    let mut foreign = datagram;
    foreign[0] ^= 1;

    assert_eq!(decode(&datagram, STREAM + 1), None);
    assert_eq!(decode(&foreign, STREAM), None);
    assert_eq!(decode(&datagram[..DATAGRAM_LEN - 1], STREAM), None);
    assert_eq!(decode(&[datagram.as_slice(), &[0]].concat(), STREAM), None);
}

#[test]
fn the_loss_check_passes_clean_streams_and_lists_every_direction_otherwise() {
    let clean = StreamStats {
        sent: 10,
        received: 10,
        ..StreamStats::default()
    };
    let lossy = StreamStats {
        lost: 2,
        received: 8,
        ..clean
    };
    let stats = [("a->b".to_owned(), clean), ("b->a".to_owned(), lossy)];

    assert!(check_no_loss(&stats[..1]).is_ok());
    let message = format!(
        "{:#}",
        check_no_loss(&stats).expect_err("b->a lost datagrams")
    );
    assert!(message.contains("1 of 2 stream directions"), "{message}");
    assert!(
        message.contains("a->b: sent 10, received 10, lost 0"),
        "{message}"
    );
    assert!(
        message.contains("b->a: sent 10, received 8, lost 2"),
        "{message}"
    );
    assert!(message.trim_end().ends_with("<--"), "{message}");
}

#[test]
fn a_direction_that_sent_nothing_fails_the_loss_check() {
    let stats = [("a->b".to_owned(), StreamStats::default())];

    assert!(check_no_loss(&stats).is_err());
    assert!(check_no_loss(&[]).is_err());
}

#[test]
fn the_order_check_fails_on_reordering_or_duplicates() {
    let clean = StreamStats {
        sent: 10,
        received: 10,
        ..StreamStats::default()
    };
    let reordered = StreamStats {
        reordered: 1,
        ..clean
    };
    let duplicated = StreamStats {
        duplicates: 1,
        received: 11,
        ..clean
    };

    assert!(check_in_order(&[("a->b".to_owned(), clean)]).is_ok());
    assert!(check_in_order(&[("a->b".to_owned(), reordered)]).is_err());
    assert!(check_in_order(&[("a->b".to_owned(), duplicated)]).is_err());
}
