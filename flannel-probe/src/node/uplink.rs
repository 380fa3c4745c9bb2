//! `--uplink auto`: which interface carries this node's VXLAN. A pure choice
//! over what netlink dumped (links, addresses, routes, the FDB), so that
//! every branch is tested with hand-built inputs.
//!
//! In order: the VXLAN device's own `dev`; else the interface of the
//! default route; else the one interface that holds the node's underlay
//! address. The last is what an air-gapped node without a default route
//! needs when the overlay (and with it its `dev`) is gone: the incident.
//!
//! The facts are those of the overlay's family: for `flannel-v6.1` the IPv6
//! default route, IPv6 underlay addresses (not link-local) and the
//! device's IPv6 `local` as the witness.

use std::net::{IpAddr, Ipv4Addr};

use super::links::LinkSummary;
use super::routes::{ParsedRoute, default_route_oif};
use super::{FdbEntry, Overlay};

/// How the uplink was chosen (`node.uplink_source` in the JSON report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkSource {
    /// `--uplink IFACE`.
    Flag,
    /// The VXLAN device's `dev` (`IFLA_VXLAN_LINK`).
    VxlanDev,
    /// The interface of the preferred IPv4 default route.
    DefaultRoute,
    /// The one interface holding an underlay IPv4 address.
    UnderlayAddress,
}

/// Why `auto` found no uplink.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum NoUplink {
    /// No interface holds an underlay address.
    NoCandidate,
    /// Several do and nothing tells them apart (their names, sorted).
    Several(Vec<String>),
}

impl NoUplink {
    /// The one line for the operator (`overlay` is the device looked for).
    pub fn message(&self, overlay: &str) -> String {
        let fam = if overlay.starts_with("flannel-v6.") {
            "IPv6"
        } else {
            "IPv4"
        };
        let why = match self {
            NoUplink::NoCandidate => format!(
                "no interface holds an underlay {fam} address (an up interface outside the pod \
                 network that is no CNI bridge, bridge port or overlay)"
            ),
            NoUplink::Several(names) => format!(
                "several interfaces hold an underlay {fam} address ({})",
                names.join(", ")
            ),
        };
        format!(
            "no uplink found: {overlay} names no dev, there is no default route and {why}; \
             pass --uplink IFACE"
        )
    }
}

/// Link kinds that are tunnels or software ends, never the underlay NIC
/// (`dummy` cannot send anywhere: kube-ipvs0, nodelocaldns).
const NOT_UNDERLAY_KINDS: &[&str] = &[
    "vxlan",
    "geneve",
    "wireguard",
    "ipip",
    "gre",
    "gretap",
    "ip6gre",
    "ip6gretap",
    "sit",
    "ip6tnl",
    "vti",
    "vti6",
    "tun",
    "dummy",
    "ifb",
    "nlmon",
];

/// What the choice looks at, as netlink dumped it.
pub(super) struct UplinkFacts<'a> {
    pub(super) links: &'a [LinkSummary],
    /// (ifindex, address) of every address of the overlay's family.
    pub(super) addrs: &'a [(u32, IpAddr)],
    pub(super) routes: &'a [ParsedRoute],
    pub(super) overlay: Option<&'a Overlay>,
    pub(super) fdb: &'a [FdbEntry],
    /// The uplink of the previous discovery (`serve`, `watch`): kept while
    /// it still qualifies and nothing else tells candidates apart.
    pub(super) previous: Option<&'a str>,
}

/// `auto`: the ifindex of the uplink and how it was found.
pub(super) fn choose_auto(f: &UplinkFacts<'_>) -> Result<(u32, UplinkSource), NoUplink> {
    let exists = |idx: u32| f.links.iter().any(|l| l.index == idx);
    if let Some(idx) = f.overlay.and_then(|o| o.link) {
        if exists(idx) {
            return Ok((idx, UplinkSource::VxlanDev));
        }
        tracing::warn!(ifindex = idx, "VXLAN device's underlay ifindex not found");
    }
    if let Some(idx) = default_route_oif(f.routes) {
        if exists(idx) {
            return Ok((idx, UplinkSource::DefaultRoute));
        }
        tracing::warn!(ifindex = idx, "default route's interface not found");
    }
    by_underlay_address(f).map(|idx| (idx, UplinkSource::UnderlayAddress))
}

