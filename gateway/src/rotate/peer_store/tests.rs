use std::os::unix::fs::PermissionsExt as _;

use ztgw_rotation::RotationId;
use ztgw_rotation::machine::AnnounceBody;
use ztgw_rotation::responder::{self, PeerRotationState};

use super::{PeerStore, StoreError};
use crate::core::key::PublicKey;

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn announced(state: &PeerRotationState, next: PublicKey, sequence: u64) -> PeerRotationState {
    let body = AnnounceBody {
        rotation_id: RotationId::new("00000000000000aa").expect("id"),
        sequence,
        next_public_key: next,
        sender_key: *state.active_public_key(),
        receiver_key: key(9),
    };
    responder::on_announce(state, &body, &key(9))
        .expect("taken")
        .0
}

#[tokio::test]
async fn a_state_survives_a_reopen_in_a_0600_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state/peer-rotations.json");
    let store = PeerStore::open(&path).expect("open");
    let state = announced(&PeerRotationState::new(key(1)), key(2), 7);
    store.put("b", state.clone()).await.expect("put");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let reopened = PeerStore::open(&path).expect("reopen");
    assert_eq!(reopened.get("b"), Some(state));
    assert_eq!(reopened.get("c"), None);
}

#[tokio::test]
async fn a_peer_that_rotated_runs_under_its_new_key_until_the_declaration_names_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PeerStore::open(&dir.path().join("s.json")).expect("open");
    assert_eq!(
        store.running_key("b", key(1)),
        key(1),
        "nothing known: the declaration"
    );
    let pending = announced(&PeerRotationState::new(key(1)), key(2), 7);
    let id = RotationId::new("00000000000000aa").expect("id");
    let done = responder::on_complete(&pending, &id).expect("complete");
    store.put("b", done).await.expect("put");
    assert_eq!(
        store.running_key("b", key(1)),
        key(2),
        "the old declaration: the new key"
    );
    assert_eq!(store.running_key("b", key(2)), key(2));
    assert_eq!(
        store.running_key("b", key(3)),
        key(3),
        "an operator's new key wins"
    );
    assert_eq!(store.running_key("c", key(1)), key(1), "another peer");
}

#[test]
fn a_damaged_or_oversized_file_is_refused_without_its_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json");
    std::fs::write(
        &path,
        "{\"schema\":1,\"peers\":{\"b\":SECRET-LOOKING-TEXT}}",
    )
    .expect("write");
    let err = PeerStore::open(&path).expect_err("damaged");
    assert!(matches!(err, StoreError::Damaged { .. }));
    assert!(!err.to_string().contains("SECRET"), "{err}");
    std::fs::write(&path, vec![b' '; 2 * 1024 * 1024]).expect("write");
    let err = PeerStore::open(&path).expect_err("oversized");
    assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
    std::fs::write(&path, "{\"schema\":1,\"peers\":{\"B/../x\":{\"active_public_key\":\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"}}}").expect("write");
    let err = PeerStore::open(&path).expect_err("bad name");
    assert!(err.to_string().contains("resource name"), "{err}");
}

#[test]
fn a_state_directory_that_cannot_be_made_is_named_with_its_setting_and_one_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A regular file where the directory should be: refused for root too.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").expect("write");
    let path = blocker.join("state/peer-rotations.json");
    let err = PeerStore::open(&path).expect_err("no directory");
    assert!(matches!(err, StoreError::Io { .. }));
    let shown = format!("{:#}", anyhow::Error::new(err));
    assert!(shown.contains("[peers] state_path"), "{shown}");
    let cause = std::io::Error::from_raw_os_error(20).to_string(); // ENOTDIR
    assert_eq!(shown.matches(&cause).count(), 1, "{shown}");
}
