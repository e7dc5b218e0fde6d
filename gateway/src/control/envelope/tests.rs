use super::*;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn hello_json(from: &str, cluster: &str) -> String {
    format!(
        r#"{{"type":"hello","version":1,"from":"{from}","id":"a-1","body":{{"cluster":"{cluster}","version":"0.1.0","capabilities":["hello"],"public_key":"{KEY}","key_age_seconds":12}}}}"#
    )
}

fn hello() -> Hello {
    Hello {
        cluster: "b".to_owned(),
        version: "0.1.0".to_owned(),
        capabilities: vec!["hello".to_owned()],
        public_key: KEY.to_owned(),
        key_age_seconds: Some(12),
    }
}

#[test]
fn a_hello_parses_and_round_trips() {
    let message = parse_envelope(hello_json("b", "b").as_bytes())
        .and_then(RawEnvelope::interpret)
        .expect("valid");
    assert_eq!(message.from, "b");
    assert_eq!(message.id, "a-1");
    assert_eq!(message.kind(), MessageType::Hello);
    assert_eq!(message.body, Body::Hello(hello()));
    let encoded = encode("b", "a-1", &message.body).expect("encode");
    let again = parse_envelope(&encoded)
        .and_then(RawEnvelope::interpret)
        .expect("again");
    assert_eq!(again, message);
    let value: serde_json::Value = serde_json::from_slice(&encoded).expect("json");
    assert_eq!(value["type"], "hello");
    assert_eq!(value["version"], 1);
}

#[test]
fn unknown_fields_are_ignored_for_later_versions_of_a_body() {
    let text = hello_json("b", "b").replace(
        r#""key_age_seconds":12"#,
        r#""key_age_seconds":null,"later":[1,2]"#,
    );
    let message = parse_envelope(text.as_bytes())
        .and_then(RawEnvelope::interpret)
        .expect("valid");
    let Body::Hello(hello) = message.body else {
        panic!("a hello");
    };
    assert_eq!(hello.key_age_seconds, None);
}

#[test]
fn garbage_is_malformed() {
    for bytes in [
        &b""[..],
        b"garbage",
        b"{",
        b"[]",
        b"null",
        b"{\"type\":\"hello\"}",
        b"{\"type\":\"hello\",\"version\":\"1\",\"from\":\"b\",\"id\":\"x\"}",
        b"\xff\xfe{}",
    ] {
        assert_eq!(
            parse_envelope(bytes),
            Err(Rejection::Malformed),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn from_and_id_are_bounded() {
    for (from, id) in [
        ("B", "x"),
        ("-b", "x"),
        ("b\n", "x"),
        (&"b".repeat(64)[..], "x"),
        ("b", ""),
        ("b", "a b"),
        ("b", &"x".repeat(65)[..]),
    ] {
        let text =
            format!(r#"{{"type":"hello","version":1,"from":"{from}","id":"{id}","body":{{}}}}"#);
        assert_eq!(
            parse_envelope(text.as_bytes()),
            Err(Rejection::Malformed),
            "{from:?} {id:?}"
        );
    }
}

#[test]
fn a_body_over_the_limit_is_malformed_without_parsing() {
    let mut text = hello_json("b", "b").into_bytes();
    text.resize(MAX_BODY_BYTES + 1, b' ');
    assert_eq!(parse_envelope(&text), Err(Rejection::Malformed));
}

#[test]
fn unknown_type_and_other_versions_are_unsupported() {
    let unknown = hello_json("b", "b").replace(r#""type":"hello""#, r#""type":"policy.push""#);
    let raw = parse_envelope(unknown.as_bytes()).expect("envelope");
    assert_eq!(raw.known_type(), None);
    assert_eq!(type_label(raw.known_type()), "unknown");
    assert_eq!(raw.interpret(), Err(Rejection::UnknownType));
    for version in ["0", "2", "4294967297"] {
        let text =
            hello_json("b", "b").replace(r#""version":1"#, &format!(r#""version":{version}"#));
        let raw = parse_envelope(text.as_bytes()).expect("envelope");
        assert_eq!(raw.known_type(), Some(MessageType::Hello));
        assert_eq!(
            raw.interpret(),
            Err(Rejection::UnsupportedVersion),
            "{version}"
        );
    }
}

#[test]
fn a_hello_body_breaking_its_rules_is_malformed() {
    let cases = [
        // cluster differs from `from`
        hello_json("b", "c"),
        hello_json("b", "b").replace(KEY, "not-a-key"),
        hello_json("b", "b").replace(r#"["hello"]"#, r#"["hel lo"]"#),
        hello_json("b", "b").replace(
            r#"["hello"]"#,
            &format!("[{}]", vec![r#""x""#; 33].join(",")),
        ),
        hello_json("b", "b").replace(r#""version":"0.1.0""#, r#""version":"""#),
        hello_json("b", "b").replace(r#","capabilities":["hello"]"#, ""),
        hello_json("b", "b").replace(r#""key_age_seconds":12"#, r#""key_age_seconds":-1"#),
    ];
    for text in cases {
        let raw = parse_envelope(text.as_bytes()).expect("envelope");
        assert_eq!(raw.interpret(), Err(Rejection::Malformed), "{text}");
    }
}

#[test]
fn error_answers_carry_only_a_fixed_code() {
    assert_eq!(error_body("forbidden"), b"{\"error\":\"forbidden\"}\n");
    for rejection in [
        Rejection::Malformed,
        Rejection::UnknownType,
        Rejection::UnsupportedVersion,
    ] {
        let body = error_body(rejection.code());
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["error"], rejection.code());
    }
}

#[test]
fn rotation_messages_parse_and_keys_and_ids_are_checked() {
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let announce = format!(
        r#"{{"type":"rotate.announce","version":1,"from":"a","id":"a-r1","body":{{"rotation_id":"00000000000000aa","sequence":3,"next_public_key":"{key}","sender_key":"{key}","receiver_key":"{key}"}}}}"#
    );
    let message = parse_envelope(announce.as_bytes())
        .and_then(RawEnvelope::interpret)
        .expect("valid");
    assert_eq!(message.kind(), MessageType::RotateAnnounce);
    let encoded = super::encode("a", "a-r1", &message.body).expect("encode");
    let again = parse_envelope(&encoded)
        .and_then(RawEnvelope::interpret)
        .expect("round trip");
    assert_eq!(again.body, message.body);
    for bad in [
        announce.replace("00000000000000aa", "00000000000000AA"),
        announce.replace("00000000000000aa", "../../etc"),
        announce.replace(
            &format!("\"next_public_key\":\"{key}\""),
            "\"next_public_key\":\"short\"",
        ),
        announce.replace("\"sequence\":3", "\"sequence\":-3"),
    ] {
        let result = parse_envelope(bad.as_bytes()).and_then(RawEnvelope::interpret);
        assert_eq!(result, Err(Rejection::Malformed), "{bad}");
    }
    let end = r#"{"type":"rotate.abort","version":1,"from":"a","id":"x","body":{"rotation_id":"00000000000000aa"}}"#;
    let message = parse_envelope(end.as_bytes())
        .and_then(RawEnvelope::interpret)
        .expect("valid");
    assert_eq!(message.kind(), MessageType::RotateAbort);
}
