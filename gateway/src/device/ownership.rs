//! What start-up may clean up before it creates the interface.
//!
//! The gateway marks the link it creates with an `ifalias` ([`MARKER_USERSPACE`] or
//! [`MARKER_KERNEL`]). A link of the configured name left by an earlier run is deleted only
//! if it carries the marker of the configured backend and is of the kind that backend makes
//! (a TUN device, a kernel WireGuard interface); and only a socket nobody answers on is
//! removed from the UAPI socket path. Anything else (a `dummy`, an interface made by
//! `wg-quick`, `eth0`, a regular file, a directory, a symlink) is refused, and nothing is
//! touched: the checks all run before anything is removed.

use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use super::Error;
use super::netlink::{LinkFacts, LinkKind, Netlink};

/// The `ifalias` of an interface the userspace backend created.
pub const MARKER_USERSPACE: &str = "ztgw:userspace";
/// The `ifalias` of an interface the kernel backend created.
pub const MARKER_KERNEL: &str = "ztgw:kernel";

/// Which backend is starting: the kind of link it makes and the marker it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The kind of link the backend creates.
    pub kind: LinkKind,
    /// The `ifalias` the backend sets on it.
    pub marker: &'static str,
}

impl Owner {
    /// The userspace backend: a TUN device marked [`MARKER_USERSPACE`].
    pub const USERSPACE: Self = Self {
        kind: LinkKind::Tun,
        marker: MARKER_USERSPACE,
    };
    /// The kernel backend: a WireGuard link marked [`MARKER_KERNEL`].
    pub const KERNEL: Self = Self {
        kind: LinkKind::Wireguard,
        marker: MARKER_KERNEL,
    };
}

/// What to do about a link of the configured name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkVerdict {
    /// There is none.
    Absent,
    /// The gateway made it in an earlier run: delete the link with this index.
    Stale(u32),
    /// Someone else's: refuse to start.
    Foreign,
}

/// Decides about an existing link: only one of the owner's kind carrying its marker is ours.
pub fn link_verdict(link: Option<&LinkFacts>, owner: Owner) -> LinkVerdict {
    match link {
        None => LinkVerdict::Absent,
        Some(facts) if facts.kind == owner.kind && facts.alias.as_deref() == Some(owner.marker) => {
            LinkVerdict::Stale(facts.index)
        }
        Some(_) => LinkVerdict::Foreign,
    }
}

/// What lies at the UAPI socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Nothing.
    Absent,
    /// A socket (not followed through a symlink).
    Socket,
    /// Anything else: a regular file, a directory, a symlink, a device.
    Other,
}

/// What to do about the UAPI socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketVerdict {
    /// Nothing there.
    Absent,
    /// A socket nobody answers on: remove it.
    Stale,
    /// A socket a live process answers on: the interface is in use.
    Live,
    /// Not a socket: refuse to start.
    NotSocket,
}

/// Decides about the UAPI socket path; `live` is asked only for a socket.
pub fn socket_verdict(kind: PathKind, live: impl FnOnce() -> bool) -> SocketVerdict {
    match kind {
        PathKind::Absent => SocketVerdict::Absent,
        PathKind::Other => SocketVerdict::NotSocket,
        PathKind::Socket if live() => SocketVerdict::Live,
        PathKind::Socket => SocketVerdict::Stale,
    }
}

/// Returns what lies at `path`, without following a symlink.
///
/// # Errors
/// When the path cannot be inspected (other than "not found").
pub fn path_kind(path: &Path) -> std::io::Result<PathKind> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(PathKind::Socket),
        Ok(_) => Ok(PathKind::Other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PathKind::Absent),
        Err(e) => Err(e),
    }
}

