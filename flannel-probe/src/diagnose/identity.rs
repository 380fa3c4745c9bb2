//! Who is a VTEP peer (CONTRACT.md, "Identity"): an address the FDB names,
//! or, while the node has no FDB (overlay missing or down), an underlay
//! sender of well-formed VXLAN; never an address in the pod network. Every
//! other sender of VXLAN-shaped UDP to our port is an unknown source:
//! aggregated, never a peer row, never blamed as a node.
use std::{
    cell::OnceCell,
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use crate::{
    datapath::NotOurs,
    node::{NodeState, OverlayState},
    report::{PeerReport, UnknownSource, UnknownSources},
};

/// Sets with an entry per route or per FDB entry, so one per peer: at
/// 100 000 peers SipHash was most of building them.
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// How many unknown sources are listed by address; the rest are summed, so
/// that a flood of forged sources costs a fixed amount of report.
pub(super) const TOP_UNKNOWN: usize = 5;

/// The node's view of who may be a peer.
pub(super) struct Identity<'a> {
    /// Read again for the known-MAC set, the first time a row needs it.
    node: &'a NodeState,
    /// The overlay is up, so the FDB is what names peers.
    fdb_exists: bool,
    /// Pod networks of the overlay's family, by (IPv6, prefix length):
    /// their masked addresses. A lookup per prefix length in use (one or
    /// two) rather than a scan of every route: with a route per node the
    /// scan made the diagnosis quadratic (10 000 peers: 0.4 s).
    pod_nets: HashMap<(bool, u8), FastSet<u128>>,
    /// VTEP MACs the node knows (FDB and overlay neighbours): traffic
    /// carrying one of them from an address the FDB does not name is a
    /// peer whose entry is stale or missing, which the FDB rules report.
    /// Built at the first row that needs it: while every sender is in the
    /// FDB, none does (at 100 000 peers it was a 200 000-entry set).
    known_macs: OnceCell<FastSet<[u8; 6]>>,
}

impl<'a> Identity<'a> {
    pub(super) fn new(node: &'a NodeState) -> Self {
        let overlay = node.overlay.as_ref().map(|o| o.ifindex);
        // Every route via the overlay leads into the pod network (another
        // node's pod subnet); nothing else is routed through it.
        let mut pod_nets: HashMap<(bool, u8), FastSet<u128>> = HashMap::new();
        for (v6, len, net) in node
            .routes
            .iter()
            .filter(|rt| overlay.is_some() && rt.oif == overlay)
            // Of the overlay's family: flannel.1 routes IPv4 pod subnets,
            // flannel-v6.1 IPv6 ones.
            // A default route via the overlay would make everything a pod.
            .filter(|rt| rt.prefix_len != 0)
            .map(|rt| masked(rt.dst, rt.prefix_len))
        {
            pod_nets.entry((v6, len)).or_default().insert(net);
        }
        Self {
            fdb_exists: node.overlay_state() == OverlayState::Up,
            pod_nets,
            known_macs: OnceCell::new(),
            node,
        }
    }

    fn known_macs(&self) -> &FastSet<[u8; 6]> {
        self.known_macs.get_or_init(|| {
            let node = self.node;
            node.fdb
                .iter()
                .map(|e| e.mac)
                .chain(node.neighbours.iter().filter_map(|n| n.mac))
                .filter(|m| *m != [0; 6])
                .collect()
        })
    }

    pub(super) fn in_pod_network(&self, ip: IpAddr) -> bool {
        self.pod_nets.iter().any(|(&(v6, len), nets)| {
            let (family, _, a) = masked(ip, len);
            family == v6 && nets.contains(&a)
        })
    }

    /// Why `p` is not a peer, or `None` when it is one.
    pub(super) fn not_a_peer(&self, p: &PeerReport) -> Option<&'static str> {
        let ip = p.ip()?;
        if self.in_pod_network(ip) {
            return Some("pod network");
        }
        if p.in_fdb {
            return None;
        }
        if !self.fdb_exists {
            let well_formed = p.traffic.rx_encap_packets > p.rx_malformed;
            return (!(well_formed || p.traffic.tx_encap_packets > 0))
                .then_some("no well-formed VXLAN");
        }
        if p.rx_vtep().is_some_and(|m| self.known_macs().contains(&m)) {
            return None;
        }
        Some("not in the FDB")
    }
}

