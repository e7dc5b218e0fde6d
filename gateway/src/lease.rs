//! One gateway per interface and cluster: a `coordination.k8s.io/v1` Lease named
//! `zt-gateway-<interface>` in the peers namespace (only with the Kubernetes peer source).
//!
//! A gateway brings its interface up only once it holds the lease; until then it is not ready
//! and `/readyz` says who holds it. The holder renews every [`RENEW_INTERVAL`]; a standby takes
//! over when the lease has not changed for [`LEASE_DURATION`], or at once when the holder
//! released it on a clean shutdown. A holder that sees another holder stops. A holder that
//! cannot renew within [`RENEW_DEADLINE`] of its last successful renewal steps down (stops
//! serving its interface) before any standby can take over, so two gateways never run the same
//! key at the same time. The decisions are in [`crate::core::lease`]; this module reads and
//! writes the object.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec as ApiLeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;

use crate::clock;
use crate::core::health::Readiness;
use crate::core::lease::{Decision, Elector, LeaseRecord, LeaseSpec};
pub use crate::core::lease::{LEASE_DURATION, RENEW_DEADLINE, RENEW_INTERVAL, RETRY_INTERVAL};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The election's periods; [`Timing::DEFAULT`] in the gateway, shorter in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew: Duration,
    /// How soon a failed renewal, or a standby's read, is tried again.
    pub retry: Duration,
    /// How long after its last successful renewal a holder keeps serving.
    pub deadline: Duration,
}

impl Timing {
    /// The gateway's periods.
    pub const DEFAULT: Self = Self {
        duration: LEASE_DURATION,
        renew: RENEW_INTERVAL,
        retry: RETRY_INTERVAL,
        deadline: RENEW_DEADLINE,
    };
}

/// Why a holder stopped holding the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Another gateway holds it now (its identity).
    Lost(String),
    /// No renewal succeeded within the renew deadline (the last error): we step down before
    /// a standby may take over.
    SteppedDown(String),
}

/// The lease of one gateway.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    timing: Timing,
    elector: Elector,
    /// The lease as last read or written, for the release.
    last: Option<LeaseRecord>,
}

/// The outcome of one round of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Round {
    /// We hold the lease.
    Held,
    /// We do not hold it; why, as `/readyz` says it.
    Waiting(String),
    /// We held it and another gateway holds it now.
    Lost(String),
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("name", &self.name)
            .field("identity", &self.elector.identity())
            .finish_non_exhaustive()
    }
}

impl LeaseLock {
    /// Prepares the lease `zt-gateway-<interface>` in `namespace` for holder `identity`.
    pub fn new(client: Client, namespace: &str, interface: &str, identity: String) -> Self {
        Self::with_timing(client, namespace, interface, identity, Timing::DEFAULT)
    }

