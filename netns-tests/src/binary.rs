//! Finding the workspace's binaries under test: `gateway` and `peerctl`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

/// Returns the gateway binary to test: `$ZTGW_GATEWAY_BIN`, else `gateway` next to the
/// running executable (for `demo`), else one directory up (test binaries live in `deps/`).
///
/// # Errors
/// Fails with a hint to build the workspace when no binary exists there.
pub fn gateway_bin() -> Result<PathBuf> {
    workspace_bin("gateway", "ZTGW_GATEWAY_BIN")
}

/// Returns the `peerctl` binary to test: `$ZTGW_PEERCTL_BIN`, else found as [`gateway_bin`].
///
/// # Errors
/// Fails with a hint to build the workspace when no binary exists there.
pub fn peerctl_bin() -> Result<PathBuf> {
    workspace_bin("peerctl", "ZTGW_PEERCTL_BIN")
}

/// Returns the workspace binary `name`: `$variable` if set, else next to the running
/// executable, else one directory up.
///
/// # Errors
/// Fails with a hint to build the workspace when no binary exists there.
pub fn workspace_bin(name: &str, variable: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{name} binary not found at {} (from {variable})",
                path.display()
            );
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("failed to locate the running executable")?;
    let dir = exe.parent().context("executable has no directory")?;
    let beside = dir.join(name);
    let above = dir.join("..").join(name);
    if beside.is_file() {
        return Ok(beside);
    }
    if above.is_file() {
        return Ok(above);
    }
    let expected = if dir.ends_with("deps") { above } else { beside };
    bail!(
        "{name} binary not found at {}; run `cargo build --workspace --bins` first",
        expected.display()
    )
}
