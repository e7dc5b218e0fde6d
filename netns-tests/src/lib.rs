//! Topology harness for ZT Gateway tests in Linux network namespaces (needs root).
//!
//! This crate owns throwaway network namespaces, the veth/bridge plumbing between them, and
//! launchers for the processes that run inside them: our `gateway` binary, and `wireguard-go`
//! as a reference peer. Everything it creates is named uniquely per test process and removed in
//! `Drop`, and every wait is bounded ([`eventually`]). It must only ever address hosts inside
//! the namespaces it created.
//!
//! A typical test:
//!
//! ```no_run
//! use netns_tests::{Gateway, Topology, require_root};
//! use std::time::Duration;
//!
//! fn pods_reach_each_other() {
//!     require_root!();
//!     let topo = Topology::clusters(2).expect("build topology");
//!     let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
//!     let _gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
//!     let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
//!     netns_tests::wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10)).expect("ping");
//! }
//! ```

mod apiserver;
mod gateway;
mod http;
mod kms;
mod metric;
mod netns;
mod peer;
mod ping;
mod process;
mod topology;
mod uapi;
mod wait;
mod wggo;
mod xfer;

pub use apiserver::{NAMESPACE, TestApiServer, condition, peers_toml};
pub use gateway::{
    Gateway, GatewayConfig, GatewaySetup, HTTP_LISTEN, READY_TIMEOUT, gateway_bin, workspace_bin,
};
pub use http::{http_get, http_request};
pub use kms::TestKms;
pub use metric::metric_value;
pub use netns::{Netns, veth};
pub use peer::PeerSpec;
pub use ping::{PingStats, SteadyPing, ping, wait_reachable};
pub use process::Proc;
pub use topology::{Cluster, LISTEN_PORT, TUNNEL_PREFIX, Topology, unique_iface};
pub use uapi::{WgDump, WgPeer, wg_dump};
pub use wait::{eventually, unix_time};
pub use wggo::WgGo;
pub use xfer::{TRANSFER_BYTES, tcp_transfer, traffic_both_ways};

/// Skips the calling test unless it runs as root; fails instead when
/// `ZTGW_NETNS_TESTS=required` (the privileged CI job), so a skip there is a failure.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::Uid::effective().is_root() {
            if std::env::var_os("ZTGW_NETNS_TESTS").is_some_and(|v| v == "required") {
                panic!("ZTGW_NETNS_TESTS=required but not running as root");
            }
            eprintln!("skipping {}: needs root", module_path!());
            return;
        }
    };
}
