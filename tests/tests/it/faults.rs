//! One lab test per fault of docs/LAB.md: the probe runs on all three nodes
//! while pods talk, and each node's report must name exactly what the fault
//! causes there: the codes above `info`, the peer each names, the exit
//! code, and the kernel's drop reason where it gives one. Reason names are
//! this kernel's (6.18); the probe reads them from BTF.
use std::{collections::BTreeMap, thread};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    support::reports::{self, drops, finding, peer, serious},
};
use serde_json::Value;

const GLADIUS: &str = "192.0.2.11";
const MOMONOKE: &str = "192.0.2.12";
const EQ14: &str = "192.0.2.13";
const NODES: [&str; 3] = ["gladius", "momonoke", "eq14-001"];

/// Reports of every node: name -> (exit code, report).
struct Scan(BTreeMap<String, (i32, Value)>);

impl Scan {
    fn of(&self, node: &str) -> &Value {
        &self.0[node].1
    }

    fn code(&self, node: &str) -> i32 {
        self.0[node].0
    }

    /// Asserts the node's findings above `info`, exactly, with the peers they name.
    fn expect(&self, node: &str, want: &[(&str, Option<&str>)]) {
        let mut want: Vec<(String, Option<String>)> = want
            .iter()
            .map(|(c, p)| (c.to_string(), p.map(String::from)))
            .collect();
        want.sort();
        let got = serious(self.of(node));
        assert_eq!(got, want, "{node}: {:#}", self.of(node)["findings"]);
        assert_eq!(
            self.code(node),
            if want.is_empty() { 0 } else { 1 },
            "{node}'s exit code"
        );
    }

    /// Asserts the node's drops are exactly `reason` in `dir` (any count > 0).
    fn expect_drops(&self, node: &str, want: &[(&str, &str)]) {
        let got = drops(self.of(node));
        let names: Vec<(&str, &str)> = got
            .iter()
            .map(|(r, d, _)| (r.as_str(), d.as_str()))
            .collect();
        assert_eq!(names, want, "{node}'s drops: {got:?}");
        assert!(got.iter().all(|(_, _, n)| *n > 0));
    }
}

/// Builds a lab, injects `fault`, runs the probe on every node while pods
/// ping: gladius <-> eq14-001 both ways, gladius -> momonoke, and
/// momonoke -> eq14-001 with full-size packets.
/// `None` (the test returns, skipped) when not root.
fn scan(fault: Option<Fault>, secs: u32, pings: u32) -> Option<Scan> {
    let mut lab = Lab::for_test(LabSpec::default())?;
    if let Some(f) = &fault {
        lab.fault(f).unwrap_or_else(|e| panic!("inject {f}: {e:#}"));
    }
    let nodes: Vec<&LabNode> = NODES.iter().map(|n| lab.node(n)).collect();
    let runs: Vec<_> = NODES
        .iter()
        .map(ToString::to_string)
        .zip(reports::start_all(&lab, &nodes, secs))
        .collect();
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    thread::scope(|s| {
        s.spawn(|| lab.ping(g, e.pod_ip, pings, 0.2));
        s.spawn(|| lab.ping(e, g.pod_ip, pings, 0.2));
        s.spawn(|| lab.ping(g, m.pod_ip, pings, 0.2));
        s.spawn(|| lab.ping_size(m, e.pod_ip, pings, 0.2, 1400));
    });
    Some(Scan(
        runs.into_iter()
            .map(|(n, run)| {
                let r = reports::finish(run, &n);
                (n, r)
            })
            .collect(),
    ))
}

/// [`scan`] with `fault`, 5 s of probing and 10 pings each way.
fn incident(fault: Fault) -> Option<Scan> {
    scan(Some(fault), 5, 10)
}

fn on(node: &str) -> String {
    node.to_string()
}

