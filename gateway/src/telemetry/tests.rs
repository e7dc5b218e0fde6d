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
