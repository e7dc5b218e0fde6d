//! Logging set-up: human-readable lines on stderr, filtered by `--log` / `ZTGW_LOG`.
//!
//! The WireGuard library (boringtun) logs per-peer, per-retry events (a `WARN` for every
//! handshake retry of every peer that does not answer). They are hidden unless the filter
//! asks for debug output (its most verbose level is `debug` or `trace`) or names the
//! library's target (`boringtun`, e.g. `info,boringtun=warn`); the gateway logs a peer's
//! up/down transitions itself, once each.
//!
//! Names, paths and reasons that come from outside (peer files, Kubernetes resources, the
//! KMS) reach log fields and messages. Every control character in a line is escaped where the
//! line is written, so no value can end a line early, forge another one or send terminal
//! escape sequences: one event is always one line.

use std::io::{self, Write};

use tracing::{Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber. An invalid filter falls back to `info`.
pub fn init(filter: &str) {
    let _ = subscriber(filter, io::stderr).try_init();
}

/// The target prefix of the WireGuard library's events.
const LIBRARY_TARGET: &str = "boringtun";

/// The gateway's subscriber writing to `writer`: the filter, the line format, the escaping.
pub fn subscriber<W>(filter: &str, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = env_filter(filter);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(EscapeControl(writer))
        .with_ansi(false)
        .with_target(false)
        .finish()
}

/// Builds the filter from the operator's directives (an invalid list falls back to `info`),
/// with the WireGuard library's events turned off unless the directives ask for debug output
/// or name the library.
fn env_filter(directives: &str) -> EnvFilter {
    let (directives, asked) = match EnvFilter::try_new(directives) {
        Ok(filter) => (directives, filter),
        Err(_) => ("info", EnvFilter::new("info")),
    };
    let verbose = asked
        .max_level_hint()
        .is_some_and(|level| level >= LevelFilter::DEBUG);
    if verbose || names_library(directives) {
        return asked;
    }
    EnvFilter::try_new(format!("{directives},{LIBRARY_TARGET}=off")).unwrap_or(asked)
}

/// Returns whether one of the comma-separated directives has a target starting with the
/// library's (`boringtun`, `boringtun::noise=debug`, ...).
fn names_library(directives: &str) -> bool {
    directives
        .split(',')
        .any(|directive| directive.trim_start().starts_with(LIBRARY_TARGET))
}

/// Makes writers that escape control characters (see [`Escaping`]).
#[derive(Debug)]
pub struct EscapeControl<M>(pub M);

impl<'w, M: MakeWriter<'w>> MakeWriter<'w> for EscapeControl<M> {
    type Writer = Escaping<M::Writer>;

    fn make_writer(&'w self) -> Self::Writer {
        Escaping(self.0.make_writer())
    }

    fn make_writer_for(&'w self, meta: &Metadata<'_>) -> Self::Writer {
        Escaping(self.0.make_writer_for(meta))
    }
}

/// Writes what it is given with every control character escaped (`\n` as the two characters
/// `\` `n`, ESC as `\u{1b}`, and so on), except one newline at the very end. The formatter
/// hands over each event as one whole line, so the only newline that passes is the one
/// ending the event.
#[derive(Debug)]
pub struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut out = String::with_capacity(buf.len() + 16);
        for c in body.chars() {
            push_escaped(&mut out, c);
        }
        out.push_str(end);
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Appends `c`, escaped when it is a control character or one that can end or reorder a
/// line on a terminal (line and paragraph separators, bidirectional overrides).
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
        {
            out.extend(c.escape_unicode());
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests;
