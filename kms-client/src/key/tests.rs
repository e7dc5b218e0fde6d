use super::*;

const SAMPLE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

#[test]
fn base64_round_trips() {
    let key = PrivateKey::from_base64(SAMPLE).expect("valid key");
    assert_eq!(key.to_base64().as_str(), SAMPLE);
}

#[test]
fn public_key_matches_the_wireguard_whitepaper_derivation() {
    // Key pair from the wg(8) man page example.
    let key = PrivateKey::from_base64(SAMPLE).expect("valid key");
    assert_eq!(
        STANDARD.encode(key.public_key()),
        "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
    );
}

#[test]
fn debug_never_shows_the_private_key() {
    let key = PrivateKey::from_base64(SAMPLE).expect("valid key");
    let shown = format!("{key:?} {key:#?}");
    assert!(!shown.contains(SAMPLE));
    assert!(!shown.contains(key.to_hex().as_str()));
    assert!(shown.contains("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="));
}

#[test]
fn wrong_length_is_named_without_the_value() {
    let err = PrivateKey::from_base64("AAAA").err();
    assert_eq!(err, Some(KeyFormatError::Length(3)));
}

#[test]
fn bad_base64_is_rejected() {
    assert_eq!(
        PrivateKey::from_base64("not base64!").err(),
        Some(KeyFormatError::Base64)
    );
    assert_eq!(
        PrivateKey::from_base64("  \n").err(),
        Some(KeyFormatError::Empty)
    );
}

#[test]
fn generated_keys_are_clamped_and_distinct() {
    let a = PrivateKey::generate().expect("random");
    let b = PrivateKey::generate().expect("random");
    assert_ne!(a.expose_bytes(), b.expose_bytes());
    assert_eq!(a.expose_bytes()[0] & 7, 0);
    assert_eq!(a.expose_bytes()[31] & 0xc0, 0x40);
}

#[test]
fn hex_form_is_lowercase_64_chars() {
    let key = PrivateKey::from_base64(SAMPLE).expect("valid key");
    let hex = key.to_hex();
    assert_eq!(hex.len(), 64);
    assert!(
        hex.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );
}
