//! Allowed-IPs routing: longest-prefix match from an address to the value (a peer) that holds
//! the most specific prefix containing it.
//!
//! Prefixes are stored truncated (`10.1.2.3/16` is `10.1.0.0/16`) in a `BTreeMap`; a lookup
//! probes, from the longest prefix length in use down to the shortest, the one prefix of that
//! length that can contain the address. That is at most 33 (IPv4) or 129 (IPv6) map probes,
//! and in practice as many as there are distinct prefix lengths.
//!
//! Each value's prefixes are also kept with it, so listing or removing one peer's prefixes
//! costs what that peer holds, not a walk of the whole table.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

/// A longest-prefix-match table. Inserting a prefix that is already present replaces its
/// value, as a WireGuard device moves an allowed IP from one peer to another.
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    entries: BTreeMap<IpNet, T>,
    /// The prefixes of each value: the reverse of `entries`.
    by_value: BTreeMap<T, BTreeSet<IpNet>>,
    /// Prefix lengths in use, per family, for the probe order.
    lengths_v4: BTreeMap<u8, usize>,
    lengths_v6: BTreeMap<u8, usize>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            by_value: BTreeMap::new(),
            lengths_v4: BTreeMap::new(),
            lengths_v6: BTreeMap::new(),
        }
    }
}

impl<T: Clone + Ord> AllowedIps<T> {
    /// Returns an empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lengths(&mut self, net: &IpNet) -> &mut BTreeMap<u8, usize> {
        match net {
            IpNet::V4(_) => &mut self.lengths_v4,
            IpNet::V6(_) => &mut self.lengths_v6,
        }
    }

    /// Maps `net` (truncated to its prefix) to `value`; returns the value it replaced.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        let net = net.trunc();
        self.by_value.entry(value.clone()).or_default().insert(net);
        let old = self.entries.insert(net, value.clone());
        match &old {
            None => *self.lengths(&net).entry(net.prefix_len()).or_insert(0) += 1,
            Some(previous) if *previous != value => self.forget(previous, &net),
            Some(_) => {}
        }
        old
    }

    /// Drops `net` from the prefixes recorded for `value`.
    fn forget(&mut self, value: &T, net: &IpNet) {
        if let Some(nets) = self.by_value.get_mut(value) {
            nets.remove(net);
            if nets.is_empty() {
                self.by_value.remove(value);
            }
        }
    }

    /// Removes `net` (truncated); returns its value.
    pub fn remove(&mut self, net: IpNet) -> Option<T> {
        let net = net.trunc();
        let old = self.entries.remove(&net)?;
        self.forget(&old, &net);
        let lengths = self.lengths(&net);
        if let Some(count) = lengths.get_mut(&net.prefix_len()) {
            *count -= 1;
            if *count == 0 {
                lengths.remove(&net.prefix_len());
            }
        }
        Some(old)
    }

    /// Removes every prefix that maps to `value`.
    pub fn remove_value(&mut self, value: &T) {
        for net in self.by_value.remove(value).unwrap_or_default() {
            self.remove(net);
        }
    }

    /// Returns the prefixes that map to `value`, in order.
    pub fn nets_of(&self, value: &T) -> BTreeSet<IpNet> {
        self.by_value.get(value).cloned().unwrap_or_default()
    }

    /// Returns the value of the longest prefix that contains `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        let lengths = match addr {
            IpAddr::V4(_) => &self.lengths_v4,
            IpAddr::V6(_) => &self.lengths_v6,
        };
        lengths.keys().rev().find_map(|len| {
            let net = IpNet::new(addr, *len).ok()?.trunc();
            self.entries.get(&net)
        })
    }

    /// Returns the number of prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
