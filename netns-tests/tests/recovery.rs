//! Restart after a crash, a live interface never taken over, a link or file the gateway did
//! not make never deleted, and no key material in what the gateway prints or serves.

use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::time::Duration;

use netns_tests::{Cluster, Gateway, GatewaySetup, Topology, require_root, wait_reachable};
use nix::sys::signal::Signal;

const REACH: Duration = Duration::from_secs(10);
const EXIT: Duration = Duration::from_secs(10);

#[test]
fn restart_after_kill_recovers_stale_socket_and_interface() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let mut crashed = Gateway::launch(a, &[b]).expect("gateway a ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let socket = crashed.socket_path();

    crashed.signal(Signal::SIGKILL).expect("kill -9");
    crashed.wait_exit(EXIT).expect("killed gateway exits");
    assert!(socket.exists(), "a killed gateway leaves its socket behind");
    // A leftover interface of the same name, as a crashed run might leave: a TUN device
    // carrying the gateway's ownership marker.
    a.gw.ip(&["tuntap", "add", "dev", &a.iface, "mode", "tun"])
        .expect("create a stale interface");
    a.gw.ip(&["link", "set", "dev", &a.iface, "alias", "ztgw:userspace"])
        .expect("mark the stale interface");

    let restarted = Gateway::launch(a, &[b]).expect("restarted gateway a ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b after the restart");
    let log = restarted.log();
    assert!(log.contains("stale UAPI socket"), "{log}");
    assert!(log.contains("stale interface"), "{log}");
}

#[test]
fn foreign_link_of_another_kind_is_refused_and_left_alone() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    // A link of another kind (a bridge: this kernel may lack the `dummy` module).
    a.gw.ip(&["link", "add", &a.iface, "type", "bridge"])
        .expect("create a bridge link");

    let line = refuses_and_exits(a, Gateway::setup(a).expect("setup"));
    assert!(line.contains(&a.iface), "{line}");
    assert!(line.contains("not created by"), "{line}");
    assert!(
        a.gw.has_link(&a.iface).expect("ip link"),
        "the bridge was deleted"
    );

    // The marker alone is not enough: the link must also be of the kind the gateway makes.
    a.gw.ip(&["link", "set", "dev", &a.iface, "alias", "ztgw:userspace"])
        .expect("mark the bridge");
    let line = refuses_and_exits(a, Gateway::setup(a).expect("setup"));
    assert!(line.contains("not created by"), "{line}");
    assert!(
        a.gw.has_link(&a.iface).expect("ip link"),
        "the marked bridge was deleted"
    );
}

#[test]
fn unmarked_tun_device_is_refused_and_left_alone() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    a.gw.ip(&["tuntap", "add", "dev", &a.iface, "mode", "tun"])
        .expect("create a TUN device");

    let line = refuses_and_exits(a, Gateway::setup(a).expect("setup"));
    assert!(line.contains(&a.iface), "{line}");
    assert!(
        a.gw.has_link(&a.iface).expect("ip link"),
        "the TUN device was deleted"
    );
}

#[test]
fn kernel_style_interface_name_is_refused_and_left_alone() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    // What `wg-quick up wg0` would have made, as far as the name goes.
    a.gw.ip(&["link", "add", "wg0", "type", "bridge"])
        .expect("create a bridge wg0");
    for backend in ["userspace", "kernel"] {
        let mut setup = Gateway::setup(a).expect("setup").backend(backend);
        setup.config.iface = "wg0".to_owned();
        let line = refuses_and_exits(a, setup);
        assert!(line.contains("wg0"), "{backend}: {line}");
        assert!(line.contains("not created by"), "{backend}: {line}");
        assert!(
            a.gw.has_link("wg0").expect("ip link"),
            "{backend}: wg0 was deleted"
        );
    }
}