    /// Like [`LeaseLock::new`], with other periods.
    pub fn with_timing(
        client: Client,
        namespace: &str,
        interface: &str,
        identity: String,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: format!("zt-gateway-{interface}"),
            timing,
            elector: Elector::new(identity, timing.duration),
            last: None,
        }
    }

    /// Returns the lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns our holder identity.
    pub fn identity(&self) -> &str {
        self.elector.identity()
    }

    /// Waits until this gateway holds the lease, saying why in `readiness` meanwhile.
    pub async fn acquire(&mut self, readiness: &Arc<RwLock<Readiness>>) {
        let mut said: Option<String> = None;
        loop {
            match self.round(clock::now()).await {
                Round::Held => break,
                Round::Waiting(why) | Round::Lost(why) => {
                    if said.as_ref() != Some(&why) {
                        tracing::info!(lease = %self.name, "waiting: {why}");
                    }
                    if let Ok(mut r) = readiness.write() {
                        r.lease_wait = Some(why.clone());
                    }
                    said = Some(why);
                }
            }
            tokio::time::sleep(self.timing.retry).await;
        }
        if let Ok(mut r) = readiness.write() {
            r.lease_wait = None;
        }
        tracing::info!(lease = %self.name, holder = %self.identity(), "lease acquired");
    }

    /// Renews the lease until another gateway holds it or no renewal succeeded within the
    /// renew deadline, and says which. A failed renewal (the API is unreachable or refuses the
    /// write) is logged and retried sooner; the tunnel stays up until the deadline.
    pub async fn keep(&mut self) -> LeaseEnd {
        let mut failing: Option<String> = None;
        loop {
            let pause = if failing.is_some() {
                self.timing.retry
            } else {
                self.timing.renew
            };
            let Some(remaining) = self.remaining() else {
                return self.step_down(failing);
            };
            tokio::time::sleep(pause.min(remaining)).await;
            let started = clock::now();
            let Some(remaining) = self.remaining() else {
                return self.step_down(failing);
            };
            // A round that is still waiting for the API at the deadline is abandoned.
            let Ok(round) = tokio::time::timeout(remaining, self.round(started)).await else {
                return self.step_down(Some("the renewal did not finish in time".to_owned()));
            };
            match round {
                Round::Held => {
                    if failing.take().is_some() {
                        tracing::info!(lease = %self.name, "lease renewed again");
                    }
                }
                Round::Waiting(why) => {
                    if failing.is_none() {
                        tracing::warn!(lease = %self.name, "cannot renew the lease: {why}; retrying");
                    }
                    failing = Some(why);
                }
                Round::Lost(holder) => return LeaseEnd::Lost(holder),
            }
        }
    }

    /// Returns how long this holder may still serve, or `None` once the renew deadline has
    /// passed (the elector then no longer counts the lease as held).
    fn remaining(&mut self) -> Option<Duration> {
        let now = clock::now();
        if self.elector.must_step_down(now, self.timing.deadline) {
            return None;
        }
        let at = self.elector.step_down_at(self.timing.deadline)?;
        at.duration_since(now).ok().filter(|d| !d.is_zero())
    }

    fn step_down(&mut self, why: Option<String>) -> LeaseEnd {
        let why = why.unwrap_or_else(|| "no renewal succeeded".to_owned());
        tracing::error!(
            lease = %self.name,
            deadline_seconds = self.timing.deadline.as_secs_f64(),
            "the lease was not renewed within its deadline ({why}); stepping down"
        );
        LeaseEnd::SteppedDown(why)
    }

    /// Gives the lease up, so that a standby takes over at once.
    pub async fn release(&mut self) {
        let Some(last) = self.last.clone() else {
            return;
        };
        if !self.elector.is_held() {
            return;
        }
        let spec = self.elector.release(&last, clock::now());
        match self.write(Some(&last.version), &spec).await {
            Ok(_) => tracing::info!(lease = %self.name, "lease released"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "cannot release the lease; it expires by itself")
            }
        }
    }

    /// Reads the lease, decides, and writes.
    async fn round(&mut self, now: SystemTime) -> Round {
        let current = match tokio::time::timeout(TIMEOUT, self.api.get_opt(&self.name)).await {
            Ok(Ok(lease)) => lease.map(|l| record(&l)),
            Ok(Err(e)) => {
                return Round::Waiting(format!("lease {} cannot be read: {e}", self.name));
            }
            Err(_) => {
                return Round::Waiting(format!("lease {} cannot be read: timed out", self.name));
            }
        };
        let (spec, version) = match self.elector.decide(current.as_ref(), now) {
            Decision::Create(spec) => (spec, None),
            Decision::Update { spec, version } => (spec, Some(version)),
            Decision::Wait { holder } => return Round::Waiting(format!("lease held by {holder}")),
            Decision::Lost { holder } => return Round::Lost(holder),
        };
        match self.write(version.as_deref(), &spec).await {
            Ok(written) => {
                if current.as_ref().and_then(|c| c.holder.as_deref()) != Some(self.identity()) {
                    tracing::info!(lease = %self.name, transitions = spec.transitions, "taking the lease");
                }
                self.elector.wrote(now);
                self.last = Some(written);
                Round::Held
            }
            Err(e) => Round::Waiting(format!("lease {} not written: {e}", self.name)),
        }
    }

    /// Creates the lease (`version` is `None`) or replaces it on condition that it is still at
    /// `version`; a conflict means another gateway wrote first.
    async fn write(&self, version: Option<&str>, spec: &LeaseSpec) -> Result<LeaseRecord, String> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: version.map(str::to_owned),
                ..ObjectMeta::default()
            },
            spec: Some(api_spec(spec)),
        };
        let params = PostParams::default();
        let request = async {
            match version {
                None => self.api.create(&params, &lease).await,
                Some(_) => self.api.replace(&self.name, &params, &lease).await,
            }
        };
        match tokio::time::timeout(TIMEOUT, request).await {
            Ok(Ok(written)) => Ok(record(&written)),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                Err("another gateway wrote it first".to_owned())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }
}

/// Keeps the lease in a background task once acquired.
#[derive(Debug)]
pub struct LeaseGuard {
    lost: oneshot::Receiver<LeaseEnd>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    /// Starts renewing `lock` (which holds the lease).
    pub fn keep(mut lock: LeaseLock) -> Self {
        let (lost_tx, lost) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tokio::select! {
                end = lock.keep() => {
                    let _ = lost_tx.send(end);
                }
                _ = stop_rx => lock.release().await,
            }
        });
        Self {
            lost,
            stop: Some(stop),
            task,
        }
    }

    /// Resolves when this gateway no longer holds the lease: another holder took it, or the
    /// renew deadline passed.
    pub async fn lost(&mut self) -> LeaseEnd {
        match (&mut self.lost).await {
            Ok(end) => end,
            // The task ended without losing the lease (it was stopped): never resolve.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops renewing and releases the lease.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(TIMEOUT + Duration::from_secs(1), &mut self.task).await;
    }
}

/// Returns this gateway's holder identity: the host name (the pod name in a cluster) and a
/// random suffix, so two processes on one host never take each other for the holder.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "zt-gateway".to_owned());
    let mut suffix = [0u8; 4];
    if getrandom::fill(&mut suffix).is_err() {
        suffix = std::process::id().to_be_bytes();
    }
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}_{suffix}")
}

fn record(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseRecord {
        holder: spec.holder_identity,
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        acquired: spec.acquire_time.map(|t| SystemTime::from(t.0)),
        renewed: spec.renew_time.map(|t| SystemTime::from(t.0)),
        transitions: spec.lease_transitions.unwrap_or(0),
        version: lease.metadata.resource_version.clone().unwrap_or_default(),
    }
}

fn api_spec(spec: &LeaseSpec) -> ApiLeaseSpec {
    let micro = |t: SystemTime| Timestamp::try_from(t).ok().map(MicroTime);
    ApiLeaseSpec {
        holder_identity: spec.holder.clone(),
        lease_duration_seconds: i32::try_from(spec.duration.as_secs()).ok(),
        acquire_time: micro(spec.acquired),
        renew_time: micro(spec.renewed),
        lease_transitions: Some(spec.transitions),
        ..ApiLeaseSpec::default()
    }
}

#[cfg(test)]
mod tests;
