//! The fake's state: identities, tokens, versioned secrets, queued faults, counters.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::FakeConfig;

/// A fault applied to the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an error body (and `Retry-After` seconds, if given).
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally.
    DelayMs(u64),
    /// Answer normally but cut the body short.
    Truncate,
    /// Answer this status and raw body instead of the real answer.
    Body {
        /// The HTTP status.
        status: u16,
        /// The raw body.
        body: &'static str,
    },
}

/// Request counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Successful logins.
    pub logins: u32,
    /// Successful renewals.
    pub renews: u32,
    /// Successful secret reads.
    pub reads: u32,
    /// Successful writes.
    pub writes: u32,
    /// Requests refused for an expired or unknown token.
    pub token_rejections: u32,
}

pub(crate) struct Version {
    pub value: String,
    pub created_at: SystemTime,
}

pub(crate) struct TokenInfo {
    pub expires_at: SystemTime,
}

pub(crate) struct State {
    pub config: FakeConfig,
    pub tokens: BTreeMap<String, TokenInfo>,
    pub secrets: BTreeMap<(String, String, String, String), Vec<Version>>,
    pub faults: VecDeque<Fault>,
    pub approval_required: bool,
    pub stats: Stats,
    pub counter: u64,
}

#[allow(
    clippy::disallowed_methods,
    reason = "the fake server keeps real time for token expiry"
)]
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

impl State {
    pub fn new(config: FakeConfig) -> Self {
        let mut secrets = BTreeMap::new();
        for (project, env, path, name, value) in &config.secrets {
            secrets.insert(
                (
                    project.clone(),
                    env.clone(),
                    normalize_path(path),
                    name.clone(),
                ),
                vec![Version {
                    value: value.clone(),
                    created_at: now(),
                }],
            );
        }
        Self {
            config,
            tokens: BTreeMap::new(),
            secrets,
            faults: VecDeque::new(),
            approval_required: false,
            stats: Stats::default(),
            counter: 0,
        }
    }

    pub fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{:016x}", self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn issue_token(&mut self) -> String {
        let token = format!("fake-token-{}", self.next_id());
        self.tokens.insert(
            token.clone(),
            TokenInfo {
                expires_at: now() + self.config.token_ttl,
            },
        );
        token
    }

    pub fn expire_tokens(&mut self) {
        let past = now() - Duration::from_secs(1);
        for info in self.tokens.values_mut() {
            info.expires_at = past;
        }
    }

    pub fn current(
        &self,
        project: &str,
        env: &str,
        path: &str,
        name: &str,
    ) -> Option<(u64, String)> {
        let versions = self.secrets.get(&(
            project.to_owned(),
            env.to_owned(),
            normalize_path(path),
            name.to_owned(),
        ))?;
        let last = versions.last()?;
        Some((versions.len() as u64, last.value.clone()))
    }
}

/// Infisical removes a trailing slash from `secretPath`.
pub(crate) fn normalize_path(path: &str) -> String {
    if path.len() > 1 {
        path.trim_end_matches('/').to_owned()
    } else {
        path.to_owned()
    }
}

/// Infisical's transform of written values: trimmed, one trailing newline kept.
pub(crate) fn transform_value(value: &str) -> String {
    if value.ends_with('\n') {
        format!("{}\n", value.trim())
    } else {
        value.trim().to_owned()
    }
}
