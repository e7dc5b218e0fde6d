//! Throwaway network namespaces: creation with unique names, commands inside them, and removal
//! (with every process still inside) on drop.
//!
//! Names are `ztgw-<pid>-<counter>-<role>`, so parallel tests and parallel test processes never
//! collide, and leftovers of a killed test process can be recognised and reaped.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::process::Proc;

/// A network namespace created for one test, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `ztgw-<pid>-<counter>-<role>` with `lo` up.
    ///
    /// # Errors
    /// Fails when `ip netns add` fails (for example without root).
    pub fn new(role: &str) -> Result<Self> {
        static REAP: Once = Once::new();
        REAP.call_once(reap_stale);
        let name = format!("ztgw-{}-{}-{role}", std::process::id(), next_id());
        run_command(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Returns the namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `argv` inside the namespace and returns its output, whatever its exit status.
    ///
    /// # Errors
    /// Fails only when the command cannot be started.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {argv:?} in {}", self.name))
    }

    /// Runs `argv` inside the namespace and returns its stdout.
    ///
    /// # Errors
    /// Fails when the command cannot be started or exits non-zero (the error holds its stderr).
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let output = self.exec(argv)?;
        check_output(&format!("{argv:?} in {}", self.name), output)
    }

    /// Runs `ip -n <ns> <args>` and returns its stdout.
    ///
    /// # Errors
    /// Fails when `ip` exits non-zero (the error holds its stderr).
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run_command(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Sets a sysctl inside the namespace, e.g. `sysctl("net.ipv4.ip_forward", "1")`.
    ///
    /// # Errors
    /// Fails when the key does not exist or cannot be written.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        // /proc/sys/net resolves against the opening thread's namespace, so a thread that
        // entered the namespace writes the namespace's value.
        self.run_in(|| {
            std::fs::write(&path, value).with_context(|| format!("failed to write {path}"))
        })
        .with_context(|| format!("failed to set {key}={value} in {}", self.name))
    }

    /// Starts `argv` inside the namespace with extra environment variables; the process is
    /// killed when the returned [`Proc`] drops.
    ///
    /// # Errors
    /// Fails when the process cannot be started.
    pub fn spawn(&self, argv: &[&str], envs: &[(&str, &str)]) -> Result<Proc> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        Proc::spawn(&full, envs)
    }

    /// Runs `f` on a fresh thread that has entered this namespace, and returns its result.
    ///
    /// Sockets created by `f` belong to the namespace. The calling thread is never moved.
    ///
    /// # Errors
    /// Fails when the namespace cannot be entered, when `f` fails, or when it panics.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(&self.name)?;
                    f()
                })
                .join()
                .map_err(|_| anyhow!("thread inside {} panicked", self.name))?
        })
    }

    /// Lists the processes inside the namespace (`ip netns pids`).
    ///
    /// # Errors
    /// Fails when `ip netns pids` fails.
    pub fn pids(&self) -> Result<Vec<i32>> {
        pids_of(&self.name)
    }

    /// Returns whether a link (interface) of this name exists in the namespace.
    ///
    /// # Errors
    /// Fails when `ip link` cannot be run at all.
    pub fn has_link(&self, name: &str) -> Result<bool> {
        let output = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", "dev", name])
            .output()
            .context("failed to run ip link show")?;
        Ok(output.status.success())
    }

    /// Returns whether the main routing table has a route for exactly `prefix` via `dev`.
    ///
    /// # Errors
    /// Fails when `ip route` fails.
    pub fn has_route(&self, prefix: &str, dev: &str) -> Result<bool> {
        let routes = self.ip(&["-4", "route", "show", "exact", prefix])?;
        Ok(routes.lines().any(|line| {
            line.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["dev", dev])
        }))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

/// Joins `a` and `b` with a veth pair: `a_name` in `a`, `b_name` in `b`, both left down.
///
/// # Errors
/// Fails when `ip link add` fails (e.g. a name already exists in either namespace).
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> Result<()> {
    a.ip(&[
        "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", &b.name,
    ])
    .map(drop)
}

/// Moves the calling thread into the namespace `name`. Only for threads the harness spawned.
pub(crate) fn enter(name: &str) -> Result<()> {
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("failed to open {path}"))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("failed to enter {path}"))
}

/// Returns a counter value unique within this test process.
pub(crate) fn next_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(1);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command to completion and returns its stdout, failing on a non-zero exit.
pub(crate) fn run_command(command: &mut Command) -> Result<String> {
    let what = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {what}"))?;
    check_output(&what, output)
}

fn check_output(what: &str, output: Output) -> Result<String> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim(),
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn pids_of(name: &str) -> Result<Vec<i32>> {
    let out = run_command(Command::new("ip").args(["netns", "pids", name]))?;
    Ok(out
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// Kills every process in the namespace (never this one), then deletes it. Best effort: this
/// runs in `Drop`.
fn destroy(name: &str) {
    let own = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    for pid in pids_of(name).unwrap_or_default() {
        if pid != own {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Err(error) = run_command(Command::new("ip").args(["netns", "del", name])) {
        eprintln!("warning: could not delete namespace {name}: {error:#}");
    }
}

/// Removes namespaces and UAPI sockets left behind by test processes that no longer exist
/// (a test killed by a timeout never runs its `Drop`s).
fn reap_stale() {
    let Ok(list) = run_command(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for name in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if let Some(pid) = owner_pid(name.strip_prefix("ztgw-"))
            && !is_alive(pid)
        {
            destroy(name);
        }
    }
    let Ok(sockets) = std::fs::read_dir("/var/run/wireguard") else {
        return;
    };
    for entry in sockets.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if let Some(pid) = owner_pid(file_name.strip_prefix("zt"))
            && file_name.ends_with(".sock")
            && !is_alive(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Parses the leading decimal pid of a harness-made name (after its prefix).
fn owner_pid(rest: Option<&str>) -> Option<u32> {
    let rest = rest?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let next = rest[digits.len()..].chars().next()?;
    if digits.is_empty() || !(next == '-' || next.is_ascii_lowercase()) {
        return None;
    }
    digits.parse().ok()
}

fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
