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
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]).expect("seal");
    let opened = unseal(&text, &kek(1), at(1_999)).expect("opens");
    assert_eq!(opened.key.to_base64().as_str(), SAMPLE);
    assert_eq!(opened.origin, Origin::Cache);
    assert_eq!(opened.version, Some(7));
    assert_eq!(opened.created_at, Some(at(1_000)));
}

#[test]
fn sealed_copy_never_holds_the_key_in_clear() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]).expect("seal");
    assert!(!text.contains(SAMPLE));
    let key = PrivateKey::from_base64(SAMPLE).expect("key");
    assert!(!text.contains(key.to_hex().as_str()));
}

#[test]
fn expired_copy_is_refused() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]).expect("seal");
    assert!(matches!(
        unseal(&text, &kek(1), at(2_000)),
        Err(CacheError::Expired { .. })
    ));
}

#[test]
fn moving_not_after_breaks_the_seal() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]).expect("seal");
    let forged = text.replace("\"not_after\": 2000", "\"not_after\": 9999999999");
    assert_ne!(forged, text);
    assert!(matches!(
        unseal(&forged, &kek(1), at(1_500)),
        Err(CacheError::Tampered)
    ));
}

#[test]
fn flipped_ciphertext_is_tampered() {
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]).expect("seal");
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
    let text = seal(&loaded(), &kek(1), at(2_000), [9; 12]).expect("seal");
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

fn cache_in(dir: &Path, max_age: Duration) -> CacheConfig {
    use std::os::unix::fs::PermissionsExt as _;
    let kek_file = dir.join("kek");
    fs::write(&kek_file, STANDARD.encode([5u8; 32])).expect("write kek");
    fs::set_permissions(&kek_file, fs::Permissions::from_mode(0o600)).expect("chmod");
    CacheConfig {
        path: dir.join("key.sealed"),
        kek_file,
        max_age,
    }
}

#[test]
fn a_write_that_cannot_seal_is_an_error_and_keeps_the_previous_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = cache_in(dir.path(), Duration::from_secs(86_400));
    write(&good, &loaded(), at(1_000)).expect("write");
    let before = fs::read(&good.path).expect("read back");

    // now + max_age does not fit in a SystemTime: nothing may be written.
    let huge = CacheConfig {
        max_age: Duration::MAX,
        ..good.clone()
    };
    let err = write(&huge, &loaded(), at(1_000)).expect_err("cannot seal");
    assert!(matches!(err, CacheError::Seal(_)), "{err:?}");
    assert_eq!(fs::read(&good.path).expect("still there"), before);
    assert!(read(&good, at(1_500)).is_ok());
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

#[test]
fn a_not_after_beyond_the_representable_is_refused_not_a_panic() {
    // A copy sealed under the right KEK whose not_after no SystemTime can hold.
    let kek = kek(1);
    let nonce = [9u8; 12];
    let mut sealed = Sealed {
        format: FORMAT.to_owned(),
        kek_id: kek.id().expect("id"),
        not_after: u64::MAX,
        kms_version: None,
        created_at: None,
        nonce: STANDARD.encode(nonce),
        ciphertext: String::new(),
    };
    let cipher = ChaCha20Poly1305::new(Key::from_slice(kek.0.as_ref()));
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: loaded().key.expose_bytes(),
                aad: sealed.aad().as_bytes(),
            },
        )
        .expect("encrypt");
    sealed.ciphertext = STANDARD.encode(ciphertext);
    let text = serde_json::to_string(&sealed).expect("json");
    assert!(matches!(
        unseal(&text, &kek, at(1_500)),
        Err(CacheError::Tampered)
    ));
}
