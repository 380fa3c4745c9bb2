//! Every rule on hand-built inputs: raised when its condition holds, and
//! silent on a healthy node.
use std::{collections::BTreeMap, net::Ipv4Addr};

use flannel_probe_common::abi::{InnerCounters, InnerValue, PeerCounters, PeerValue};

use super::{Inputs, diagnose};
use crate::{
    datapath::{DropWhere, Snapshot},
    node::{FdbEntry, NodeState, Overlay},
    report::{Report, Severity},
};

pub(super) const GLADIUS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
pub(super) const MOMONOKE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
pub(super) const EQ14: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 13);
pub(super) const MAC_G: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x11];
pub(super) const MAC_M: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x12];

fn overlay(up: bool) -> Overlay {
    Overlay {
        name: "flannel.1".into(),
        ifindex: 4,
        kind: "vxlan".into(),
        admin_up: up,
        oper_up: up,
        mac: Some([0x0e, 0, 0, 0, 0, 0x13]),
        mtu: Some(1450),
        vni: Some(1),
        port: Some(8472),
        local: Some(EQ14.into()),
        link: Some(2),
        learning: Some(false),
        ipv6: false,
    }
}

/// eq14-001 as Flannel leaves it: device up, both peers programmed.
pub(super) fn healthy_node() -> NodeState {
    NodeState {
        hostname: "eq14-001".into(),
        kernel: "6.18.44".into(),
        overlay_name: "flannel.1".into(),
        overlay: Some(overlay(true)),
        uplink: None,
        uplink_source: None,
        no_uplink: None,
        vxlan_port: 8472,
        vni: Some(1),
        local_vtep: Some(EQ14.into()),
        port_bound: true,
        fdb: vec![
            FdbEntry {
                mac: MAC_G,
                dst: Some(GLADIUS.into()),
                permanent: true,
            },
            FdbEntry {
                mac: MAC_M,
                dst: Some(MOMONOKE.into()),
                permanent: true,
            },
        ],
        neighbours: vec![],
        routes: vec![],
        forwarding: Some(true),
        udp_in_csum_errors: None,
        family: crate::node::VtepFamily::Ipv4,
        other_overlays: vec![],
    }
}

pub(super) fn outer(rx: u64, tx: u64) -> PeerValue {
    PeerValue {
        rx: PeerCounters {
            packets: rx,
            bytes: rx * 148,
            ..Default::default()
        },
        tx: PeerCounters {
            packets: tx,
            bytes: tx * 148,
            ..Default::default()
        },
    }
}

pub(super) fn inner(rx: u64, tx: u64) -> InnerValue {
    InnerValue {
        rx: InnerCounters {
            packets: rx,
            bytes: rx * 98,
        },
        tx: InnerCounters {
            packets: tx,
            bytes: tx * 98,
        },
    }
}

fn run(window: &Snapshot, node: &NodeState) -> Report {
    run_named(window, node, &|n| format!("REASON_{n}"))
}

/// A 5 s window of `node`, every probe attached, drop reasons named by
/// `drop_reason` (the rules read some by name).
pub(super) fn run_named(
    window: &Snapshot,
    node: &NodeState,
    drop_reason: &dyn Fn(u32) -> String,
) -> Report {
    diagnose(&Inputs {
        window,
        window_secs: 5.0,
        node,
        drop_reason,
        attached: BTreeMap::new(),
        drops_unavailable: None,
        attach_gaps: 0,
        detached: Vec::new(),
    })
}

fn codes(r: &Report) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

pub(super) fn healthy_window() -> Snapshot {
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), outer(10, 10));
    w.peers
        .insert(std::net::IpAddr::from(MOMONOKE), outer(5, 5));
    w.inner.insert(MAC_G, inner(10, 10));
    w.inner.insert(MAC_M, inner(5, 5));
    w
}

