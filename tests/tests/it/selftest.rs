//! Checks the lab itself: it comes up, carries pod traffic over VXLAN,
//! breaks the way the faults say, and always cleans up after itself.
//!
//! These tests need root. Without root they are skipped, except under CI
//! (`CI=true`), where skipping would hide that they never ran.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

use flannel_probe_tests::lab::{Fault, Lab, LabSpec, PingStats};
use flannel_probe_tests::{require_root, support::wait_exit};

fn netns_list() -> HashSet<String> {
    let output = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("running ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_gone(names: &[String]) {
    let left = netns_list();
    let still: Vec<&String> = names.iter().filter(|name| left.contains(*name)).collect();
    assert!(still.is_empty(), "namespaces left behind: {still:?}");
}

/// A ready lab: `None` (the test returns, skipped) when not root.
fn up() -> Option<Lab> {
    let lab = Lab::for_test(LabSpec::default())?;
    lab.wait_ready(Duration::from_secs(10)).expect("lab ready");
    Some(lab)
}

fn assert_mesh_works(lab: &Lab) {
    let results = lab.traffic(5, 0.05).expect("traffic");
    assert_eq!(results.len(), lab.nodes.len() * (lab.nodes.len() - 1));
    for (from, to, stats) in &results {
        assert!(stats.all_received(), "{from} -> {to}: {stats:?}");
    }
}

fn ping(lab: &Lab, from: &str, to: &str, count: u32) -> PingStats {
    lab.ping(lab.node(from), lab.node(to).pod_ip, count, 0.1)
        .expect("ping")
}

/// Pings with packets of exactly the pod MTU.
fn full_size_ping(lab: &Lab, from: &str, to: &str) -> PingStats {
    let payload = lab.spec.overlay_mtu() - 28;
    lab.ping_size(lab.node(from), lab.node(to).pod_ip, 3, 0.1, payload)
        .expect("full-size ping")
}

/// `Icmp: ... InDestUnreachs` from /proc/net/snmp in a namespace.
fn icmp_in_dest_unreachs(lab: &Lab, ns: &str) -> u64 {
    let output = lab.sh(ns, &["cat", "/proc/net/snmp"]).expect("snmp");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut icmp = text.lines().filter(|line| line.starts_with("Icmp:"));
    let (names, values) = (icmp.next().expect("header"), icmp.next().expect("values"));
    let column = names
        .split_whitespace()
        .position(|name| name == "InDestUnreachs")
        .expect("InDestUnreachs column");
    values
        .split_whitespace()
        .nth(column)
        .and_then(|value| value.parse().ok())
        .expect("InDestUnreachs value")
}

#[test]
fn lab_comes_up_carries_traffic_and_goes_away() {
    let Some(lab) = up() else {
        return;
    };
    let names = lab.namespaces().to_vec();
    assert_eq!(names.len(), 1 + 2 * 3);
    let listed = netns_list();
    assert!(names.iter().all(|name| listed.contains(name)));

    let gladius = lab.node("gladius");
    assert_eq!(gladius.ip.to_string(), "192.0.2.11");
    assert_eq!(lab.node("eq14-001").pod_ip.to_string(), "10.42.0.54");
    let stats = ping(&lab, "gladius", "eq14-001", 5);
    assert_eq!(stats.transmitted, 5);
    assert_eq!(stats.received, 5, "gladius -> eq14-001 pod: {stats:?}");
    assert_mesh_works(&lab);
    let full = full_size_ping(&lab, "gladius", "eq14-001");
    assert!(
        full.all_received(),
        "full-size gladius -> eq14-001: {full:?}"
    );

    // The hostname the probe will see inside a node.
    let output = lab
        .node_command(gladius, std::path::Path::new("hostname"))
        .output()
        .expect("node_command");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "gladius");

    // A long-running process in a node dies with the lab.
    let mut sleeper = lab
        .node_command(gladius, std::path::Path::new("sleep"))
        .arg("600")
        .spawn()
        .expect("spawn sleep in gladius");

    drop(lab);
    assert_gone(&names);
    let status = wait_exit(&mut sleeper, Duration::from_secs(5))
        .expect("try_wait")
        .expect("a process in the lab survived the teardown");
    assert!(!status.success(), "sleep was not killed: {status}");
}

#[test]
fn deleting_the_overlay_cuts_only_that_node() {
    let Some(mut lab) = up() else {
        return;
    };
    let gladius_ns = lab.node("gladius").ns.clone();
    let unreachs_before = icmp_in_dest_unreachs(&lab, &gladius_ns);

    lab.fault(&Fault::DeleteOverlay {
        node: "eq14-001".into(),
    })
    .expect("fault");
    let cut = ping(&lab, "gladius", "eq14-001", 5);
    assert_eq!(cut.transmitted, 5);
    assert_eq!(
        cut.received, 0,
        "gladius -> eq14-001 after the incident: {cut:?}"
    );
    let fine = ping(&lab, "gladius", "momonoke", 5);
    assert!(fine.all_received(), "gladius -> momonoke: {fine:?}");

    // The incident's signature on the sender: eq14-001 has no socket on the
    // VXLAN port any more and answers with ICMP port unreachable.
    let unreachs = icmp_in_dest_unreachs(&lab, &gladius_ns) - unreachs_before;
    eprintln!("ICMP destination unreachable seen by gladius: {unreachs}");
    assert!(
        unreachs > 0,
        "gladius got no ICMP unreachable from eq14-001"
    );
}

