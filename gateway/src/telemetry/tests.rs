use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;

/// A writer that keeps what is written, for reading back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

#[test]
fn outside_names_with_control_characters_stay_on_one_escaped_line() {
    let captured = Captured::default();
    let make = {
        let captured = captured.clone();
        move || captured.clone()
    };
    let hostile = "b\nWARN forged line\r\x1b[31mred\u{202e}";
    let _serial = crate::testing::log_capture_lock();
    tracing::subscriber::with_default(subscriber("info", make), || {
        // As the gateway logs them: Display fields, a path, a message argument, a str field.
        tracing::warn!(
            origin = %Path::new(hostile).display(),
            reason = %hostile,
            "rejected peer declaration {hostile}"
        );
        tracing::info!(peer = hostile, namespace = %hostile, "peer applied");
    });
    let text = captured.text();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.ends_with('\n'));
    for c in ['\r', '\x1b', '\u{202e}'] {
        assert!(!text.contains(c), "{c:?} in {text:?}");
    }
    assert!(!text.contains("\nWARN forged"), "{text}");
    assert!(
        text.contains("b\\nWARN forged line\\r\\u{1b}[31mred"),
        "{text}"
    );
}

#[test]
fn plain_lines_are_unchanged() {
    let mut out = Escaping(Vec::new());
    out.write_all(b"INFO peer applied peer=\"b\" endpoint=1.2.3.4:51820\n")
        .expect("write");
    assert_eq!(
        out.0,
        b"INFO peer applied peer=\"b\" endpoint=1.2.3.4:51820\n".to_vec()
    );
}

/// Logs, under `filter`, one event of the WireGuard library at each of WARN and DEBUG (as
/// its timers log a handshake retry) and one WARN of the gateway's own; returns the text.
fn library_and_own_events(filter: &str) -> String {
    let captured = Captured::default();
    let make = {
        let captured = captured.clone();
        move || captured.clone()
    };
    let _serial = crate::testing::log_capture_lock();
    tracing::subscriber::with_default(subscriber(filter, make), || {
        tracing::warn!(target: "boringtun::noise::timers", "HANDSHAKE(REKEY_TIMEOUT)");
        tracing::debug!(target: "boringtun::noise", "Sending handshake_initiation");
        tracing::warn!(target: "gateway::driver", peer = "b", "peer down");
    });
    captured.text()
}

#[test]
fn the_default_level_hides_the_librarys_events_and_keeps_ours() {
    for filter in ["info", "warn", "info,gateway=info", "not a [valid filter"] {
        let text = library_and_own_events(filter);
        assert!(!text.contains("HANDSHAKE"), "{filter}: {text}");
        assert!(!text.contains("handshake_initiation"), "{filter}: {text}");
        assert!(text.contains("peer down"), "{filter}: {text}");
    }
}

#[test]
fn debug_or_trace_shows_the_librarys_events() {
    for filter in ["debug", "trace", "info,gateway::driver=debug"] {
        let text = library_and_own_events(filter);
        assert!(
            text.contains("WARN HANDSHAKE(REKEY_TIMEOUT)"),
            "{filter}: {text}"
        );
        assert!(text.contains("peer down"), "{filter}: {text}");
    }
    assert!(library_and_own_events("debug").contains("Sending handshake_initiation"));
}

#[test]
fn naming_the_library_shows_its_events_at_the_level_named() {
    let text = library_and_own_events("info,boringtun=warn");
    assert!(text.contains("WARN HANDSHAKE(REKEY_TIMEOUT)"), "{text}");
    assert!(!text.contains("handshake_initiation"), "{text}");
    assert!(text.contains("peer down"), "{text}");

    let text = library_and_own_events("warn,boringtun::noise=debug");
    assert!(text.contains("HANDSHAKE(REKEY_TIMEOUT)"), "{text}");
    assert!(text.contains("Sending handshake_initiation"), "{text}");
}

#[test]
fn only_a_directive_whose_target_is_the_library_names_it() {
    assert!(names_library("info,boringtun=warn"));
    assert!(names_library(" boringtun::noise::timers=debug "));
    assert!(names_library("boringtun"));
    assert!(!names_library("info"));
    assert!(!names_library("info,gateway=debug"));
    assert!(!names_library("info,[span{peer=boringtun}]=debug"));
}