#[test]
fn healthy_node_with_traffic_has_no_findings() {
    let r = run(&healthy_window(), &healthy_node());
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.peers.len(), 2);
    let g = &r.peers[0];
    assert_eq!(g.peer, "192.0.2.11");
    assert_eq!(g.vtep_mac.as_deref(), Some("0e:00:00:00:00:11"));
    assert_eq!(
        (
            g.traffic.rx_encap_packets,
            g.traffic.rx_decap_packets,
            g.traffic.tx_inner_packets
        ),
        (10, 10, 10)
    );
    assert_eq!(g.traffic.rx_encap_bytes, 1480);
}

#[test]
fn the_incident_on_the_broken_node() {
    let mut node = healthy_node();
    node.overlay = None;
    node.vni = None;
    node.port_bound = false;
    node.fdb.clear();
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), outer(120, 0));
    w.peers
        .insert(std::net::IpAddr::from(MOMONOKE), outer(120, 0));
    let r = run(&w, &node);
    assert_eq!(
        codes(&r),
        vec![
            "OVERLAY_DEVICE_MISSING",
            "VXLAN_NOT_DECAPSULATED",
            "VXLAN_PORT_NOT_BOUND"
        ]
    );
    assert_eq!(r.exit_code(), 1);
    let f = &r.findings[1];
    assert_eq!(f.summary, "inbound VXLAN from 2 peers, none decapsulated");
    assert!(
        f.evidence
            .contains(&"rx_encap_packets=240 rx_decap_packets=0".to_string())
    );
    assert!(f.evidence.iter().any(|e| e == "flannel.1 missing"));
    assert!(f.remediation.contains("systemctl restart k3s"));
    assert!(r.findings.iter().all(|f| f.peer.is_none()));
    // The node-level finding still names the peers whose traffic shows it,
    // so per-peer faces (the watch table) can mark them.
    assert_eq!(f.affected_peers, vec!["192.0.2.11", "192.0.2.12"]);
    assert_eq!(r.peer_severity("192.0.2.11"), Some(Severity::Critical));
    assert_eq!(r.peer_severity("192.0.2.12"), Some(Severity::Critical));
    assert_eq!(r.peer_severity("192.0.2.99"), None);
}

#[test]
fn the_incident_seen_from_a_sender() {
    let mut w = healthy_window();
    let mut eq = outer(0, 30);
    eq.rx.icmp_port_unreachable = 6;
    w.peers.insert(std::net::IpAddr::from(EQ14), eq);
    let mut node = healthy_node();
    node.local_vtep = Some(GLADIUS.into());
    node.fdb[0] = FdbEntry {
        mac: [0x0e, 0, 0, 0, 0, 0x13],
        dst: Some(EQ14.into()),
        permanent: true,
    };
    w.peers.remove(&std::net::IpAddr::from(GLADIUS));
    let r = run(&w, &node);
    assert_eq!(codes(&r), vec!["PEER_PORT_UNREACHABLE"]);
    let f = &r.findings[0];
    assert_eq!(f.peer.as_deref(), Some("192.0.2.13"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence[0].contains("icmp_port_unreachable=6"));
    assert!(f.affected_peers.is_empty(), "named by `peer` already");
    assert_eq!(r.peer_severity("192.0.2.13"), Some(Severity::Critical));
    assert_eq!(r.peer_severity("192.0.2.12"), None, "momonoke is fine");
}

#[test]
fn overlay_down_is_its_own_finding() {
    let mut node = healthy_node();
    node.overlay = Some(overlay(false));
    node.port_bound = false;
    let mut w = healthy_window();
    w.inner.clear();
    let r = run(&w, &node);
    assert_eq!(
        codes(&r),
        vec![
            "OVERLAY_DEVICE_DOWN",
            "VXLAN_NOT_DECAPSULATED",
            "VXLAN_PORT_NOT_BOUND"
        ]
    );
    assert!(r.findings[1].evidence.iter().any(|e| e == "flannel.1 down"));
}

#[test]
fn decapsulation_of_some_traffic_is_not_the_incident() {
    let mut w = healthy_window();
    w.inner.insert(MAC_M, inner(0, 5));
    let r = run(&w, &healthy_node());
    assert!(!codes(&r).contains(&"VXLAN_NOT_DECAPSULATED"));
}

#[test]
fn malformed_or_foreign_vni_traffic_alone_is_not_the_incident() {
    let mut w = Snapshot::default();
    let mut g = outer(8, 0);
    g.rx.malformed = 3;
    g.rx.other_vni = 5;
    g.rx.last_other_vni = 2;
    w.peers.insert(std::net::IpAddr::from(GLADIUS), g);
    let r = run(&w, &healthy_node());
    assert!(
        !codes(&r).contains(&"VXLAN_NOT_DECAPSULATED"),
        "{:?}",
        codes(&r)
    );
    assert_eq!(r.peers[0].rx_last_other_vni, Some(2));
}

#[test]
fn no_traffic_is_only_information() {
    let r = run(&Snapshot::default(), &healthy_node());
    assert_eq!(codes(&r), vec!["NO_VXLAN_TRAFFIC"]);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.peers.len(), 2, "FDB peers are listed even when silent");
}