#[test]
fn non_socket_file_at_the_socket_path_is_refused_and_left_alone() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let socket = Path::new("/var/run/wireguard").join(format!("{}.sock", a.iface));
    let scratch = tempfile::tempdir().expect("scratch directory");
    let target = scratch.path().join("target");
    std::fs::write(&target, "not to be removed").expect("write the symlink target");
    std::fs::create_dir_all(socket.parent().expect("parent")).expect("socket directory");

    type Make = fn(&Path, &Path);
    let kinds: [(&str, Make); 3] = [
        ("regular file", |path, _| {
            std::fs::write(path, "not to be removed").expect("write a file");
        }),
        ("directory", |path, _| {
            std::fs::create_dir(path).expect("make a directory");
        }),
        ("symlink", |path, target| {
            std::os::unix::fs::symlink(target, path).expect("make a symlink");
        }),
    ];
    for (kind, make) in kinds {
        make(&socket, &target);
        let mut gateway = Gateway::setup(a).expect("setup").start().expect("start");
        let status = gateway.wait_exit(EXIT).expect("gateway exits");
        let stderr = gateway.stderr();
        let left = std::fs::symlink_metadata(&socket);
        // Clean up before asserting: the path is outside the test's namespaces.
        if let Ok(meta) = &left {
            if meta.is_dir() {
                let _ = std::fs::remove_dir(&socket);
            } else {
                let _ = std::fs::remove_file(&socket);
            }
        }
        assert!(!status.success(), "{kind}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{kind}: {stderr}");
        assert!(errors[0].contains(&a.iface), "{kind}: {stderr}");
        assert!(errors[0].contains("not a socket"), "{kind}: {stderr}");
        let meta = left.unwrap_or_else(|e| panic!("{kind} was removed: {e}"));
        assert!(!meta.file_type().is_socket(), "{kind} was replaced");
        assert!(
            !a.gw.has_link(&a.iface).expect("ip link"),
            "{kind}: link made"
        );
        drop(gateway);
    }
    assert_eq!(
        std::fs::read_to_string(&target).expect("symlink target"),
        "not to be removed"
    );
}

/// Starts the gateway, expects it to exit non-zero with exactly one `ERROR` line, and returns
/// that line.
fn refuses_and_exits(cluster: &Cluster, setup: GatewaySetup<'_>) -> String {
    let mut gateway = setup.start().expect("start gateway");
    let status = gateway.wait_exit(EXIT).expect("gateway exits by itself");
    let stderr = gateway.stderr();
    assert!(!status.success(), "gateway exited successfully:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "want one ERROR line, stderr:\n{stderr}");
    assert!(
        !gateway.socket_path().exists(),
        "UAPI socket left behind in {}",
        cluster.name
    );
    errors[0].to_owned()
}

#[test]
fn second_gateway_never_takes_over_a_live_interface() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let first = Gateway::launch(a, &[b]).expect("gateway a ready");

    // Same interface name (so the same UAPI socket path) from another namespace.
    let mut setup = Gateway::setup(b).expect("setup");
    setup.config.iface = first.iface().to_owned();
    let mut second = setup.start().expect("start second gateway");
    let status = second.wait_exit(EXIT).expect("second gateway exits");

    assert!(!status.success());
    let stderr = second.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("already served"), "{stderr}");
    assert!(first.socket_path().exists(), "the live socket was removed");
    assert!(
        a.gw.has_link(first.iface()).expect("ip link"),
        "the live interface was removed"
    );
}

#[test]
fn private_key_never_appears_in_logs_metrics_or_health() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let mut gw_a = Gateway::setup(a)
        .expect("setup")
        .with_peers(&[b])
        .expect("peers")
        .start()
        .expect("start");
    gw_a.wait_ready(netns_tests::READY_TIMEOUT).expect("ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let mut served = String::new();
    for path in ["/metrics", "/readyz", "/healthz"] {
        served.push_str(&gw_a.http(path).expect("http").1);
    }
    gw_a.stop(EXIT).expect("clean stop");
    let printed = format!("{}{}", gw_a.log(), gw_a.stderr());

    let base64 = a.key.to_base64();
    let hex = a.key.to_hex();
    for (what, text) in [("log", &printed), ("HTTP answers", &served)] {
        assert!(
            !text.contains(base64.as_str()),
            "base64 private key in the {what}"
        );
        assert!(
            !text.contains(hex.as_str()),
            "hex private key in the {what}"
        );
        assert!(
            !text.to_lowercase().contains(&hex[..16]),
            "part of the hex private key in the {what}"
        );
    }
    assert!(
        printed.contains(&a.public_key()),
        "the log names the key by its public key"
    );
}
