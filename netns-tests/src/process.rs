//! Background processes whose output goes to files (readable at any time) and which are killed
//! when their handle drops.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::wait::eventually;

/// A spawned child process, with stdout and stderr captured to files; killed (SIGKILL) and
/// reaped on drop.
#[derive(Debug)]
pub struct Proc {
    argv: Vec<String>,
    child: Child,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
    _logs: TempDir,
}

impl Proc {
    /// Starts `argv` with extra environment variables, stdin closed.
    ///
    /// # Errors
    /// Fails when the log files cannot be created or the program cannot be started.
    pub fn spawn(argv: &[&str], envs: &[(&str, &str)]) -> Result<Self> {
        let (program, args) = argv.split_first().context("empty argv")?;
        let logs = tempfile::Builder::new()
            .prefix("ztgw-proc-")
            .tempdir()
            .context("failed to create a log directory")?;
        let stdout = logs.path().join("stdout");
        let stderr = logs.path().join("stderr");
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).context("failed to create stdout log")?)
            .stderr(File::create(&stderr).context("failed to create stderr log")?)
            .spawn()
            .with_context(|| format!("failed to start {argv:?}"))?;
        Ok(Self {
            argv: argv.iter().map(ToString::to_string).collect(),
            child,
            status: None,
            stdout,
            stderr,
            _logs: logs,
        })
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns everything the process has written to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Returns everything the process has written to stderr so far, without ANSI colour codes.
    pub fn stderr(&self) -> String {
        strip_ansi(&read_lossy(&self.stderr))
    }

    /// Sends `signal` to the process (a no-op once it has been reaped).
    ///
    /// # Errors
    /// Fails when the signal cannot be delivered.
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.try_status()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("failed to send {signal}"))
    }

    /// Returns the exit status if the process has exited, without blocking.
    ///
    /// # Errors
    /// Fails when the status cannot be queried.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("failed to poll child")?;
        }
        Ok(self.status)
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    ///
    /// # Errors
    /// Fails when it is still running after `timeout` (it is left running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        eventually(timeout, || {
            self.try_status()?
                .ok_or_else(|| anyhow!("{:?} still running", self.argv))
        })
    }

    /// Kills the process (SIGKILL) unless it has already exited, and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Runs to completion within `timeout` and fails unless it exits 0; returns stdout.
    ///
    /// # Errors
    /// Fails on a timeout (the process is killed) or a non-zero exit, with its output.
    pub fn finish(mut self, timeout: Duration) -> Result<String> {
        let status = self.wait_timeout(timeout);
        let (stdout, stderr) = (self.stdout(), self.stderr());
        match status {
            Ok(status) if status.success() => Ok(stdout),
            Ok(status) => bail!(
                "{:?} failed ({status})\nstdout: {stdout}\nstderr: {stderr}",
                self.argv
            ),
            Err(error) => Err(error.context(format!(
                "{:?} timed out\nstdout: {stdout}\nstderr: {stderr}",
                self.argv
            ))),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lossy(path: &PathBuf) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), which a logger may emit even into a file.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