#[test]
fn inner_traffic_of_unknown_macs_is_reported_and_counts_as_decapsulated() {
    let mut w = Snapshot::default();
    w.peers.insert(std::net::IpAddr::from(GLADIUS), outer(4, 0));
    w.inner.insert([0x0e, 9, 9, 9, 9, 9], inner(4, 0));
    let mut node = healthy_node();
    node.fdb.clear();
    let r = run(&w, &node);
    assert!(!codes(&r).contains(&"VXLAN_NOT_DECAPSULATED"));
    assert_eq!(r.unattributed_inner.len(), 1);
    assert_eq!(r.unattributed_inner[0].mac, "0e:09:09:09:09:09");
}

fn drop_at(reason: u32, peer: Option<Ipv4Addr>, mac: Option<[u8; 6]>) -> DropWhere {
    DropWhere {
        reason,
        dir: 0,
        peer: peer.map(std::net::IpAddr::from),
        mac,
    }
}

#[test]
fn drops_are_named_and_attributed() {
    let mut w = healthy_window();
    w.drops.insert(drop_at(2, Some(GLADIUS), None), 7);
    w.drops.insert(drop_at(2, None, None), 1);
    let r = run(&w, &healthy_node());
    assert_eq!(r.drops.len(), 1);
    assert_eq!(
        (
            r.drops[0].reason.as_str(),
            r.drops[0].direction,
            r.drops[0].packets
        ),
        ("REASON_2", "rx", 8)
    );
    assert_eq!(r.peers[0].drops.get("REASON_2"), Some(&7));
}

#[test]
fn overflow_is_information() {
    let mut w = healthy_window();
    w.overflow.peers = 3;
    let r = run(&w, &healthy_node());
    assert_eq!(codes(&r), vec!["MAP_OVERFLOW"]);
    assert_eq!(r.exit_code(), 0);
}

/// A full anomaly pool is said apart from a full peer table: raising
/// --max-peers is not the cure there.
#[test]
fn a_full_anomaly_pool_is_information_with_its_own_evidence() {
    let mut w = healthy_window();
    w.overflow.anomalies = 7;
    let r = run(&w, &healthy_node());
    assert_eq!(codes(&r), vec!["MAP_OVERFLOW"]);
    assert_eq!(r.exit_code(), 0);
    let f = &r.findings[0];
    assert!(f.summary.contains("anomalies"), "{}", f.summary);
    assert_eq!(
        f.evidence,
        vec!["anomalies of peers without a slot in PEER_COLD: 7".to_string()]
    );
    assert!(!f.remediation.starts_with("raise"), "{}", f.remediation);
}

use crate::node::{NUD_FAILED, NUD_PERMANENT, NeighEntry, RouteEntry, Uplink};

/// eq14-001's uplink.
pub(super) fn eth0() -> Uplink {
    Uplink {
        name: "eth0".into(),
        ifindex: 2,
        up: true,
        mtu: Some(1500),
        mac: None,
        addrs: vec![EQ14],
        addrs6: vec![],
    }
}

