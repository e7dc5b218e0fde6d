use std::time::{Duration, SystemTime};

use super::*;

fn config() -> PeerConfig {
    PeerConfig {
        public_key: PublicKey::from_bytes([3; 32]),
        endpoint: Some("192.0.2.3:51820".parse().expect("addr")),
        allowed_ips: ["10.3.0.0/16", "10.10.0.3/32"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect(),
        persistent_keepalive: 25,
        preshared_key: None,
    }
}

#[test]
fn peer_conversion_round_trips_through_a_host_dump() {
    let mut peer = peer_from_config(&config());
    peer.last_handshake = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    peer.rx_bytes = 5;
    let mut host = Host::new(51820, Key::new([9; 32]));
    host.peers.insert(peer.public_key.clone(), peer);
    let report = report_from_host(&host);
    assert_eq!(report.listen_port, Some(51820));
    assert_eq!(report.peers[0].config(), config());
    assert_eq!(
        report.peers[0].last_handshake,
        Some(Duration::from_secs(1_700_000_000))
    );
    assert_eq!(report.peers[0].rx_bytes, 5);
}

#[test]
fn keepalive_zero_means_off() {
    let mut off = config();
    off.persistent_keepalive = 0;
    assert_eq!(peer_from_config(&off).persistent_keepalive_interval, None);
}

#[tokio::test]
async fn missing_module_is_a_clear_error() {
    if nix::unistd::Uid::effective().is_root()
        && std::path::Path::new("/sys/module/wireguard").exists()
    {
        eprintln!("skipping: the wireguard module is present");
        return;
    }
    let settings = InterfaceSettings {
        name: "ztk0test".to_owned(),
        listen_port: 0,
        address: "10.99.0.1/24".parse().expect("net"),
        mtu: 1420,
    };
    let key = PrivateKey::from_base64("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=").expect("key");
    let err = KernelDevice::create(&settings, &key)
        .await
        .expect_err("no kernel module here");
    let msg = err.to_string();
    assert!(msg.contains("ztk0test"), "{msg}");
    assert!(!msg.contains("yAnz5TF"), "{msg}");
}
