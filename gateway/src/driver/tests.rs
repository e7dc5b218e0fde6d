//! The driver over a [`FakeDevice`] and an empty peers directory.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::{Driver, Outputs};
use crate::core::health::{Liveness, Readiness};
use crate::core::key::PublicKey;
use crate::device::DropReason;
use crate::metrics::Metrics;
use crate::source::directory::DirectorySource;
use crate::status::{GatewayInfo, Identity, StatusBoard};
use crate::testing::FakeDevice;

const T0: SystemTime = SystemTime::UNIX_EPOCH;

#[tokio::test]
async fn each_pass_publishes_the_device_drop_counts() {
    let dir = tempfile::tempdir().expect("peers directory");
    let device = FakeDevice::new();
    let metrics = Metrics::new().expect("metrics");
    let mut driver = driver(device.clone(), DirectorySource::new(dir.path()), &metrics);

    device.set_dropped_packets(vec![(DropReason::Invalid, 4), (DropReason::BadSource, 0)]);
    driver.tick(T0).await;
    device.set_dropped_packets(vec![(DropReason::Invalid, 9), (DropReason::BadSource, 1)]);
    driver.tick(T0 + Duration::from_secs(1)).await;

    let text = metrics.render();
    for line in [
        r#"zt_wireguard_dropped_packets_total{interface="fake0",reason="invalid"} 9"#,
        r#"zt_wireguard_dropped_packets_total{interface="fake0",reason="bad_source"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}

fn driver(
    device: FakeDevice,
    source: DirectorySource,
    metrics: &Metrics,
) -> Driver<FakeDevice, DirectorySource> {
    let own = PublicKey::from_bytes([1; 32]);
    let status = StatusBoard::new(Identity {
        gateway: GatewayInfo {
            version: "0.1.0".to_owned(),
            cluster: "test".to_owned(),
            backend: "fake".to_owned(),
        },
        interface: "fake0".to_owned(),
        public_key: own.to_string(),
        listen_port: 51820,
        address: "10.10.0.1/24".to_owned(),
        key_created: None,
    });
    Driver::new(
        device,
        source,
        own,
        "10.10.0.1".parse().expect("ip"),
        Liveness::default(),
        Outputs {
            metrics: metrics.clone(),
            readiness: Arc::new(RwLock::new(Readiness::default())),
            status,
        },
    )
}