/// eq14-001 with Flannel's routes and neighbours for both peers.
fn programmed_node() -> NodeState {
    let mut n = healthy_node();
    for (subnet, mac) in [([10, 42, 1, 0], MAC_G), ([10, 42, 2, 0], MAC_M)] {
        let gw = Ipv4Addr::from(subnet);
        n.routes.push(RouteEntry {
            dst: gw.into(),
            prefix_len: 24,
            gateway: Some(gw.into()),
            oif: Some(4),
            onlink: true,
        });
        n.neighbours.push(NeighEntry {
            ip: gw.into(),
            mac: Some(mac),
            state: NUD_PERMANENT,
        });
    }
    n.uplink = Some(eth0());
    n
}

fn with_inner_src(mut t: PeerValue, mac: [u8; 6]) -> PeerValue {
    t.rx.last_inner_src = mac;
    t
}

fn healthy_window_with_macs() -> Snapshot {
    let mut w = healthy_window();
    w.peers.insert(
        std::net::IpAddr::from(GLADIUS),
        with_inner_src(outer(10, 10), MAC_G),
    );
    w.peers.insert(
        std::net::IpAddr::from(MOMONOKE),
        with_inner_src(outer(5, 5), MAC_M),
    );
    w
}

#[test]
fn a_fully_programmed_healthy_node_raises_nothing() {
    let r = run(&healthy_window_with_macs(), &programmed_node());
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.peers[0].rx_vtep_mac.as_deref(), Some("0e:00:00:00:00:11"));
}

#[test]
fn a_peer_that_never_answers_is_silent_only_while_others_do() {
    let mut w = healthy_window_with_macs();
    w.peers
        .insert(std::net::IpAddr::from(MOMONOKE), outer(0, 7));
    let r = run(&w, &programmed_node());
    assert_eq!(codes(&r), vec!["PEER_SILENT"]);
    assert_eq!(r.findings[0].peer.as_deref(), Some("192.0.2.12"));
    assert_eq!(r.findings[0].severity, Severity::Warning);
    // Nobody answers at all: nothing to compare with, no blame.
    let mut quiet = Snapshot::default();
    quiet
        .peers
        .insert(std::net::IpAddr::from(GLADIUS), outer(0, 3));
    quiet
        .peers
        .insert(std::net::IpAddr::from(MOMONOKE), outer(0, 3));
    assert!(!codes(&run(&quiet, &programmed_node())).contains(&"PEER_SILENT"));
    // Port unreachable is its own, stronger finding.
    let mut w = healthy_window_with_macs();
    let mut m = outer(0, 7);
    m.rx.icmp_port_unreachable = 2;
    w.peers.insert(std::net::IpAddr::from(MOMONOKE), m);
    assert_eq!(
        codes(&run(&w, &programmed_node())),
        vec!["PEER_PORT_UNREACHABLE"]
    );
}

fn other_vni(t: PeerValue, vni: u32) -> PeerValue {
    let mut t = t;
    t.rx.other_vni = t.rx.packets;
    t.rx.last_other_vni = vni;
    t
}

#[test]
fn one_peer_on_another_vni_is_named() {
    let mut w = healthy_window_with_macs();
    w.peers
        .insert(std::net::IpAddr::from(MOMONOKE), other_vni(outer(5, 5), 2));
    w.inner.remove(&MAC_M);
    let r = run(&w, &programmed_node());
    assert_eq!(codes(&r), vec!["VNI_MISMATCH"]);
    assert_eq!(r.findings[0].peer.as_deref(), Some("192.0.2.12"));
    assert!(r.findings[0].summary.contains("VNI 2"));
}

#[test]
fn every_peer_on_another_vni_means_this_node_is_wrong() {
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), other_vni(outer(5, 0), 1));
    w.peers
        .insert(std::net::IpAddr::from(MOMONOKE), other_vni(outer(5, 0), 1));
    let mut node = programmed_node();
    node.vni = Some(2);
    let r = run(&w, &node);
    assert_eq!(codes(&r), vec!["VNI_MISMATCH"]);
    assert_eq!(r.findings[0].peer, None, "healthy peers are not blamed");
    assert!(r.findings[0].summary.contains("serves VNI 2"));
}

fn other_port(t: PeerValue, port: u16) -> PeerValue {
    let mut t = t;
    t.rx.other_port = 4;
    t.rx.last_other_port = port;
    t
}

