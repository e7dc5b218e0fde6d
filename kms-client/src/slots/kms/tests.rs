//! The KMS key slots against the fake KMS (test code that follows the published API).

use kms_fake::Fault;

use super::*;
use crate::infisical::tests::{KEY, rig, store};

fn public(key: &PrivateKey) -> crate::PublicKeyBytes {
    key.public_key()
}

#[tokio::test]
async fn a_key_never_rotated_has_empty_slots() {
    let rig = rig().await;
    let store = store(&rig.config);
    let slots = KmsKeySlots::new(&store, "wg-key");
    let read = slots.read().await.expect("read");
    assert_eq!(read.current.key.to_base64().as_str(), KEY);
    assert_eq!(read.current.version, Some(1));
    assert!(read.next.is_none() && read.previous.is_none() && read.record.is_none());
}

#[tokio::test]
async fn stage_commit_and_roll_back_through_versions() {
    let rig = rig().await;
    let store = store(&rig.config);
    let slots = KmsKeySlots::new(&store, "wg-key");
    let old = slots.read().await.expect("read").current.key;
    let new = PrivateKey::generate().expect("key");

    slots.write_next(&new).await.expect("stage");
    slots
        .write_record("{\"phase\":\"announcing\"}")
        .await
        .expect("record");
    let read = slots.read().await.expect("read");
    assert_eq!(
        public(&read.current.key),
        public(&old),
        "staging keeps the running key"
    );
    assert_eq!(read.next.as_ref().map(public), Some(public(&new)));
    assert_eq!(read.record.as_deref(), Some("{\"phase\":\"announcing\"}"));

    assert_eq!(slots.commit(&new).await.expect("commit"), 2);
    let read = slots.read().await.expect("read");
    assert_eq!(public(&read.current.key), public(&new));
    assert_eq!(read.current.version, Some(2));
    assert_eq!(read.previous.as_ref().map(public), Some(public(&old)));
    assert!(read.next.is_none(), "the next secret is discarded");
    let (_, value) = rig
        .fake
        .current("proj", "prod", "/zt", "wg-key-next")
        .await
        .expect("next secret");
    assert_eq!(
        value, DISCARDED,
        "no private key is left in the next secret"
    );

    assert_eq!(slots.restore(&old).await.expect("restore"), 3);
    let read = slots.read().await.expect("read");
    assert_eq!(public(&read.current.key), public(&old));
    assert_eq!(read.previous.as_ref().map(public), Some(public(&new)));
}

#[tokio::test]
async fn a_discarded_next_key_reads_as_none_and_discarding_is_idempotent() {
    let rig = rig().await;
    let store = store(&rig.config);
    let slots = KmsKeySlots::new(&store, "wg-key");
    slots.discard_next().await.expect("nothing to discard");
    assert!(
        rig.fake
            .current("proj", "prod", "/zt", "wg-key-next")
            .await
            .is_none(),
        "discarding nothing writes nothing"
    );
    slots
        .write_next(&PrivateKey::generate().expect("key"))
        .await
        .expect("stage");
    slots.discard_next().await.expect("discard");
    slots.discard_next().await.expect("again");
    let (version, _) = rig
        .fake
        .current("proj", "prod", "/zt", "wg-key-next")
        .await
        .expect("next secret");
    assert_eq!(version, 2, "the second discard writes nothing");
    assert!(slots.read().await.expect("read").next.is_none());
}

#[tokio::test]
async fn a_write_held_for_approval_is_an_error_and_changes_nothing() {
    let rig = rig().await;
    let store = store(&rig.config);
    let slots = KmsKeySlots::new(&store, "wg-key");
    let new = PrivateKey::generate().expect("key");
    rig.fake.require_approval(true).await;
    let err = slots.write_next(&new).await.expect_err("held");
    assert_eq!(err.kind(), "pending_approval");
    let err = slots.commit(&new).await.expect_err("held");
    assert_eq!(err.kind(), "pending_approval");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(new.to_base64().as_str()), "{text}");
    rig.fake.require_approval(false).await;
    let read = slots.read().await.expect("read");
    assert_eq!(read.current.key.to_base64().as_str(), KEY);
    assert_eq!(read.current.version, Some(1));
    assert!(read.next.is_none());
}

#[tokio::test]
async fn an_unreachable_kms_at_commit_leaves_the_running_key() {
    let rig = rig().await;
    let store = store(&rig.config);
    let slots = KmsKeySlots::new(&store, "wg-key");
    let new = PrivateKey::generate().expect("key");
    slots.write_next(&new).await.expect("stage");
    rig.fake
        .inject(std::iter::repeat_n(
            Fault::Status {
                status: 503,
                retry_after: None,
            },
            rig.config.retry.max_attempts as usize,
        ))
        .await;
    let err = slots.commit(&new).await.expect_err("KMS down");
    assert!(err.is_transient(), "{err}");
    let read = slots.read().await.expect("read");
    assert_eq!(read.current.key.to_base64().as_str(), KEY);
    assert_eq!(read.next.as_ref().map(public), Some(public(&new)));
}

#[tokio::test]
async fn a_damaged_next_secret_is_refused_without_its_value() {
    let rig = rig().await;
    let store = store(&rig.config);
    store
        .write("wg-key-next", "not-a-key-SECRETISH")
        .await
        .expect("plant");
    let err = KmsKeySlots::new(&store, "wg-key")
        .read()
        .await
        .expect_err("malformed");
    assert_eq!(err.kind(), "malformed");
    let text = format!("{err} {err:?}");
    assert!(text.contains("wg-key-next"), "{text}");
    assert!(!text.contains("SECRETISH"), "{text}");
}
