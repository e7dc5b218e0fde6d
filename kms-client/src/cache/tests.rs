use super::*;

const T0: SystemTime = UNIX_EPOCH;
const SAMPLE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

fn at(secs: u64) -> SystemTime {
    T0 + Duration::from_secs(secs)
}

fn loaded() -> LoadedKey {
    LoadedKey {
        key: PrivateKey::from_base64(SAMPLE).expect("key"),
        origin: Origin::Kms,
        version: Some(7),
        created_at: Some(at(1_000)),
    }
}

fn kek(b: u8) -> Kek {
    Kek::from_bytes([b; 32])
}

#[test]
fn sealed_copy_opens_before_not_after() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]);
    let opened = unseal(&text, &kek(1), at(1_999)).expect("opens");
    assert_eq!(opened.key.to_base64().as_str(), SAMPLE);
    assert_eq!(opened.origin, Origin::Cache);
    assert_eq!(opened.version, Some(7));
    assert_eq!(opened.created_at, Some(at(1_000)));
}

#[test]
fn sealed_copy_never_holds_the_key_in_clear() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]);
    assert!(!text.contains(SAMPLE));
    let key = PrivateKey::from_base64(SAMPLE).expect("key");
    assert!(!text.contains(key.to_hex().as_str()));
}

#[test]
fn expired_copy_is_refused() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]);
    assert!(matches!(
        unseal(&text, &kek(1), at(2_000)),
        Err(CacheError::Expired { .. })
    ));
}

#[test]
fn moving_not_after_breaks_the_seal() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]);
    let forged = text.replace("\"not_after\": 2000", "\"not_after\": 9999999999");
    assert_ne!(forged, text);
    assert!(matches!(
        unseal(&forged, &kek(1), at(1_500)),
        Err(CacheError::Tampered)
    ));
}

#[test]
fn flipped_ciphertext_is_tampered() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]);
    let sealed: serde_json::Value = serde_json::from_str(&text).expect("json");
    let ct = sealed["ciphertext"].as_str().expect("ct");
    let mut bytes = STANDARD.decode(ct).expect("b64");
    bytes[0] ^= 1;
    let forged = text.replace(ct, &STANDARD.encode(bytes));
    assert!(matches!(
        unseal(&forged, &kek(1), at(1_500)),
        Err(CacheError::Tampered)
    ));
}

#[test]
fn another_kek_is_named_as_such() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]);
    let err = unseal(&text, &kek(2), at(1_500)).expect_err("wrong kek");
    assert!(matches!(err, CacheError::WrongKek { .. }), "{err}");
}

#[test]
fn garbage_is_malformed() {
    assert!(matches!(
        unseal("{}", &kek(1), at(0)),
        Err(CacheError::Malformed(_))
    ));
}

#[test]
fn write_then_read_round_trips_through_a_0600_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let kek_file = dir.path().join("kek");
    fs::write(&kek_file, STANDARD.encode([5u8; 32])).expect("write kek");
    fs::set_permissions(&kek_file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = CacheConfig {
        path: dir.path().join("key.sealed"),
        kek_file,
        max_age: Duration::from_secs(86_400),
    };
    write(&config, &loaded(), at(1_000)).expect("write");
    let mode = fs::metadata(&config.path)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let back = read(&config, at(1_000 + 86_399)).expect("read");
    assert_eq!(back.key.to_base64().as_str(), SAMPLE);
    assert!(matches!(
        read(&config, at(1_000 + 86_400)),
        Err(CacheError::Expired { .. })
    ));
}

#[test]
fn missing_cache_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = CacheConfig {
        path: dir.path().join("absent"),
        kek_file: dir.path().join("kek"),
        max_age: Duration::from_secs(1),
    };
    assert!(matches!(
        read(&config, at(0)),
        Err(CacheError::Missing { .. })
    ));
}
