//! The private key from the KMS (the test KMS, `fake-kms`, runs in gateway a's namespace):
//! the tunnel outlives the KMS, start-up fails closed without it, the survival cache is used
//! only when valid, and no secret is ever printed or served.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::ensure;
use kms_client::cache::{self, Kek};
use netns_tests::{
    Cluster, Gateway, READY_TIMEOUT, SteadyPing, TestKms, Topology, eventually, metric_value,
    require_root, unix_time, wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
const KMS_PORT: u16 = 8200;
const EXIT: Duration = Duration::from_secs(15);

fn start_with_kms<'c>(
    a: &'c Cluster,
    b: &Cluster,
    kms: &TestKms,
    cache: Option<&std::path::Path>,
) -> Gateway<'c> {
    let mut setup = Gateway::setup(a)
        .expect("setup")
        .with_peers(&[b])
        .expect("peers");
    setup.config.key_toml = Some(kms.key_toml("3s", cache));
    setup.start().expect("start gateway a")
}

fn single_error_line(gateway: &Gateway<'_>) -> String {
    let stderr = gateway.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "expected one ERROR line:\n{stderr}");
    errors[0].to_owned()
}

fn assert_nothing_left(a: &Cluster, gateway: &Gateway<'_>) {
    assert!(
        !a.gw.has_link(gateway.iface()).expect("ip link"),
        "interface left behind"
    );
    assert!(!gateway.socket_path().exists(), "UAPI socket left behind");
}

#[test]
fn tunnel_keyed_from_the_kms_outlives_the_kms_for_a_minute_of_traffic() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut kms = TestKms::start(&a.gw, &a.key, KMS_PORT).expect("test KMS");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let mut gw_a = start_with_kms(a, b, &kms, None);
    gw_a.wait_ready(READY_TIMEOUT)
        .expect("gateway a ready with the KMS key");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let metrics = gw_a.metrics().expect("metrics");
    assert_eq!(
        metric_value(
            &metrics,
            "zt_wireguard_private_key_source",
            &[("source", "kms")]
        ),
        Some(1.0)
    );
    assert!(
        metric_value(
            &metrics,
            "zt_wireguard_kms_requests_total",
            &[("operation", "read"), ("result", "ok")]
        )
        .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    assert!(gw_a.log().contains("origin=\"kms\""), "{}", gw_a.log());

    kms.stop();
    let steady =
        SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(20)).expect("steady ping");
    eventually(Duration::from_secs(75), || {
        ensure!(steady.sent() >= 3_000, "{} pings so far", steady.sent());
        Ok(())
    })
    .expect("a minute of traffic");
    let stats = steady.stop().expect("stop ping");
    assert_eq!(
        stats.received, stats.transmitted,
        "the tunnel lost packets without the KMS: {stats:?}"
    );
    assert!(gw_a.is_running(), "gateway a stopped without the KMS");
    assert_eq!(gw_a.http("/readyz").expect("readyz").0, 200);
}