/// The one interface holding an underlay address, or the one a witness
/// names among several.
fn by_underlay_address(f: &UplinkFacts<'_>) -> Result<u32, NoUplink> {
    let cni_bridges: Vec<u32> = f
        .links
        .iter()
        .filter(|l| is_cni_bridge(l, f.links))
        .map(|l| l.index)
        .collect();
    let overlay_index = f.overlay.map(|o| o.ifindex);
    // The pod network as this node sees it: what is routed over the overlay
    // or a CNI bridge, and the overlay's own addresses.
    let pod_routes: Vec<(IpAddr, u8)> = f
        .routes
        .iter()
        .filter(|r| r.entry.prefix_len > 0)
        .filter(|r| {
            r.entry
                .oif
                .is_some_and(|o| Some(o) == overlay_index || cni_bridges.contains(&o))
        })
        .map(|r| (r.entry.dst, r.entry.prefix_len))
        .collect();
    let in_pod_network = |a: IpAddr| {
        pod_routes.iter().any(|&(net, len)| covers(net, len, a))
            || f.addrs
                .iter()
                .any(|&(i, o)| Some(i) == overlay_index && o == a)
    };
    let link_local = |a: IpAddr| match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    };
    let underlay_addr = |a: IpAddr| !a.is_loopback() && !link_local(a) && !in_pod_network(a);

    let mut candidates: Vec<&LinkSummary> = f
        .links
        .iter()
        .filter(|l| {
            l.admin_up
                && l.oper_up
                && !l.loopback
                && l.name != "lo"
                && l.master.is_none()
                && Some(l.index) != overlay_index
                && f.overlay.is_none_or(|o| o.name != l.name)
                && !NOT_UNDERLAY_KINDS.contains(&l.kind.as_str())
                && !cni_bridges.contains(&l.index)
        })
        .filter(|l| {
            f.addrs
                .iter()
                .any(|&(i, a)| i == l.index && underlay_addr(a))
        })
        .collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    match candidates.as_slice() {
        [] => return Err(NoUplink::NoCandidate),
        [one] => return Ok(one.index),
        _ => {}
    }
    let indexes: Vec<u32> = candidates.iter().map(|l| l.index).collect();
    // Witnesses, strongest first: the address the overlay sends from; the
    // interface the routes to the FDB's peers leave by; the previous choice.
    if let Some(local) = f.overlay.and_then(|o| o.local)
        && let Some(one) = single(
            f.addrs
                .iter()
                .filter(|&&(i, a)| a == local && indexes.contains(&i))
                .map(|&(i, _)| i),
        )
    {
        return Ok(one);
    }
    let towards_peers = f
        .fdb
        .iter()
        .filter_map(|e| e.dst)
        .filter_map(|peer| route_towards(f.routes, peer))
        .filter(|i| indexes.contains(i));
    if let Some(one) = single(towards_peers) {
        return Ok(one);
    }
    if let Some(prev) = f.previous
        && let Some(l) = candidates.iter().find(|l| l.name == prev)
    {
        return Ok(l.index);
    }
    Err(NoUplink::Several(
        candidates.iter().map(|l| l.name.clone()).collect(),
    ))
}

/// A bridge the CNI made: `cni0` (Flannel's), or one whose ports are all
/// veths (pods; docker0 with containers). A bridge that holds a NIC as a
/// port (br0 over eth0) can be the underlay.
fn is_cni_bridge(l: &LinkSummary, links: &[LinkSummary]) -> bool {
    if l.kind != "bridge" {
        return false;
    }
    if l.name == "cni0" {
        return true;
    }
    let mut ports = links
        .iter()
        .filter(|p| p.master == Some(l.index))
        .peekable();
    ports.peek().is_some() && ports.all(|p| p.kind == "veth")
}

/// The output interface of the most specific non-default route covering
/// `peer`.
fn route_towards(routes: &[ParsedRoute], peer: IpAddr) -> Option<u32> {
    routes
        .iter()
        .filter(|r| r.entry.prefix_len > 0 && covers(r.entry.dst, r.entry.prefix_len, peer))
        .max_by_key(|r| (r.entry.prefix_len, std::cmp::Reverse(r.priority)))
        .and_then(|r| r.entry.oif)
}

