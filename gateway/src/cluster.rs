//! The connection to the Kubernetes API, for the Kubernetes peer source and the lease.
//!
//! With `[peers] kubeconfig` set, the client uses that file's current context. Without it,
//! it uses the pod's service account (in a cluster), else `$KUBECONFIG` or `~/.kube/config`,
//! the way `kubectl` does.

use std::path::Path;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Why no client could be built. Never carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file cannot be read or parsed.
    #[error("peers.kubeconfig {path}: cannot be used")]
    Kubeconfig {
        /// Its path.
        path: String,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No configuration could be inferred.
    #[error(
        "no Kubernetes API configuration found (no service account, $KUBECONFIG or ~/.kube/config); set peers.kubeconfig"
    )]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot build a Kubernetes API client")]
    Client(#[source] kube::Error),
}

/// Builds a client from `kubeconfig`, or from the environment when it is `None`.
///
/// # Errors
/// When the configuration cannot be read or used.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let file_error = |source| Error::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(file_error)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(file_error)?
        }
        None => kube::Config::infer().await.map_err(Error::Infer)?,
    };
    Client::try_from(config).map_err(Error::Client)
}
