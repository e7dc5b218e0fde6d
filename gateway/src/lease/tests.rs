//! The lease against the fake API server (`kube-fake`). Expiry by time is covered by the
//! core's election tests and the netns lease test.

use kube_fake::{FakeApiServer, FakeConfig, LEASES};
use serde_json::json;

use super::*;

const NS: &str = "zt-system";

async fn fake() -> FakeApiServer {
    FakeApiServer::start("127.0.0.1:0".parse().expect("addr"), FakeConfig::default())
        .await
        .expect("fake API server")
}

fn lock(fake: &FakeApiServer, identity: &str) -> LeaseLock {
    let config = kube::Config::new(fake.url().parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    LeaseLock::new(client, NS, "wg0", identity.to_owned())
}

#[tokio::test]
async fn first_gateway_creates_the_lease_and_a_second_one_waits() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    let mut second = lock(&fake, "gw-b_2");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    assert_eq!(
        second.round(clock::now()).await,
        Round::Waiting("lease held by gw-a_1".to_owned())
    );
    let stored = fake.get(LEASES, NS, "zt-gateway-wg0").await.expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "gw-a_1");
    assert_eq!(stored["spec"]["leaseDurationSeconds"], 15);
    assert!(stored["spec"]["renewTime"].as_str().is_some());

    // Renewal keeps the lease and moves its renew time.
    assert_eq!(first.round(clock::now()).await, Round::Held);
    let renewed = fake.get(LEASES, NS, "zt-gateway-wg0").await.expect("lease");
    assert_ne!(
        renewed["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    let mut second = lock(&fake, "gw-b_2");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    first.release().await;
    assert_eq!(second.round(clock::now()).await, Round::Held);
    let stored = fake.get(LEASES, NS, "zt-gateway-wg0").await.expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "gw-b_2");
    assert_eq!(stored["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_holder_that_finds_another_holder_has_lost_the_lease() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    fake.put(
        LEASES,
        NS,
        "zt-gateway-wg0",
        json!({"spec": {"holderIdentity": "gw-c_3", "leaseDurationSeconds": 15}}),
    )
    .await;
    assert_eq!(
        first.round(clock::now()).await,
        Round::Lost("gw-c_3".to_owned())
    );
}

#[tokio::test]
async fn a_stale_write_loses_to_the_current_version() {
    let fake = fake().await;
    let first = lock(&fake, "gw-a_1");
    let mut second = lock(&fake, "gw-b_2");
    assert_eq!(second.round(clock::now()).await, Round::Held);
    let spec = LeaseSpec {
        holder: Some("gw-a_1".to_owned()),
        duration: LEASE_DURATION,
        acquired: clock::now(),
        renewed: clock::now(),
        transitions: 1,
    };
    let refused = first.write(Some("1"), &spec).await;
    assert_eq!(refused, Err("another gateway wrote it first".to_owned()));
    assert_eq!(fake.stats().await.lease_conflicts, 1);
}

#[tokio::test]
async fn waiting_for_the_lease_is_shown_as_not_ready() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    let readiness = Arc::new(RwLock::new(Readiness::default()));
    let mut second = lock(&fake, "gw-b_2");
    let waiting =
        tokio::time::timeout(Duration::from_millis(300), second.acquire(&readiness)).await;
    assert!(waiting.is_err(), "the second gateway must keep waiting");
    assert_eq!(
        readiness.read().expect("lock").failing()[1],
        "lease held by gw-a_1"
    );
}

/// Short periods with the gateway's proportions: a holder stops serving two thirds of a lease
/// duration after its last successful renewal.
const SHORT: Timing = Timing {
    duration: Duration::from_millis(1500),
    renew: Duration::from_millis(250),
    retry: Duration::from_millis(100),
    deadline: Duration::from_millis(1000),
};

#[tokio::test]
async fn a_holder_that_cannot_renew_steps_down_before_a_standby_takes_over() {
    let fake = fake().await;
    let config = |identity: &str| {
        let config = kube::Config::new(fake.url().parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        LeaseLock::with_timing(client, NS, "wg0", identity.to_owned(), SHORT)
    };
    let mut holder = config("gw-a_1");
    let mut standby = config("gw-b_2");
    assert_eq!(holder.round(clock::now()).await, Round::Held);
    assert!(matches!(
        standby.round(clock::now()).await,
        Round::Waiting(_)
    ));
    let mut guard = LeaseGuard::keep(holder);

    // The API server's storage stops answering: the holder's renewals fail.
    fake.refuse_lease_writes(true).await;
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let holder_task = {
        let serving = serving.clone();
        tokio::spawn(async move {
            let end = tokio::time::timeout(Duration::from_secs(30), guard.lost()).await;
            serving.store(false, std::sync::atomic::Ordering::SeqCst);
            end
        })
    };
    // The standby keeps trying; once the storage is back it takes over, and by then the
    // holder has stopped serving.
    let mut storage_back = false;
    let took_over = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if !storage_back && holder_task.is_finished() {
                fake.refuse_lease_writes(false).await;
                storage_back = true;
            }
            if standby.round(clock::now()).await == Round::Held {
                return !serving.load(std::sync::atomic::Ordering::SeqCst);
            }
            tokio::time::sleep(SHORT.retry).await;
        }
    })
    .await
    .expect("the standby takes over");
    assert!(
        took_over,
        "the standby took the lease while the holder still served"
    );
    let end = holder_task.await.expect("task").expect("the holder ends");
    let LeaseEnd::SteppedDown(why) = end else {
        panic!("{end:?}");
    };
    assert!(why.contains("etcdserver: request timed out"), "{why}");
    let stored = fake.get(LEASES, NS, "zt-gateway-wg0").await.expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "gw-b_2");
}

#[tokio::test]
async fn a_refused_renewal_that_succeeds_again_in_time_keeps_the_lease() {
    let fake = fake().await;
    let config = kube::Config::new(fake.url().parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    let mut holder = LeaseLock::with_timing(client, NS, "wg0", "gw-a_1".to_owned(), SHORT);
    assert_eq!(holder.round(clock::now()).await, Round::Held);
    let mut guard = LeaseGuard::keep(holder);
    fake.refuse_lease_writes(true).await;
    let writes = fake.stats().await.lease_writes;
    // One renewal period plus a retry fail, well inside the deadline; then writes succeed.
    tokio::time::sleep(SHORT.renew + SHORT.retry).await;
    fake.refuse_lease_writes(false).await;
    let still_held = tokio::time::timeout(SHORT.duration * 2, guard.lost()).await;
    assert!(
        still_held.is_err(),
        "the holder kept the lease: {still_held:?}"
    );
    assert!(fake.stats().await.lease_writes > writes);
    guard.release().await;
}

#[test]
fn identity_is_the_host_name_with_a_random_suffix() {
    let one = identity();
    let two = identity();
    assert_ne!(one, two);
    let (host, suffix) = one.rsplit_once('_').expect("suffix");
    assert!(!host.is_empty());
    assert_eq!(suffix.len(), 8);
}
