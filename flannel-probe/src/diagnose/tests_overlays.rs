//! Several overlays (dual-stack: `flannel.1` and `flannel-v6.1`): each is
//! diagnosed on its own node state, findings say which overlay, and the
//! report lists every overlay in `node.overlays[]`.
use std::net::{IpAddr, Ipv6Addr};

use super::tests::{eth0, healthy_node, healthy_window, inner, outer, run_named};
use crate::{
    datapath::Snapshot,
    node::{
        FdbEntry, NUD_PERMANENT, NeighEntry, NodeState, Overlay, RouteEntry, Uplink, VtepFamily,
    },
    report::{OverlayReport, Report},
};

fn v6(a: &str) -> Ipv6Addr {
    a.parse().expect("IPv6 address")
}

const MAC6_G: [u8; 6] = [0x0e, 0, 0, 0, 6, 0x11];

/// eq14-001's flannel-v6.1 as flannel programs it, one peer (gladius).
fn v6_overlay(up: bool) -> NodeState {
    let mut n = healthy_node();
    n.overlay_name = "flannel-v6.1".into();
    n.family = VtepFamily::Ipv6;
    n.overlay = Some(Overlay {
        name: "flannel-v6.1".into(),
        ifindex: 5,
        kind: "vxlan".into(),
        admin_up: up,
        oper_up: up,
        mac: Some([0x0e, 0, 0, 0, 6, 0x13]),
        mtu: Some(1430),
        vni: Some(1),
        port: Some(8472),
        local: Some(IpAddr::V6(v6("fd00:192:0:2::13"))),
        link: Some(2),
        learning: Some(false),
        ipv6: true,
    });
    n.local_vtep = Some(IpAddr::V6(v6("fd00:192:0:2::13")));
    n.uplink = Some(Uplink {
        addrs: vec![],
        addrs6: vec![v6("fd00:192:0:2::13")],
        ..eth0()
    });
    n.fdb = vec![FdbEntry {
        mac: MAC6_G,
        dst: Some(IpAddr::V6(v6("fd00:192:0:2::11"))),
        permanent: true,
    }];
    let gw = IpAddr::V6(v6("2001:cafe:42:1::"));
    // What the kernel adds beside flannel's: a NOARP entry per IPv6
    // multicast group the device joined, its /128 and link-local routes.
    n.neighbours = vec![
        NeighEntry {
            ip: gw,
            mac: Some(MAC6_G),
            state: NUD_PERMANENT,
        },
        NeighEntry {
            ip: IpAddr::V6(v6("ff02::16")),
            mac: Some([0x33, 0x33, 0, 0, 0, 0x16]),
            state: 0x40,
        },
    ];
    let connected = |dst: &str, len| RouteEntry {
        dst: IpAddr::V6(v6(dst)),
        prefix_len: len,
        gateway: None,
        oif: Some(5),
        onlink: false,
    };
    n.routes = vec![
        connected("2001:cafe:42::", 128),
        RouteEntry {
            dst: gw,
            prefix_len: 64,
            gateway: Some(gw),
            oif: Some(5),
            onlink: true,
        },
        connected("fe80::", 64),
    ];
    n
}

fn missing(mut n: NodeState) -> NodeState {
    n.overlay = None;
    n.port_bound = false;
    n.fdb.clear();
    n.neighbours.clear();
    n.routes.clear();
    n.forwarding = None;
    n
}

fn dual(v4: NodeState, v6: NodeState) -> NodeState {
    let mut n = v4;
    n.other_overlays = vec![v6];
    n
}

/// gladius's IPv6 VTEP, as eq14-001's flannel-v6.1 knows it.
fn gladius6() -> IpAddr {
    IpAddr::V6(v6("fd00:192:0:2::11"))
}

/// Traffic on both families: the IPv4 peers of [`healthy_window`] and
/// gladius over IPv6 (8 each way, decapsulated on flannel-v6.1).
fn dual_window() -> Snapshot {
    let mut w = healthy_window();
    w.peers.insert(gladius6(), outer(8, 8));
    w.inner.insert(MAC6_G, inner(8, 8));
    w
}

fn run(node: &NodeState) -> Report {
    run_named(&dual_window(), node, &|n| format!("REASON_{n}"))
}

/// The finding `code`; panics when it is not raised.
fn the<'a>(r: &'a Report, code: &str) -> &'a crate::report::Finding {
    r.findings
        .iter()
        .find(|f| f.code.as_str() == code)
        .unwrap_or_else(|| panic!("no {code} in {:?}", r.findings))
}

fn found(r: &Report) -> Vec<(&str, Option<&str>)> {
    r.findings
        .iter()
        .map(|f| (f.code.as_str(), f.overlay.as_deref()))
        .collect()
}

