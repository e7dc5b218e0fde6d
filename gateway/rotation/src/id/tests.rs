use super::*;

#[test]
fn sixteen_lowercase_hex_digits_are_an_id() {
    let id = RotationId::new("0123456789abcdef").expect("valid");
    assert_eq!(id.as_str(), "0123456789abcdef");
    assert_eq!(id.to_string(), "0123456789abcdef");
}

#[test]
fn other_lengths_cases_and_characters_are_refused() {
    for text in [
        "",
        "0123456789abcde",
        "0123456789abcdef0",
        "0123456789ABCDEF",
        "0123456789abcdeg",
        "0123456789abcd é",
    ] {
        assert_eq!(RotationId::new(text), Err(IdError), "{text:?}");
    }
}

#[test]
fn bytes_give_their_hex_form() {
    let id = RotationId::from_bytes([0, 1, 2, 3, 0xfc, 0xfd, 0xfe, 0xff]);
    assert_eq!(id.as_str(), "00010203fcfdfeff");
}

#[test]
fn json_is_the_plain_string_and_is_validated() {
    let id = RotationId::new("00000000000000aa").expect("valid");
    let json = serde_json::to_string(&id).expect("serializes");
    assert_eq!(json, "\"00000000000000aa\"");
    assert_eq!(
        serde_json::from_str::<RotationId>(&json).expect("parses"),
        id
    );
    assert!(serde_json::from_str::<RotationId>("\"zz\"").is_err());
}

#[test]
fn the_error_does_not_echo_the_input() {
    let text = "secret-looking-input";
    let message = RotationId::new(text).expect_err("invalid").to_string();
    assert!(!message.contains(text));
}
