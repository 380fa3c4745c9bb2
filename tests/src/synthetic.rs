//! A big Flannel cluster without the nodes, for the agent benchmark
//! (`cargo xtask bench`): synthetic peer `i` has an underlay address, a
//! VTEP MAC and a pod subnet, and [`flannel_scripts`] programs a node's
//! overlay device for the first `n` of them exactly as Flannel's VXLAN
//! backend would (route, permanent neighbour, FDB entry per peer).
//!
//! The addresses never collide with the lab's own: underlays come from
//! 198.18.0.0/15 (RFC 2544's benchmarking range), subnets (/26s, so that
//! 100 000 nodes fit) from 10.128.0.0/9.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Synthetic peers available: the underlay range's 131 070 addresses
/// after 198.18.0.1, less a margin (subnets are /26s of 10.128.0.0/9:
/// 131 072 of them).
pub const MAX_PEERS: u32 = 131_000;

/// Prefix length of a synthetic peer's pod subnet.
pub const SUBNET_PREFIX: u8 = 26;

/// Underlay (VTEP) address of peer `i`: 198.18.0.1 + i.
pub fn peer_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + (i % MAX_PEERS))
}

/// VTEP MAC of peer `i`: locally administered, `02:be:00:top:hi:lo`.
pub fn peer_mac(i: u32) -> [u8; 6] {
    let [_, top, hi, lo] = (i % MAX_PEERS).to_be_bytes();
    [0x02, 0xbe, 0, top, hi, lo]
}

/// Pod subnet (network address of a /26) of peer `i`.
pub fn peer_subnet(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::from(Ipv4Addr::new(10, 128, 0, 0)) + ((i % MAX_PEERS) << (32 - SUBNET_PREFIX)),
    )
}

/// The peer's overlay address, `<subnet>.0`: the next hop of its route.
pub fn peer_vtep_ip(i: u32) -> Ipv4Addr {
    peer_subnet(i)
}

/// `ip -batch` and `bridge -batch` input programming peers `from..to` on
/// overlay device `dev`: per peer a route to its subnet via its VTEP
/// address (onlink), a permanent neighbour entry for that address and a
/// permanent FDB entry sending its MAC to its underlay address.
pub fn flannel_scripts(dev: &str, from: u32, to: u32) -> (String, String) {
    per_peer(from, to, |ip, bridge, p| {
        let (subnet, vtep, mac, under) = (p.subnet, p.vtep, &p.mac, p.underlay);
        let _ = writeln!(
            ip,
            "route replace {subnet}/{SUBNET_PREFIX} via {vtep} dev {dev} onlink"
        );
        let _ = writeln!(
            ip,
            "neigh replace {vtep} lladdr {mac} dev {dev} nud permanent"
        );
        let _ = writeln!(
            bridge,
            "fdb replace {mac} dev {dev} dst {under} self permanent"
        );
    })
}

/// Scripts removing what [`flannel_scripts`] programmed for peers
/// `from..to`, so a later measurement on the node starts from the lab's own
/// state (the node's netlink dumps grow with every entry left).
pub fn unprogram_scripts(dev: &str, from: u32, to: u32) -> (String, String) {
    per_peer(from, to, |ip, bridge, p| {
        let (subnet, vtep, mac, under) = (p.subnet, p.vtep, &p.mac, p.underlay);
        let _ = writeln!(ip, "route del {subnet}/{SUBNET_PREFIX} dev {dev}");
        let _ = writeln!(ip, "neigh del {vtep} dev {dev}");
        let _ = writeln!(bridge, "fdb del {mac} dev {dev} dst {under} self");
    })
}

/// One synthetic peer's addresses, as the scripts write them.
struct Peer {
    subnet: Ipv4Addr,
    vtep: Ipv4Addr,
    mac: String,
    underlay: Ipv4Addr,
}

/// `line` for every peer of `from..to` (capped at [`MAX_PEERS`]), into the
/// `ip` and the `bridge` script.
fn per_peer(
    from: u32,
    to: u32,
    mut line: impl FnMut(&mut String, &mut String, &Peer),
) -> (String, String) {
    let mut ip = String::new();
    let mut bridge = String::new();
    for i in from..to.min(MAX_PEERS) {
        let p = Peer {
            subnet: peer_subnet(i),
            vtep: peer_vtep_ip(i),
            mac: crate::lab::format_mac(&peer_mac(i)),
            underlay: peer_ip(i),
        };
        line(&mut ip, &mut bridge, &p);
    }
    (ip, bridge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_programmed_entry_has_its_removal() {
        let (ip, bridge) = flannel_scripts("flannel.1", 3, 7);
        let (ip_del, bridge_del) = unprogram_scripts("flannel.1", 3, 7);
        assert_eq!(ip.lines().count(), 8);
        assert_eq!(bridge.lines().count(), 4);
        // The same object (first argument after the verb) in the same order.
        let objects = |s: &str, verb: &str| -> Vec<String> {
            s.lines()
                .map(|l| l.replacen(verb, "", 1))
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .collect()
        };
        assert_eq!(objects(&ip, "replace"), objects(&ip_del, "del"));
        assert_eq!(objects(&bridge, "replace"), objects(&bridge_del, "del"));
    }

    #[test]
    fn peers_are_distinct_and_outside_the_lab() {
        let n = MAX_PEERS;
        let ips: std::collections::BTreeSet<_> = (0..n).map(peer_ip).collect();
        let macs: std::collections::BTreeSet<_> = (0..n).map(peer_mac).collect();
        let nets: std::collections::BTreeSet<_> = (0..n).map(peer_subnet).collect();
        assert_eq!(
            (ips.len(), macs.len(), nets.len()),
            (n as usize, n as usize, n as usize)
        );
        assert_eq!(peer_ip(0), Ipv4Addr::new(198, 18, 0, 1));
        // 198.18.0.1 + 130 999 = 198.19.255.184: inside 198.18.0.0/15.
        assert_eq!(peer_ip(n - 1), Ipv4Addr::new(198, 19, 255, 184));
        assert_eq!(peer_subnet(1), Ipv4Addr::new(10, 128, 0, 64));
        // 10.128.0.0 + 130 999 * 64: inside 10.128.0.0/9.
        assert_eq!(peer_subnet(n - 1), Ipv4Addr::new(10, 255, 237, 192));
        assert_eq!(peer_mac(0x01_1234), [0x02, 0xbe, 0, 1, 0x12, 0x34]);
    }

    #[test]
    fn scripts_program_what_flannel_programs() {
        let (ip, bridge) = flannel_scripts("flannel.1", 2, 4);
        assert_eq!(
            ip,
            "route replace 10.128.0.128/26 via 10.128.0.128 dev flannel.1 onlink\n\
             neigh replace 10.128.0.128 lladdr 02:be:00:00:00:02 dev flannel.1 nud permanent\n\
             route replace 10.128.0.192/26 via 10.128.0.192 dev flannel.1 onlink\n\
             neigh replace 10.128.0.192 lladdr 02:be:00:00:00:03 dev flannel.1 nud permanent\n"
        );
        assert_eq!(
            bridge,
            "fdb replace 02:be:00:00:00:02 dev flannel.1 dst 198.18.0.3 self permanent\n\
             fdb replace 02:be:00:00:00:03 dev flannel.1 dst 198.18.0.4 self permanent\n"
        );
    }
}
