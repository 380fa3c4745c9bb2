//! Who is a VTEP peer (CONTRACT.md, "Identity"): an address the FDB names,
//! or, while the node has no FDB (overlay missing or down), an underlay
//! sender of well-formed VXLAN; never an address in the pod network. Every
//! other sender of VXLAN-shaped UDP to our port is an unknown source:
//! aggregated, never a peer row, never blamed as a node.
use std::{collections::HashSet, net::IpAddr};

use crate::{
    datapath::NotOurs,
    node::{NodeState, OverlayState},
    report::{PeerReport, UnknownSource, UnknownSources},
};

/// How many unknown sources are listed by address; the rest are summed, so
/// that a flood of forged sources costs a fixed amount of report.
pub(super) const TOP_UNKNOWN: usize = 5;

/// The node's view of who may be a peer.
pub(super) struct Identity {
    /// The overlay is up, so the FDB is what names peers.
    fdb_exists: bool,
    /// Pod networks: (network, mask), host byte order.
    pod_nets: Vec<(u32, u32)>,
    /// VTEP MACs the node knows (FDB and overlay neighbours): traffic
    /// carrying one of them from an address the FDB does not name is a
    /// peer whose entry is stale or missing, which the FDB rules report.
    known_macs: HashSet<[u8; 6]>,
}

impl Identity {
    pub(super) fn new(node: &NodeState) -> Self {
        let overlay = node.overlay.as_ref().map(|o| o.ifindex);
        // Every route via the overlay leads into the pod network (another
        // node's pod subnet); nothing else is routed through it.
        let pod_nets = node
            .routes
            .iter()
            .filter(|rt| overlay.is_some() && rt.oif == overlay)
            // The Snapshot's peers are IPv4: so is the pod network they
            // are checked against (an IPv6 overlay's routes are IPv6).
            .filter_map(|rt| {
                let mask = prefix_mask(rt.prefix_len);
                Some((u32::from(crate::node::v4(rt.dst)?) & mask, mask))
            })
            // A default route via the overlay would make everything a pod.
            .filter(|&(_, mask)| mask != 0)
            .collect();
        Self {
            fdb_exists: node.overlay_state() == OverlayState::Up,
            pod_nets,
            known_macs: node
                .fdb
                .iter()
                .map(|e| e.mac)
                .chain(node.neighbours.iter().filter_map(|n| n.mac))
                .filter(|m| *m != [0; 6])
                .collect(),
        }
    }

    /// IPv4 pod networks only, until the node side knows IPv6 ones.
    pub(super) fn in_pod_network(&self, ip: IpAddr) -> bool {
        let IpAddr::V4(ip) = ip else { return false };
        let a = u32::from(ip);
        self.pod_nets.iter().any(|&(net, mask)| a & mask == net)
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
        if p.rx_vtep().is_some_and(|m| self.known_macs.contains(&m)) {
            return None;
        }
        Some("not in the FDB")
    }
}

fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        1..=31 => u32::MAX << (32 - u32::from(len)),
        _ => u32::MAX,
    }
}

/// Splits `peers` into peers and unknown sources (the top few by packets
/// listed, the rest summed).
pub(super) fn split(
    id: &Identity,
    peers: Vec<PeerReport>,
    not_ours: NotOurs,
) -> (Vec<PeerReport>, UnknownSources, HashSet<IpAddr>) {
    let mut kept = Vec::with_capacity(peers.len());
    let mut excluded = HashSet::new();
    let mut unknown: Vec<UnknownSource> = Vec::new();
    for p in peers {
        match id.not_a_peer(&p) {
            None => kept.push(p),
            Some(why) => {
                excluded.extend(p.ip());
                // Rows with nothing in the window (an address only met
                // before) are not worth a line.
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
    (kept, sources, excluded)
}
