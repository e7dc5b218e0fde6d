//! A throwaway virtual machine running Debian's own kernel, for the tests that need the
//! WireGuard kernel module (the `kernel` backend): the host never loads a module.
//!
//! `scripts/vm-kernel.sh` fetches and extracts the kernel package into `target/vm/`. Each
//! [`Vm::run`] builds a small initramfs (static busybox, the virtio and 9p modules, an init
//! script), boots `qemu-system-x86_64` under software emulation (TCG) with the host's root
//! filesystem shared read-only over 9p, and has the init mount it, lay writable tmpfs over
//! `/tmp`, `/run` and `/var/tmp`, load the modules the tests use, and run one program inside
//! it with the given environment. The program's output comes back over the serial console
//! with its exit status; boot, run and shutdown are bounded by one deadline, after which qemu
//! is killed.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};

/// The environment variable that makes the VM tests mandatory (`required`, as in CI) or
/// lets them skip with a message when qemu or the kernel is missing (anything else).
pub const VM_TESTS_VAR: &str = "ZTGW_VM_TESTS";
/// The environment variable set (to `1`) for the program run inside the guest.
pub const VM_GUEST_VAR: &str = "ZTGW_VM_GUEST";
/// The qemu binary the harness boots.
pub const QEMU: &str = "qemu-system-x86_64";
/// Guest memory, in MiB.
const MEMORY_MIB: u32 = 1024;
/// Guest vCPUs.
const CPUS: u32 = 2;
/// The line the init prints, followed by the program's exit status, once it has exited.
const EXIT_MARKER: &str = "ZTGW-VM-EXIT=";
/// The modules the init loads before mounting the host's filesystem (with their dependencies).
const BOOT_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];
/// The modules loaded once the host's filesystem is mounted: what the netns tests use.
const TEST_MODULES: [&str; 6] = ["wireguard", "tun", "veth", "bridge", "af_packet", "dummy"];
/// Where the busybox the initramfs carries comes from (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";

/// Returns whether the VM tests are mandatory (`ZTGW_VM_TESTS=required`).
pub fn vm_tests_required() -> bool {
    std::env::var_os(VM_TESTS_VAR).is_some_and(|v| v == "required")
}

/// Returns whether this process runs inside the guest (`ZTGW_VM_GUEST=1`).
pub fn in_vm_guest() -> bool {
    std::env::var_os(VM_GUEST_VAR).is_some_and(|v| v == "1")
}

/// Prepares a [`Vm`], or skips the calling test with a message when qemu, busybox or the
/// kernel is missing; fails instead when `ZTGW_VM_TESTS=required` (CI).
#[macro_export]
macro_rules! require_vm {
    () => {
        match $crate::Vm::prepare() {
            Ok(vm) => vm,
            Err(error) => {
                if $crate::vm_tests_required() {
                    panic!("ZTGW_VM_TESTS=required but the VM cannot run: {error:#}");
                }
                eprintln!(
                    "skipping {}: the VM cannot run ({error:#}); set ZTGW_VM_TESTS=required to make this a failure",
                    module_path!()
                );
                return;
            }
        }
    };
}

/// A guest kernel ready to boot: Debian's image and its modules, extracted on the host.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The directory holding `boot/vmlinuz-<release>` and `lib/modules/<release>`.
    root: PathBuf,
    /// The kernel release, e.g. `6.1.0-57-amd64`.
    release: String,
}

/// What one guest run produced.
#[derive(Debug, Clone)]
pub struct VmRun {
    /// The program's exit status, or `None` when the guest never reported one (it timed out,
    /// panicked or failed to boot).
    pub exit_code: Option<i32>,
    /// Everything on the serial console: the init's lines and the program's output.
    pub log: String,
    /// From starting qemu to its exit (or to the kill on timeout).
    pub elapsed: Duration,
    /// From starting qemu to the init's first line (the kernel's boot).
    pub boot: Option<Duration>,
}

