use std::os::unix::fs::PermissionsExt as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::*;

/// An endless line without a newline: counts what was taken from it, and fails after 64 MiB
/// so a reader without a bound stops at last.
struct Endless {
    taken: Arc<AtomicU64>,
}

const ENDLESS_CAP: u64 = 64 * 1024 * 1024;

impl AsyncRead for Endless {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.taken.load(Ordering::Relaxed) >= ENDLESS_CAP {
            return Poll::Ready(Err(std::io::Error::other("endless reader gave up")));
        }
        let n = buf.remaining().min(8192);
        buf.put_slice(&vec![b'a'; n]);
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn an_endless_line_is_cut_off_at_the_bound() {
    let taken = Arc::new(AtomicU64::new(0));
    let mut reader = Endless {
        taken: taken.clone(),
    };
    let error = RequestBuffer::default()
        .next_request(&mut reader)
        .await
        .expect_err("too large");
    assert_eq!(error.to_string(), "request too large");
    let taken = taken.load(Ordering::Relaxed);
    assert!(
        taken <= (MAX_REQUEST_BYTES + 16 * 1024) as u64,
        "read {taken} bytes of one line"
    );
}

#[tokio::test]
async fn many_lines_are_cut_off_at_the_bound_too() {
    let request = format!("set=1\n{}", "allowed_ip=10.0.0.0/8\n".repeat(100_000));
    let mut reader = request.as_bytes();
    assert!(
        RequestBuffer::default()
            .next_request(&mut reader)
            .await
            .is_err()
    );
    let mut reader = &b"get=1\n\nset=1\nlisten_port=1\n\nget=1\n"[..];
    let mut buffer = RequestBuffer::default();
    let mut next = async || {
        buffer
            .next_request(&mut reader)
            .await
            .expect("reads")
            .map(|r| String::from_utf8(r.to_vec()).expect("text"))
    };
    assert_eq!(next().await.as_deref(), Some("get=1\n"));
    assert_eq!(next().await.as_deref(), Some("set=1\nlisten_port=1\n\n"));
    assert_eq!(next().await.as_deref(), Some("get=1\n"));
    assert_eq!(next().await, None);
}

/// Hands out its bytes a few at a time.
struct Trickle<'a>(&'a [u8]);

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.0.len().min(7).min(buf.remaining());
        buf.put_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_request_with_keys_stays_in_wiped_buffers_and_is_answered_in_process() {
    // A request much larger than the first buffer, with the private key first: the buffer
    // grows by its own copy-and-wipe moves, never by reallocating in place.
    let key = "1".repeat(64);
    let mut request = format!("set=1\nprivate_key={key}\n");
    for i in 0..300u32 {
        let psk = "2".repeat(64);
        request.push_str(&format!(
            "public_key={:064x}\npreshared_key={psk}\nallowed_ip=10.{}.{}.0/24\n",
            i + 1,
            i / 256,
            i % 256
        ));
    }
    request.push('\n');
    let mut buffer = RequestBuffer::default();
    let mut reader = Trickle(request.as_bytes());
    let read: Zeroizing<Vec<u8>> = buffer
        .next_request(&mut reader)
        .await
        .expect("reads")
        .expect("a request");
    assert!(buffer.grown > 1, "grew {} times", buffer.grown);
    assert_eq!(read.as_slice(), request.as_bytes());

    let device = DeviceHandle::new(
        Arc::new(std::sync::Mutex::new(
            crate::device::native::core::Core::new(),
        )),
        51820,
    );
    let answer: Zeroizing<String> = answer(read, device.clone()).await;
    assert_eq!(answer.as_str(), "errno=0\n\n");
    assert_eq!(device.report().device.peers.len(), 300);
    let get: Zeroizing<String> = answer_text("get=1\n", &device).await;
    assert!(get.starts_with(&format!("private_key={key}\nlisten_port=51820\n")));
}

async fn answer_text(text: &str, device: &DeviceHandle) -> Zeroizing<String> {
    answer(Zeroizing::new(text.as_bytes().to_vec()), device.clone()).await
}

#[tokio::test]
async fn the_socket_never_appears_with_a_looser_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wg.sock");
    let device = DeviceHandle::new(
        Arc::new(std::sync::Mutex::new(
            crate::device::native::core::Core::new(),
        )),
        51820,
    );
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            let mut loose = Vec::new();
            while !done.load(Ordering::Relaxed) {
                if let Ok(meta) = std::fs::symlink_metadata(&path) {
                    let mode = meta.permissions().mode() & 0o777;
                    if mode != 0o600 {
                        loose.push(mode);
                    }
                }
            }
            loose
        })
    };
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    for _ in 0..300 {
        let server = Server::start(&path, device.clone()).expect("bind");
        let mode = std::fs::symlink_metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(server);
    }
    nix::sys::stat::umask(old);
    done.store(true, Ordering::Relaxed);
    let loose = watcher.join().expect("watcher");
    assert!(
        loose.is_empty(),
        "socket seen {} times with a looser mode, first {:o}",
        loose.len(),
        loose.first().copied().unwrap_or_default()
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bind_private_refuses_an_occupied_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wg.sock");
    std::fs::write(&path, "keep").expect("write");
    let error = bind_private(&path).expect_err("occupied");
    assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "keep");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}