#[test]
fn a_healthy_dual_stack_node_lists_both_overlays_and_raises_nothing() {
    let r = run(&dual(healthy_node(), v6_overlay(true)));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let names: Vec<&str> = r.node.overlays.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["flannel.1", "flannel-v6.1"]);
    let o6: &OverlayReport = &r.node.overlays[1];
    assert_eq!(o6.family, VtepFamily::Ipv6);
    assert_eq!(o6.local_vtep.as_deref(), Some("fd00:192:0:2::13"));
    assert_eq!((o6.fdb_entries, o6.neighbours, o6.routes), (1, 1, 1));
    assert_eq!(
        (o6.vni, o6.vxlan_port, o6.port_bound),
        (Some(1), 8472, true)
    );
    assert_eq!(o6.mtu, Some(1430));
    // The single-overlay fields stay the first overlay's.
    assert_eq!(r.node.overlay, "flannel.1");
    assert_eq!(r.node.local_vtep.as_deref(), Some("192.0.2.13"));
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["node"]["overlays"][1]["family"], "ipv6");
    assert_eq!(json["node"]["overlays"][1]["state"], "up");
    assert_eq!(json["node"]["overlays"][0]["local_vtep"], "192.0.2.13");
}

#[test]
fn v6_overlay_missing_is_found_alone() {
    let r = run(&dual(healthy_node(), missing(v6_overlay(true))));
    // The incident, on IPv6 alone: gladius's IPv6 VXLAN arrives (counted on
    // the uplink) and nothing decapsulates it; flannel.1 stays healthy.
    assert_eq!(
        found(&r),
        [
            ("OVERLAY_DEVICE_MISSING", Some("flannel-v6.1")),
            ("VXLAN_NOT_DECAPSULATED", Some("flannel-v6.1")),
            ("VXLAN_PORT_NOT_BOUND", Some("flannel-v6.1")),
        ],
        "{:?}",
        r.findings
    );
    assert!(
        r.findings
            .iter()
            .all(|f| f.summary.contains("flannel-v6.1"))
    );
    let nd = the(&r, "VXLAN_NOT_DECAPSULATED");
    assert_eq!(nd.affected_peers, ["fd00:192:0:2::11"]);
    assert!(
        nd.evidence
            .iter()
            .any(|e| e == "rx_encap_packets=8 rx_decap_packets=0"),
        "{:?}",
        nd.evidence
    );
    // Both families' peers are in the report, each with its own counts.
    let g6 = r
        .peers
        .iter()
        .find(|p| p.peer == "fd00:192:0:2::11")
        .expect("the IPv6 peer");
    assert_eq!(g6.traffic.rx_encap_packets, 8);
    assert_eq!(r.peers.len(), 3);
    assert_eq!(r.node.overlay_state.as_str(), "up");
    assert_eq!(r.node.overlays[1].state.as_str(), "missing");
}

#[test]
fn v4_overlay_missing_is_found_alone_with_v6_healthy() {
    let mut v4 = missing(healthy_node());
    v4.fdb.clear();
    let r = run(&dual(v4, v6_overlay(true)));
    let fl1: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.overlay.as_deref() == Some("flannel.1"))
        .map(|f| f.code.as_str())
        .collect();
    assert!(fl1.contains(&"OVERLAY_DEVICE_MISSING"), "{:?}", r.findings);
    assert!(
        r.findings
            .iter()
            .all(|f| f.overlay.as_deref() == Some("flannel.1")),
        "nothing about flannel-v6.1: {:?}",
        r.findings
    );
    assert_eq!(r.node.overlays[1].state.as_str(), "up");
}

#[test]
fn v6_rules_speak_ipv6() {
    // Forwarding: the IPv6 sysctl.
    let mut n6 = v6_overlay(true);
    n6.forwarding = Some(false);
    let r = run(&dual(healthy_node(), n6));
    let f = the(&r, "FORWARDING_DISABLED");
    assert_eq!(f.overlay.as_deref(), Some("flannel-v6.1"));
    assert!(
        f.summary
            .starts_with("IPv6 forwarding is off on flannel-v6.1"),
        "{}",
        f.summary
    );
    assert_eq!(f.evidence[0], "net.ipv6.conf.all.forwarding = 0");
    assert!(
        f.remediation
            .starts_with("sysctl -w net.ipv6.conf.all.forwarding=1,"),
        "{}",
        f.remediation
    );

    // MTU: 70 bytes of IPv6 VXLAN. 1430 fits 1500; 1450 does not.
    let mut n6 = v6_overlay(true);
    if let Some(o) = n6.overlay.as_mut() {
        o.mtu = Some(1450);
    }
    let r = run(&dual(healthy_node(), n6));
    let f = the(&r, "MTU_MISMATCH");
    assert!(f.summary.contains("+ 70 bytes"), "{}", f.summary);
    assert!(
        f.remediation.contains("set the overlay MTU to 1430"),
        "{}",
        f.remediation
    );

    // A missing IPv6 FDB entry for a routed peer.
    // (no IPv6 traffic: a peer not in the FDB would be an unknown source)
    let mut n6 = v6_overlay(true);
    n6.fdb.clear();
    let r = run_named(&healthy_window(), &dual(healthy_node(), n6), &|n| {
        format!("REASON_{n}")
    });
    let serious: Vec<_> = found(&r)
        .into_iter()
        .filter(|(c, _)| *c != "NO_VXLAN_TRAFFIC")
        .collect();
    assert_eq!(
        serious,
        [("FDB_ENTRY_MISSING", Some("flannel-v6.1"))],
        "{:?}",
        r.findings
    );
    assert!(r.findings[0].summary.contains("2001:cafe:42:1::/64"));

    // And the neighbour.
    let mut n6 = v6_overlay(true);
    n6.neighbours.retain(|e| e.ip.is_multicast());
    let r = run(&dual(healthy_node(), n6));
    assert_eq!(found(&r), [("NEIGH_ENTRY_MISSING", Some("flannel-v6.1"))]);
    assert_eq!(r.findings[0].peer.as_deref(), Some("fd00:192:0:2::11"));
}