impl VmRun {
    /// Returns whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

impl Vm {
    /// Runs `scripts/vm-kernel.sh` (which installs qemu and a static busybox when missing
    /// and root, and fetches the kernel once per version) and checks what it prepared.
    ///
    /// # Errors
    /// Fails, saying what is missing, when qemu or busybox is not installed or the script
    /// fails.
    pub fn prepare() -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm-kernel.sh");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        ensure!(
            crate::has_tool(QEMU),
            "{QEMU} is not installed (apt-get install qemu-system-x86)"
        );
        ensure!(
            Path::new(BUSYBOX).is_file(),
            "{BUSYBOX} is missing (apt-get install busybox-static)"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let root = PathBuf::from(
            stdout
                .lines()
                .last()
                .context("vm-kernel.sh printed no directory")?
                .trim(),
        );
        let modules = root.join("lib/modules");
        let release = std::fs::read_dir(&modules)
            .with_context(|| format!("failed to list {}", modules.display()))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .next()
            .with_context(|| format!("no kernel release under {}", modules.display()))?;
        ensure!(
            root.join("boot")
                .join(format!("vmlinuz-{release}"))
                .is_file(),
            "no kernel image for {release} in {}",
            root.display()
        );
        Ok(Self { root, release })
    }

    /// Returns the guest kernel's release.
    pub fn release(&self) -> &str {
        &self.release
    }

    fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// Boots the guest, runs `program` with `args` and the environment `env` (plus `PATH`,
    /// `HOME=/tmp` and `ZTGW_VM_GUEST=1`) inside it as root, and powers it off. The whole run
    /// is bounded by `timeout`: qemu is killed when it passes.
    ///
    /// # Errors
    /// Fails when the initramfs cannot be built or qemu cannot start. A program that fails or
    /// a guest that hangs is not an error: see [`VmRun::exit_code`] and [`VmRun::log`].
    pub fn run(
        &self,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<VmRun> {
        let scratch = tempfile::Builder::new()
            .prefix("ztgw-vm-")
            .tempdir()
            .context("failed to create the VM's scratch directory")?;
        let initrd = scratch.path().join("initrd.cpio");
        std::fs::write(&initrd, self.initramfs(program, args, env)?)
            .context("failed to write the initramfs")?;
        let kernel = self
            .root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release));
        let mut child = Command::new(QEMU)
            .args(["-accel", "tcg", "-cpu", "max", "-machine", "q35"])
            .args(["-m", &MEMORY_MIB.to_string(), "-smp", &CPUS.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args([
                "-append",
                "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=3 tsc=reliable",
            ])
            .args([
                "-virtfs",
                "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {QEMU}"))?;
        let started = now();
        let log = Arc::new(Mutex::new(Vec::<u8>::new()));
        let first_line = Arc::new(Mutex::new(None::<Duration>));
        let mut readers = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            let (log, first_line) = (Arc::clone(&log), Arc::clone(&first_line));
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let Some(chunk) = buf.get(..n) else { break };
                    if let Ok(mut log) = log.lock() {
                        log.extend_from_slice(chunk);
                        if let Ok(mut first) = first_line.lock()
                            && first.is_none()
                            && log.windows(INIT_BANNER.len()).any(|w| w == INIT_BANNER)
                        {
                            *first = Some(now().saturating_duration_since(started));
                        }
                    }
                }
            }));
        }
        if let Some(mut stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            readers.push(std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = stderr.read_to_end(&mut text);
                if !text.is_empty()
                    && let Ok(mut log) = log.lock()
                {
                    log.extend_from_slice(b"\n--- qemu stderr ---\n");
                    log.extend_from_slice(&text);
                }
            }));
        }
        let exited = crate::eventually(timeout, || match child.try_wait()? {
            Some(_) => Ok(()),
            None => bail!("qemu still running"),
        });
        let timed_out = exited.is_err();
        if timed_out {
            let _ = child.kill();
            let _ = child.wait();
        }
        let elapsed = now().saturating_duration_since(started);
        for reader in readers {
            let _ = reader.join();
        }
        let mut log = log
            .lock()
            .map(|log| String::from_utf8_lossy(&log).into_owned())
            .unwrap_or_default();
        if timed_out {
            let _ = write!(log, "\n--- qemu killed after {timeout:?} ---\n");
        }
        let exit_code = log
            .lines()
            .filter_map(|line| line.trim().strip_prefix(EXIT_MARKER)?.parse().ok())
            .next_back();
        let boot = first_line.lock().ok().and_then(|first| *first);
        Ok(VmRun {
            exit_code: if timed_out { None } else { exit_code },
            log,
            elapsed,
            boot,
        })
    }

    /// Builds the initramfs: busybox, the modules that mount the host's filesystem, and an
    /// init that runs `program` in it.
    fn initramfs(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Vec<u8>> {
        let modules = self.modules_dir();
        let dep_text = std::fs::read_to_string(modules.join("modules.dep"))
            .context("failed to read modules.dep")?;
        let order = load_order(&dep_text, &BOOT_MODULES)?;
        let mut cpio = Cpio::default();
        for dir in [
            "bin", "sbin", "dev", "proc", "sys", "mods", "root", "lib", "tmp",
        ] {
            cpio.dir(dir);
        }
        cpio.dir(&format!("lib/modules/{}", self.release));
        let busybox = std::fs::read(BUSYBOX).context("failed to read busybox")?;
        cpio.file("bin/busybox", 0o755, &busybox);
        cpio.symlink("bin/sh", "busybox");
        cpio.symlink("sbin/modprobe", "../bin/busybox");
        let mut insmods = String::new();
        for (i, rel) in order.iter().enumerate() {
            let data = std::fs::read(modules.join(rel))
                .with_context(|| format!("failed to read module {rel}"))?;
            let name = format!("mods/{i:02}.ko");
            cpio.file(&name, 0o644, &data);
            let _ = writeln!(insmods, "insmod /{name} || fail \"insmod {rel}\"");
        }
        let script = init_script(
            &insmods,
            &self.root.join("lib/modules").to_string_lossy(),
            program,
            args,
            env,
        );
        cpio.file("init", 0o755, script.as_bytes());
        Ok(cpio.finish())
    }
}