#[test]
fn incident_overlay_deleted() {
    let Some(s) = incident(Fault::DeleteOverlay {
        node: on("eq14-001"),
    }) else {
        return;
    };
    s.expect(
        "eq14-001",
        &[
            ("OVERLAY_DEVICE_MISSING", None),
            ("VXLAN_DROPS", None),
            ("VXLAN_NOT_DECAPSULATED", None),
            ("VXLAN_PORT_NOT_BOUND", None),
        ],
    );
    s.expect_drops("eq14-001", &[("NO_SOCKET", "rx")]);
    assert!(peer(s.of("eq14-001"), GLADIUS)["drops"]["NO_SOCKET"].as_u64() > Some(0));
    s.expect("gladius", &[("PEER_PORT_UNREACHABLE", Some(EQ14))]);
    s.expect("momonoke", &[("PEER_PORT_UNREACHABLE", Some(EQ14))]);
    // The drop tracer sees every namespace; each node counts only its own.
    s.expect_drops("gladius", &[]);
    s.expect_drops("momonoke", &[]);
}

#[test]
fn overlay_down() {
    let Some(s) = incident(Fault::OverlayDown {
        node: on("eq14-001"),
    }) else {
        return;
    };
    s.expect(
        "eq14-001",
        &[
            ("OVERLAY_DEVICE_DOWN", None),
            ("VXLAN_DROPS", None),
            ("VXLAN_NOT_DECAPSULATED", None),
            ("VXLAN_PORT_NOT_BOUND", None),
        ],
    );
    s.expect_drops("eq14-001", &[("NO_SOCKET", "rx")]);
    s.expect("gladius", &[("PEER_PORT_UNREACHABLE", Some(EQ14))]);
    s.expect("momonoke", &[("PEER_PORT_UNREACHABLE", Some(EQ14))]);
}

#[test]
fn overlay_with_another_vni() {
    let Some(s) = incident(Fault::OtherVni {
        node: on("eq14-001"),
        vni: 2,
    }) else {
        return;
    };
    // Both peers send VNI 1 to eq14-001: it is the odd one out.
    s.expect("eq14-001", &[("VNI_MISMATCH", None), ("VXLAN_DROPS", None)]);
    s.expect_drops("eq14-001", &[("VXLAN_VNI_NOT_FOUND", "rx")]);
    // eq14-001's own traffic reaches gladius with VNI 2.
    s.expect(
        "gladius",
        &[("VNI_MISMATCH", Some(EQ14)), ("VXLAN_DROPS", None)],
    );
    s.expect_drops("gladius", &[("VXLAN_VNI_NOT_FOUND", "rx")]);
    let f = finding(s.of("gladius"), "VNI_MISMATCH").expect("VNI_MISMATCH");
    assert!(
        f["summary"].as_str().is_some_and(|t| t.contains("VNI 2")),
        "{f:#}"
    );
    s.expect("momonoke", &[("PEER_SILENT", Some(EQ14))]);
}

#[test]
fn underlay_firewall_drops_vxlan() {
    let Some(s) = incident(Fault::FirewallVxlan {
        node: on("eq14-001"),
    }) else {
        return;
    };
    s.expect(
        "eq14-001",
        &[("VXLAN_DROPS", None), ("VXLAN_NOT_DECAPSULATED", None)],
    );
    s.expect_drops("eq14-001", &[("NETFILTER_DROP", "rx")]);
    // momonoke only sends to eq14-001 and hears nothing, not even ICMP.
    s.expect("momonoke", &[("PEER_SILENT", Some(EQ14))]);
    // gladius still receives eq14-001's requests (its egress is open).
    s.expect("gladius", &[]);
}

#[test]
fn missing_fdb_entry() {
    let Some(s) = incident(Fault::MissingFdb {
        node: on("eq14-001"),
        peer: on("gladius"),
    }) else {
        return;
    };
    s.expect(
        "eq14-001",
        &[("FDB_ENTRY_MISSING", Some(GLADIUS)), ("VXLAN_DROPS", None)],
    );
    s.expect_drops("eq14-001", &[("NO_TX_TARGET", "tx")]);
    s.expect("gladius", &[("PEER_SILENT", Some(EQ14))]);
    s.expect("momonoke", &[]);
}

