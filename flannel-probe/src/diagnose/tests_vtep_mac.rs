//! `VTEP_MAC_STALE` on hand-built inputs: eq14-001's overlay MAC changed,
//! its peers still address the old one.
use flannel_probe_common::abi::{DIR_RX, InnerCounters, InnerValue, PeerCounters, PeerValue};

use super::tests::{GLADIUS, MAC_G, MAC_M, MOMONOKE, healthy_node, run_named};
use crate::{
    datapath::{DropWhere, Snapshot},
    node::NodeState,
    report::{Report, Severity},
};

const NEW: [u8; 6] = [0x0e, 0, 0, 0, 0xee, 0x13];
const OLD: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x13];
const OTHERHOST: u32 = 30;

/// eq14-001 after its overlay took the NEW MAC; the peers are programmed
/// as before.
fn node() -> NodeState {
    let mut n = healthy_node();
    if let Some(o) = n.overlay.as_mut() {
        o.mac = Some(NEW);
    }
    n
}

/// `rx` packets from the peer, `stale` of them to `to`, all decapsulated.
fn peer(rx: u64, stale: u64, to: [u8; 6]) -> PeerValue {
    PeerValue {
        rx: PeerCounters {
            packets: rx,
            bytes: rx * 148,
            stale_dst: stale,
            last_stale_dst: if stale > 0 { to } else { [0; 6] },
            ..Default::default()
        },
        tx: PeerCounters {
            packets: rx,
            bytes: rx * 148,
            ..Default::default()
        },
    }
}

fn decap(n: u64) -> InnerValue {
    let c = InnerCounters {
        packets: n,
        bytes: n * 98,
    };
    InnerValue { rx: c, tx: c }
}

/// Both peers send only to the old MAC; the kernel drops it as OTHERHOST.
fn stale_window() -> Snapshot {
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), peer(20, 20, OLD));
    w.peers
        .insert(std::net::IpAddr::from(MOMONOKE), peer(12, 12, OLD));
    w.inner.insert(MAC_G, decap(20));
    w.inner.insert(MAC_M, decap(12));
    for (mac, n) in [(MAC_G, 20), (MAC_M, 12)] {
        let at = DropWhere {
            reason: OTHERHOST,
            dir: DIR_RX,
            peer: None,
            mac: Some(mac),
        };
        w.drops.insert(at, n);
    }
    w
}

fn run(w: &Snapshot, node: &NodeState) -> Report {
    run_named(w, node, &|n| {
        if n == OTHERHOST {
            "OTHERHOST".into()
        } else {
            format!("REASON_{n}")
        }
    })
}

fn raised(r: &Report) -> Vec<(&str, Option<&str>)> {
    r.findings
        .iter()
        .map(|f| (f.code.as_str(), f.peer.as_deref()))
        .collect()
}

#[test]
fn each_sender_of_the_old_mac_is_named_and_explains_the_otherhost_drops() {
    let r = run(&stale_window(), &node());
    assert_eq!(
        raised(&r),
        vec![
            ("VTEP_MAC_STALE", Some("192.0.2.11")),
            ("VTEP_MAC_STALE", Some("192.0.2.12"))
        ],
        "no VXLAN_DROPS: the OTHERHOST drops are the stale frames"
    );
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.node.overlay_mac.as_deref(), Some("0e:00:00:00:ee:13"));
    let g = &r.peers[0];
    assert_eq!(g.rx_stale_dst, 20);
    assert_eq!(
        g.rx_last_stale_dst_mac.as_deref(),
        Some("0e:00:00:00:00:13")
    );
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.summary.contains("0e:00:00:00:00:13") && f.summary.contains("0e:00:00:00:ee:13"));
    assert_eq!(
        f.evidence,
        vec![
            "peer uses 0e:00:00:00:00:13, flannel.1 has 0e:00:00:00:ee:13".to_string(),
            "rx_stale_dst=20 of rx_encap_packets=20 from 192.0.2.11".into(),
            "the kernel dropped 20 of them as OTHERHOST on flannel.1 (not addressed to this host)"
                .into(),
        ]
    );
    for want in [
        "restart flannel on 192.0.2.11",
        "flannel.alpha.coreos.com/backend-data",
        "MACAddressPolicy=none",
        "flannel-io/flannel#1795",
    ] {
        assert!(f.remediation.contains(want), "{want}: {}", f.remediation);
    }
}

#[test]
fn drops_beyond_the_stale_frames_are_still_reported() {
    let mut w = stale_window();
    // 5 more OTHERHOST drops of gladius than it sent stale frames.
    w.drops.insert(
        DropWhere {
            reason: OTHERHOST,
            dir: DIR_RX,
            peer: Some(std::net::IpAddr::from(GLADIUS)),
            mac: None,
        },
        5,
    );
    let r = run(&w, &node());
    let drops = r
        .findings
        .iter()
        .find(|f| f.code == "VXLAN_DROPS")
        .expect("VXLAN_DROPS");
    assert!(
        drops.evidence.contains(&"OTHERHOST rx 5".to_string()),
        "{drops:?}"
    );
}

#[test]
fn not_raised_for_a_minority_another_peers_mac_or_an_unknown_own_mac() {
    // A minority of gladius's VXLAN (anyone behind its address can send it).
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), peer(20, 10, OLD));
    w.inner.insert(MAC_G, decap(20));
    assert_eq!(raised(&run(&w, &node())), vec![]);
    // Frames for momonoke's VTEP: the sender's FDB sends momonoke's MAC
    // here (FDB_ENTRY_STALE on the sender), not an old MAC of ours.
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), peer(20, 20, MAC_M));
    w.inner.insert(MAC_G, decap(20));
    assert_eq!(raised(&run(&w, &node())), vec![]);
    // Without our own MAC nothing can be judged.
    let mut n = node();
    if let Some(o) = n.overlay.as_mut() {
        o.mac = None;
    }
    let r = run(&stale_window(), &n);
    assert!(
        r.findings.iter().all(|f| f.code != "VTEP_MAC_STALE"),
        "{:?}",
        raised(&r)
    );
    // A healthy window: nothing stale.
    let mut w = Snapshot::default();
    w.peers
        .insert(std::net::IpAddr::from(GLADIUS), peer(20, 0, OLD));
    w.inner.insert(MAC_G, decap(20));
    let r = run(&w, &node());
    assert_eq!(raised(&r), vec![]);
    assert_eq!(r.peers[0].rx_last_stale_dst_mac, None);
}
