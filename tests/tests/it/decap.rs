//! Issue 14, items 1 and 3: VXLAN that arrives and dies in the receiving
//! node's kernel, named by where. A `forward` chain with `policy drop` on
//! eq14-001 (`DECAP_FILTERED` per peer: decapsulated, then dropped), and
//! VXLAN with wrong UDP checksums from gladius's node namespace
//! (`VXLAN_CHECKSUM_ERRORS` naming gladius, warning while its good traffic
//! also arrives, critical when nothing else does). Exact counts: every
//! packet of a ping or of the raw sender is one packet in the report.
use std::{collections::BTreeMap, thread};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    support::reports::{self, drops, peer, serious},
};
use serde_json::Value;

const GLADIUS: &str = "192.0.2.11";
const MOMONOKE: &str = "192.0.2.12";
const EQ14: &str = "192.0.2.13";
const NODES: [&str; 3] = ["gladius", "momonoke", "eq14-001"];
const PINGS: u32 = 10;

/// node -> (exit code, report).
type Scan = BTreeMap<String, (i32, Value)>;

/// Runs the probe for 5 s on every node while `traffic` runs, once every
/// probe observes; returns every node's report.
fn scan(lab: &Lab, traffic: impl FnOnce() + Send) -> Scan {
    let nodes: Vec<&LabNode> = NODES.iter().map(|n| lab.node(n)).collect();
    let runs = reports::start_all(lab, &nodes, 5);
    traffic();
    NODES
        .iter()
        .zip(runs)
        .map(|(n, run)| (n.to_string(), reports::finish(run, n)))
        .collect()
}

/// Pods ping as in the fault tests: gladius <-> eq14-001 both ways,
/// gladius -> momonoke, momonoke -> eq14-001 with full-size packets.
fn pings(lab: &Lab) {
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    thread::scope(|s| {
        s.spawn(|| lab.ping(g, e.pod_ip, PINGS, 0.2));
        s.spawn(|| lab.ping(e, g.pod_ip, PINGS, 0.2));
        s.spawn(|| lab.ping(g, m.pod_ip, PINGS, 0.2));
        s.spawn(|| lab.ping_size(m, e.pod_ip, PINGS, 0.2, 1400));
    });
}

/// The node's findings above `info` are exactly `want`, with the exit code
/// that goes with them.
fn expect(scan: &Scan, node: &str, want: &[(&str, Option<&str>)]) {
    let (code, report) = &scan[node];
    let mut want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(c, p)| (c.to_string(), p.map(String::from)))
        .collect();
    want.sort();
    assert_eq!(serious(report), want, "{node}: {:#}", report["findings"]);
    assert_eq!(*code, i32::from(!want.is_empty()), "{node}'s exit code");
}

fn finding_for<'a>(report: &'a Value, code: &str, ip: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["code"] == code && f["peer"] == ip)
        .unwrap_or_else(|| panic!("no {code} for {ip}: {:#}", report["findings"]))
}

fn evidence_has(f: &Value, needle: &str) -> bool {
    f["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e.as_str().is_some_and(|e| e.contains(needle)))
}

#[test]
fn forward_policy_drop_is_decap_filtered_for_each_peer() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    lab.fault(&Fault::ForwardDrop {
        node: "eq14-001".into(),
    })
    .unwrap_or_else(|e| panic!("inject forward-drop: {e:#}"));
    let s = scan(&lab, || pings(&lab));

    expect(
        &s,
        "eq14-001",
        &[
            ("DECAP_FILTERED", Some(GLADIUS)),
            ("DECAP_FILTERED", Some(MOMONOKE)),
        ],
    );
    let e = &s["eq14-001"].1;
    // Every request from either peer was decapsulated, then dropped; the
    // drops table still lists them, only VXLAN_DROPS does not repeat them.
    assert_eq!(
        drops(e),
        vec![("NETFILTER_DROP".into(), "rx".into(), 2 * u64::from(PINGS))]
    );
    for ip in [GLADIUS, MOMONOKE] {
        let p = peer(e, ip);
        assert_eq!(p["rx_encap_packets"], PINGS, "{ip}: {p:#}");
        assert_eq!(p["rx_decap_packets"], PINGS, "{ip}: {p:#}");
        assert_eq!(p["drops"]["NETFILTER_DROP"], PINGS, "{ip}: {p:#}");
        let f = finding_for(e, "DECAP_FILTERED", ip);
        assert_eq!(f["severity"], "critical");
        assert!(
            evidence_has(f, &format!("NETFILTER_DROP rx {PINGS}")),
            "{f:#}"
        );
        assert!(
            evidence_has(f, &format!("rx_decap_packets={PINGS}")),
            "{f:#}"
        );
        let fix = f["remediation"].as_str().unwrap_or_default();
        assert!(
            fix.contains("iptables -S FORWARD") && fix.contains("nft list ruleset"),
            "{f:#}"
        );
    }
    // The senders hear nothing back from eq14-001 (its pod's requests die
    // in its forward path too) while the other peer answers.
    expect(&s, "gladius", &[("PEER_SILENT", Some(EQ14))]);
    expect(&s, "momonoke", &[("PEER_SILENT", Some(EQ14))]);
    for n in ["gladius", "momonoke"] {
        assert_eq!(drops(&s[n].1), vec![], "{n}'s drops");
    }
}