#[test]
fn port_mismatch_blames_the_odd_one_out() {
    // Every peer sends to 8472 and rejects our 4789: this node is wrong.
    let mut w = Snapshot::default();
    for ip in [GLADIUS, MOMONOKE] {
        let mut t = other_port(outer(0, 3), 8472);
        t.rx.icmp_port_unreachable = 1;
        w.peers.insert(std::net::IpAddr::from(ip), t);
    }
    let mut node = programmed_node();
    node.vxlan_port = 4789;
    let r = run(&w, &node);
    assert_eq!(codes(&r), vec!["VXLAN_PORT_MISMATCH"]);
    assert_eq!(r.findings[0].peer, None);
    // One peer on 4789 among peers on our 8472: that peer is named.
    let mut w = healthy_window_with_macs();
    w.peers
        .insert(std::net::IpAddr::from(EQ14), other_port(outer(0, 0), 4789));
    let mut node = programmed_node();
    node.local_vtep = Some(Ipv4Addr::new(192, 0, 2, 99).into());
    // A peer is an address the FDB names (CONTRACT.md, "Identity"): the
    // CNI programs a node with another port like any other.
    node.fdb.push(FdbEntry {
        mac: [0x0e, 0, 0, 0, 0, 0x13],
        dst: Some(EQ14.into()),
        permanent: true,
    });
    let r = run(&w, &node);
    assert_eq!(codes(&r), vec!["VXLAN_PORT_MISMATCH"]);
    assert_eq!(r.findings[0].peer.as_deref(), Some("192.0.2.13"));
}

#[test]
fn fdb_entry_missing_names_the_peer_seen_behind_the_mac() {
    let mut node = programmed_node();
    node.fdb.retain(|e| e.mac != MAC_G);
    let r = run(&healthy_window_with_macs(), &node);
    assert_eq!(codes(&r), vec!["FDB_ENTRY_MISSING"]);
    let f = &r.findings[0];
    assert_eq!(f.peer.as_deref(), Some("192.0.2.11"));
    assert!(
        f.evidence
            .iter()
            .any(|e| e == "bridge fdb: no entry for 0e:00:00:00:00:11")
    );
}

#[test]
fn neigh_entry_missing_names_the_orphaned_fdb_peer() {
    let mut node = programmed_node();
    node.neighbours[0].mac = None;
    node.neighbours[0].state = NUD_FAILED;
    let r = run(&healthy_window_with_macs(), &node);
    assert_eq!(codes(&r), vec!["NEIGH_ENTRY_MISSING"]);
    assert_eq!(r.findings[0].peer.as_deref(), Some("192.0.2.11"));
    assert!(r.findings[0].summary.contains("via 10.42.1.0"));
}

#[test]
fn fdb_entry_stale_names_both_addresses() {
    let mut node = programmed_node();
    node.fdb[0].dst = Some(MOMONOKE.into());
    let r = run(&healthy_window_with_macs(), &node);
    assert!(codes(&r).contains(&"FDB_ENTRY_STALE"), "{:?}", codes(&r));
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "FDB_ENTRY_STALE")
        .expect("stale");
    assert_eq!(f.peer.as_deref(), Some("192.0.2.11"));
    assert!(f.summary.contains("192.0.2.12") && f.summary.contains("192.0.2.11"));
}