#[test]
fn one_overlay_keeps_the_json_as_it_was() {
    let r = run(&healthy_node());
    assert!(r.findings.iter().all(|f| f.overlay.is_none()));
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["node"]["overlays"].as_array().map(Vec::len), Some(1));
    let mut down = healthy_node();
    if let Some(o) = down.overlay.as_mut() {
        o.admin_up = false;
    }
    let r = run(&down);
    let json = serde_json::to_value(&r).expect("json");
    let first = &json["findings"][0];
    assert!(first.get("overlay").is_none(), "{first}");
}

#[test]
fn an_ipv6_only_node_reports_its_v6_vtep() {
    let r = run(&v6_overlay(true));
    assert_eq!(r.node.overlay, "flannel-v6.1");
    assert_eq!(r.node.local_vtep.as_deref(), Some("fd00:192:0:2::13"));
    assert_eq!(r.node.overlays.len(), 1);
    assert_eq!(r.node.overlays[0].fdb_entries, 1);
}

#[test]
fn flannel_1_looked_for_on_an_ipv6_only_node_is_no_finding() {
    // IPv6-only: flannel.1 (looked for by default) is missing and nothing
    // arrives over IPv4; flannel-v6.1 is healthy with its traffic.
    let mut w = Snapshot::default();
    w.peers.insert(gladius6(), outer(8, 8));
    w.inner.insert(MAC6_G, inner(8, 8));
    let node = dual(missing(healthy_node()), v6_overlay(true));
    let r = run_named(&w, &node, &|n| format!("REASON_{n}"));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.node.overlay, "flannel-v6.1");
    let states: Vec<(&str, &str)> = r
        .node
        .overlays
        .iter()
        .map(|o| (o.name.as_str(), o.state.as_str()))
        .collect();
    assert_eq!(states, [("flannel.1", "missing"), ("flannel-v6.1", "up")]);
    assert_eq!(r.peers.len(), 1);
    assert_eq!(r.peers[0].traffic.rx_decap_packets, 8);
    // The same node with IPv4 VXLAN arriving: that is the incident.
    let mut w4 = w.clone();
    w4.peers.insert(IpAddr::from([192, 0, 2, 11]), outer(10, 0));
    let r = run_named(&w4, &node, &|n| format!("REASON_{n}"));
    let codes: Vec<_> = found(&r);
    assert!(
        codes.contains(&("VXLAN_NOT_DECAPSULATED", Some("flannel.1"))),
        "{codes:?}"
    );
    assert!(codes.contains(&("OVERLAY_DEVICE_MISSING", Some("flannel.1"))));
    assert!(codes.iter().all(|(_, o)| *o == Some("flannel.1")));
}

/// An IPv6 pod (in a pod subnet routed via flannel-v6.1) sending
/// VXLAN-shaped UDP is an unknown source for the pod network, as an IPv4
/// pod is on flannel.1; never a peer row.
#[test]
fn vxlan_from_an_ipv6_pod_address_is_an_unknown_source() {
    let mut w = dual_window();
    let pod = IpAddr::V6(v6("2001:cafe:42:1::54"));
    w.peers.insert(pod, outer(30, 0));
    let r = run_named(&w, &dual(healthy_node(), v6_overlay(true)), &|n| {
        format!("REASON_{n}")
    });
    assert!(r.peers.iter().all(|p| p.peer != "2001:cafe:42:1::54"));
    let u = &r.unknown_sources;
    let listed: Vec<(&str, &str, u64)> = u
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.why, s.rx_packets))
        .collect();
    assert_eq!(listed, vec![("2001:cafe:42:1::54", "pod network", 30)]);
    assert!(
        found(&r).contains(&("UNKNOWN_VXLAN_SOURCE", Some("flannel-v6.1"))),
        "{:?}",
        found(&r)
    );
}
