//! `VTEP_MAC_STALE` on the lab (`Fault::OverlayMacChange`): eq14-001's
//! `flannel.1` takes a new MAC, gladius and momonoke keep the old one. The
//! receiving node names both senders with both MACs and exact counts; the
//! senders stay healthy on their own; `mesh` names the two stale links.
use std::{thread, time::Duration};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    support::{
        ProbeRun, probe_bin,
        reports::{self, drops, finding, peer, serious},
        start_agents,
    },
};
use serde_json::Value;

use crate::mesh::agents;

const GLADIUS: &str = "192.0.2.11";
const MOMONOKE: &str = "192.0.2.12";
const EQ14: &str = "192.0.2.13";
const NODES: [&str; 3] = ["gladius", "momonoke", "eq14-001"];
const PINGS: u32 = 10;

/// The lab with eq14-001's MAC changed: (lab, old MAC, new MAC).
fn lab() -> Option<(Lab, String, String)> {
    let mut lab = Lab::for_test(LabSpec::default())?;
    let old = lab.node("eq14-001").vtep_mac_string();
    let fault = Fault::OverlayMacChange {
        node: "eq14-001".into(),
    };
    lab.fault(&fault)
        .unwrap_or_else(|e| panic!("inject {fault}: {e:#}"));
    let new = lab.node("eq14-001").vtep_mac_string();
    assert_ne!(old, new, "the fault gives a new MAC");
    Some((lab, old, new))
}

/// Pods ping: eq14-001 with each sender both ways, and gladius -> momonoke
/// (a healthy pair). `count` pings each, 5 per second.
fn ping_all(lab: &Lab, count: u32) {
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    let pairs: [(&LabNode, &LabNode); 5] = [(g, e), (e, g), (m, e), (e, m), (g, m)];
    thread::scope(|s| {
        for (from, to) in pairs {
            s.spawn(move || lab.ping(from, to.pod_ip, count, 0.2).expect("ping"));
        }
    });
}

#[test]
fn the_node_names_each_sender_of_its_old_vtep_mac() {
    let Some((lab, old, new)) = lab() else {
        return;
    };
    let nodes: Vec<&LabNode> = NODES.iter().map(|n| lab.node(n)).collect();
    let runs = reports::start_all(&lab, &nodes, 5);
    ping_all(&lab, PINGS);
    let got: Vec<(i32, Value)> = runs
        .into_iter()
        .zip(NODES)
        .map(|(run, n)| reports::finish(run, n))
        .collect();
    let (code, e) = &got[2];
    let want = vec![
        ("VTEP_MAC_STALE".to_string(), Some(GLADIUS.to_string())),
        ("VTEP_MAC_STALE".to_string(), Some(MOMONOKE.to_string())),
    ];
    // The OTHERHOST drops are the stale frames: no generic VXLAN_DROPS.
    assert_eq!(serious(e), want, "eq14-001: {:#}", e["findings"]);
    assert_eq!(*code, 1, "eq14-001's exit code");
    assert_eq!(e["node"]["overlay_mac"], new.as_str());
    for sender in [GLADIUS, MOMONOKE] {
        let p = peer(e, sender);
        // Everything the sender sends eq14-001 goes to the old MAC: its
        // pings' requests and its replies to eq14-001's pings.
        assert_eq!(p["rx_stale_dst"], u64::from(2 * PINGS), "{sender}: {p:#}");
        assert_eq!(p["rx_encap_packets"], p["rx_stale_dst"], "{sender}: {p:#}");
        assert_eq!(p["rx_last_stale_dst_mac"], old.as_str(), "{sender}: {p:#}");
        let dropped = p["drops"]["OTHERHOST"].as_u64().unwrap_or(0);
        assert!(
            (1..=u64::from(2 * PINGS)).contains(&dropped),
            "{sender}: {p:#}"
        );
        let f = e["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["code"] == "VTEP_MAC_STALE" && f["peer"] == sender)
            .unwrap_or_else(|| panic!("no VTEP_MAC_STALE for {sender}"));
        assert_eq!(f["severity"], "critical");
        let evidence = f["evidence"].to_string();
        assert!(evidence.contains(&old) && evidence.contains(&new), "{f:#}");
        assert!(
            evidence.contains(&format!("rx_stale_dst={}", 2 * PINGS)),
            "{f:#}"
        );
        let fix = f["remediation"].as_str().unwrap_or_default();
        for want in [
            sender,
            "flannel.alpha.coreos.com/backend-data",
            "MACAddressPolicy",
        ] {
            assert!(fix.contains(want), "{want}: {fix}");
        }
    }
    assert!(
        drops(e)
            .iter()
            .any(|(r, d, n)| r == "OTHERHOST" && d == "rx" && *n > 0),
        "{:#}",
        e["drops"]
    );
    // The senders cannot see it alone, and are blamed for nothing.
    for (i, n) in ["gladius", "momonoke"].into_iter().enumerate() {
        let (code, r) = &got[i];
        assert_eq!(serious(r), vec![], "{n}: {:#}", r["findings"]);
        assert_eq!(*code, 0, "{n}'s exit code");
        assert!(finding(r, "VTEP_MAC_STALE").is_none());
        assert_eq!(peer(r, EQ14)["tx_encap_packets"], u64::from(2 * PINGS));
    }
}

/// `mesh ARGS` run inside gladius.
fn mesh(lab: &Lab, args: &[String]) -> (i32, String) {
    let mut cmd = lab.node_command(lab.node("gladius"), &probe_bin());
    cmd.arg("mesh").args(args);
    let run = ProbeRun::spawn(cmd).expect("start mesh");
    run.finish(Duration::from_secs(60)).expect("mesh exits")
}

#[test]
fn mesh_names_the_links_that_use_the_old_vtep_mac() {
    let Some((lab, old, new)) = lab() else {
        return;
    };
    let _agents = start_agents(&lab);
    let agents = agents(&lab);
    let (code, out) = thread::scope(|s| {
        s.spawn(|| ping_all(&lab, 30));
        let args = [
            "--agents".to_string(),
            agents,
            "--duration".into(),
            "3s".into(),
            "--format".into(),
            "json".into(),
        ];
        mesh(&lab, &args)
    });
    let m: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("mesh JSON ({e}): {out}"));
    let serious: Vec<(String, String, String)> = m["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] != "info")
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("-").to_string();
            (s("code"), s("from"), s("to"))
        })
        .collect();
    let stale = |from: &str| {
        (
            "VTEP_MAC_STALE".to_string(),
            from.to_string(),
            EQ14.to_string(),
        )
    };
    assert_eq!(serious, vec![stale(GLADIUS), stale(MOMONOKE)], "{m:#}");
    assert_eq!(code, 1, "{m:#}");
    for f in m["findings"].as_array().into_iter().flatten() {
        if f["code"] == "VTEP_MAC_STALE" {
            let evidence = f["evidence"].to_string();
            assert!(evidence.contains(&old) && evidence.contains(&new), "{f:#}");
            assert_eq!(f["severity"], "critical");
            let summary = f["summary"].as_str().unwrap_or_default();
            assert!(summary.contains("eq14-001"), "{summary}");
        }
    }
    // The VXLAN itself arrives: no link lost anything beyond what was in flight.
    for l in m["links"].as_array().into_iter().flatten() {
        let lost = l["lost"].as_u64().unwrap_or(u64::MAX);
        assert!(
            lost <= l["in_flight_allowance"].as_u64().unwrap_or(0),
            "{l}"
        );
    }
}