/// `ip` with all but its top `len` bits cleared, as (IPv6, the length
/// clamped to the family's, the bits left-aligned in a u128).
fn masked(ip: IpAddr, len: u8) -> (bool, u8, u128) {
    let (v6, bits, a) = match ip {
        IpAddr::V4(a) => (false, 32, u128::from(u32::from(a)) << 96),
        IpAddr::V6(a) => (true, 128, u128::from(a)),
    };
    let len = len.min(bits);
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    (v6, len, a & m)
}

/// Whether `ip` is in `net`/`len` (of the same family; never across).
#[cfg(test)]
fn prefix_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    masked(net, len) == masked(ip, len)
}

/// Splits `peers` into peers and unknown sources (the top few by packets
/// listed, the rest summed).
pub(super) fn split(
    id: &Identity,
    mut peers: Vec<PeerReport>,
    not_ours: NotOurs,
) -> (Vec<PeerReport>, UnknownSources, HashSet<IpAddr>) {
    let mut excluded = HashSet::new();
    let mut unknown: Vec<UnknownSource> = Vec::new();
    // Taken out in place: the peers (nearly all rows) are not moved, which
    // at 100 000 rows of some 400 bytes was a sixth of the diagnosis.
    let mut whys = Vec::new();
    let out: Vec<PeerReport> = peers
        .extract_if(.., |p| {
            let why = id.not_a_peer(p);
            whys.extend(why);
            why.is_some()
        })
        .collect();
    for (p, why) in out.into_iter().zip(whys) {
        excluded.extend(p.ip());
        // Rows with nothing in the window (an address only met before) are
        // not worth a line.
        let packets =
            p.traffic.rx_encap_packets + p.rx_other_port + p.traffic.icmp_port_unreachable;
        if packets + p.traffic.tx_encap_packets > 0 {
            unknown.push(UnknownSource {
                source: p.peer,
                why,
                rx_packets: packets,
                rx_other_vni: p.rx_other_vni,
                rx_malformed: p.rx_malformed,
                icmp_port_unreachable: p.traffic.icmp_port_unreachable,
                tx_packets: p.traffic.tx_encap_packets,
            });
        }
    }
    unknown.sort_by(|a, b| {
        (b.rx_packets + b.tx_packets)
            .cmp(&(a.rx_packets + a.tx_packets))
            .then_with(|| a.source.cmp(&b.source))
    });
    let rest = unknown.split_off(unknown.len().min(TOP_UNKNOWN));
    let sources = UnknownSources {
        other_sources: rest.len() as u64,
        other_packets: rest.iter().map(|u| u.rx_packets + u.tx_packets).sum(),
        sources: unknown,
        rx_not_local: not_ours.rx_not_local,
        icmp_not_ours: not_ours.icmp_not_ours,
        rx_dropped: 0,
    };
    (peers, sources, excluded)
}

#[cfg(test)]
mod tests {
    use super::prefix_contains;

    #[test]
    fn prefixes_of_both_families() {
        let ip = |s: &str| s.parse().expect("address");
        assert!(prefix_contains(ip("10.42.1.0"), 24, ip("10.42.1.54")));
        assert!(!prefix_contains(ip("10.42.1.0"), 24, ip("10.42.2.54")));
        assert!(prefix_contains(ip("10.42.0.0"), 16, ip("10.42.200.1")));
        assert!(prefix_contains(ip("10.42.1.7"), 32, ip("10.42.1.7")));
        assert!(!prefix_contains(ip("10.42.1.7"), 32, ip("10.42.1.8")));
        assert!(prefix_contains(
            ip("2001:cafe:42:1::"),
            64,
            ip("2001:cafe:42:1::54")
        ));
        assert!(!prefix_contains(
            ip("2001:cafe:42:1::"),
            64,
            ip("2001:cafe:42:2::54")
        ));
        assert!(prefix_contains(
            ip("2001:cafe:42::"),
            56,
            ip("2001:cafe:42:ff::1")
        ));
        assert!(prefix_contains(ip("fd00::1"), 128, ip("fd00::1")));
        assert!(!prefix_contains(ip("fd00::1"), 128, ip("fd00::2")));
        // Never across families, even where the bits would match.
        assert!(!prefix_contains(
            ip("10.42.1.0"),
            24,
            ip("::ffff:10.42.1.54")
        ));
        assert!(!prefix_contains(ip("::"), 96, ip("10.0.0.1")));
        // A prefix longer than the family is the whole address.
        assert!(prefix_contains(ip("10.0.0.1"), 40, ip("10.0.0.1")));
    }
}