#[test]
fn start_up_fails_closed_and_uses_only_a_valid_survival_cache() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut kms = TestKms::start(&a.gw, &a.key, KMS_PORT).expect("test KMS");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let cache_path = kms.dir().join("key.sealed");

    // KMS down, no cache: exits within the deadline, one clear line, nothing left behind.
    kms.stop();
    let mut no_cache = start_with_kms(a, b, &kms, None);
    eventually(Duration::from_secs(2), || {
        let (status, body) = no_cache.http("/readyz")?;
        ensure!(
            status == 503 && body.contains("not ready: key_loaded"),
            "readyz {status}: {body}"
        );
        Ok(())
    })
    .expect("not ready while the key is being fetched");
    let status = no_cache.wait_exit(EXIT).expect("exits within the deadline");
    assert!(!status.success());
    let line = single_error_line(&no_cache);
    assert!(
        line.contains("unreachable") && line.contains("no survival cache"),
        "{line}"
    );
    assert_nothing_left(a, &no_cache);
    drop(no_cache);

    // KMS up: the gateway starts and seals a copy of the key.
    kms.restart(&a.gw, &a.key).expect("KMS back");
    let mut first = start_with_kms(a, b, &kms, Some(&cache_path));
    first.wait_ready(READY_TIMEOUT).expect("ready from the KMS");
    first.stop(EXIT).expect("clean stop");
    drop(first);
    let sealed = std::fs::read_to_string(&cache_path).expect("cache written");
    assert!(!sealed.contains(a.key.to_base64().as_str()));

    // KMS down, valid cache: starts from the cache and says so.
    kms.stop();
    let mut cached = start_with_kms(a, b, &kms, Some(&cache_path));
    cached
        .wait_ready(Duration::from_secs(20))
        .expect("ready from the cache");
    assert!(
        cached.log().contains("starting from the survival cache"),
        "{}",
        cached.log()
    );
    let metrics = cached.metrics().expect("metrics");
    assert_eq!(
        metric_value(
            &metrics,
            "zt_wireguard_private_key_source",
            &[("source", "cache")]
        ),
        Some(1.0)
    );
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("tunnel up on the cached key");
    cached.stop(EXIT).expect("clean stop");
    drop(cached);

    // Expired cache: refused.
    let kek = Kek::read(&kms.kek_file()).expect("kek");
    let loaded = kms_client::LoadedKey {
        key: a.key.clone(),
        origin: kms_client::Origin::Kms,
        version: Some(1),
        created_at: None,
    };
    let past = UNIX_EPOCH + unix_time() - Duration::from_secs(1);
    std::fs::write(
        &cache_path,
        cache::seal(&loaded, &kek, past, [7; 12]).expect("seal"),
    )
    .expect("write expired cache");
    let mut expired = start_with_kms(a, b, &kms, Some(&cache_path));
    assert!(!expired.wait_exit(EXIT).expect("exits").success());
    let line = single_error_line(&expired);
    assert!(line.contains("expired"), "{line}");
    assert_nothing_left(a, &expired);
    drop(expired);

    // Tampered cache: refused.
    let future = UNIX_EPOCH + unix_time() + Duration::from_secs(3600);
    let good = cache::seal(&loaded, &kek, future, [8; 12]).expect("seal");
    let tampered = good.replacen("\"kms_version\": 1", "\"kms_version\": 2", 1);
    assert_ne!(good, tampered);
    std::fs::write(&cache_path, tampered).expect("write tampered cache");
    let mut forged = start_with_kms(a, b, &kms, Some(&cache_path));
    assert!(!forged.wait_exit(EXIT).expect("exits").success());
    let line = single_error_line(&forged);
    assert!(line.contains("modified"), "{line}");
    assert_nothing_left(a, &forged);
}

#[test]
fn no_key_or_client_secret_in_anything_printed_or_served() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let kms = TestKms::start(&a.gw, &a.key, KMS_PORT).expect("test KMS");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let cache_path = kms.dir().join("key.sealed");
    let mut gw_a = start_with_kms(a, b, &kms, Some(&cache_path));
    gw_a.wait_ready(READY_TIMEOUT).expect("ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let mut served = String::new();
    for path in ["/metrics", "/readyz", "/healthz"] {
        served.push_str(&gw_a.http(path).expect("http").1);
    }
    gw_a.stop(EXIT).expect("clean stop");
    let printed = format!("{}{}", gw_a.log(), gw_a.stderr());
    let cached = std::fs::read_to_string(&cache_path).expect("cache");

    let secrets = [
        ("base64 private key", a.key.to_base64().to_string()),
        ("hex private key", a.key.to_hex().to_string()),
        ("client secret", kms.client_secret.clone()),
    ];
    for (what, secret) in &secrets {
        assert!(!printed.contains(secret.as_str()), "{what} in the log");
        assert!(
            !served.contains(secret.as_str()),
            "{what} in an HTTP answer"
        );
        assert!(
            !cached.contains(secret.as_str()),
            "{what} in the survival cache"
        );
    }
    assert!(
        printed.contains(&a.public_key()),
        "the key is named by its public key"
    );
}
