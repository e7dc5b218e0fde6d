//! Judging and showing the figures of every direction.

use anyhow::{Result, bail, ensure};

use super::StreamStats;

/// Checks that every direction sent something and lost nothing.
///
/// # Errors
/// Fails with every direction's figures, the failing ones marked, when one lost a datagram
/// or sent none.
pub fn check_no_loss(stats: &[(String, StreamStats)]) -> Result<()> {
    check(stats, "lost datagrams or sent none", |stats| {
        stats.sent == 0 || stats.lost > 0
    })
}

/// Checks that no direction delivered a datagram out of order or twice.
///
/// # Errors
/// Fails with every direction's figures, the failing ones marked, when one reordered or
/// duplicated a datagram.
pub fn check_in_order(stats: &[(String, StreamStats)]) -> Result<()> {
    check(stats, "reordered or duplicated datagrams", |stats| {
        stats.reordered > 0 || stats.duplicates > 0
    })
}

/// Formats one line per direction: its name and its figures.
pub fn format_stats(stats: &[(String, StreamStats)]) -> String {
    table(stats, |_| false)
}

/// Fails, listing every direction and marking those for which `is_bad`, when any is.
fn check(
    stats: &[(String, StreamStats)],
    what: &str,
    is_bad: impl Fn(&StreamStats) -> bool,
) -> Result<()> {
    ensure!(!stats.is_empty(), "no stream directions to check");
    let bad = stats.iter().filter(|(_, stats)| is_bad(stats)).count();
    if bad > 0 {
        bail!(
            "{bad} of {} stream directions {what}:\n{}",
            stats.len(),
            table(stats, is_bad)
        );
    }
    Ok(())
}

fn table(stats: &[(String, StreamStats)], is_marked: impl Fn(&StreamStats) -> bool) -> String {
    let width = stats.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    stats
        .iter()
        .map(|(name, stats)| {
            let mark = if is_marked(stats) { "  <--" } else { "" };
            format!("  {name:>width$}: {stats}{mark}\n")
        })
        .collect()
}