#[test]
fn a_panicking_test_still_removes_its_lab() {
    if !require_root() {
        return;
    }
    let names = Mutex::new(Vec::new());
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::up(LabSpec::default()).expect("lab up");
        names
            .lock()
            .expect("names")
            .extend_from_slice(lab.namespaces());
        panic!("deliberate panic with a lab up");
    }));
    assert!(result.is_err());
    let names = names.into_inner().expect("names");
    assert_eq!(names.len(), 7);
    assert_gone(&names);
}

#[test]
fn recreating_the_overlay_changes_the_mac_and_heals() {
    let Some(mut lab) = up() else {
        return;
    };
    let old_mac = lab.node("eq14-001").vtep_mac;
    lab.fault(&Fault::RecreateOverlay {
        node: "eq14-001".into(),
    })
    .expect("fault");
    let node = lab.node("eq14-001");
    assert_ne!(node.vtep_mac, old_mac);

    // The device really has the new MAC...
    let output = lab
        .sh(&node.ns, &["ip", "-j", "link", "show", "dev", "flannel.1"])
        .expect("ip link show");
    let links: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(links[0]["address"], node.vtep_mac_string().as_str());
    // ...peers point at it, and no FDB entry still names the old one.
    let old = flannel_probe_tests::lab::format_mac(&old_mac);
    for peer in lab.nodes.iter().filter(|p| p.name != "eq14-001") {
        let fdb = lab
            .sh(&peer.ns, &["bridge", "fdb", "show", "dev", "flannel.1"])
            .expect("fdb");
        let fdb = String::from_utf8_lossy(&fdb.stdout);
        assert!(
            fdb.contains(&node.vtep_mac_string()),
            "{}: {fdb}",
            peer.name
        );
        assert!(
            !fdb.contains(&old),
            "{} still has the old MAC: {fdb}",
            peer.name
        );
    }
    assert_mesh_works(&lab);
}

/// Every fault breaks gladius -> eq14-001 as it should, each on a fresh
/// lab (the MTU fault only for full-size packets).
#[test]
fn faults_break_the_path() {
    if !require_root() {
        return;
    }
    let eq = || "eq14-001".to_owned();
    let cases = [
        (Fault::OverlayDown { node: eq() }, false),
        (Fault::OtherVni { node: eq(), vni: 2 }, false),
        (Fault::FirewallVxlan { node: eq() }, false),
        (
            Fault::MissingFdb {
                node: "gladius".into(),
                peer: eq(),
            },
            false,
        ),
        (
            Fault::MissingNeigh {
                node: "gladius".into(),
                peer: eq(),
            },
            false,
        ),
        (
            Fault::parse("stale-fdb", "gladius", Some("eq14-001")).expect("parse"),
            false,
        ),
        (Fault::ForwardingOff { node: eq() }, false),
        (
            Fault::UnderlayLoss {
                node: eq(),
                percent: 100,
            },
            false,
        ),
        (
            Fault::OtherPort {
                node: eq(),
                port: 4789,
            },
            false,
        ),
        (Fault::MtuTooLarge { node: eq() }, true),
    ];
    for (fault, still_works) in cases {
        let mut lab = up().expect("root was checked above");
        lab.fault(&fault).expect("fault");
        let stats = ping(&lab, "gladius", "eq14-001", 3);
        assert_eq!(stats.transmitted, 3, "{fault}");
        if still_works {
            assert!(stats.all_received(), "{fault}: {stats:?}");
        } else {
            assert_eq!(stats.received, 0, "{fault}: {stats:?}");
        }
        if matches!(fault, Fault::MtuTooLarge { .. }) {
            for (from, to) in [("gladius", "eq14-001"), ("eq14-001", "gladius")] {
                let full = full_size_ping(&lab, from, to);
                assert_eq!(
                    full.received, 0,
                    "{fault}: full-size {from} -> {to}: {full:?}"
                );
            }
        }
        // gladius -> momonoke is untouched by any of these.
        let other = ping(&lab, "gladius", "momonoke", 3);
        assert!(
            other.all_received(),
            "{fault}: gladius -> momonoke {other:?}"
        );
        let other = full_size_ping(&lab, "gladius", "momonoke");
        assert!(
            other.all_received(),
            "{fault}: full-size gladius -> momonoke {other:?}"
        );
    }
}

#[test]
fn partial_underlay_loss_is_partial() {
    let Some(mut lab) = up() else {
        return;
    };
    lab.fault(&Fault::UnderlayLoss {
        node: "eq14-001".into(),
        percent: 50,
    })
    .expect("fault");
    let stats = ping(&lab, "gladius", "eq14-001", 40);
    eprintln!("50% underlay loss towards eq14-001: {stats:?}");
    // 40 requests at 50%: all or none getting through is ~1e-12 likely.
    assert!(stats.received > 0 && stats.received < 40, "{stats:?}");
}
