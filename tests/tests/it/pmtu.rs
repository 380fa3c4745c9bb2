//! The underlay path MTU (`UNDERLAY_MTU_BLACKHOLE`) on the lab: the
//! switch's port towards eq14-001 narrowed to 1400 bytes (`underlay-mtu`),
//! pods pinging with small and with 1400-byte payloads; and ICMP
//! "fragmentation needed" quoting gladius's VXLAN, as a router on the way
//! would send it.
use std::time::Duration;

use flannel_probe_common::frames::{Ipv4Frame, icmp_echo, icmp_frag_needed, vxlan_frame};
use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec, PingStats},
    support::{
        ProbeRun, agent_get, probe_bin,
        reports::{finish, peer, serious, start},
        scaled, start_agents, time_scale,
    },
};
use serde_json::Value;

use crate::{
    malformed::{eth0_mac, send_raw},
    mesh::{agents, link},
};

/// ICMP payload of the large pings: 1428 bytes of inner IPv4, 1478 of
/// outer (above 1400), the overlay's MTU (1450) not exceeded.
const LARGE_PAYLOAD: u32 = 1400;
/// Outer IPv4 length of a default (56-byte) ping: 84 inner + 50.
const SMALL_OUTER: u64 = 84 + 50;
const LARGE_OUTER: u64 = LARGE_PAYLOAD as u64 + 28 + 50;
const PINGS: u32 = 20;

fn small(lab: &Lab, from: &LabNode, to: &LabNode) -> PingStats {
    lab.ping(from, to.pod_ip, PINGS, 0.05)
        .unwrap_or_else(|e| panic!("small pings {} -> {}: {e:#}", from.name, to.name))
}

fn large(lab: &Lab, from: &LabNode, to: &LabNode) -> PingStats {
    lab.ping_size(from, to.pod_ip, PINGS, 0.05, LARGE_PAYLOAD)
        .unwrap_or_else(|e| panic!("large pings {} -> {}: {e:#}", from.name, to.name))
}

/// (large sent, large received, small sent, small received) of a link.
fn classes(l: &Value) -> [u64; 4] {
    [
        "large_sent",
        "large_received",
        "small_sent",
        "small_received",
    ]
    .map(|k| l[k].as_u64().unwrap_or_else(|| panic!("{k} in {l}")))
}

