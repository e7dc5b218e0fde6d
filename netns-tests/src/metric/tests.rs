//! Unit tests for Prometheus sample lookup.

use super::metric_value;

const TEXT: &str = "# HELP zt_wireguard_peer_up Whether the peer is up.\n\
    # TYPE zt_wireguard_peer_up gauge\n\
    zt_wireguard_peer_up{cluster=\"b\"} 1\n\
    zt_wireguard_peer_up_other{cluster=\"c\"} 7\n\
    zt_wireguard_peer_up{cluster=\"c\",public_key=\"x\"} 0\n\
    zt_wireguard_peers 2\n";

#[test]
fn finds_sample_by_label_subset() {
    assert_eq!(
        metric_value(TEXT, "zt_wireguard_peer_up", &[("cluster", "b")]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(TEXT, "zt_wireguard_peer_up", &[("cluster", "c")]),
        Some(0.0)
    );
}

#[test]
fn does_not_match_a_longer_metric_name() {
    assert_eq!(
        metric_value(TEXT, "zt_wireguard_peer_up", &[("cluster", "d")]),
        None
    );
    assert_eq!(metric_value(TEXT, "zt_wireguard_peer", &[]), None);
}

#[test]
fn reads_unlabelled_samples() {
    assert_eq!(metric_value(TEXT, "zt_wireguard_peers", &[]), Some(2.0));
}
