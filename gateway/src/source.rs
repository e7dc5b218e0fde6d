//! Where declared peers come from. Each source yields [`Declaration`]s for the core to
//! validate, and hears back how each one fared: the directory source (the embedded default)
//! reads files; the Kubernetes source reads `WireGuardPeer` resources and writes their status.
//!
//! [`Declaration`]: crate::core::validate::Declaration

pub mod directory;
pub mod document;
pub mod kube;

use std::time::SystemTime;

use crate::core::status::PeerOutcome;
use crate::core::validate::Declaration;

/// Why a source could not be read this time. The driver keeps the current peers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peers directory cannot be listed.
    #[error(transparent)]
    Directory(#[from] directory::ListError),
    /// The background task reading the source failed.
    #[error("the peer source task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// A source of peer declarations, as the driver uses it.
#[allow(async_fn_in_trait)]
pub trait PeerSource {
    /// Returns whether the source can read `presharedKeySecretRef` (only the Kubernetes
    /// source can).
    fn supports_secret_refs(&self) -> bool;

    /// Returns every current declaration, or `None` while the source has not completed its
    /// first full read: nothing may be planned from a partial view, which would remove peers
    /// that still exist.
    ///
    /// # Errors
    /// When the source cannot be read this time.
    async fn declarations(&mut self, now: SystemTime) -> Result<Option<Vec<Declaration>>, Error>;

    /// Hears how each declaration of the last [`PeerSource::declarations`] fared.
    async fn publish(&mut self, outcomes: &[PeerOutcome], now: SystemTime);
}

impl PeerSource for directory::DirectorySource {
    fn supports_secret_refs(&self) -> bool {
        false
    }

    async fn declarations(&mut self, _now: SystemTime) -> Result<Option<Vec<Declaration>>, Error> {
        let source = self.clone();
        let declarations = tokio::task::spawn_blocking(move || source.scan())
            .await
            .map_err(Error::Task)??;
        Ok(Some(declarations))
    }

    async fn publish(&mut self, _outcomes: &[PeerOutcome], _now: SystemTime) {
        // Files have no status; the driver logs rejections.
    }
}
