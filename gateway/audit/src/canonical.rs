//! The canonical serialisation: the exact bytes a record's hash covers and the exact bytes of
//! a line on disk.
//!
//! JSON with object keys sorted by their UTF-8 bytes, no whitespace, integers only, and
//! strings escaped minimally: `"` and `\` with a backslash, `\b \f \n \r \t` by name, every
//! other character below U+0020 as `\u00xx` (lowercase hex), everything else as raw UTF-8.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number with a fraction or exponent, or beyond 64-bit integers.
    #[error("a number is not an integer")]
    NotInteger,
}

/// Returns the canonical serialisation of `value`.
///
/// # Errors
/// [`CanonicalError::NotInteger`] when `value` holds a non-integer number.
pub fn canonical(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                out.push_str(&i.to_string());
            } else if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else {
                return Err(CanonicalError::NotInteger);
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(key, out);
                out.push(':');
                write(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_there_is_no_whitespace() {
        let value = json!({"b": 1, "a": [true, null, -2], "C": {"z": "x", "y": "\u{1}\n\"é"}});
        assert_eq!(
            canonical(&value).expect("canonical"),
            r#"{"C":{"y":"\u0001\n\"é","z":"x"},"a":[true,null,-2],"b":1}"#
        );
    }

    #[test]
    fn fractions_have_no_canonical_form() {
        assert_eq!(
            canonical(&json!({"a": 1.5})),
            Err(CanonicalError::NotInteger)
        );
    }

    #[test]
    fn the_canonical_form_parses_back_to_the_same_value() {
        let value = json!({"s": "tab\there \\ / \u{7f} \u{1f}", "n": u64::MAX, "m": i64::MIN});
        let text = canonical(&value).expect("canonical");
        let back: Value = serde_json::from_str(&text).expect("canonical");
        assert_eq!(back, value);
        assert_eq!(canonical(&back).expect("canonical"), text);
    }
}
