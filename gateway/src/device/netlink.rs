//! Route netlink for the WireGuard interface: link state, MTU, address, and one route per
//! allowed IP. Requests are idempotent: an address that exists already is not an error, nor
//! is a route that is already gone.
//!
//! Routes are only ever created, never replaced: a route to the same destination that the
//! gateway did not install (through another interface, or one the kernel refuses as existing)
//! is left alone and the peer's route is refused. Only routes this process installed are
//! removed, so removing a peer never takes away a route someone else made.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::Error;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;

/// A netlink handle bound to the network namespace of the process that opened it.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    /// The routes via the interface that this process installed: the only ones it removes.
    installed: Arc<Mutex<BTreeSet<IpNet>>>,
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
        Ok(Self {
            handle,
            installed: Arc::default(),
        })
    }

    fn installed(&self) -> MutexGuard<'_, BTreeSet<IpNet>> {
        // The set is only read and written whole between awaits; a poisoned lock holds a
        // consistent set.
        self.installed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns the destinations of the main table's routes that do not go out through the
    /// interface `index`: routes the gateway must neither replace nor shadow.
    async fn foreign_routes(&self, index: u32) -> Result<BTreeSet<IpNet>, rtnetlink::Error> {
        let mut foreign = BTreeSet::new();
        let dumps = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for message in dumps {
            let mut routes = self.handle.route().get(message).execute();
            while let Some(route) = routes.try_next().await? {
                let mut table = u32::from(route.header.table);
                let mut oif = None;
                let mut destination = None;
                for attribute in &route.attributes {
                    match attribute {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                            destination = Some(IpAddr::V4(*a));
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                            destination = Some(IpAddr::V6(*a));
                        }
                        _ => {}
                    }
                }
                if table != u32::from(RouteHeader::RT_TABLE_MAIN) || oif == Some(index) {
                    continue;
                }
                let unspecified = match route.header.address_family {
                    rtnetlink::packet_route::AddressFamily::Inet6 => {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    }
                    _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                };
                let destination = destination.unwrap_or(unspecified);
                if let Ok(net) = IpNet::new(destination, route.header.destination_prefix_length) {
                    foreign.insert(net.trunc());
                }
            }
        }
        Ok(foreign)
    }

    /// Returns the interface index, or `None` if no such link exists.
    ///
    /// # Errors
    /// Netlink failures other than "no such device".
    pub async fn index(&self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.link_facts(name).await?.map(|facts| facts.index))
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
            Op::UpsertPeer(config) | Op::ReplaceKey { config, .. } => &config.allowed_ips,
        };
        self.sync_routes(name, index, before, after).await
    }

    /// Makes the routes via the interface go from `previous` to `next`: stale routes this
    /// process installed are removed, missing ones created. A destination that already has a
    /// route the gateway did not install is left as it is and reported.
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
            if !self.installed().contains(net) {
                continue;
            }
            let request = self.handle.route().del(route(*net, index)).execute().await;
            match request {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(ESRCH | ENOENT)) => {}
                Err(e) => {
                    first_error.get_or_insert(failed(name, &format!("delete route {net}"), e));
                    continue;
                }
            }
            self.installed().remove(net);
        }
        let missing: Vec<IpNet> = {
            let installed = self.installed();
            next.iter()
                .filter(|n| !installed.contains(n))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return first_error.map_or(Ok(()), Err);
        }
        let foreign = match self.foreign_routes(index).await {
            Ok(foreign) => foreign,
            Err(e) => return Err(first_error.unwrap_or(failed(name, "list routes", e))),
        };
        for net in missing {
            let refused = || Error::Netlink {
                name: name.to_owned(),
                what: format!(
                    "add route {net} (a route to it exists that the gateway did not install; it is left in place)"
                ),
                source: std::io::Error::from_raw_os_error(EEXIST),
            };
            if foreign.contains(&net) {
                first_error.get_or_insert_with(refused);
                continue;
            }
            // Create only: never replace what is there.
            let request = self.handle.route().add(route(net, index)).execute().await;
            match request {
                Ok(()) => {
                    self.installed().insert(net);
                }
                Err(e) if errno(&e) == Some(EEXIST) => {
                    first_error.get_or_insert_with(refused);
                }
                Err(e) => {
                    first_error.get_or_insert(failed(name, &format!("add route {net}"), e));
                }
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
