//! `--uplink auto` on nodes without a default route (air-gapped clusters):
//! the uplink is the VXLAN device's `dev` while it exists, then the one
//! interface holding the node's underlay address, so the incident (the
//! device and its `dev` gone) is still found, not exit 2.
use std::process::Command;

use flannel_probe_tests::{
    lab::{Fault, Lab, LabSpec},
    support::{
        ProbeRun, probe_bin,
        reports::{self, codes, peer, serious},
    },
};
use serde_json::Value;

const PINGS: u32 = 10;

fn no_default_route_lab() -> Option<Lab> {
    Lab::for_test(LabSpec {
        default_route: false,
        ..LabSpec::default()
    })
}

fn default_routes(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-4", "route", "show", "default"])
        .output()
        .expect("ip route");
    assert!(out.status.success(), "ip -n {ns} route show failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn without_a_default_route_the_incident_is_found_through_the_underlay_address() {
    let Some(mut lab) = no_default_route_lab() else {
        return;
    };
    let (g, m, e) = (
        lab.node("gladius").clone(),
        lab.node("momonoke").clone(),
        lab.node("eq14-001").clone(),
    );
    for node in [&g, &m, &e] {
        assert_eq!(
            default_routes(&node.ns),
            "",
            "{}: no default route",
            node.name
        );
    }

    // Healthy: exact counts, the uplink from flannel.1's dev.
    lab.ping(&g, e.pod_ip, 1, 0.2).expect("warm-up ping");
    let [on_g, on_e]: [ProbeRun; 2] = reports::start_all(&lab, &[&g, &e], 5)
        .try_into()
        .unwrap_or_else(|_| panic!("two probes"));
    let stats = lab.ping(&g, e.pod_ip, PINGS, 0.1).expect("ping");
    assert_eq!((stats.transmitted, stats.received), (PINGS, PINGS));
    let (code_g, rg) = reports::finish(on_g, "gladius");
    let (code_e, re) = reports::finish(on_e, "eq14-001");
    let n = u64::from(PINGS);
    let to_e = peer(&rg, &e.ip.to_string());
    assert_eq!(to_e["tx_encap_packets"], n, "{to_e:#}");
    assert_eq!(to_e["rx_encap_packets"], n, "{to_e:#}");
    assert_eq!(to_e["rx_decap_packets"], n, "{to_e:#}");
    let from_g = peer(&re, &g.ip.to_string());
    assert_eq!(from_g["rx_encap_packets"], n, "{from_g:#}");
    assert_eq!(from_g["rx_decap_packets"], n, "{from_g:#}");
    assert_eq!(from_g["tx_encap_packets"], n, "{from_g:#}");
    for (name, code, r) in [("gladius", code_g, &rg), ("eq14-001", code_e, &re)] {
        assert_eq!(code, 0, "{name} healthy: {r:#}");
        assert!(serious(r).is_empty(), "{name}: {r:#}");
        assert_eq!(r["node"]["uplink"], "eth0", "{name}");
        assert_eq!(r["node"]["uplink_source"], "vxlan_dev", "{name}");
    }

    // The incident: flannel.1 (and with it its dev) deleted on eq14-001.
    lab.fault(&Fault::DeleteOverlay {
        node: e.name.clone(),
    })
    .expect("the incident");
    let on_e = reports::start(&lab, &e, 5);
    let (sg, sm) = std::thread::scope(|s| {
        let from_g = s.spawn(|| lab.ping(&g, e.pod_ip, PINGS, 0.2));
        let from_m = s.spawn(|| lab.ping(&m, e.pod_ip, PINGS, 0.2));
        (
            from_g.join().expect("ping thread"),
            from_m.join().expect("ping thread"),
        )
    });
    assert_eq!(sg.expect("ping").received, 0, "eq14-001's pod unreachable");
    assert_eq!(sm.expect("ping").received, 0);
    let (code, r) = reports::finish(on_e, "eq14-001");
    assert_eq!(code, 1, "the incident is a problem, not exit 2: {r:#}");
    let c = codes(&r);
    for want in [
        "VXLAN_NOT_DECAPSULATED",
        "OVERLAY_DEVICE_MISSING",
        "VXLAN_PORT_NOT_BOUND",
    ] {
        assert!(c.iter().any(|x| x == want), "{want} expected: {c:?}");
    }
    assert_eq!(r["node"]["uplink"], "eth0");
    assert_eq!(r["node"]["uplink_source"], "underlay_address");
    assert_eq!(r["node"]["local_vtep"], e.ip.to_string());
    for sender in [&g, &m] {
        let p = peer(&r, &sender.ip.to_string());
        assert_eq!(p["rx_encap_packets"], n, "{}: {p:#}", sender.name);
        assert_eq!(p["rx_decap_packets"], 0, "{}: {p:#}", sender.name);
    }

    // A second interface with an underlay address and nothing to tell
    // them apart (no overlay, no FDB): exit 2 naming both and --uplink.
    lab.batch(
        &e.ns,
        "link add ethx type veth peer name ethxp\n\
         link set ethxp up\n\
         link set ethx up\n\
         addr add 198.51.100.7/24 dev ethx\n",
        "",
    )
    .expect("a second NIC");
    let out = lab
        .node_command(&e, &probe_bin())
        .args(["report", "--duration", "1s"])
        .output()
        .expect("run probe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "no report: {:?}", out.stdout);
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    for want in ["eth0", "ethx", "--uplink"] {
        assert!(lines[0].contains(want), "{want} named: {err}");
    }
    // Told which, it observes again.
    let out = lab
        .node_command(&e, &probe_bin())
        .args([
            "report",
            "--duration",
            "1s",
            "--format",
            "json",
            "--uplink",
            "eth0",
        ])
        .output()
        .expect("run probe");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["node"]["uplink"], "eth0");
    assert_eq!(v["node"]["uplink_source"], "flag");
}
