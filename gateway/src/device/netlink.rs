//! Route netlink for the WireGuard interface: link state, MTU, address, and one route per
//! allowed IP. Requests are idempotent: an address or route that exists already is not an
//! error, nor is a route that is already gone.

use std::collections::BTreeSet;

use futures::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::Error;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;

/// A netlink handle bound to the network namespace of the process that opened it.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

const EEXIST: i32 = 17;
const ESRCH: i32 = 3;
const ENOENT: i32 = 2;
const ENODEV: i32 = 19;

impl Netlink {
    /// Opens a netlink connection (its task runs on the current tokio runtime).
    ///
    /// # Errors
    /// When the netlink socket cannot be opened.
    pub fn open() -> std::io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Returns the interface index, or `None` if no such link exists.
    ///
    /// # Errors
    /// Netlink failures other than "no such device".
    pub async fn index(&self, name: &str) -> Result<Option<u32>, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(link.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(failed(name, "look up link", e)),
        }
    }

    /// Sets the MTU, assigns the address and brings the link up.
    ///
    /// # Errors
    /// When any step is refused.
    pub async fn configure(
        &self,
        name: &str,
        index: u32,
        mtu: u32,
        address: IpNet,
    ) -> Result<(), Error> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(|e| failed(name, &format!("set mtu {mtu}"), e))?;
        match self
            .handle
            .address()
            .add(index, address.addr(), address.prefix_len())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(failed(name, &format!("add address {address}"), e)),
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| failed(name, "set link up", e))
    }

    /// Deletes a link by index; a link that is already gone is fine.
    ///
    /// # Errors
    /// Other netlink failures.
    pub async fn delete_link(&self, name: &str, index: u32) -> Result<(), Error> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(()),
            Err(e) => Err(failed(name, "delete link", e)),
        }
    }

    /// Moves the routes of the peer that `op` changes from its `previous` allowed IPs to the
    /// ones `op` gives it (none for a removal).
    ///
    /// # Errors
    /// See [`Netlink::sync_routes`].
    pub async fn route_peer(
        &self,
        name: &str,
        index: u32,
        op: &Op,
        previous: Option<&PeerConfig>,
    ) -> Result<(), Error> {
        static NONE: BTreeSet<IpNet> = BTreeSet::new();
        let before = previous.map_or(&NONE, |p| &p.allowed_ips);
        let after = match op {
            Op::RemovePeer(_) => &NONE,
            Op::UpsertPeer(config) => &config.allowed_ips,
        };
        self.sync_routes(name, index, before, after).await
    }

    /// Makes the routes via the interface go from `previous` to `next`: stale routes are
    /// removed, missing ones added (replace semantics).
    ///
    /// # Errors
    /// The first refused request; the others are still attempted.
    pub async fn sync_routes(
        &self,
        name: &str,
        index: u32,
        previous: &BTreeSet<IpNet>,
        next: &BTreeSet<IpNet>,
    ) -> Result<(), Error> {
        let mut first_error = None;
        for net in previous.difference(next) {
            let request = self.handle.route().del(route(*net, index)).execute().await;
            if let Err(e) = request
                && !matches!(errno(&e), Some(ESRCH | ENOENT))
            {
                first_error.get_or_insert(failed(name, &format!("delete route {net}"), e));
            }
        }
        for net in next.difference(previous).chain(next.intersection(previous)) {
            let request = self
                .handle
                .route()
                .add(route(*net, index))
                .replace()
                .execute()
                .await;
            if let Err(e) = request {
                first_error.get_or_insert(failed(name, &format!("add route {net}"), e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The kind of an existing link, as far as the ownership check cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A TUN device (what the userspace backend creates).
    Tun,
    /// A kernel WireGuard interface (what the kernel backend creates).
    Wireguard,
    /// Anything else, or a link that reports no kind.
    Other,
}

/// What the start-up check learns about an existing link of the configured name. The alias
/// is set by whoever made the link: it is compared, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkFacts {
    /// Interface index.
    pub index: u32,
    /// The link's kind.
    pub kind: LinkKind,
    /// Its `ifalias`, if it has one.
    pub alias: Option<String>,
}

impl std::fmt::Debug for LinkFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkFacts")
            .field("index", &self.index)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Netlink {
    /// Returns the index, kind and alias of the link `name`, or `None` if there is none.
    ///
    /// # Errors
    /// Netlink failures other than "no such device".
    pub async fn link_facts(&self, name: &str) -> Result<Option<LinkFacts>, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(facts(&link))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(failed(name, "look up link", e)),
        }
    }

    /// Sets the link's `ifalias` (the gateway's ownership marker).
    ///
    /// # Errors
    /// When the request is refused.
    pub async fn set_alias(&self, name: &str, index: u32, alias: &str) -> Result<(), Error> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).alias(alias).build())
            .execute()
            .await
            .map_err(|e| failed(name, "set the ownership marker", e))
    }
}

fn facts(link: &LinkMessage) -> LinkFacts {
    let mut kind = LinkKind::Other;
    let mut alias = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfAlias(value) => alias = Some(value.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(found) = info {
                        kind = match found {
                            InfoKind::Tun => LinkKind::Tun,
                            InfoKind::Wireguard => LinkKind::Wireguard,
                            _ => LinkKind::Other,
                        };
                    }
                }
            }
            _ => {}
        }
    }
    LinkFacts {
        index: link.header.index,
        kind,
        alias,
    }
}

fn route(net: IpNet, index: u32) -> RouteMessage {
    match net {
        IpNet::V4(v4) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(v4.network(), v4.prefix_len())
            .output_interface(index)
            .build(),
        IpNet::V6(v6) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(v6.network(), v6.prefix_len())
            .output_interface(index)
            .build(),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io().raw_os_error(),
        _ => None,
    }
}

fn failed(name: &str, what: &str, e: rtnetlink::Error) -> Error {
    let source = match &e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    Error::Netlink {
        name: name.to_owned(),
        what: what.to_owned(),
        source,
    }
}
