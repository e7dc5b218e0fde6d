//! The gateway binary makes itself non-dumpable before it reads anything (so before any key
//! exists in its memory): a crash writes no core file holding the private key.
//!
//! The kernel shows the flag from outside: the files under `/proc/<pid>` of a non-dumpable
//! process belong to root whatever the process's own user. The gateway is started as an unprivileged
//! user (the test runs as root) or as the test's own user, with a FIFO as its configuration
//! file: it blocks reading it, which is after start-up's first step, until the test writes.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::stat::Mode;
use nix::unistd::{Uid, mkfifo};

/// The user the gateway runs as when the test is root.
const NOBODY: u32 = 65_534;

#[test]
fn the_gateway_is_not_dumpable_before_it_reads_its_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let fifo = dir.path().join("gateway.toml");
    mkfifo(&fifo, Mode::from_bits_truncate(0o644)).expect("mkfifo");

    // A copy inside the directory: the checkout's own path may not be open to that user.
    let binary = dir.path().join("gateway");
    std::fs::copy(env!("CARGO_BIN_EXE_gateway"), &binary).expect("copy the gateway binary");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut command = Command::new(&binary);
    command
        .env_clear()
        .arg("--config")
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if Uid::effective().is_root() {
        command.uid(NOBODY).gid(NOBODY);
    }
    let mut child = command.spawn().expect("start the gateway");
    let pid = child.id();

    let writer = open_when_read(&fifo, &mut child);

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let real_uid: u32 = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("Uid line");
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .expect("stat /proc/<pid>/status")
        .uid();
    let _ = child.kill();
    let _ = child.wait();
    drop(writer);

    assert_ne!(
        real_uid, 0,
        "the test needs the gateway to run as a user other than root"
    );
    assert_eq!(
        owner, 0,
        "/proc/{pid}/status belongs to uid {owner}, the gateway's own user: it is dumpable"
    );
}

/// Opens the FIFO for writing, which succeeds once `child` has opened it for reading: a
/// bounded wait on a child process.
#[allow(
    clippy::disallowed_methods,
    reason = "a bounded wait for a child process to reach a system call"
)]
fn open_when_read(fifo: &Path, child: &mut Child) -> std::fs::File {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(fifo)
        {
            Ok(writer) => return writer,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {}
            Err(e) => panic!("open the FIFO: {e}"),
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the gateway exited before reading its configuration: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never opened its configuration"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