#[test]
fn forwarding_off_is_critical() {
    let mut node = programmed_node();
    node.forwarding = Some(false);
    let r = run(&healthy_window_with_macs(), &node);
    assert_eq!(codes(&r), vec!["FORWARDING_DISABLED"]);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn overlay_mtu_plus_overhead_must_fit_the_uplink() {
    let mut node = programmed_node();
    if let Some(u) = node.uplink.as_mut() {
        u.mtu = Some(1450);
    }
    let r = run(&healthy_window_with_macs(), &node);
    assert_eq!(codes(&r), vec!["MTU_MISMATCH"]);
    assert!(r.findings[0].remediation.contains("1400"));
    // Exactly 50 bytes of room is fine.
    let ok = run(&healthy_window_with_macs(), &programmed_node());
    assert!(!codes(&ok).contains(&"MTU_MISMATCH"));
}

#[test]
fn drops_raise_a_warning_with_each_reason() {
    let mut w = healthy_window_with_macs();
    w.drops.insert(drop_at(5, Some(GLADIUS), None), 3);
    w.drops.insert(drop_at(9, None, Some(MAC_M)), 2);
    let r = run(&w, &programmed_node());
    assert_eq!(codes(&r), vec!["VXLAN_DROPS"]);
    let f = &r.findings[0];
    assert!(
        f.evidence.contains(&"REASON_5 rx 3".to_string()),
        "{:?}",
        f.evidence
    );
    assert_eq!(
        r.peers[1].drops.get("REASON_9"),
        Some(&2),
        "inner drops attributed by MAC"
    );
}

#[test]
fn missing_drop_tracing_is_information() {
    let w = healthy_window_with_macs();
    let node = programmed_node();
    let r = diagnose(&Inputs {
        window: &w,
        window_secs: 5.0,
        node: &node,
        drop_reason: &|n| n.to_string(),
        attached: BTreeMap::new(),
        drops_unavailable: Some("no BTF"),
        attach_gaps: 0,
        detached: Vec::new(),
    });
    assert_eq!(codes(&r), vec!["DROP_REASONS_UNAVAILABLE"]);
    assert_eq!(r.exit_code(), 0);
}

/// A pod on momonoke (10.42.2.54, in a pod subnet routed via the overlay)
/// sends VXLAN-shaped UDP with VNI 77: an unknown source, never a peer row
/// or a critical.
#[test]
fn vxlan_from_a_pod_address_is_an_unknown_source() {
    let mut w = healthy_window_with_macs();
    let pod = Ipv4Addr::new(10, 42, 2, 54);
    w.peers
        .insert(std::net::IpAddr::from(pod), other_vni(outer(40, 0), 77));
    let r = run(&w, &programmed_node());
    assert_eq!(codes(&r), vec!["UNKNOWN_VXLAN_SOURCE"]);
    assert!(r.peers.iter().all(|p| p.peer != "10.42.2.54"));
    let u = &r.unknown_sources;
    assert_eq!(u.sources.len(), 1);
    assert_eq!(
        (u.sources[0].source.as_str(), u.sources[0].why),
        ("10.42.2.54", "pod network")
    );
    assert_eq!(
        (u.sources[0].rx_packets, u.sources[0].rx_other_vni),
        (40, 40)
    );
    assert!(r.findings[0].summary.starts_with("40 VXLAN-shaped packets"));
    assert_eq!(r.exit_code(), 0);
}

/// While the FDB exists, an address it does not name is not a peer; with
/// more than the listed few, the rest are summed.
#[test]
fn unknown_sources_are_bounded() {
    let mut w = healthy_window_with_macs();
    for i in 1..=8u8 {
        w.peers.insert(
            std::net::IpAddr::from(Ipv4Addr::new(198, 51, 100, i)),
            outer(u64::from(i), 0),
        );
    }
    let r = run(&w, &programmed_node());
    assert_eq!(codes(&r), vec!["UNKNOWN_VXLAN_SOURCE"]);
    assert_eq!(r.peers.len(), 2);
    let u = &r.unknown_sources;
    let listed: Vec<(&str, u64)> = u
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.rx_packets))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("198.51.100.8", 8),
            ("198.51.100.7", 7),
            ("198.51.100.6", 6),
            ("198.51.100.5", 5),
            ("198.51.100.4", 4)
        ]
    );
    assert_eq!((u.other_sources, u.other_packets), (3, 6));
    assert!(r.findings[0].summary.starts_with("36 VXLAN-shaped packets"));
}