/// Reads the monotonic clock, to report how long the guest took to boot and run.
#[allow(
    clippy::disallowed_methods,
    reason = "the VM harness reports boot and run times (never asserted)"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// What the init prints first, once the kernel has started it.
const INIT_BANNER: &[u8] = b"ztgw-vm: init";

fn init_script(
    insmods: &str,
    host_modules: &str,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut command =
        format!("env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp {VM_GUEST_VAR}=1");
    for (key, value) in env {
        let _ = write!(command, " {}", shell_quote(&format!("{key}={value}")));
    }
    let _ = write!(command, " {}", shell_quote(&program.to_string_lossy()));
    for arg in args {
        let _ = write!(command, " {}", shell_quote(arg));
    }
    let test_modules = TEST_MODULES.join(" ");
    // A program that lives under one of the directories the guest covers with tmpfs (a
    // checkout in /tmp, as CI's is) would vanish under it: that directory's top entry is
    // bound back from a second view of the host's filesystem.
    let keep = scratch_entry(program).map_or_else(String::new, |entry| {
        let entry = shell_quote(&entry);
        format!(
            "mkdir -p /root{entry} 2>/dev/null; mount -o bind /host{entry} /root{entry} || fail \"bind the program's directory\"\n"
        )
    });
    format!(
        r#"#!/bin/sh
export PATH=/bin:/sbin
fail() {{ echo "ztgw-vm: $1"; echo "{EXIT_MARKER}125"; poweroff -f; }}
/bin/busybox --install -s /bin
echo "ztgw-vm: init"
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
{insmods}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /root || fail "mount hostroot"
mount -o bind /root{host_modules_q} /lib/modules || fail "bind the kernel's modules"
echo /sbin/modprobe > /proc/sys/kernel/modprobe
for m in {test_modules}; do modprobe "$m" || fail "modprobe $m"; done
mkdir -p /host
mount -o bind /root /host || fail "a second view of hostroot"
for d in tmp run var/tmp; do mount -t tmpfs -o mode=1777 tmpfs /root/$d || fail "tmpfs /$d"; done
{keep}mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts devpts /root/dev/pts
mount -t tmpfs tmpfs /root/dev/shm
ip link set lo up
echo "ztgw-vm: running"
chroot /root /bin/sh -c 'cd /tmp && exec "$@"' sh {command}
rc=$?
echo
echo "{EXIT_MARKER}$rc"
sync
poweroff -f
"#,
        host_modules_q = shell_quote(host_modules),
    )
}

/// The directories the guest covers with tmpfs.
const SCRATCH: [&str; 3] = ["/tmp", "/run", "/var/tmp"];