/// The value if all items are one value (and there is at least one).
fn single(items: impl Iterator<Item = u32>) -> Option<u32> {
    let mut all: Vec<u32> = items.collect();
    all.sort_unstable();
    all.dedup();
    match all.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// `net/len` contains `a` (never across families).
pub(crate) fn covers(net: IpAddr, len: u8, a: IpAddr) -> bool {
    match (net, a) {
        (IpAddr::V4(net), IpAddr::V4(a)) => covers4(net, len, a),
        (IpAddr::V6(net), IpAddr::V6(a)) => {
            if len == 0 {
                return true;
            }
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(net) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn covers4(net: Ipv4Addr, len: u8, a: Ipv4Addr) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    u32::from(net) & mask == u32::from(a) & mask
}

#[cfg(test)]
mod tests {
    use super::super::RouteEntry;
    use super::*;

    const ETH0: u32 = 2;
    const ETH1: u32 = 3;
    const CNI0: u32 = 4;
    const VETH: u32 = 5;
    const FLANNEL: u32 = 6;

    fn link(index: u32, name: &str, kind: &str) -> LinkSummary {
        LinkSummary {
            index,
            name: name.into(),
            kind: kind.into(),
            admin_up: true,
            oper_up: true,
            mtu: Some(1500),
            mac: None,
            vxlan: None,
            master: None,
            loopback: false,
        }
    }

    fn route(dst: [u8; 4], prefix_len: u8, gateway: Option<[u8; 4]>, oif: u32) -> ParsedRoute {
        route_any(ip(dst), prefix_len, gateway.map(ip), oif)
    }

    fn route_any(dst: IpAddr, prefix_len: u8, gateway: Option<IpAddr>, oif: u32) -> ParsedRoute {
        ParsedRoute {
            entry: RouteEntry {
                dst,
                prefix_len,
                gateway,
                oif: Some(oif),
                onlink: false,
            },
            priority: 0,
            tos: 0,
        }
    }

    fn ip(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn ip6(a: &str) -> IpAddr {
        IpAddr::V6(a.parse().expect("IPv6 address"))
    }

    /// An up VXLAN device `name` as flannel makes it, at ifindex FLANNEL
    /// (IPv6 when `local` is).
    fn vxlan(name: &str, local: Option<IpAddr>, dev: Option<u32>) -> Overlay {
        Overlay {
            name: name.into(),
            ifindex: FLANNEL,
            kind: "vxlan".into(),
            admin_up: true,
            oper_up: true,
            mac: None,
            mtu: Some(1450),
            vni: Some(1),
            port: Some(8472),
            local,
            link: dev,
            learning: Some(false),
            ipv6: local.is_some_and(|a| a.is_ipv6()),
        }
    }

    /// A lab node after the incident: lo, eth0 (a veth: the lab's and
    /// k3d's uplink), cni0 with one pod veth, no flannel.1, no default route.
    struct Node {
        links: Vec<LinkSummary>,
        addrs: Vec<(u32, IpAddr)>,
        routes: Vec<ParsedRoute>,
        fdb: Vec<FdbEntry>,
        overlay: Option<Overlay>,
    }

    impl Node {
        fn incident() -> Self {
            let mut lo = link(1, "lo", "");
            lo.loopback = true;
            let mut veth = link(VETH, "veth0a1b2c", "veth");
            veth.master = Some(CNI0);
            Node {
                links: vec![
                    lo,
                    link(ETH0, "eth0", "veth"),
                    link(CNI0, "cni0", "bridge"),
                    veth,
                ],
                addrs: vec![
                    (1, ip([127, 0, 0, 1])),
                    (ETH0, ip([192, 0, 2, 13])),
                    (CNI0, ip([10, 42, 0, 1])),
                ],
                routes: vec![
                    route([192, 0, 2, 0], 24, None, ETH0),
                    route([10, 42, 0, 0], 24, None, CNI0),
                ],
                fdb: vec![],
                overlay: None,
            }
        }

        /// flannel.1 back (without `dev`), routing two peers' pod subnets.
        fn with_overlay(mut self, dev: Option<u32>, local: Option<[u8; 4]>) -> Self {
            self.links.push(link(FLANNEL, "flannel.1", "vxlan"));
            self.addrs.push((FLANNEL, ip([10, 42, 0, 0])));
            for third in [1, 2] {
                self.routes.push(route(
                    [10, 42, third, 0],
                    24,
                    Some([10, 42, third, 0]),
                    FLANNEL,
                ));
            }
            for last in [11, 12] {
                self.fdb.push(FdbEntry {
                    mac: [0x0e, 0, 0, 0, 0, last],
                    dst: Some(ip([192, 0, 2, last])),
                    permanent: true,
                });
            }
            self.overlay = Some(vxlan("flannel.1", local.map(ip), dev));
            self
        }

        /// The same node on an IPv6-only cluster after the incident:
        /// IPv6 facts only (eth0's ULA and link-local addresses, cni0's
        /// IPv6 pod gateway), no flannel-v6.1, no default route.
        fn incident6() -> Self {
            let mut n = Node::incident();
            n.addrs = vec![
                (1, ip6("::1")),
                (ETH0, ip6("fd00:192:0:2::13")),
                (ETH0, ip6("fe80::1:c0ff:fe00:20d")),
                (CNI0, ip6("2001:cafe:42::1")),
                (CNI0, ip6("fe80::2")),
                (VETH, ip6("fe80::3")),
            ];
            n.routes = vec![
                route_any(ip6("fd00:192:0:2::"), 64, None, ETH0),
                route_any(ip6("2001:cafe:42::"), 64, None, CNI0),
                route_any(ip6("fe80::"), 64, None, ETH0),
                route_any(ip6("fe80::"), 64, None, CNI0),
            ];
            n
        }

        /// flannel-v6.1 as flannel makes it (no `dev` here), with one peer.
        fn with_overlay6(mut self, dev: Option<u32>, local: Option<&str>) -> Self {
            self.links.push(link(FLANNEL, "flannel-v6.1", "vxlan"));
            self.addrs.push((FLANNEL, ip6("2001:cafe:42::")));
            self.routes.push(route_any(
                ip6("2001:cafe:42:1::"),
                64,
                Some(ip6("2001:cafe:42:1::")),
                FLANNEL,
            ));
            self.fdb.push(FdbEntry {
                mac: [0x0e, 0, 0, 0, 0, 0x11],
                dst: Some(ip6("fd00:192:0:2::11")),
                permanent: true,
            });
            self.overlay = Some(vxlan("flannel-v6.1", local.map(ip6), dev));
            self
        }

        /// A second NIC with an IPv6 address on another network.
        fn with_eth1_v6(mut self) -> Self {
            self.links.push(link(ETH1, "eth1", ""));
            self.addrs.push((ETH1, ip6("2001:db8:100::7")));
            self.addrs.push((ETH1, ip6("fe80::7")));
            self.routes
                .push(route_any(ip6("2001:db8:100::"), 64, None, ETH1));
            self
        }

        /// A second NIC on another network (storage, management).
        fn with_eth1(mut self) -> Self {
            self.links.push(link(ETH1, "eth1", ""));
            self.addrs.push((ETH1, ip([198, 51, 100, 7])));
            self.routes.push(route([198, 51, 100, 0], 24, None, ETH1));
            self
        }

        fn choose(&self, previous: Option<&str>) -> Result<(u32, UplinkSource), NoUplink> {
            choose_auto(&UplinkFacts {
                links: &self.links,
                addrs: &self.addrs,
                routes: &self.routes,
                overlay: self.overlay.as_ref(),
                fdb: &self.fdb,
                previous,
            })
        }
    }

    #[test]
    fn the_vxlan_dev_comes_first() {
        let mut n = Node::incident()
            .with_eth1()
            .with_overlay(Some(ETH1), Some([192, 0, 2, 13]));
        n.routes
            .push(route([0, 0, 0, 0], 0, Some([192, 0, 2, 1]), ETH0));
        assert_eq!(n.choose(None), Ok((ETH1, UplinkSource::VxlanDev)));
    }

    #[test]
    fn then_the_default_route() {
        let mut n = Node::incident().with_eth1();
        n.routes
            .push(route([0, 0, 0, 0], 0, Some([198, 51, 100, 1]), ETH1));
        assert_eq!(n.choose(None), Ok((ETH1, UplinkSource::DefaultRoute)));
        // A dev that names a vanished ifindex falls through to the route.
        let mut n = n.with_overlay(Some(99), None);
        n.links.retain(|l| l.index != 99);
        assert_eq!(n.choose(None), Ok((ETH1, UplinkSource::DefaultRoute)));
    }

    #[test]
    fn without_a_default_route_the_one_underlay_address() {
        // The incident on an air-gapped node: cni0, its veth, lo are no
        // candidates; eth0 (a veth without a master) is.
        let n = Node::incident();
        assert_eq!(n.choose(None), Ok((ETH0, UplinkSource::UnderlayAddress)));
        // Overlay present without dev: its own and its routed (pod)
        // addresses are not underlay.
        let n = Node::incident().with_overlay(None, None);
        assert_eq!(n.choose(None), Ok((ETH0, UplinkSource::UnderlayAddress)));
    }

    #[test]
    fn down_loopback_ports_tunnels_and_pod_addresses_are_no_candidates() {
        let mut n = Node::incident();
        n.links.retain(|l| l.index != ETH0);
        let mut down = link(10, "eth2", "");
        down.oper_up = false;
        let mut port = link(11, "eth3", "");
        port.master = Some(12);
        let mut pod_addr = link(13, "cilium_host", "veth");
        pod_addr.master = None;
        n.links.extend([
            down,
            port,
            link(12, "br-pods", "bridge"),
            link(14, "tailscale0", "tun"),
            link(15, "kube-ipvs0", "dummy"),
            link(16, "wg0", "wireguard"),
            link(17, "docker0", "bridge"),
            link(18, "vethd0", "veth"),
            pod_addr,
        ]);
        if let Some(v) = n.links.iter_mut().find(|l| l.index == 18) {
            v.master = Some(17);
        }
        n.addrs.extend([
            (10, ip([192, 0, 2, 13])),
            (11, ip([192, 0, 2, 14])),
            (14, ip([100, 64, 0, 5])),
            (15, ip([10, 43, 0, 1])),
            (16, ip([10, 8, 0, 1])),
            (17, ip([172, 17, 0, 1])),
            (13, ip([10, 42, 0, 77])),
            (20, ip([169, 254, 20, 10])),
        ]);
        // 10.42.0.77 is inside the subnet routed via cni0: pod network.
        assert_eq!(n.choose(None), Err(NoUplink::NoCandidate));
        let msg = NoUplink::NoCandidate.message("flannel.1");
        assert!(
            msg.starts_with("no uplink found: flannel.1 names no dev")
                && msg.ends_with("pass --uplink IFACE"),
            "{msg}"
        );
        // br-pods has a NIC port (eth3), so it may be the underlay: with
        // an address it is the one candidate.
        n.addrs.push((12, ip([203, 0, 113, 4])));
        assert_eq!(n.choose(None), Ok((12, UplinkSource::UnderlayAddress)));
    }

    #[test]
    fn several_candidates_are_named_unless_a_witness_tells() {
        let n = Node::incident().with_eth1();
        let err = n.choose(None).expect_err("two NICs, nothing tells");
        assert_eq!(err, NoUplink::Several(vec!["eth0".into(), "eth1".into()]));
        let msg = err.message("flannel.1");
        assert!(
            msg.contains("several interfaces hold an underlay IPv4 address (eth0, eth1)")
                && msg.contains("--uplink"),
            "{msg}"
        );
        // The previous choice (serve, watch) is kept while it qualifies...
        assert_eq!(
            n.choose(Some("eth1")),
            Ok((ETH1, UplinkSource::UnderlayAddress))
        );
        // ...but not when it no longer does.
        assert_eq!(n.choose(Some("eth9")), Err(err));
    }

    #[test]
    fn the_overlays_local_address_witnesses() {
        let n = Node::incident()
            .with_eth1()
            .with_overlay(None, Some([198, 51, 100, 7]));
        assert_eq!(
            n.choose(Some("eth0")),
            Ok((ETH1, UplinkSource::UnderlayAddress))
        );
    }

    #[test]
    fn the_route_towards_the_fdb_peers_witnesses() {
        // No local, no dev: the peers 192.0.2.11/12 sit on eth0's subnet.
        let n = Node::incident().with_eth1().with_overlay(None, None);
        assert_eq!(
            n.choose(Some("eth1")),
            Ok((ETH0, UplinkSource::UnderlayAddress))
        );
        // Peers behind a router: the most specific route names eth1.
        let mut n = Node::incident().with_eth1().with_overlay(None, None);
        n.routes
            .push(route([192, 0, 2, 0], 26, Some([198, 51, 100, 1]), ETH1));
        assert_eq!(n.choose(None), Ok((ETH1, UplinkSource::UnderlayAddress)));
        // Peers on both: no witness.
        let mut n = Node::incident().with_eth1().with_overlay(None, None);
        n.fdb.push(FdbEntry {
            mac: [0x0e, 0, 0, 0, 0, 9],
            dst: Some(ip([198, 51, 100, 9])),
            permanent: true,
        });
        assert!(matches!(n.choose(None), Err(NoUplink::Several(_))));
    }

    #[test]
    fn ipv6_vtep_dev_then_default_route_then_underlay_address() {
        // The v6 overlay's own dev first.
        let n = Node::incident6()
            .with_eth1_v6()
            .with_overlay6(Some(ETH1), Some("fd00:192:0:2::13"));
        assert_eq!(n.choose(None), Ok((ETH1, UplinkSource::VxlanDev)));
        // Then the IPv6 default route.
        let mut n = Node::incident6().with_eth1_v6();
        n.routes
            .push(route_any(ip6("::"), 0, Some(ip6("2001:db8:100::1")), ETH1));
        assert_eq!(n.choose(None), Ok((ETH1, UplinkSource::DefaultRoute)));
        // Then the one interface with an IPv6 underlay address: link-local
        // addresses (every interface has one) and the pod network's do
        // not count.
        let n = Node::incident6();
        assert_eq!(n.choose(None), Ok((ETH0, UplinkSource::UnderlayAddress)));
        let n = Node::incident6().with_overlay6(None, None);
        assert_eq!(n.choose(None), Ok((ETH0, UplinkSource::UnderlayAddress)));
    }

    #[test]
    fn ipv6_witnesses_local_and_fdb_peers() {
        let n = Node::incident6().with_eth1_v6();
        let err = n.choose(None).expect_err("two NICs");
        assert_eq!(err, NoUplink::Several(vec!["eth0".into(), "eth1".into()]));
        assert!(
            err.message("flannel-v6.1")
                .contains("several interfaces hold an underlay IPv6 address (eth0, eth1)")
        );
        // The device's IPv6 local names eth1.
        let n = Node::incident6()
            .with_eth1_v6()
            .with_overlay6(None, Some("2001:db8:100::7"));
        assert_eq!(
            n.choose(Some("eth0")),
            Ok((ETH1, UplinkSource::UnderlayAddress))
        );
        // No local: the FDB's IPv6 peer is on eth0's subnet.
        let n = Node::incident6().with_eth1_v6().with_overlay6(None, None);
        assert_eq!(
            n.choose(Some("eth1")),
            Ok((ETH0, UplinkSource::UnderlayAddress))
        );
    }

    #[test]
    fn prefixes() {
        assert!(covers(ip6("2001:cafe:42::"), 56, ip6("2001:cafe:42:ff::1")));
        assert!(!covers(
            ip6("2001:cafe:42:1::"),
            64,
            ip6("2001:cafe:42:2::1")
        ));
        assert!(covers(ip6("::"), 0, ip6("fd00::1")));
        assert!(!covers(ip([0, 0, 0, 0]), 0, ip6("fd00::1")));
        assert!(!covers(ip6("::"), 0, ip([10, 0, 0, 1])));
        assert!(covers(ip([10, 42, 0, 0]), 16, ip([10, 42, 200, 1])));
        assert!(!covers(ip([10, 42, 0, 0]), 24, ip([10, 42, 1, 1])));
        assert!(covers(ip([0, 0, 0, 0]), 0, ip([8, 8, 8, 8])));
        assert!(covers(ip([192, 0, 2, 13]), 32, ip([192, 0, 2, 13])));
        assert!(!covers(ip([192, 0, 2, 13]), 32, ip([192, 0, 2, 14])));
    }
}
