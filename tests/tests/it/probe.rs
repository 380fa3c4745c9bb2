//! flannel-probe on the lab: real namespaces, real VXLAN, the real binary.
//! Each test builds its own lab and removes it, also on panic.

use flannel_probe_tests::{
    lab::{Fault, Lab, LabSpec},
    support::{
        ProbeRun,
        attached::{add_cni_filter, cni_filter_present, probe_programs},
        probe_bin,
        reports::{self, codes, peer},
    },
};
use serde_json::Value;

const PINGS: u32 = 10;

fn finish(run: ProbeRun, node: &str) -> (i32, Value) {
    reports::finish(run, node)
}

fn serious(report: &Value) -> Vec<String> {
    reports::serious(report)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

#[test]
fn healthy_mesh_counts_every_ping_exactly() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (gladius, eq14) = (lab.node("gladius"), lab.node("eq14-001"));
    add_cni_filter(&lab, eq14);
    // Warm up once so no first-packet effects fall into the window.
    lab.ping(gladius, eq14.pod_ip, 1, 0.2)
        .expect("warm-up ping");

    let [on_g, on_e]: [ProbeRun; 2] = reports::start_all(&lab, &[gladius, eq14], 5)
        .try_into()
        .unwrap_or_else(|_| panic!("two probes"));
    assert!(
        !probe_programs(&lab, &eq14.ns, "eth0").is_empty(),
        "the probe is attached while it runs"
    );
    let stats = lab.ping(gladius, eq14.pod_ip, PINGS, 0.1).expect("ping");
    assert_eq!(
        (stats.transmitted, stats.received),
        (PINGS, PINGS),
        "the healthy mesh answers"
    );
    let (code_g, g) = finish(on_g, "gladius");
    let (code_e, e) = finish(on_e, "eq14-001");

    // Flannel programs permanent neighbour entries, so no ARP crosses the
    // overlay: each echo request and each reply is exactly one VXLAN packet.
    let n = u64::from(PINGS);
    let to_e = peer(&g, &eq14.ip.to_string());
    assert_eq!(to_e["tx_encap_packets"], n, "gladius -> eq14-001: {to_e:#}");
    assert_eq!(to_e["rx_encap_packets"], n, "replies back: {to_e:#}");
    assert_eq!(to_e["rx_decap_packets"], n);
    assert_eq!(to_e["tx_inner_packets"], n);
    assert_eq!(to_e["icmp_port_unreachable"], 0);
    assert_eq!(to_e["vtep_mac"], eq14.vtep_mac_string());
    // 84-byte IPv4 echo + inner Ethernet 14 + VXLAN overhead 50 = 148 wire bytes.
    assert_eq!(to_e["tx_encap_bytes"], n * 148);

    let from_g = peer(&e, &gladius.ip.to_string());
    assert_eq!(from_g["rx_encap_packets"], n, "{from_g:#}");
    assert_eq!(
        from_g["rx_decap_packets"], n,
        "every packet decapsulated: {from_g:#}"
    );
    assert_eq!(from_g["tx_inner_packets"], n);
    assert_eq!(from_g["tx_encap_packets"], n);
    assert_eq!(from_g["rx_encap_bytes"], n * 148);

    assert!(serious(&g).is_empty(), "no problem on gladius: {g:#}");
    assert!(serious(&e).is_empty(), "no problem on eq14-001: {e:#}");
    assert_eq!((code_g, code_e), (0, 0));
    assert_eq!(e["node"]["overlay_state"], "up");
    assert_eq!(e["node"]["port_bound"], true);
    assert_eq!(e["node"]["vni"], 1);
    assert_eq!(e["node"]["local_vtep"], "192.0.2.13");

    // Nothing of ours stays; the CNI's filter does.
    for node in [gladius, eq14] {
        for dev in ["eth0", "flannel.1"] {
            let left = probe_programs(&lab, &node.ns, dev);
            assert!(left.is_empty(), "{} {dev} still has {left:?}", node.name);
        }
    }
    assert!(
        cni_filter_present(&lab, eq14),
        "the CNI's filter must survive the probe"
    );
}

