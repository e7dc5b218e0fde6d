//! `peerctl status` against running gateways: the table and the JSON of a two-cluster
//! topology, the admin API over TCP with its bearer token, and the admin socket's
//! permissions, errors and life cycle (0600, removed at shutdown, replaced after a crash).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use netns_tests::{
    Gateway, Topology, eventually, has_tool, peerctl_bin, require_root, unix_time, wait_reachable,
};
use nix::sys::signal::Signal;

const EXIT: Duration = Duration::from_secs(10);

fn peerctl(args: &[&str]) -> Output {
    Command::new(peerctl_bin().expect("peerctl binary"))
        .args(args)
        .output()
        .expect("run peerctl")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "peerctl failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

#[test]
fn status_shows_both_clusters_as_table_and_json_over_the_socket_and_tcp() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut setup = Gateway::setup(a)
        .expect("setup a")
        .with_peers(&[b])
        .expect("peers");
    let token_file = setup.dir().join("admin.token");
    std::fs::write(&token_file, "peerctl-test-token\n").expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    setup.config.admin_listen = Some("127.0.0.1:8056".to_owned());
    setup.config.admin_token_file = Some(token_file.clone());
    let mut gw_a = setup.start().expect("start a");
    gw_a.wait_ready(netns_tests::READY_TIMEOUT)
        .expect("a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10)).expect("pod a reaches pod b");
    let socket = gw_a.config().admin_socket.to_string_lossy().into_owned();

    // JSON: wait until the snapshot shows the handshake, then check every field.
    let doc: serde_json::Value = eventually(Duration::from_secs(5), || {
        let out = peerctl(&["status", "--socket", &socket, "--output", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&stdout(&out))?;
        anyhow::ensure!(
            doc["peers"][0]["connected"] == true,
            "not connected yet: {doc}"
        );
        Ok(doc)
    })
    .expect("peer b connected");
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["gateway"]["cluster"], "a");
    let iface = &doc["interface"];
    assert_eq!(iface["name"], a.iface.as_str());
    assert_eq!(iface["public_key"], a.public_key().as_str());
    assert_eq!(iface["listen_port"], 51820);
    assert_eq!(iface["address"], "10.10.0.1/24");
    // The file source dates the key by the key file's modification time: just now.
    assert!(
        iface["key_age_seconds"]
            .as_u64()
            .is_some_and(|age| age < 600),
        "key age of a freshly written key file: {doc}"
    );
    let peers = doc["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{doc}");
    let peer = &peers[0];
    assert_eq!(peer["cluster"], "b");
    assert_eq!(peer["name"], "b");
    assert_eq!(peer["public_key"], b.public_key().as_str());
    assert_eq!(peer["endpoint"], b.endpoint().as_str());
    assert_eq!(peer["persistent_keepalive"], 25);
    let mut ips: Vec<&str> = peer["allowed_ips"]
        .as_array()
        .expect("allowed_ips")
        .iter()
        .filter_map(|ip| ip.as_str())
        .collect();
    ips.sort_unstable();
    assert_eq!(ips, ["10.10.0.2/32", "10.2.0.0/16"]);
    let now = doc["now_unix"].as_u64().expect("now_unix");
    let handshake = peer["last_handshake_unix"].as_u64().expect("handshake");
    assert!(
        handshake <= now && now - handshake < 60,
        "{handshake} vs {now}"
    );
    assert!(
        now.abs_diff(unix_time().as_secs()) < 10,
        "snapshot time {now}"
    );
    assert!(peer["rx_bytes"].as_u64() > Some(0) && peer["tx_bytes"].as_u64() > Some(0));
    assert!(doc["rejected"].as_array().is_some_and(Vec::is_empty));

    // Table.
    let table = stdout(&peerctl(&["status", "--socket", &socket]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with(&format!("interface {} of cluster a ", a.iface)),
        "{table}"
    );
    assert!(
        table.contains(&format!("  public key  {}\n", a.public_key())),
        "{table}"
    );
    assert!(
        table.contains("  key age     ") && !table.contains("  key age     unknown"),
        "{table}"
    );
    let row: Vec<&str> = lines
        .iter()
        .find(|line| line.starts_with("b ") && line.contains(&b.endpoint()))
        .expect("a row for cluster b")
        .split_whitespace()
        .collect();
    // b, endpoint, yes, "12s", "ago", rx value, rx unit, tx value, tx unit
    assert_eq!(&row[..3], ["b", b.endpoint().as_str(), "yes"], "{table}");
    assert!(
        row[3].ends_with('s') && row[3][..row[3].len() - 1].parse::<u64>().is_ok(),
        "{table}"
    );
    assert_eq!(row[4], "ago");
    for unit in [row[6], row[8]] {
        assert!(["B", "KiB", "MiB"].contains(&unit), "{table}");
    }
    // One allowed IP on the key row, the other on a continuation line.
    let key_row = lines
        .iter()
        .position(|l| l.starts_with("b ") && l.contains(&b.public_key()))
        .expect("a key row for cluster b");
    let mut shown = vec![
        lines[key_row].split_whitespace().last().unwrap_or(""),
        lines[key_row + 1].trim(),
    ];
    shown.sort_unstable();
    assert_eq!(shown, ["10.10.0.2/32", "10.2.0.0/16"], "{table}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{table}");

    // The same document over TCP with the token, from inside a's namespace.
    let bin = peerctl_bin().expect("peerctl");
    let bin = bin.to_string_lossy();
    let token_arg = token_file.to_string_lossy();
    let over_tcp =
        a.gw.run(&[
            &bin,
            "status",
            "--url",
            "http://127.0.0.1:8056",
            "--token-file",
            &token_arg,
            "-o",
            "json",
        ])
        .expect("status over TCP");
    let tcp_doc: serde_json::Value = serde_json::from_str(&over_tcp).expect("json");
    assert_eq!(tcp_doc["interface"], doc["interface"]);
    let wrong = gw_a.dir().join("wrong.token");
    std::fs::write(&wrong, "not-the-token").expect("write");
    let out =
        a.gw.exec(&[
            &bin,
            "status",
            "--url",
            "http://127.0.0.1:8056",
            "--token-file",
            &wrong.to_string_lossy(),
        ])
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the bearer token"), "{stderr}");
    let log = gw_a.log();
    assert!(!log.contains("peerctl-test-token"), "token in the log");
    assert!(!log.contains("not-the-token"), "presented token in the log");
}

#[test]
fn admin_socket_is_private_explained_when_missing_and_cleaned_up() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let run_dir = tempfile::tempdir().expect("tempdir");
    let socket = run_dir.path().join("zt-gateway/admin.sock");
    let socket_arg = socket.to_string_lossy().into_owned();
    let start = || {
        let mut setup = Gateway::setup(a).expect("setup");
        setup.config.admin_socket = socket.clone();
        let mut gateway = setup.start().expect("start");
        gateway
            .wait_ready(netns_tests::READY_TIMEOUT)
            .expect("ready");
        gateway
    };

    // Missing: one line, exit 1.
    let out = peerctl(&["status", "--socket", &socket_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "peerctl: no gateway admin socket at {socket_arg}: is the gateway running? (set --socket)\n"
        )
    );

    // Created with its directory, mode 0600.
    let mut gateway = start();
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    stdout(&peerctl(&["status", "--socket", &socket_arg]));

    // Another user is refused by the socket's mode alone (the directories are opened up).
    if has_tool("setpriv") {
        for dir in [run_dir.path(), socket.parent().expect("parent")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        // A copy beside the socket: the checkout's own path may not be open to that user.
        let bin = run_dir.path().join("peerctl");
        std::fs::copy(peerctl_bin().expect("peerctl"), &bin).expect("copy peerctl");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["status", "--socket", &socket_arg])
            .output()
            .expect("setpriv");
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "peerctl: permission denied on the gateway admin socket {socket_arg}"
            )),
            "{stderr}"
        );
    } else {
        eprintln!(
            "setpriv not installed: permission denial is covered by peerctl's unit tests only"
        );
    }

    // A crash leaves the socket; the next start replaces it.
    gateway.signal(Signal::SIGKILL).expect("kill -9");
    gateway.wait_exit(EXIT).expect("exits");
    assert!(socket.exists(), "a killed gateway leaves its socket");
    let out = peerctl(&["status", "--socket", &socket_arg]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing answers"));
    drop(gateway);
    let mut gateway = start();
    assert!(
        gateway.log().contains("stale admin socket"),
        "{}",
        gateway.log()
    );
    stdout(&peerctl(&["status", "--socket", &socket_arg]));

    // A clean stop removes it.
    let status = gateway.stop(EXIT).expect("stops");
    assert!(status.success(), "{}", gateway.log());
    assert!(!Path::new(&socket).exists(), "socket left after SIGTERM");
}
