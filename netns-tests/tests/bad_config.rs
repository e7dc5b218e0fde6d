//! Start-up failures: the gateway exits non-zero with exactly one `ERROR` line naming the
//! problem, and leaves no interface and no UAPI socket behind.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use netns_tests::{Cluster, Gateway, GatewaySetup, Topology, require_root, unique_iface};

const EXIT: Duration = Duration::from_secs(10);

#[test]
fn missing_key_file_is_named_and_fatal() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let mut setup = Gateway::setup(a).expect("set up gateway a");
    let missing = setup.dir().join("missing.key");
    setup.config.key_path = missing.clone();

    let line = fails_with_one_error_line(a, setup);
    assert!(
        line.contains(&*missing.to_string_lossy()),
        "path not named: {line}"
    );
    assert!(line.contains("does not exist"), "{line}");
}

#[test]
fn world_readable_key_file_is_fatal() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let setup = Gateway::setup(a).expect("set up gateway a");
    std::fs::set_permissions(
        &setup.config.key_path,
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod 0644");

    let line = fails_with_one_error_line(a, setup);
    assert!(line.contains("0644"), "{line}");
}

#[test]
fn invalid_interface_address_is_fatal() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let mut setup = Gateway::setup(a).expect("set up gateway a");
    setup.config.address = "10.10.0.300/24".to_owned();

    let line = fails_with_one_error_line(a, setup);
    assert!(line.contains("interface.address"), "{line}");
}

#[test]
fn listen_port_in_use_is_fatal_and_spares_the_running_gateway() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut first = Gateway::launch(a, &[b]).expect("first gateway ready");
    let mut second = Gateway::setup(a).expect("set up second gateway");
    second.config.iface = unique_iface("z");
    second.config.http_listen = "127.0.0.1:8056".to_owned();

    let line = fails_with_one_error_line(a, second);
    assert!(line.contains("listen_port"), "{line}");
    assert!(line.contains("in use"), "{line}");
    assert!(first.is_running(), "first gateway died:\n{}", first.log());
    assert!(
        a.gw.has_link(first.iface()).expect("ip link"),
        "first interface gone"
    );
    assert!(
        first.socket_path().exists(),
        "first gateway's UAPI socket gone"
    );
}

/// Starts the gateway, expects it to exit non-zero with exactly one `ERROR` line and to leave
/// neither its interface nor its UAPI socket behind, and returns that line.
fn fails_with_one_error_line(cluster: &Cluster, setup: GatewaySetup<'_>) -> String {
    let mut gateway = setup.start().expect("start gateway");
    let status = gateway.wait_exit(EXIT).expect("gateway exits by itself");
    let stderr = gateway.stderr();
    assert!(!status.success(), "gateway exited successfully:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ERROR"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "want exactly one ERROR line, stderr:\n{stderr}"
    );
    let iface = gateway.iface();
    assert!(
        !cluster.gw.has_link(iface).expect("ip link"),
        "interface {iface} left behind"
    );
    let socket = gateway.socket_path();
    assert!(
        !socket.exists(),
        "UAPI socket {} left behind",
        socket.display()
    );
    errors[0].to_owned()
}
