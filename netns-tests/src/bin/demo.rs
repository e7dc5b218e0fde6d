//! `demo`: two clusters joined by ZT Gateway in network namespaces. Prints the handshake
//! (`wg show` on gateway a), a ping from pod a to pod b, gateway a's `zt_wireguard_` metrics
//! and `peerctl status`, then tears everything down. Needs root; finds the `gateway` binary next to itself
//! (or via `ZTGW_GATEWAY_BIN`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use netns_tests::{
    Gateway, Topology, eventually, gateway_bin, metric_value, peerctl_bin, ping, wait_reachable,
};

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the demo creates network namespaces and must run as root");
    }
    let bin = gateway_bin()?;
    println!("gateway binary: {}", bin.display());

    let topo = Topology::clusters(2).context("failed to build the topology")?;
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    println!(
        "cluster a: gateway {} (underlay {}), pod {} | cluster b: gateway {} (underlay {}), pod {}",
        a.iface,
        a.underlay_ip(),
        a.pod_ip(),
        b.iface,
        b.underlay_ip(),
        b.pod_ip()
    );
    let gw_a = Gateway::launch(a, &[b]).context("gateway a did not become ready")?;
    let gw_b = Gateway::launch(b, &[a]).context("gateway b did not become ready")?;
    println!("both gateways ready");

    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10))
        .context("pod a cannot reach pod b")?;
    println!("\n$ wg show {}   (in gateway a's namespace)", a.iface);
    print!("{}", a.gw.run(&["wg", "show", &a.iface])?);

    let stats = ping(&a.pod, b.pod_ip(), 5)?;
    println!(
        "\nping pod a ({}) -> pod b ({}): {} transmitted, {} received, {:.0}% loss",
        a.pod_ip(),
        b.pod_ip(),
        stats.transmitted,
        stats.received,
        stats.loss() * 100.0
    );
    if stats.received == 0 {
        bail!("no ping replies from pod b:\n{}", gw_a.log());
    }

    println!("\ngateway a /metrics (zt_wireguard_*):");
    // Per-peer samples appear once the gateway has read the device's statistics.
    let metrics = eventually(Duration::from_secs(10), || {
        let text = gw_a.metrics()?;
        if metric_value(&text, "zt_wireguard_peer_up", &[("cluster", "b")]) != Some(1.0) {
            bail!("zt_wireguard_peer_up{{cluster=\"b\"}} is not 1 yet");
        }
        Ok(text)
    })
    .context("gateway a's metrics never showed peer b up")?;
    for line in metrics
        .lines()
        .filter(|line| line.starts_with("zt_wireguard_"))
    {
        println!("  {line}");
    }

    let socket = gw_a.config().admin_socket.to_string_lossy().into_owned();
    println!("\n$ peerctl status --socket {socket}");
    let out = std::process::Command::new(peerctl_bin()?)
        .args(["status", "--socket", &socket])
        .output()
        .context("cannot run peerctl")?;
    if !out.status.success() {
        bail!(
            "peerctl status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));

    drop((gw_a, gw_b));
    drop(topo);
    println!("\ntorn down: gateways stopped, namespaces deleted");
    Ok(())
}