/// Returns the entry directly below a scratch directory that holds `program` (e.g.
/// `/tmp/tmp.abc` for `/tmp/tmp.abc/main/target/debug/x`), if it lies in one.
fn scratch_entry(program: &Path) -> Option<String> {
    SCRATCH.iter().find_map(|dir| {
        let rest = program.strip_prefix(dir).ok()?;
        let first = rest.components().next()?;
        Some(Path::new(dir).join(first).to_string_lossy().into_owned())
    })
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Returns the module files (relative to the modules directory) to load, dependencies first,
/// for `wanted` module names, from a `modules.dep` text.
fn load_order(dep_text: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let mut deps = std::collections::HashMap::<String, Vec<String>>::new();
    let mut by_name = std::collections::HashMap::<String, String>::new();
    for line in dep_text.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        let name = module_name(module);
        by_name.insert(name, module.to_owned());
        deps.insert(
            module.to_owned(),
            rest.split_whitespace().map(str::to_owned).collect(),
        );
    }
    let mut order = Vec::new();
    for name in wanted {
        let module = by_name
            .get(&name.replace('-', "_"))
            .with_context(|| format!("module {name} is not in modules.dep"))?;
        visit(module, &deps, &mut order, 0)?;
    }
    Ok(order)
}

fn visit(
    module: &str,
    deps: &std::collections::HashMap<String, Vec<String>>,
    order: &mut Vec<String>,
    depth: usize,
) -> Result<()> {
    ensure!(depth < 64, "module dependencies too deep at {module}");
    if order.iter().any(|m| m == module) {
        return Ok(());
    }
    for dep in deps.get(module).map(Vec::as_slice).unwrap_or_default() {
        visit(dep, deps, order, depth + 1)?;
    }
    order.push(module.to_owned());
    Ok(())
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// A `newc` cpio archive, as the kernel unpacks an initramfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let name_len = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let header = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{len:08x}{:08x}{:08x}{:08x}{:08x}{name_len:08x}{:08x}",
            self.ino, 0, 0, 1, 0, 0, 0, 0, 0, 0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        let mut path = String::new();
        for part in name.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            self.entry(&path, 0o040_755, &[]);
        }
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120_777, target.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_under_a_scratch_directory_is_bound_back_into_the_guest() {
        assert_eq!(
            scratch_entry(Path::new("/tmp/tmp.abc/main/target/debug/deps/x")).as_deref(),
            Some("/tmp/tmp.abc")
        );
        assert_eq!(
            scratch_entry(Path::new("/var/tmp/ci/x")).as_deref(),
            Some("/var/tmp/ci")
        );
        assert_eq!(scratch_entry(Path::new("/work/main/target/debug/x")), None);
        assert_eq!(scratch_entry(Path::new("/tmpx/y")), None);
        let script = init_script("", "/m", Path::new("/tmp/ci/main/x"), &[], &[]);
        let tmpfs = script.find("tmpfs /root/$d").expect("tmpfs");
        let bind = script
            .find("mount -o bind /host'/tmp/ci' /root'/tmp/ci'")
            .expect("bind");
        assert!(bind > tmpfs, "{script}");
        let plain = init_script("", "/m", Path::new("/work/x"), &[], &[]);
        assert!(!plain.contains("mount -o bind /host'"), "{plain}");
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let dep = "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n\
                   kernel/net/9p/9pnet.ko:\n\
                   kernel/fs/netfs/netfs.ko:\n\
                   kernel/net/9p/9pnet_virtio.ko: kernel/drivers/virtio/virtio.ko kernel/net/9p/9pnet.ko\n\
                   kernel/drivers/virtio/virtio.ko:\n";
        let order = load_order(dep, &["9pnet_virtio", "9p"]).expect("order");
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio.ko",
                "kernel/net/9p/9pnet.ko",
                "kernel/net/9p/9pnet_virtio.ko",
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/9p/9p.ko",
            ]
        );
        assert!(load_order(dep, &["absent"]).is_err());
    }

    #[test]
    fn the_init_quotes_what_it_runs() {
        let script = init_script("", "/m", Path::new("/bin/x"), &["it's"], &[("A", "b c")]);
        assert!(script.contains(r"'/bin/x' 'it'\''s'"), "{script}");
        assert!(script.contains("'A=b c'"), "{script}");
    }
}
