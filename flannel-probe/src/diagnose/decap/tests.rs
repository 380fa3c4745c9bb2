//! DECAP_FILTERED and VXLAN_CHECKSUM_ERRORS on hand-built windows: raised
//! exactly when their drops are there, and not listed again by VXLAN_DROPS.
use std::net::Ipv4Addr;

use flannel_probe_common::abi::{DIR_RX, DIR_TX};

use super::super::tests::{healthy_node, healthy_window, run_named};
use crate::{
    datapath::{DropWhere, Snapshot},
    node::NodeState,
    report::{Finding, Report, Severity},
};

const GLADIUS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const MOMONOKE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
const MAC_G: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x11];
const MAC_M: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x12];

const NETFILTER_DROP: u32 = 1;
const UDP_CSUM: u32 = 2;
const OTHERHOST: u32 = 3;
const IP_INADDRERRORS: u32 = 4;
const IP_RPFILTER: u32 = 5;

fn name(n: u32) -> String {
    match n {
        NETFILTER_DROP => "NETFILTER_DROP",
        UDP_CSUM => "UDP_CSUM",
        OTHERHOST => "OTHERHOST",
        IP_INADDRERRORS => "IP_INADDRERRORS",
        IP_RPFILTER => "IP_RPFILTER",
        _ => "NOT_SPECIFIED",
    }
    .into()
}

fn run(window: &Snapshot, node: &NodeState) -> Report {
    run_named(window, node, &name)
}

/// An inner packet dropped on the overlay after decapsulation from `mac`.
fn inner_drop(reason: u32, mac: [u8; 6]) -> DropWhere {
    DropWhere {
        reason,
        dir: DIR_RX,
        peer: None,
        mac: Some(mac),
    }
}

/// An outer VXLAN datagram from `peer` dropped before decapsulation.
fn outer_drop(reason: u32, peer: Ipv4Addr) -> DropWhere {
    DropWhere {
        reason,
        dir: DIR_RX,
        peer: Some(std::net::IpAddr::from(peer)),
        mac: None,
    }
}

fn serious(r: &Report) -> Vec<(&str, Option<&str>, Severity)> {
    r.findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .map(|f| (f.code.as_str(), f.peer.as_deref(), f.severity))
        .collect()
}

fn the<'a>(r: &'a Report, code: &str, peer: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.code.as_str() == code && f.peer.as_deref() == Some(peer))
        .unwrap_or_else(|| panic!("no {code} for {peer}: {:?}", r.findings))
}

#[test]
fn forward_drops_of_decapsulated_traffic_name_each_peer_and_replace_vxlan_drops() {
    // healthy_window: gladius 10 decapsulated, momonoke 5.
    let mut w = healthy_window();
    w.drops.insert(inner_drop(NETFILTER_DROP, MAC_G), 10);
    w.drops.insert(inner_drop(NETFILTER_DROP, MAC_M), 5);
    let r = run(&w, &healthy_node());
    assert_eq!(
        serious(&r),
        vec![
            ("DECAP_FILTERED", Some("192.0.2.11"), Severity::Critical),
            ("DECAP_FILTERED", Some("192.0.2.12"), Severity::Critical),
        ]
    );
    let f = the(&r, "DECAP_FILTERED", "192.0.2.11");
    assert!(f.summary.contains("10 of its 10"), "{f:?}");
    assert!(
        f.evidence
            .iter()
            .any(|e| e.starts_with("NETFILTER_DROP rx 10")),
        "{f:?}"
    );
    assert!(f.evidence.iter().any(|e| e.contains("rx_decap_packets=10")));
    assert!(f.remediation.contains("iptables -S FORWARD"));
    assert!(f.remediation.contains("nft list ruleset"));
    assert!(f.remediation.contains("iptables -P FORWARD DROP"));
    // The drops table still shows them; only the finding is not repeated.
    assert_eq!(r.drops.len(), 1);
    assert_eq!(r.drops[0].packets, 15);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn another_reason_is_named_with_its_own_remedy() {
    let mut w = healthy_window();
    w.drops.insert(inner_drop(IP_RPFILTER, MAC_M), 5);
    let r = run(&w, &healthy_node());
    assert_eq!(
        serious(&r),
        vec![("DECAP_FILTERED", Some("192.0.2.12"), Severity::Critical)]
    );
    let f = the(&r, "DECAP_FILTERED", "192.0.2.12");
    assert!(f.summary.contains("IP_RPFILTER"), "{f:?}");
    assert!(f.remediation.contains("rp_filter"), "{f:?}");
}

#[test]
fn a_few_filtered_flows_are_vxlan_drops_not_a_broken_forward_path() {
    // 4 of gladius's 10: a NetworkPolicy denying one flow looks so.
    let mut w = healthy_window();
    w.drops.insert(inner_drop(NETFILTER_DROP, MAC_G), 4);
    let r = run(&w, &healthy_node());
    assert_eq!(serious(&r), vec![("VXLAN_DROPS", None, Severity::Warning)]);
}

#[test]
fn a_firewall_on_the_vxlan_itself_stays_vxlan_drops() {
    let mut w = Snapshot {
        peers: healthy_window().peers,
        ..Snapshot::default()
    };
    w.drops.insert(outer_drop(NETFILTER_DROP, GLADIUS), 10);
    w.drops.insert(outer_drop(NETFILTER_DROP, MOMONOKE), 5);
    let r = run(&w, &healthy_node());
    let codes: Vec<&str> = r.findings.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, vec!["VXLAN_NOT_DECAPSULATED", "VXLAN_DROPS"]);
}