#[test]
fn the_incident_is_named_on_the_broken_node_and_on_its_senders() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    lab.fault(&Fault::DeleteOverlay {
        node: "eq14-001".into(),
    })
    .expect("delete flannel.1");
    let (gladius, momonoke, eq14) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    add_cni_filter(&lab, eq14);

    let [on_e, on_g, on_m]: [ProbeRun; 3] = reports::start_all(&lab, &[eq14, gladius, momonoke], 5)
        .try_into()
        .unwrap_or_else(|_| panic!("three probes"));
    let target = eq14.pod_ip;
    let (sg, sm) = std::thread::scope(|s| {
        let g = s.spawn(|| lab.ping(gladius, target, PINGS, 0.2));
        let m = s.spawn(|| lab.ping(momonoke, target, PINGS, 0.2));
        (
            g.join().expect("ping thread"),
            m.join().expect("ping thread"),
        )
    });
    assert_eq!(
        sg.expect("ping").received,
        0,
        "eq14-001's pod is unreachable"
    );
    assert_eq!(sm.expect("ping").received, 0);
    let (code_e, e) = finish(on_e, "eq14-001");
    let (code_g, g) = finish(on_g, "gladius");
    let (code_m, m) = finish(on_m, "momonoke");

    let c = codes(&e);
    for want in [
        "VXLAN_NOT_DECAPSULATED",
        "OVERLAY_DEVICE_MISSING",
        "VXLAN_PORT_NOT_BOUND",
    ] {
        assert!(
            c.contains(&want.to_string()),
            "eq14-001 must report {want}: {c:?}"
        );
    }
    assert_eq!(code_e, 1);
    assert_eq!(e["node"]["overlay_state"], "missing");
    assert_eq!(e["node"]["port_bound"], false);
    let n = u64::from(PINGS);
    assert_eq!(peer(&e, "192.0.2.11")["rx_encap_packets"], n);
    assert_eq!(peer(&e, "192.0.2.12")["rx_encap_packets"], n);
    assert_eq!(peer(&e, "192.0.2.11")["rx_decap_packets"], 0);

    for (name, code, r) in [("gladius", code_g, &g), ("momonoke", code_m, &m)] {
        let unreachable: Vec<&Value> = r["findings"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .filter(|f| f["code"] == "PEER_PORT_UNREACHABLE")
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(unreachable.len(), 1, "{name}: {r:#}");
        assert_eq!(
            unreachable[0]["peer"], "192.0.2.13",
            "{name} names eq14-001"
        );
        assert_eq!(code, 1);
        assert!(peer(r, "192.0.2.13")["icmp_port_unreachable"].as_u64() >= Some(1));
        assert_eq!(peer(r, "192.0.2.13")["tx_encap_packets"], n);
    }
    // momonoke is not blamed anywhere, and the healthy pair is not either.
    for r in [&e, &g, &m] {
        for f in r["findings"].as_array().into_iter().flatten() {
            assert_ne!(f["peer"], "192.0.2.12", "momonoke blamed: {f:#}");
            assert_ne!(f["peer"], "192.0.2.11", "gladius blamed: {f:#}");
        }
    }
    assert!(
        probe_programs(&lab, &eq14.ns, "eth0").is_empty(),
        "nothing of ours left on eq14-001"
    );
    assert!(
        cni_filter_present(&lab, eq14),
        "the CNI's filter must survive the probe"
    );
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let Some(lab) = Lab::for_test(LabSpec::with_nodes(2)) else {
        return;
    };
    let node = lab.node("gladius");
    for args in [
        vec!["report", "--uplink", "eth9"],
        vec!["report", "--port", "70000"],
        vec!["report", "--duration", "soon"],
    ] {
        let out = lab
            .node_command(node, &probe_bin())
            .args(&args)
            .output()
            .expect("run probe");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?} must say what is wrong");
        assert!(out.stdout.is_empty(), "{args:?} prints no report");
    }
    let out = lab
        .node_command(node, &probe_bin())
        .args(["report", "--uplink", "eth9"])
        .output()
        .expect("run probe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("eth9"), "names the interface: {err}");
}