#[test]
fn a_narrow_underlay_port_is_named_on_the_links_that_lose_large_packets() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    // The fault turns the bridge's refragmenting off in the switch's
    // namespace only: this process's (the host's) setting stays.
    let brnf = || std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").ok();
    let host_brnf = brnf();
    lab.fault(&Fault::UnderlayMtu {
        node: "eq14-001".into(),
        mtu: 1400,
    })
    .expect("narrow the switch port");
    assert_eq!(brnf(), host_brnf, "the host's bridge netfilter setting");
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    // What the narrow port does, before any agent counts: small pings pass
    // both ways, large ones die both ways (the bridge will not forward them
    // out of the port, the port's veth will not take them from eq14-001),
    // and nobody says so (no ICMP: the pings just go unanswered).
    for (from, to) in [(g, e), (e, g)] {
        let s = small(&lab, from, to);
        assert!(s.all_received(), "{} -> {}: {s:?}", from.name, to.name);
        let l = large(&lab, from, to);
        assert_eq!(l.received, 0, "{} -> {}: {l:?}", from.name, to.name);
    }
    let l = large(&lab, g, m);
    assert!(l.all_received(), "gladius -> momonoke is wide: {l:?}");

    let runs = start_agents(&lab);
    let lab = &lab;
    let agents = agents(lab);
    let mut cmd = lab.node_command(g, &probe_bin());
    cmd.args(["mesh", "--agents", &agents, "--format", "json"])
        .args(["--duration", &format!("{}s", 8 * time_scale())]);
    let mut mesh = ProbeRun::spawn(cmd).expect("start mesh");
    // Once every agent's first reading is in, the window is open.
    mesh.wait_for("observing", scaled(Duration::from_secs(30)))
        .expect("mesh reads the agents");
    // Inside the window: gladius and momonoke ping eq14-001, gladius
    // pings momonoke, each small and large; eq14-001 sends only the
    // replies to the small ones (the large never reach it).
    std::thread::scope(|s| {
        let pings: Vec<_> = [(g, e), (m, e), (g, m)]
            .into_iter()
            .map(|(from, to)| {
                s.spawn(move || {
                    let small = small(lab, from, to);
                    let large = large(lab, from, to);
                    (from.name.clone(), to.name.clone(), small, large)
                })
            })
            .collect();
        for p in pings {
            let (from, to, small, large) = p.join().expect("ping thread");
            assert!(small.all_received(), "{from} -> {to}: {small:?}");
            let want = if to == "eq14-001" { 0 } else { PINGS };
            assert_eq!(large.received, want, "{from} -> {to}: {large:?}");
        }
    });
    let (code, out) = mesh
        .finish(scaled(Duration::from_secs(60)))
        .expect("mesh exits");
    eprintln!("{out}");
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("mesh JSON ({e}): {out}"));
    assert_eq!(code, 1, "{report:#}");
    let n = u64::from(PINGS);
    let (gi, mi, ei) = (g.ip, m.ip, e.ip);
    // Exactly the pings: requests and replies, in their classes.
    assert_eq!(classes(link(&report, gi, ei)), [n, 0, n, n]);
    assert_eq!(classes(link(&report, mi, ei)), [n, 0, n, n]);
    assert_eq!(classes(link(&report, ei, gi)), [0, 0, n, n]);
    assert_eq!(classes(link(&report, ei, mi)), [0, 0, n, n]);
    assert_eq!(classes(link(&report, gi, mi)), [n, n, n, n]);
    assert_eq!(classes(link(&report, mi, gi)), [n, n, n, n]);
    assert_eq!(link(&report, mi, gi)["max_received_len"], LARGE_OUTER);
    assert_eq!(link(&report, gi, ei)["max_received_len"], SMALL_OUTER);

    let findings = report["findings"].as_array().expect("findings");
    let named: Vec<(&str, &str, &str)> = findings
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| {
            (
                f["code"].as_str().unwrap_or_default(),
                f["from"].as_str().unwrap_or_default(),
                f["to"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let (gs, ms, es) = (gi.to_string(), mi.to_string(), ei.to_string());
    assert_eq!(
        named,
        vec![
            ("UNDERLAY_MTU_BLACKHOLE", gs.as_str(), es.as_str()),
            ("UNDERLAY_MTU_BLACKHOLE", ms.as_str(), es.as_str()),
        ],
        "{report:#}"
    );
    let f = &findings
        .iter()
        .find(|f| f["code"] == "UNDERLAY_MTU_BLACKHOLE")
        .expect("the finding");
    assert_eq!(f["severity"], "warning");
    let evidence: Vec<&str> = f["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        evidence,
        [
            format!("gladius sent {n} large and {n} small encapsulated packets to {es}"),
            format!("eq14-001 received 0 large and {n} small from {gs}"),
            // Nothing came from gladius before the window: its maximum is
            // the window's.
            format!(
                "the largest outer packet eq14-001 received from {gs} in the window: {SMALL_OUTER} bytes"
            ),
        ],
        "{f:#}"
    );
    let remedy = f["remediation"].as_str().unwrap_or_default();
    assert!(
        remedy.contains("flannel.1's MTU to 1350") && remedy.contains("\"MTU\": 1400"),
        "{remedy}"
    );

    // No node alone can tell (no ICMP comes back, nothing is dropped on a
    // node): every report stays healthy; gladius's shows the classes it
    // sent and got.
    let report_of = |node: &LabNode| -> Value {
        let (status, body) = agent_get(node, "/report");
        assert_eq!(status, 200, "{}: {body}", node.name);
        serde_json::from_str(&body).expect("the report is JSON")
    };
    for node in [m, e] {
        let r = report_of(node);
        assert_eq!(serious(&r), vec![], "{}: {r:#}", node.name);
    }
    let r = report_of(g);
    assert_eq!(serious(&r), vec![], "{r:#}");
    let p = peer(&r, &es);
    for (k, want) in [
        ("tx_encap_large", n),
        ("rx_encap_large", 0),
        ("tx_encap_max_len", LARGE_OUTER),
        ("rx_encap_max_len", SMALL_OUTER),
        ("icmp_frag_needed", 0),
        ("icmp_port_unreachable", 0),
    ] {
        assert_eq!(p[k], want, "{k}: {p:#}");
    }
    drop(runs);
}

/// A router on the way answering gladius's VXLAN to eq14-001 with
/// "fragmentation needed" (sent here from momonoke's uplink, as a router
/// on the segment would): gladius's report names the path and the MTU.
#[test]
fn fragmentation_needed_for_our_vxlan_is_named_on_the_sender() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    let (g_mac, m_mac) = (eth0_mac(&lab, g), eth0_mac(&lab, m));
    // What gladius's VTEP sent: a full-size pod echo to eq14-001.
    let mut inner = Ipv4Frame::new(
        g.pod_ip.octets(),
        e.pod_ip.octets(),
        1,
        icmp_echo(9, 1, LARGE_PAYLOAD as usize),
    );
    inner.src_mac = g.vtep_mac;
    inner.dst_mac = e.vtep_mac;
    let sent = vxlan_frame(g.ip.octets(), e.ip.octets(), 8472, 1, &inner.build());
    let mut icmp = icmp_frag_needed(m.ip.octets(), &sent.ip_packet(), 1400);
    icmp.src_mac = m_mac;
    icmp.dst_mac = g_mac;
    let frames = vec![icmp.build(); 5];

    let run = start(&lab, g, 5);
    let pings = small(&lab, g, e);
    assert!(pings.all_received(), "{pings:?}");
    send_raw(&m.ns, &frames);
    let (code, r) = finish(run, "gladius");
    assert_eq!(code, 1, "{r:#}");
    let es = e.ip.to_string();
    assert_eq!(
        serious(&r),
        vec![("UNDERLAY_MTU_BLACKHOLE".to_string(), Some(es.clone()))],
        "{r:#}"
    );
    let p = peer(&r, &es);
    assert_eq!(p["icmp_frag_needed"], 5, "{p:#}");
    assert_eq!(p["icmp_frag_needed_mtu"], 1400, "{p:#}");
    assert_eq!(p["icmp_port_unreachable"], 0, "{p:#}");
    assert_eq!(p["tx_encap_packets"], u64::from(PINGS), "{p:#}");
    assert_eq!(p["tx_encap_large"], 0, "{p:#}");
    // Counted for the peer the quote names, not for the router.
    assert_eq!(peer(&r, &m.ip.to_string())["icmp_frag_needed"], 0, "{r:#}");
    let f = r["findings"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["code"] == "UNDERLAY_MTU_BLACKHOLE"))
        .expect("the finding");
    assert_eq!(f["severity"], "warning");
    assert!(
        f["summary"]
            .as_str()
            .is_some_and(|s| s.contains("5 packets") && s.contains("next-hop MTU 1400")),
        "{f:#}"
    );
    assert!(
        f["remediation"]
            .as_str()
            .is_some_and(|s| s.contains("MTU to 1350")),
        "{f:#}"
    );
}
