//! Unit tests for `wg show <iface> dump` parsing.

use super::WgDump;

const DUMP: &str = "cHJpdmF0ZQ==\tQUJD\t51820\toff\n\
    UEVFUkI=\t(none)\t192.0.2.2:51820\t10.10.0.2/32,10.2.0.0/16\t1795451373\t600\t696\t25\n\
    UEVFUkM=\t(none)\t(none)\t(none)\t0\t0\t0\toff\n";

#[test]
fn parses_interface_and_peer_lines() {
    let dump = WgDump::parse(DUMP).expect("parse");
    assert_eq!(dump.public_key, "QUJD");
    assert_eq!(dump.listen_port, 51820);
    let b = dump.peer("UEVFUkI=").expect("peer b");
    assert_eq!(b.endpoint.as_deref(), Some("192.0.2.2:51820"));
    assert_eq!(b.allowed_ips, ["10.10.0.2/32", "10.2.0.0/16"]);
    assert_eq!(
        (b.latest_handshake, b.rx_bytes, b.tx_bytes),
        (1_795_451_373, 600, 696)
    );
    assert_eq!(b.persistent_keepalive, Some(25));
}

#[test]
fn none_and_off_become_empty_values() {
    let dump = WgDump::parse(DUMP).expect("parse");
    let c = dump.peer("UEVFUkM=").expect("peer c");
    assert_eq!(c.endpoint, None);
    assert!(c.allowed_ips.is_empty());
    assert_eq!(c.persistent_keepalive, None);
}

#[test]
fn short_peer_line_is_an_error() {
    assert!(WgDump::parse("k\tK\t51820\toff\nonly\ttwo\n").is_err());
}