/// The VXLAN_CHECKSUM_ERRORS finding on eq14-001 about gladius, after
/// `sent` bad datagrams: exact drop counts and the InCsumErrors witness
/// (the lab's namespace is new, so the kernel's counter is exactly ours).
fn expect_checksum_errors<'a>(s: &'a Scan, sent: u32, severity: &str) -> &'a Value {
    expect(s, "eq14-001", &[("VXLAN_CHECKSUM_ERRORS", Some(GLADIUS))]);
    let e = &s["eq14-001"].1;
    assert_eq!(
        drops(e),
        vec![("UDP_CSUM".into(), "rx".into(), u64::from(sent))]
    );
    let p = peer(e, GLADIUS);
    assert_eq!(p["drops"]["UDP_CSUM"], sent, "{p:#}");
    let f = finding_for(e, "VXLAN_CHECKSUM_ERRORS", GLADIUS);
    assert_eq!(f["severity"], severity, "{f:#}");
    assert!(evidence_has(f, &format!("UDP_CSUM rx {sent} of")), "{f:#}");
    assert!(evidence_has(f, &format!("InCsumErrors={sent} ")), "{f:#}");
    let fix = f["remediation"].as_str().unwrap_or_default();
    assert!(
        fix.contains("ethtool -K flannel.1 tx-checksum-ip-generic off"),
        "{f:#}"
    );
    assert!(fix.contains("/etc/udev/rules.d/"), "{f:#}");
    p
}

#[test]
fn bad_checksums_from_gladius_warn_while_its_traffic_flows() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    const SENT: u32 = 40;
    let s = scan(&lab, || {
        thread::scope(|t| {
            t.spawn(|| {
                lab.send_bad_checksums("gladius", "eq14-001", SENT)
                    .unwrap_or_else(|e| panic!("bad checksums: {e:#}"));
            });
            pings(&lab);
        });
    });
    let p = expect_checksum_errors(&s, SENT, "warning");
    // gladius's pings (requests, and replies to eq14-001's) get through.
    assert_eq!(p["rx_decap_packets"], 2 * PINGS, "{p:#}");
    assert_eq!(p["rx_encap_packets"], 2 * PINGS + SENT, "{p:#}");
    expect(&s, "gladius", &[]);
    expect(&s, "momonoke", &[]);
}

#[test]
fn only_bad_checksums_from_gladius_are_critical() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    const SENT: u32 = 25;
    let nodes: Vec<&LabNode> = NODES.iter().map(|n| lab.node(n)).collect();
    let runs = reports::start_all(&lab, &nodes, 5);
    // No pings: the bad datagrams are all gladius sends.
    lab.fault(&Fault::BadChecksum {
        node: "eq14-001".into(),
        peer: "gladius".into(),
        count: SENT,
    })
    .unwrap_or_else(|e| panic!("inject bad-checksum: {e:#}"));
    let s: Scan = NODES
        .iter()
        .zip(runs)
        .map(|(n, run)| (n.to_string(), reports::finish(run, n)))
        .collect();
    let p = expect_checksum_errors(&s, SENT, "critical");
    assert_eq!(p["rx_encap_packets"], SENT, "{p:#}");
    assert_eq!(p["rx_decap_packets"], 0, "{p:#}");
    // Nothing was decapsulated, yet this is no incident: the device is fine.
    expect(&s, "gladius", &[]);
    expect(&s, "momonoke", &[]);
    assert_eq!(peer(&s["gladius"].1, EQ14)["tx_encap_packets"], SENT);
}
