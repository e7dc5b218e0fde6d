use super::*;

#[test]
fn base64_and_hex_forms_round_trip() {
    let key = PublicKey::from_bytes([7; 32]);
    assert_eq!(PublicKey::from_base64(&key.to_base64()), Ok(key));
    assert_eq!(PublicKey::from_hex(&key.to_hex()), Ok(key));
}

#[test]
fn short_key_reports_its_length() {
    assert_eq!(PublicKey::from_base64("AAAA"), Err(KeyError::Length(3)));
}

#[test]
fn garbage_is_not_base64() {
    assert_eq!(PublicKey::from_base64("%%%"), Err(KeyError::Base64));
}

#[test]
fn hex_rejects_wrong_length_and_digits() {
    assert_eq!(PublicKey::from_hex("abc"), Err(KeyError::Hex));
    assert_eq!(PublicKey::from_hex(&"g".repeat(64)), Err(KeyError::Hex));
}
