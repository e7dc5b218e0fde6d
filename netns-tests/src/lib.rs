//! Topology harness for ZT Gateway tests in Linux network namespaces (needs root).
//!
//! This crate owns throwaway network namespaces, the veth/bridge plumbing between them, and
//! launchers for the processes that run inside them: our `gateway` binary, `wireguard-go` as a
//! reference peer (and `boringtun-cli`, for the benchmark), and a real Prometheus. Everything
//! it creates is named uniquely per test process and removed in `Drop`, and every wait is
//! bounded ([`eventually`]). It must only ever address hosts inside the namespaces it created.
//! [`bench`](mod@bench) holds the benchmark's parsing and arithmetic; [`wire`] splits captured
//! underlay datagrams into WireGuard messages and checks their padding. [`Streams`] measures
//! loss and reordering of paced UDP streams between pods.
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
pub mod bench;
mod binary;
mod capture;
mod echo;
pub mod forge;
mod gateway;
mod http;
mod kms;
mod kube_real;
mod metric;
mod netns;
mod peer;
mod ping;
mod process;
mod prometheus;
pub mod rules;
mod stream;
mod topology;
mod uapi;
mod vm;
mod wait;
mod wg_userspace;
pub mod wire;
mod xfer;

pub use apiserver::{NAMESPACE, TestApiServer, condition, peers_toml};
pub use binary::{gateway_bin, peerctl_bin, workspace_bin};
pub use capture::Capture;
pub use echo::echo_sizes;
pub use gateway::{Gateway, GatewayConfig, GatewaySetup, HTTP_LISTEN, READY_TIMEOUT};
pub use http::{http_get, http_request};
pub use kms::TestKms;
pub use kube_real::{
    CRD_NAME, KUBE_PORT, KUBE_START_TIMEOUT, KubeTools, RealApiServer, go_tool, kube_tools,
    workspace_dir,
};
pub use metric::{metric_value, promtool_check_metrics};
pub use netns::{Netns, veth};
pub use peer::PeerSpec;
pub use ping::{PingStats, SteadyPing, ping, wait_reachable};
pub use process::Proc;
pub use prometheus::{Alert, PROMETHEUS_INTERVAL, Prometheus, percent_encode};
pub use stream::{StreamStats, Streams, check_in_order, check_no_loss, format_stats};
pub use topology::{Cluster, LISTEN_PORT, TUNNEL_PREFIX, Topology, unique_iface};
pub use uapi::{WgDump, WgPeer, wg_dump};
pub use vm::{QEMU, VM_GUEST_VAR, VM_TESTS_VAR, Vm, VmRun, in_vm_guest, vm_tests_required};
pub use wait::{eventually, unix_time};
pub use wg_userspace::{
    Offloads, WIREGUARD_GO_CURRENT, WIREGUARD_GO_CURRENT_VAR, WgProgram, WgUserspace,
};
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

/// Skips the calling test unless `tool` is on the `PATH`; fails instead when
/// `ZTGW_NETNS_TESTS=required` (CI installs every tool), so a skip there is a failure.
#[macro_export]
macro_rules! require_tool {
    ($tool:expr) => {
        if !$crate::has_tool($tool) {
            if std::env::var_os("ZTGW_NETNS_TESTS").is_some_and(|v| v == "required") {
                panic!(
                    "ZTGW_NETNS_TESTS=required but {} is not installed (scripts/install-deps.sh installs it)",
                    $tool
                );
            }
            eprintln!(
                "skipping {}: {} is not installed (scripts/install-deps.sh installs it)",
                module_path!(),
                $tool
            );
            return;
        }
    };
}

/// Returns whether an executable named `tool` is on the `PATH`.
pub fn has_tool(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}
