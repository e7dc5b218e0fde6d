use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn key_file(dir: &Path, key: &PrivateKey) -> FileKeySlots {
    let path = dir.join("private.key");
    write_private(&path, key.to_base64().as_bytes()).expect("write key");
    FileKeySlots::new(path)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn public(key: &PrivateKey) -> crate::PublicKeyBytes {
    key.public_key()
}

#[test]
fn a_fresh_key_file_has_empty_slots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = PrivateKey::generate().expect("key");
    let slots = key_file(dir.path(), &old);
    let read = slots.read().expect("read");
    assert_eq!(public(&read.current.key), public(&old));
    assert!(read.next.is_none() && read.previous.is_none() && read.record.is_none());
}

#[test]
fn stage_commit_and_drop_the_previous_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = PrivateKey::generate().expect("key");
    let new = PrivateKey::generate().expect("key");
    let slots = key_file(dir.path(), &old);

    slots.write_next(&new).expect("stage");
    assert_eq!(mode(&slots.next_path()), 0o600);
    let read = slots.read().expect("read");
    assert_eq!(
        public(&read.current.key),
        public(&old),
        "staging keeps the running key"
    );
    assert_eq!(read.next.as_ref().map(public), Some(public(&new)));

    slots.commit().expect("commit");
    let read = slots.read().expect("read");
    assert_eq!(public(&read.current.key), public(&new));
    assert_eq!(read.previous.as_ref().map(public), Some(public(&old)));
    assert!(read.next.is_none(), "the next file became the key file");
    assert_eq!(mode(slots.key_path()), 0o600);
    assert_eq!(mode(&slots.previous_path()), 0o600);

    slots.discard_previous().expect("drop previous");
    let read = slots.read().expect("read");
    assert!(read.previous.is_none());
    assert_eq!(public(&read.current.key), public(&new));
}

#[test]
fn a_commit_rolled_back_restores_the_old_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = PrivateKey::generate().expect("key");
    let new = PrivateKey::generate().expect("key");
    let slots = key_file(dir.path(), &old);
    slots.write_next(&new).expect("stage");
    slots.commit().expect("commit");
    slots.restore_previous().expect("restore");
    let read = slots.read().expect("read");
    assert_eq!(public(&read.current.key), public(&old));
    assert!(read.next.is_none() && read.previous.is_none());
    assert_eq!(mode(slots.key_path()), 0o600);
}

#[test]
fn a_staged_key_discarded_leaves_the_running_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = PrivateKey::generate().expect("key");
    let slots = key_file(dir.path(), &old);
    slots
        .write_next(&PrivateKey::generate().expect("key"))
        .expect("stage");
    slots.discard_next().expect("discard");
    slots.discard_next().expect("discarding twice is fine");
    let read = slots.read().expect("read");
    assert!(read.next.is_none());
    assert_eq!(public(&read.current.key), public(&old));
}

#[test]
fn commit_without_a_staged_key_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = PrivateKey::generate().expect("key");
    let slots = key_file(dir.path(), &old);
    let err = slots.commit().expect_err("nothing staged");
    assert_eq!(err.kind(), "not_found");
    assert!(!slots.previous_path().exists());
    let err = slots.restore_previous().expect_err("nothing to restore");
    assert_eq!(err.kind(), "not_found");
    assert_eq!(
        public(&slots.read().expect("read").current.key),
        public(&old)
    );
}

#[test]
fn a_slot_readable_by_others_is_refused_without_its_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = PrivateKey::generate().expect("key");
    let new = PrivateKey::generate().expect("key");
    let slots = key_file(dir.path(), &old);
    slots.write_next(&new).expect("stage");
    fs::set_permissions(slots.next_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = slots.read().expect_err("0644 is refused");
    assert_eq!(err.kind(), "insecure_mode");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(new.to_base64().as_str()), "{text}");
}

#[test]
fn a_damaged_slot_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slots = key_file(dir.path(), &PrivateKey::generate().expect("key"));
    write_private(&slots.previous_path(), b"not a key").expect("write");
    assert_eq!(slots.read().expect_err("malformed").kind(), "malformed");
}

#[test]
fn the_record_round_trips_and_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slots = key_file(dir.path(), &PrivateKey::generate().expect("key"));
    slots
        .write_record("{\"phase\":\"announcing\"}")
        .expect("record");
    assert_eq!(
        slots.read().expect("read").record.as_deref(),
        Some("{\"phase\":\"announcing\"}")
    );
    assert_eq!(mode(&slots.record_path()), 0o600);
    let big = "x".repeat(MAX_RECORD_BYTES as usize + 1);
    assert_eq!(
        slots.write_record(&big).expect_err("too large").kind(),
        "unwritable"
    );
    fs::write(slots.record_path(), &big).expect("plant");
    assert_eq!(slots.read().expect_err("too large").kind(), "unreadable");
}

#[test]
fn no_temporary_file_is_left_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slots = key_file(dir.path(), &PrivateKey::generate().expect("key"));
    slots
        .write_next(&PrivateKey::generate().expect("key"))
        .expect("stage");
    slots.commit().expect("commit");
    slots.write_record("{}").expect("record");
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "private.key",
            "private.key.previous",
            "private.key.rotation.json"
        ]
    );
}
