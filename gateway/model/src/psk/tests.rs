use super::*;

const GENPSK: &str = "2Aq9Yo8Qv5Ju6c3T1xQ2a8ZlM0v5mJkz0CqO8i3uX2Q=";

#[test]
fn genpsk_text_with_newline_parses() {
    let psk = PresharedKey::from_base64(format!("{GENPSK}\n").as_bytes()).expect("valid");
    assert_eq!(psk.to_hex().len(), 64);
    assert_eq!(
        psk,
        PresharedKey::from_base64(GENPSK.as_bytes()).expect("valid")
    );
}

#[test]
fn bad_values_say_why_without_the_value() {
    assert_eq!(PresharedKey::from_base64(b"AAAA"), Err(PskError::Length(3)));
    assert_eq!(
        PresharedKey::from_base64(b"not base64!"),
        Err(PskError::Base64)
    );
    assert_eq!(
        PresharedKey::from_base64(&[0xff, 0xfe]),
        Err(PskError::NotText)
    );
    let message = PskError::Base64.to_string();
    assert!(!message.contains("not base64!"), "{message}");
}

#[test]
fn debug_output_never_shows_the_key() {
    let psk = PresharedKey::from_bytes([0xab; 32]);
    let shown = format!("{psk:?}");
    assert!(!shown.contains("ab"), "{shown}");
    let found = SecretValue::Found {
        secret: "Secret \"x\" key \"psk\"".to_owned(),
        value: Zeroizing::new(GENPSK.as_bytes().to_vec()),
    };
    let shown = format!("{found:?}");
    assert!(!shown.contains(GENPSK), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

#[test]
fn keys_compare_by_value() {
    assert_eq!(
        PresharedKey::from_bytes([1; 32]),
        PresharedKey::from_bytes([1; 32])
    );
    assert_ne!(
        PresharedKey::from_bytes([1; 32]),
        PresharedKey::from_bytes([2; 32])
    );
}
