//! Peers from the cluster: each gateway reads its `WireGuardPeer`s (and a preshared key from a
//! Secret) from a fake Kubernetes API server (`fake-apiserver`) running in its namespace,
//! reports status back, and holds a Lease that keeps a second gateway with the same key on
//! standby until the first one is gone.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use kms_client::PrivateKey;
use netns_tests::{
    Cluster, Gateway, GatewaySetup, Netns, READY_TIMEOUT, TestApiServer, Topology, condition,
    eventually, require_root, wait_reachable,
};
use nix::sys::signal::Signal;

const REACH: Duration = Duration::from_secs(10);
const STATUS: Duration = Duration::from_secs(15);
/// Lease duration (15 s) after the last renewal (at most 5 s before the kill), plus a
/// standby's retry interval and start-up.
const TAKEOVER: Duration = Duration::from_secs(30);

#[test]
fn two_clusters_from_the_api_with_a_preshared_key_report_connected() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let api_a = TestApiServer::start(&a.gw, "127.0.0.1:6443").expect("API server a");
    let api_b = TestApiServer::start(&b.gw, "127.0.0.1:6443").expect("API server b");
    let psk = PrivateKey::generate()
        .expect("random")
        .to_base64()
        .to_string();
    api_a.put_secret("tunnel-psk", &psk).expect("secret a");
    api_b.put_secret("tunnel-psk", &psk).expect("secret b");
    api_a
        .put_peer(&b.peer(), Some("tunnel-psk"))
        .expect("peer b in a");
    api_b
        .put_peer(&a.peer(), Some("tunnel-psk"))
        .expect("peer a in b");

    let mut gw_a = start(a, &api_a).start().expect("start gateway a");
    let mut gw_b = start(b, &api_b).start().expect("start gateway b");
    gw_a.wait_ready(READY_TIMEOUT).expect("gateway a ready");
    gw_b.wait_ready(READY_TIMEOUT).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let shown =
        a.gw.run(&["wg", "show", gw_a.iface(), "preshared-keys"])
            .expect("wg show preshared-keys");
    assert!(
        shown.contains(&format!("{}\t{psk}", b.public_key())),
        "gateway a does not use the preshared key for b: {shown}"
    );
    let peer = eventually(STATUS, || {
        let peer = api_a.peer(&b.name)?;
        ensure!(
            condition(&peer, "Connected")
                == Some(("True".to_owned(), "HandshakeRecent".to_owned())),
            "not connected yet: {}",
            peer["status"]
        );
        Ok(peer)
    })
    .expect("b's status says Connected=True");
    assert_eq!(
        condition(&peer, "Ready"),
        Some(("True".to_owned(), "Applied".to_owned()))
    );
    assert_eq!(peer["status"]["observedGeneration"], 1);
    assert!(
        peer["status"]["lastHandshakeTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{}",
        peer["status"]
    );
    assert!(!gw_a.log().contains(&psk), "the preshared key was logged");

    api_a.delete_peer(&b.name).expect("delete peer b");
    eventually(REACH, || {
        let dump = gw_a.dump()?;
        ensure!(dump.peers.is_empty(), "b still on gateway a: {dump:?}");
        Ok(())
    })
    .expect("deleting the resource removes the peer");
}

#[test]
fn a_second_gateway_waits_for_the_lease_and_takes_over_when_the_first_is_gone() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    // On a's underlay address, so that gateways in other namespaces reach it too.
    let api = TestApiServer::start(&a.gw, &format!("{}:6443", a.underlay_ip())).expect("API");
    api.put_peer(&b.peer(), None).expect("peer b");
    let lease_name = format!("zt-gateway-{}", a.iface);

    let mut first = start(a, &api).start().expect("start the first gateway");
    first
        .wait_ready(READY_TIMEOUT)
        .expect("first gateway ready");
    let first_holder = holder(&api, &lease_name).expect("lease held");

    // The same key and interface, in b's gateway namespace where the UDP port is free.
    let mut second = start(a, &api)
        .run_in(&b.gw)
        .start()
        .expect("start the second gateway");
    let expected = format!("not ready: lease held by {first_holder}");
    eventually(READY_TIMEOUT, || {
        let (code, body) = second.http("/readyz")?;
        ensure!(
            code == 503 && body.contains(&expected),
            "/readyz: {code} {body}"
        );
        Ok(())
    })
    .expect("the second gateway says who holds the lease");
    stays_on_standby(&second, &b.gw, &expected).expect("the second gateway stays on standby");

    first
        .signal(Signal::SIGKILL)
        .expect("kill the first gateway");
    first
        .wait_exit(Duration::from_secs(5))
        .expect("first gateway gone");
    drop(first);
    second
        .wait_ready(TAKEOVER)
        .expect("the second gateway takes over");
    let lease = api.lease(&lease_name).expect("lease");
    let second_holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    assert_ne!(second_holder, first_holder);
    assert!(
        lease["spec"]["leaseTransitions"].as_i64() >= Some(1),
        "{lease}"
    );
    assert!(
        b.gw.has_link(&a.iface).expect("ip link"),
        "no interface in b's namespace"
    );

    // A clean shutdown releases the lease: a third gateway takes it at once.
    let mut third = start(a, &api).start().expect("start the third gateway");
    eventually(READY_TIMEOUT, || {
        let (code, body) = third.http("/readyz")?;
        ensure!(
            code == 503 && body.contains("lease held by"),
            "/readyz: {code} {body}"
        );
        Ok(())
    })
    .expect("the third gateway waits");
    second
        .stop(Duration::from_secs(10))
        .expect("second gateway stops");
    third
        .wait_ready(Duration::from_secs(8))
        .expect("the third gateway takes the released lease well before it expires");
}

fn start<'c>(cluster: &'c Cluster, api: &TestApiServer<'_>) -> GatewaySetup<'c> {
    let mut setup = Gateway::setup(cluster).expect("setup");
    setup.config.peers_toml = Some(api.peers_toml());
    setup
}

fn holder(api: &TestApiServer<'_>, name: &str) -> anyhow::Result<String> {
    let lease = api.lease(name)?;
    lease["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
        .context("no holder")
}

/// Watches a standby gateway for a few seconds: it must stay not ready, without an interface.
fn stays_on_standby(gateway: &Gateway<'_>, netns: &Netns, expected: &str) -> anyhow::Result<()> {
    let broken = eventually(Duration::from_secs(3), || {
        let (code, body) = gateway.http("/readyz")?;
        if code != 503 || !body.contains(expected) {
            return Ok(format!("/readyz: {code} {body}"));
        }
        if netns.has_link(gateway.iface())? {
            return Ok("the standby created its interface".to_owned());
        }
        // Not a failure: keep watching until the time is up.
        bail!("still on standby")
    });
    match broken {
        Ok(problem) => bail!(problem),
        Err(_) => Ok(()),
    }
}