#[test]
fn missing_neighbour_entry() {
    let Some(s) = incident(Fault::MissingNeigh {
        node: on("eq14-001"),
        peer: on("gladius"),
    }) else {
        return;
    };
    s.expect(
        "eq14-001",
        &[
            ("NEIGH_ENTRY_MISSING", Some(GLADIUS)),
            ("VXLAN_DROPS", None),
        ],
    );
    s.expect_drops("eq14-001", &[("NEIGH_FAILED", "tx")]);
    s.expect("gladius", &[("PEER_SILENT", Some(EQ14))]);
    s.expect("momonoke", &[]);
}

#[test]
fn stale_fdb_entry() {
    let Some(s) = incident(Fault::StaleFdb {
        node: on("eq14-001"),
        peer: on("gladius"),
        wrong_ip: MOMONOKE.parse().expect("ip"),
    }) else {
        return;
    };
    s.expect("eq14-001", &[("FDB_ENTRY_STALE", Some(GLADIUS))]);
    let f = finding(s.of("eq14-001"), "FDB_ENTRY_STALE").expect("stale");
    assert!(
        f["summary"]
            .as_str()
            .is_some_and(|t| t.contains(MOMONOKE) && t.contains(GLADIUS)),
        "names both: {f:#}"
    );
    s.expect("gladius", &[("PEER_SILENT", Some(EQ14))]);
    // momonoke gets eq14-001's replies for gladius's VTEP and drops them.
    s.expect("momonoke", &[("VXLAN_DROPS", None)]);
    s.expect_drops("momonoke", &[("OTHERHOST", "rx")]);
}

#[test]
fn forwarding_disabled() {
    let Some(s) = incident(Fault::ForwardingOff {
        node: on("eq14-001"),
    }) else {
        return;
    };
    s.expect(
        "eq14-001",
        &[("FORWARDING_DISABLED", None), ("VXLAN_DROPS", None)],
    );
    s.expect_drops("eq14-001", &[("IP_INADDRERRORS", "rx")]);
    s.expect("momonoke", &[("PEER_SILENT", Some(EQ14))]);
    s.expect("gladius", &[]);
}

#[test]
fn overlay_mtu_too_large() {
    let Some(s) = incident(Fault::MtuTooLarge {
        node: on("eq14-001"),
    }) else {
        return;
    };
    s.expect("eq14-001", &[("MTU_MISMATCH", None)]);
    // Small pings pass; momonoke's full-size ones never arrive.
    s.expect("momonoke", &[("PEER_SILENT", Some(EQ14))]);
    s.expect("gladius", &[]);
}

#[test]
fn overlay_on_another_port() {
    let Some(s) = incident(Fault::OtherPort {
        node: on("eq14-001"),
        port: 4789,
    }) else {
        return;
    };
    // eq14-001 hears both peers on 8472 while it uses 4789: it is the odd
    // one out, and the peers rejecting its 4789 are not blamed.
    s.expect("eq14-001", &[("VXLAN_PORT_MISMATCH", None)]);
    s.expect(
        "gladius",
        &[
            ("PEER_PORT_UNREACHABLE", Some(EQ14)),
            ("VXLAN_PORT_MISMATCH", Some(EQ14)),
        ],
    );
    s.expect("momonoke", &[("PEER_PORT_UNREACHABLE", Some(EQ14))]);
}

#[test]
fn healthy_mesh_under_steady_traffic_raises_nothing() {
    let Some(s) = scan(None, 30, 140) else {
        return;
    };
    for n in NODES {
        s.expect(n, &[]);
        s.expect_drops(n, &[]);
    }
    let e = s.of("eq14-001");
    assert_eq!(
        peer(e, GLADIUS)["rx_decap_packets"],
        peer(e, GLADIUS)["rx_encap_packets"]
    );
}
