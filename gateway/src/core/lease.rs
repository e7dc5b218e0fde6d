//! One gateway per interface and cluster: the decisions of the election over a
//! `coordination.k8s.io/v1` Lease.
//!
//! A standby gateway takes the lease over only when its holder has not changed it for a whole
//! lease duration, measured on the standby's own clock from the moment it saw the last change.
//! The renew time the holder wrote is never compared with the local clock, so the machines'
//! clocks need not agree.

use std::time::{Duration, SystemTime};

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews the lease.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// How often a standby reads the lease again, and how soon a holder whose renewal failed
/// tries again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// How long after the start of its last successful renewal a holder keeps serving. Past it the
/// holder steps down (stops serving its interface), well before a standby can take over: a
/// standby waits a whole [`LEASE_DURATION`] from the moment it saw that renewal, which was
/// written after it started. The margin covers the shutdown of the interface.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// A Lease as read from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `spec.holderIdentity`; `None` or empty when released.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub duration: Option<Duration>,
    /// `spec.acquireTime`.
    pub acquired: Option<SystemTime>,
    /// `spec.renewTime`.
    pub renewed: Option<SystemTime>,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
    /// `metadata.resourceVersion`; changes with every write.
    pub version: String,
}

/// The lease spec to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSpec {
    /// Who holds it; `None` releases it.
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// `acquireTime`.
    pub acquired: SystemTime,
    /// `renewTime`.
    pub renewed: SystemTime,
    /// `leaseTransitions`.
    pub transitions: i32,
}

/// What to do after reading the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no lease: create it, held by us.
    Create(LeaseSpec),
    /// Replace the lease read at `version` with this spec: our renewal, or a takeover of an
    /// expired or released lease.
    Update {
        /// The new spec.
        spec: LeaseSpec,
        /// The `resourceVersion` the write is conditional on.
        version: String,
    },
    /// Another gateway holds a live lease: read it again later.
    Wait {
        /// Its holder.
        holder: String,
    },
    /// We held the lease and another gateway holds it now: stop serving.
    Lost {
        /// The new holder.
        holder: String,
    },
}

/// What identifies one write of a lease: holder, renew time and resource version.
type Fingerprint = (Option<String>, Option<SystemTime>, String);

/// The election state of one gateway.
#[derive(Debug, Clone)]
pub struct Elector {
    identity: String,
    duration: Duration,
    /// The last distinct lease seen, and when it was first seen.
    seen: Option<(Fingerprint, SystemTime)>,
    held: bool,
    /// When the last successful write of ours started (its request was sent at or after it).
    renewed: Option<SystemTime>,
}

impl Elector {
    /// Creates the state for a gateway named `identity`, asking for leases of `duration`.
    pub fn new(identity: impl Into<String>, duration: Duration) -> Self {
        Self {
            identity: identity.into(),
            duration,
            seen: None,
            held: false,
            renewed: None,
        }
    }

    /// Returns our holder identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Returns whether our last write of the lease succeeded and it has not been lost since.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Decides what to do with the lease as read at `now` (`None`: it does not exist).
    pub fn decide(&mut self, lease: Option<&LeaseRecord>, now: SystemTime) -> Decision {
        let Some(lease) = lease else {
            return Decision::Create(self.spec(now, now, 0));
        };
        let fingerprint = (lease.holder.clone(), lease.renewed, lease.version.clone());
        let first_seen = match &self.seen {
            Some((seen, at)) if *seen == fingerprint => *at,
            _ => {
                self.seen = Some((fingerprint, now));
                now
            }
        };
        let holder = lease.holder.clone().filter(|h| !h.is_empty());
        let takeover = Decision::Update {
            spec: self.spec(now, now, lease.transitions.saturating_add(1)),
            version: lease.version.clone(),
        };
        match holder {
            Some(holder) if holder == self.identity => Decision::Update {
                spec: self.spec(lease.acquired.unwrap_or(now), now, lease.transitions),
                version: lease.version.clone(),
            },
            None => takeover,
            Some(holder) if self.held => {
                self.held = false;
                Decision::Lost { holder }
            }
            Some(holder) => {
                let duration = lease.duration.unwrap_or(self.duration);
                let expired = now
                    .duration_since(first_seen)
                    .is_ok_and(|unchanged| unchanged >= duration);
                if expired {
                    takeover
                } else {
                    Decision::Wait { holder }
                }
            }
        }
    }

    /// Records that our create or update, decided at `started` (before its request was
    /// sent), succeeded: we hold the lease.
    pub fn wrote(&mut self, started: SystemTime) {
        self.held = true;
        self.renewed = Some(started);
    }

    /// Returns the moment this holder must have stopped serving unless it renews first: the
    /// start of its last successful write plus `deadline` ([`RENEW_DEADLINE`]). `None` when we
    /// do not hold the lease.
    pub fn step_down_at(&self, deadline: Duration) -> Option<SystemTime> {
        if !self.held {
            return None;
        }
        self.renewed.and_then(|at| at.checked_add(deadline))
    }

    /// Returns whether a holder must step down at `now`: it held the lease and has not renewed
    /// it within `deadline`. The lease is then no longer counted as held.
    pub fn must_step_down(&mut self, now: SystemTime, deadline: Duration) -> bool {
        let due = self.step_down_at(deadline).is_some_and(|at| now >= at);
        if due {
            self.held = false;
        }
        due
    }

    /// Returns the spec that gives the lease up at `now`, for a clean shutdown: a standby
    /// takes a released lease at once.
    pub fn release(&mut self, lease: &LeaseRecord, now: SystemTime) -> LeaseSpec {
        self.held = false;
        LeaseSpec {
            holder: None,
            duration: Duration::from_secs(1),
            acquired: lease.acquired.unwrap_or(now),
            renewed: now,
            transitions: lease.transitions,
        }
    }

    fn spec(&self, acquired: SystemTime, renewed: SystemTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder: Some(self.identity.clone()),
            duration: self.duration,
            acquired,
            renewed,
            transitions,
        }
    }
}

#[cfg(test)]
mod tests;