#[test]
fn otherhost_and_forwarding_off_are_other_findings_business() {
    let mut w = healthy_window();
    w.drops.insert(inner_drop(OTHERHOST, MAC_G), 10);
    let r = run(&w, &healthy_node());
    assert_eq!(serious(&r), vec![("VXLAN_DROPS", None, Severity::Warning)]);

    let mut w = healthy_window();
    w.drops.insert(inner_drop(IP_INADDRERRORS, MAC_G), 10);
    let mut node = healthy_node();
    node.forwarding = Some(false);
    let r = run(&w, &node);
    assert_eq!(
        serious(&r),
        vec![
            ("FORWARDING_DISABLED", None, Severity::Critical),
            ("VXLAN_DROPS", None, Severity::Warning),
        ]
    );
}

#[test]
fn tx_drops_and_unknown_macs_are_not_decap_filtered() {
    let mut w = healthy_window();
    w.drops.insert(
        DropWhere {
            reason: NETFILTER_DROP,
            dir: DIR_TX,
            peer: None,
            mac: Some(MAC_G),
        },
        10,
    );
    w.drops
        .insert(inner_drop(NETFILTER_DROP, [0x0e, 9, 9, 9, 9, 9]), 10);
    let r = run(&w, &healthy_node());
    assert_eq!(serious(&r), vec![("VXLAN_DROPS", None, Severity::Warning)]);
}

#[test]
fn bad_checksums_from_a_peer_whose_traffic_flows_warn() {
    // gladius: 10 arrived and decapsulated, 7 more dropped for the checksum.
    let mut w = healthy_window();
    if let Some(g) = w.peers.get_mut(&std::net::IpAddr::from(GLADIUS)) {
        g.rx.packets += 7;
    }
    w.drops.insert(outer_drop(UDP_CSUM, GLADIUS), 7);
    let mut node = healthy_node();
    node.udp_in_csum_errors = Some(9);
    let r = run(&w, &node);
    assert_eq!(
        serious(&r),
        vec![(
            "VXLAN_CHECKSUM_ERRORS",
            Some("192.0.2.11"),
            Severity::Warning
        )]
    );
    let f = the(&r, "VXLAN_CHECKSUM_ERRORS", "192.0.2.11");
    assert!(f.summary.starts_with("7 VXLAN datagrams"), "{f:?}");
    assert!(
        f.evidence
            .iter()
            .any(|e| e.starts_with("UDP_CSUM rx 7 of rx_encap_packets=17")),
        "{f:?}"
    );
    assert!(f.evidence.iter().any(|e| e.contains("InCsumErrors=9")));
    assert!(
        f.remediation
            .contains("ethtool -K flannel.1 tx-checksum-ip-generic off")
    );
    assert!(f.remediation.contains("KERNEL==\"flannel.1\""));
    assert!(f.remediation.contains("flannel#1279"));
}

#[test]
fn only_bad_checksums_from_a_peer_are_critical_and_not_the_incident() {
    // gladius sends 7, all with bad checksums; momonoke sends nothing.
    let mut w = Snapshot::default();
    let mut g = healthy_window().peers[&std::net::IpAddr::from(GLADIUS)];
    g.rx.packets = 7;
    g.tx.packets = 0;
    w.peers.insert(std::net::IpAddr::from(GLADIUS), g);
    w.drops.insert(outer_drop(UDP_CSUM, GLADIUS), 7);
    let r = run(&w, &healthy_node());
    assert_eq!(
        serious(&r),
        vec![(
            "VXLAN_CHECKSUM_ERRORS",
            Some("192.0.2.11"),
            Severity::Critical
        )]
    );
    let f = the(&r, "VXLAN_CHECKSUM_ERRORS", "192.0.2.11");
    assert!(
        f.evidence
            .iter()
            .any(|e| e.contains("InCsumErrors unreadable"))
    );
}

#[test]
fn checksum_drops_of_a_non_peer_name_no_peer() {
    let mut w = healthy_window();
    let pod = Ipv4Addr::new(10, 42, 1, 5);
    w.drops.insert(outer_drop(UDP_CSUM, pod), 3);
    let r = run(&w, &healthy_node());
    assert!(
        !r.findings
            .iter()
            .any(|f| f.code.as_str() == "VXLAN_CHECKSUM_ERRORS"),
        "{:?}",
        r.findings
    );
}

#[test]
fn reasons_together_past_half_are_each_named() {
    // 3 + 3 of gladius's 10: each alone is under half, together over.
    let mut w = healthy_window();
    w.drops.insert(inner_drop(NETFILTER_DROP, MAC_G), 3);
    w.drops.insert(inner_drop(IP_RPFILTER, MAC_G), 3);
    let r = run(&w, &healthy_node());
    assert_eq!(
        serious(&r),
        vec![
            ("DECAP_FILTERED", Some("192.0.2.11"), Severity::Critical),
            ("DECAP_FILTERED", Some("192.0.2.11"), Severity::Critical),
        ]
    );
    let reasons: Vec<bool> = r
        .findings
        .iter()
        .map(|f| f.summary.contains("NETFILTER_DROP") || f.summary.contains("IP_RPFILTER"))
        .collect();
    assert_eq!(reasons, vec![true, true]);
}
