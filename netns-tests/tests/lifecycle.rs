//! Clean shutdown: SIGTERM and SIGINT make the gateway exit 0 and remove its interface and
//! UAPI socket.

use std::time::Duration;

use netns_tests::{Gateway, Topology, require_root};
use nix::sys::signal::Signal;

const EXIT: Duration = Duration::from_secs(10);

#[test]
fn sigterm_exits_zero_and_removes_interface_and_socket() {
    require_root!();
    exits_cleanly_on(Signal::SIGTERM, "userspace");
}

/// `native` is another name for the userspace backend.
#[test]
fn native_sigterm_exits_zero_and_removes_interface_and_socket() {
    require_root!();
    exits_cleanly_on(Signal::SIGTERM, "native");
}

#[test]
fn sigint_exits_zero_and_removes_interface_and_socket() {
    require_root!();
    exits_cleanly_on(Signal::SIGINT, "userspace");
}

fn exits_cleanly_on(signal: Signal, backend: &str) {
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut gateway = Gateway::launch_with(a, &[b], backend).expect("gateway a ready");
    let iface = gateway.iface().to_owned();
    let socket = gateway.socket_path();
    assert!(
        a.gw.has_link(&iface).expect("ip link"),
        "no interface {iface} while running"
    );
    assert!(
        socket.exists(),
        "no UAPI socket {} while running",
        socket.display()
    );

    gateway.signal(signal).expect("send signal");
    let status = gateway
        .wait_exit(EXIT)
        .expect("gateway exits after the signal");

    assert!(
        status.success(),
        "exit status {status} after {signal}:\n{}",
        gateway.log()
    );
    assert!(
        !a.gw.has_link(&iface).expect("ip link"),
        "interface {iface} left behind"
    );
    assert!(
        !socket.exists(),
        "UAPI socket {} left behind",
        socket.display()
    );
}