/// The same datagrams from momonoke's own address (what ip-masq makes of
/// the pod's): momonoke's VXLAN decapsulates, so they are evidence in an
/// info finding, and their VNI drops are no VXLAN_DROPS warning.
#[test]
fn odd_vxlan_from_a_peer_whose_traffic_decapsulates_is_info() {
    let mut w = healthy_window_with_macs();
    let mut m = outer(45, 5);
    m.rx.other_vni = 40;
    m.rx.last_other_vni = 77;
    m.rx.icmp_port_unreachable = 3;
    w.peers.insert(std::net::IpAddr::from(MOMONOKE), m);
    w.drops.insert(
        DropWhere {
            reason: 7,
            dir: flannel_probe_common::abi::DIR_RX,
            peer: Some(std::net::IpAddr::from(MOMONOKE)),
            mac: None,
        },
        40,
    );
    let r = run_named(&w, &programmed_node(), &|n| {
        if n == 7 {
            "VXLAN_VNI_NOT_FOUND".into()
        } else {
            format!("REASON_{n}")
        }
    });
    assert_eq!(codes(&r), vec!["PEER_ODD_VXLAN"]);
    let f = &r.findings[0];
    assert_eq!(
        (f.peer.as_deref(), f.severity),
        (Some("192.0.2.12"), Severity::Info)
    );
    assert!(
        f.evidence
            .contains(&"rx_other_vni=40 of rx_encap_packets=45 (last VNI 77)".into())
    );
    assert!(f.evidence.contains(&"icmp_port_unreachable=3".into()));
    assert_eq!(r.exit_code(), 0);
    // Nothing of momonoke decapsulates: the same packets are its fault.
    w.inner.remove(&MAC_M);
    let r = run(&w, &programmed_node());
    assert!(codes(&r).contains(&"VNI_MISMATCH"), "{:?}", codes(&r));
    assert!(codes(&r).contains(&"PEER_PORT_UNREACHABLE"));
}

/// With no FDB (the overlay missing: the incident), an underlay sender of
/// well-formed VXLAN is a peer; a pod address still is not.
#[test]
fn without_an_fdb_underlay_senders_are_peers() {
    let mut node = programmed_node();
    node.overlay = None;
    node.fdb.clear();
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), outer(10, 0));
    w.peers
        .insert(std::net::IpAddr::from(MOMONOKE), outer(10, 0));
    let r = run(&w, &node);
    assert_eq!(r.peers.len(), 2);
    assert!(codes(&r).contains(&"VXLAN_NOT_DECAPSULATED"));
    assert!(r.unknown_sources.sources.is_empty());
}

#[test]
fn fragmentation_needed_for_our_vxlan_names_the_path_mtu_on_the_sender() {
    let mut w = healthy_window();
    let eq = w
        .peers
        .get_mut(&std::net::IpAddr::from(GLADIUS))
        .expect("gladius in the healthy window");
    eq.rx.frag_needed = 7;
    eq.rx.last_frag_mtu = 1400;
    eq.tx.large = 7;
    eq.tx.max_outer_len = 1478;
    let r = run(&w, &healthy_node());
    assert_eq!(codes(&r), vec!["UNDERLAY_MTU_BLACKHOLE"]);
    let f = &r.findings[0];
    assert_eq!(f.peer.as_deref(), Some("192.0.2.11"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.summary.contains("next-hop MTU 1400"), "{}", f.summary);
    assert!(
        f.evidence[0].contains("icmp_frag_needed=7")
            && f.evidence[0].contains("tx_encap_large=7")
            && f.evidence[0].contains("tx_encap_max_len=1478"),
        "{:?}",
        f.evidence
    );
    assert!(f.remediation.contains("MTU to 1350"), "{}", f.remediation);
    let p = r
        .peers
        .iter()
        .find(|p| p.peer == "192.0.2.11")
        .expect("the peer row");
    assert_eq!(p.traffic.icmp_frag_needed, 7);
    assert_eq!(p.icmp_frag_needed_mtu, Some(1400));
    // Without a named MTU the class boundary is the advice.
    let mut w = healthy_window();
    w.peers
        .get_mut(&std::net::IpAddr::from(GLADIUS))
        .expect("gladius")
        .rx
        .frag_needed = 1;
    let r = run(&w, &healthy_node());
    assert_eq!(
        r.peers
            .iter()
            .find(|p| p.peer == "192.0.2.11")
            .map(|p| p.icmp_frag_needed_mtu),
        Some(None)
    );
    assert!(r.findings[0].remediation.contains("ping -M do"));
}