/// Removes what an earlier run of the gateway left: the UAPI `socket` (userspace backend
/// only) if nobody answers on it, and the link `name` if it carries `owner`'s marker and
/// kind. Refuses, touching nothing, when either belongs to someone else.
///
/// # Errors
/// [`Error::InUse`], [`Error::NotSocket`], [`Error::Foreign`], and failures to inspect or
/// remove.
pub async fn clear_stale(
    netlink: &Netlink,
    name: &str,
    owner: Owner,
    socket: Option<&Path>,
) -> Result<(), Error> {
    let socket_verdict = match socket {
        None => SocketVerdict::Absent,
        Some(path) => {
            let kind = path_kind(path).map_err(|e| Error::Create {
                name: name.to_owned(),
                reason: format!(
                    "cannot inspect the UAPI socket path {}: {e}",
                    path.display()
                ),
            })?;
            socket_verdict(kind, || super::uapi_client::is_live(path))
        }
    };
    let shown = || socket.map(|p| p.display().to_string()).unwrap_or_default();
    match socket_verdict {
        SocketVerdict::Live => {
            return Err(Error::InUse {
                name: name.to_owned(),
                socket: shown(),
            });
        }
        SocketVerdict::NotSocket => {
            return Err(Error::NotSocket {
                name: name.to_owned(),
                socket: shown(),
            });
        }
        SocketVerdict::Absent | SocketVerdict::Stale => {}
    }
    let link = netlink.link_facts(name).await?;
    let link_verdict = link_verdict(link.as_ref(), owner);
    if link_verdict == LinkVerdict::Foreign {
        return Err(Error::Foreign {
            name: name.to_owned(),
        });
    }
    if let (SocketVerdict::Stale, Some(path)) = (socket_verdict, socket) {
        tracing::warn!(interface = %name, socket = %path.display(), "removing stale UAPI socket left by an earlier run");
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Create {
                    name: name.to_owned(),
                    reason: format!(
                        "cannot remove the stale UAPI socket {}: {e}",
                        path.display()
                    ),
                });
            }
        }
    }
    if let LinkVerdict::Stale(index) = link_verdict {
        tracing::warn!(interface = %name, "removing stale interface left by an earlier run");
        netlink.delete_link(name, index).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: LinkKind, alias: Option<&str>) -> LinkFacts {
        LinkFacts {
            index: 7,
            kind,
            alias: alias.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_link_of_our_kind_with_our_marker_is_stale() {
        let user = Owner::USERSPACE;
        let kernel = Owner::KERNEL;
        assert_eq!(link_verdict(None, user), LinkVerdict::Absent);
        let ours = link(LinkKind::Tun, Some(MARKER_USERSPACE));
        assert_eq!(link_verdict(Some(&ours), user), LinkVerdict::Stale(7));
        let ours = link(LinkKind::Wireguard, Some(MARKER_KERNEL));
        assert_eq!(link_verdict(Some(&ours), kernel), LinkVerdict::Stale(7));
        for (facts, owner) in [
            (link(LinkKind::Tun, None), user),
            (link(LinkKind::Other, Some(MARKER_USERSPACE)), user),
            (link(LinkKind::Wireguard, Some(MARKER_USERSPACE)), user),
            (link(LinkKind::Tun, Some("ztgw:userspace ")), user),
            (link(LinkKind::Tun, Some(MARKER_KERNEL)), user),
            (link(LinkKind::Wireguard, None), kernel),
            (link(LinkKind::Wireguard, Some("wg-quick")), kernel),
            (link(LinkKind::Tun, Some(MARKER_KERNEL)), kernel),
            (link(LinkKind::Other, Some(MARKER_KERNEL)), kernel),
        ] {
            assert_eq!(
                link_verdict(Some(&facts), owner),
                LinkVerdict::Foreign,
                "{facts:?} {owner:?}"
            );
        }
    }

    #[test]
    fn only_a_dead_socket_is_stale() {
        assert_eq!(
            socket_verdict(PathKind::Absent, || unreachable!()),
            SocketVerdict::Absent
        );
        assert_eq!(
            socket_verdict(PathKind::Other, || unreachable!()),
            SocketVerdict::NotSocket
        );
        assert_eq!(
            socket_verdict(PathKind::Socket, || true),
            SocketVerdict::Live
        );
        assert_eq!(
            socket_verdict(PathKind::Socket, || false),
            SocketVerdict::Stale
        );
    }

    #[test]
    fn path_kind_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let socket = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&socket, &link).expect("symlink");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");

        assert_eq!(path_kind(&socket).expect("socket"), PathKind::Socket);
        assert_eq!(path_kind(&file).expect("file"), PathKind::Other);
        assert_eq!(path_kind(&link).expect("symlink"), PathKind::Other);
        assert_eq!(path_kind(&sub).expect("dir"), PathKind::Other);
        assert_eq!(
            path_kind(&dir.path().join("none")).expect("none"),
            PathKind::Absent
        );
    }
}
