//! The control channel (SPEC section 8, `docs/control-channel.md`): HTTP/JSON between peer
//! gateways on their tunnel addresses, authenticated by WireGuard's cryptokey routing.
//!
//! Pure decisions: [`envelope`] (parsing and validation), [`auth`] (who may speak),
//! [`channel`] (each peer's channel state). Thin IO: [`server`] (the listener), [`client`]
//! (one hello exchange), and [`Service`], which runs both next to the driver. Every
//! request's outcome is concluded in one place, [`outcome::Recorder::conclude`].

pub mod auth;
pub mod channel;
pub mod client;
pub mod envelope;
pub mod outcome;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::ControlConfig;
use crate::metrics::Metrics;
use crate::status::StatusBoard;
use channel::{Channels, Failure, PeerInput, Settings};
use envelope::Hello;
use outcome::Recorder;
use server::Server;

/// How this gateway presents itself on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `cluster.name`.
    pub cluster: String,
    /// The current public key, base64.
    pub public_key: String,
    /// When the private key was created, when known.
    pub key_created: Option<SystemTime>,
}

/// Between two attempts of one round of hellos.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);

/// Attempts of one round before the channel state changes.
pub const RETRIES: u32 = 3;

/// How often the hello client looks at the peer snapshot.
const POLL: Duration = Duration::from_secs(1);

/// The channel's server and hello client, ready to start once the device is up.
#[derive(Debug, Clone)]
pub struct Service {
    /// `[control]`.
    pub config: ControlConfig,
    /// `[interface] address`: our tunnel address with the tunnel network's prefix.
    pub tunnel: IpNet,
    /// This gateway.
    pub identity: Identity,
    /// Where peers are read and channel states published.
    pub board: StatusBoard,
    /// Where outcomes are counted.
    pub metrics: Metrics,
    /// Where each accepted message, and rejected ones at a bounded rate, are recorded.
    pub audit: Option<crate::audit::Audit>,
    /// What answers the peers' rotation messages, when this gateway takes them.
    pub rotation: Option<crate::rotate::Responder>,
}

/// The running channel; its tasks stop when it is dropped.
#[derive(Debug)]
pub struct Running {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Service {
    /// Starts the server and the hello client (nothing when `control.enabled = false`).
    pub fn start(self) -> Running {
        if !self.config.enabled {
            tracing::info!("control channel disabled (control.enabled = false)");
            return Running { tasks: Vec::new() };
        }
        let server = Arc::new(
            Server::new(
                self.identity.clone(),
                self.tunnel,
                self.board.clone(),
                Recorder::with_audit(self.metrics.clone(), self.audit.clone()),
            )
            .with_rotation(self.rotation.clone()),
        );
        let serving = tokio::spawn(server::serve(server, self.config.port));
        let greeting = tokio::spawn(self.greet());
        Running {
            tasks: vec![serving, greeting],
        }
    }

    /// The hello client: greets each peer when due and publishes the channel states.
    async fn greet(self) {
        let settings = Settings {
            interval: self.config.hello_interval,
            retry_delay: RETRY_DELAY,
            retries: RETRIES,
        };
        let mut channels = Channels::new(settings);
        let (done, mut results) = mpsc::channel::<(String, Result<Hello, Failure>)>(64);
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ids = Arc::new(AtomicU64::new(1));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let peers = self.peers();
                    let now = crate::clock::now();
                    for attempt in channels.poll(now, &peers, self.tunnel) {
                        let done = done.clone();
                        let identity = self.identity.clone();
                        let hello = server::our_hello(&identity, &self.board, self.rotation.is_some());
                        let local = self.tunnel.addr();
                        let remote = SocketAddr::new(attempt.address, self.config.port);
                        let id = format!("{}-{}", identity.cluster, ids.fetch_add(1, Ordering::Relaxed));
                        tokio::spawn(async move {
                            let exchange = client::Exchange {
                                local,
                                remote,
                                from: &identity.cluster,
                                id: &id,
                                hello: &hello,
                                expected: &attempt.cluster,
                            };
                            let result = client::hello(&exchange).await;
                            let _ = done.send((attempt.name, result)).await;
                        });
                    }
                }
                Some((name, result)) = results.recv() => {
                    let now = crate::clock::now();
                    match result {
                        Ok(hello) => channels.answered(&name, now, hello),
                        Err(failure) => {
                            tracing::debug!(peer = %name, ?failure, "hello failed");
                            channels.failed(&name, now, failure);
                        }
                    }
                }
            }
            self.board.publish_channels(channels.statuses());
        }
    }

    fn peers(&self) -> Vec<PeerInput> {
        self.board
            .latest()
            .map(|status| {
                status
                    .peers
                    .into_iter()
                    .map(|peer| PeerInput {
                        connected: peer.connected,
                        view: auth::PeerView {
                            name: peer.name,
                            cluster: peer.cluster,
                            allowed_ips: peer.allowed_ips,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
