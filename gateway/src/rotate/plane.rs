//! The data plane as a rotation sees it. The native plane holds two keys: the next key is
//! staged, promoted, and the old one dropped, without a session lost. The kernel holds one:
//! the rotation flips it in one netlink call once every peer accepts both of our keys
//! (`docs/kernel-backend.md`), through the loop that owns the kernel device.

use std::time::SystemTime;

use kms_client::PrivateKey;
use tokio::sync::{mpsc, oneshot};

use crate::core::key::PublicKey;
use crate::core::uapi::DeviceReport;
use crate::device::native::handle::DeviceHandle;

/// What the rotation asks of the loop that owns a kernel device.
#[derive(Debug)]
pub enum KernelRequest {
    /// Switch the interface to this key.
    Flip {
        /// The key.
        key: PrivateKey,
        /// Whether it took it.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Read the device's peers.
    Report {
        /// The report, if the device answered.
        reply: oneshot::Sender<Option<DeviceReport>>,
    },
}

/// The data plane a rotation works on.
#[derive(Debug, Clone)]
pub enum Plane {
    /// The native plane, through its handle.
    Native(DeviceHandle),
    /// The kernel module, through the device's loop.
    Kernel(mpsc::Sender<KernelRequest>),
}

fn gone() -> String {
    "the device loop has stopped".to_owned()
}

impl Plane {
    /// Makes `key` answer handshakes besides the current key (the kernel: nothing yet).
    pub fn stage(&self, key: &PrivateKey) -> Result<(), String> {
        match self {
            Plane::Native(device) => device.stage_key(key).map_err(|e| e.to_string()),
            Plane::Kernel(_) => Ok(()),
        }
    }

    /// Withdraws a staged key.
    pub fn unstage(&self) {
        if let Plane::Native(device) = self
            && let Err(e) = device.unstage_key()
        {
            tracing::debug!(error = %e, "nothing staged in the data plane");
        }
    }

    /// Makes the next key current: the native plane promotes the staged key, the kernel
    /// flips to `next`.
    pub async fn promote(&self, next: &PrivateKey) -> Result<(), String> {
        match self {
            Plane::Native(device) => device.promote_staged().map_err(|e| e.to_string()),
            Plane::Kernel(requests) => flip(requests, next).await,
        }
    }

    /// Makes the old key current again. The native plane demotes (its sessions under the
    /// old key are kept), or takes `old` when it holds the new key only (after a restart);
    /// the kernel flips back to `old`.
    pub async fn demote(
        &self,
        old: impl AsyncFnOnce() -> Option<PrivateKey>,
    ) -> Result<(), String> {
        match self {
            Plane::Native(device) => {
                if device
                    .demote_current()
                    .and_then(|()| device.unstage_key())
                    .is_ok()
                {
                    return Ok(());
                }
                let key = old()
                    .await
                    .ok_or_else(|| "the old key cannot be read".to_owned())?;
                device.set_private_key(&key);
                Ok(())
            }
            Plane::Kernel(requests) => {
                let key = old()
                    .await
                    .ok_or_else(|| "the old key cannot be read".to_owned())?;
                flip(requests, &key).await
            }
        }
    }

    /// Forgets the previous key (the kernel has none).
    pub fn drop_previous(&self) {
        if let Plane::Native(device) = self
            && let Err(e) = device.drop_previous()
        {
            // After a restart the plane holds the new key only.
            tracing::debug!(error = %e, "no previous key in the data plane");
        }
    }

    /// Starts a handshake with `peer` under the current key (the kernel starts one with its
    /// next packet to the peer).
    pub fn initiate(&self, peer: &PublicKey) {
        if let Plane::Native(device) = self {
            device.initiate(peer);
        }
    }

    /// Whether `peer` handshook under the current key since it became current at `since`.
    pub async fn handshook(&self, peer: &PublicKey, since: SystemTime) -> bool {
        match self {
            Plane::Native(device) => device.peer_on_current_key(peer),
            Plane::Kernel(requests) => {
                let (reply, answer) = oneshot::channel();
                if requests
                    .send(KernelRequest::Report { reply })
                    .await
                    .is_err()
                {
                    return false;
                }
                let Ok(Some(report)) = answer.await else {
                    return false;
                };
                report
                    .peers
                    .iter()
                    .find(|p| p.public_key == *peer)
                    .and_then(|p| p.last_handshake)
                    .is_some_and(|at| SystemTime::UNIX_EPOCH + at >= since)
            }
        }
    }
}

async fn flip(requests: &mpsc::Sender<KernelRequest>, key: &PrivateKey) -> Result<(), String> {
    let (reply, answer) = oneshot::channel();
    requests
        .send(KernelRequest::Flip {
            key: key.clone(),
            reply,
        })
        .await
        .map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}
