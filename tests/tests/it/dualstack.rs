//! Dual-stack and IPv6-only clusters (issue 17): the lab's `flannel-v6.1`
//! carries pod traffic as flannel's does, and the probe watches both
//! overlays, each with its own state, its own family's per-peer counts
//! (exact, for both families at once) and its own findings.

use std::time::{Duration, Instant};

use flannel_probe_tests::lab::netns;
use flannel_probe_tests::lab::{Family, Fault, IpFamily, Lab, LabSpec, PingStats};
use flannel_probe_tests::support::{
    ProbeRun, agent_get, json_lines, probe_bin,
    reports::{self, serious},
    scaled, start_agent, start_agents, terminate,
};
use serde_json::Value;

const BOTH: &[&str] = &["--overlay", "flannel.1,flannel-v6.1"];

fn lab(family: Family) -> Option<Lab> {
    let lab = Lab::for_test(LabSpec {
        family,
        ..LabSpec::default()
    })?;
    lab.wait_ready(Duration::from_secs(15)).expect("lab ready");
    Some(lab)
}

fn all_received(results: &[(String, String, PingStats)]) {
    assert!(!results.is_empty());
    for (from, to, stats) in results {
        assert!(stats.all_received(), "{from} -> {to}: {stats:?}");
    }
}

/// `node.overlays[]` entry called `name`.
fn overlay<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["node"]["overlays"]
        .as_array()
        .and_then(|os| os.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no overlay {name} in {:#}", report["node"]))
}

/// (code, overlay) of every finding above info.
fn serious_on(report: &Value) -> Vec<(String, Option<String>)> {
    let mut v = reports::serious_by(report, "overlay");
    v.dedup();
    v
}

/// One overlay of eq14-001 deleted on a dual-stack lab; the report of
/// eq14-001 watching both while gladius's pod pings eq14-001's over IPv4
/// (5) and IPv6 (3): (lab, report, IPv4 and IPv6 ping results).
fn one_overlay_deleted(family: IpFamily) -> Option<(Lab, Value, PingStats, PingStats)> {
    let mut lab = lab(Family::Dual)?;
    lab.fault_on(
        family,
        &Fault::DeleteOverlay {
            node: "eq14-001".into(),
        },
    )
    .expect("delete the overlay");
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    let run = reports::start_with(&lab, e, 4, BOTH);
    let v4 = lab.ping(g, e.pod_ip, 5, 0.1).expect("IPv4 ping");
    let v6 = lab
        .ping(g, e.pod_ip6.expect("IPv6 pod"), 3, 0.1)
        .expect("IPv6 ping");
    let (code, r) = finish(run, "eq14-001");
    assert_eq!(code, 1, "{:#}", r["findings"]);
    Some((lab, r, v4, v6))
}

/// The incident's three findings, on `overlay`.
fn assert_incident_on(found: &[(String, Option<String>)], overlay: &str) {
    for want in [
        "OVERLAY_DEVICE_MISSING",
        "VXLAN_NOT_DECAPSULATED",
        "VXLAN_PORT_NOT_BOUND",
    ] {
        assert!(
            found.contains(&(want.into(), Some(overlay.into()))),
            "{want} on {overlay}: {found:?}"
        );
    }
}

fn finish(run: ProbeRun, node: &str) -> (i32, Value) {
    reports::finish(run, node)
}

#[test]
fn lab_pods_ping_each_other_over_both_overlays() {
    let Some(lab) = lab(Family::Dual) else {
        return;
    };
    all_received(&lab.traffic_on(IpFamily::V4, 3, 0.05).expect("IPv4 pings"));
    all_received(&lab.traffic_on(IpFamily::V6, 3, 0.05).expect("IPv6 pings"));
    // What flannel programs for a peer on flannel-v6.1: route, neighbour, FDB.
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    let show = |args: &[&str]| {
        String::from_utf8_lossy(&netns::run("ip", args).expect("ip").stdout).into_owned()
    };
    let routes = show(&["-n", &e.ns, "-6", "route", "show", "dev", "flannel-v6.1"]);
    assert!(
        routes.contains("2001:cafe:42:1::/64 via 2001:cafe:42:1:: ") && routes.contains("onlink"),
        "{routes}"
    );
    let neigh = show(&["-n", &e.ns, "-6", "neigh", "show", "dev", "flannel-v6.1"]);
    let g_mac6 = flannel_probe_tests::lab::format_mac(&g.vtep_mac6);
    assert!(
        neigh.contains(&format!("2001:cafe:42:1:: lladdr {g_mac6} PERMANENT")),
        "{neigh}"
    );
    let fdb = String::from_utf8_lossy(
        &netns::run(
            "bridge",
            &["-netns", &e.ns, "fdb", "show", "dev", "flannel-v6.1"],
        )
        .expect("bridge")
        .stdout,
    )
    .into_owned();
    assert!(
        fdb.contains(&format!("{g_mac6} dst fd00:192:0:2::11 self permanent")),
        "{fdb}"
    );
    // The v6 device has its own MAC, as flannel's v6 VtepMAC.
    assert_ne!(g.vtep_mac6, g.vtep_mac);
}

#[test]
fn lab_ipv6_only_pods_ping_and_have_no_ipv4() {
    let Some(lab) = lab(Family::V6) else {
        return;
    };
    all_received(&lab.traffic(3, 0.05).expect("pings"));
    let e = lab.node("eq14-001");
    assert!(e.pod_addr().is_ipv6());
    let v4 = netns::run("ip", &["-n", &e.ns, "-4", "addr", "show", "dev", "eth0"]).expect("ip");
    assert!(
        v4.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&v4.stdout)
    );
    let links = netns::run("ip", &["-n", &e.ns, "link", "show"]).expect("ip");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        links.contains("flannel-v6.1") && !links.contains("flannel.1:"),
        "{links}"
    );
}

#[test]
fn healthy_dual_stack_node_reports_both_overlays() {
    let Some(lab) = lab(Family::Dual) else {
        return;
    };
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    // Default overlays: both exist, both are watched.
    let run = reports::start(&lab, e, 4);
    let v4 = lab.ping(g, e.pod_ip, 5, 0.1).expect("IPv4 ping");
    let pod6 = e.pod_ip6.expect("IPv6 pod");
    let v6 = lab.ping(g, pod6, 5, 0.1).expect("IPv6 ping");
    assert!(v4.all_received() && v6.all_received(), "{v4:?} {v6:?}");
    let (code, r) = finish(run, "eq14-001");
    assert_eq!(code, 0, "healthy: {:#}", r["findings"]);
    assert!(serious(&r).is_empty(), "{:#}", r["findings"]);
    // The single-overlay fields are flannel.1's, as before.
    assert_eq!(r["node"]["overlay"], "flannel.1");
    assert_eq!(r["node"]["local_vtep"], "192.0.2.13");
    let o4 = overlay(&r, "flannel.1");
    let o6 = overlay(&r, "flannel-v6.1");
    assert_eq!(r["node"]["overlays"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (&o4["family"], &o4["state"]),
        (&Value::from("ipv4"), &Value::from("up"))
    );
    assert_eq!(
        (&o6["family"], &o6["state"]),
        (&Value::from("ipv6"), &Value::from("up"))
    );
    assert_eq!(o6["local_vtep"], "fd00:192:0:2::13");
    assert_eq!(o6["uplink"], "eth0");
    assert_eq!(o6["uplink_source"], "vxlan_dev");
    assert_eq!(
        (&o6["vni"], &o6["vxlan_port"]),
        (&Value::from(1), &Value::from(8472))
    );
    assert_eq!(o6["port_bound"], true);
    assert_eq!(o6["forwarding"], true);
    assert_eq!(o6["mtu"], 1430);
    // Two peers: two FDB entries, neighbours and routes on each overlay.
    for o in [o4, o6] {
        assert_eq!(
            (&o["fdb_entries"], &o["neighbours"], &o["routes"]),
            (&Value::from(2), &Value::from(2), &Value::from(2)),
            "{o:#}"
        );
    }
    assert_eq!(
        o6["overlay_mac"],
        flannel_probe_tests::lab::format_mac(&e.vtep_mac6)
    );
    // Exact per-peer counts on both families at once: gladius's 5 echo
    // requests arrive and are decapsulated, 5 replies leave, over each.
    for peer in ["192.0.2.11", "fd00:192:0:2::11"] {
        let p = reports::peer(&r, peer);
        for field in ["rx_encap_packets", "rx_decap_packets", "tx_encap_packets"] {
            assert_eq!(p[field], 5, "{peer} {field}: {p:#}");
        }
    }
}

#[test]
fn flannel_v6_deleted_is_found_alone_while_flannel_1_is_healthy() {
    let Some((_lab, r, v4, v6)) = one_overlay_deleted(IpFamily::V6) else {
        return;
    };
    assert!(v4.all_received(), "IPv4 still works: {v4:?}");
    assert_eq!(v6.received, 0, "IPv6 to eq14-001's pod is gone: {v6:?}");
    let found = serious_on(&r);
    assert_incident_on(&found, "flannel-v6.1");
    // gladius's 3 IPv6 echo requests arrived on the uplink, none was
    // decapsulated.
    let g6 = reports::peer(&r, "fd00:192:0:2::11");
    assert_eq!(g6["rx_encap_packets"], 3, "{g6:#}");
    assert_eq!(g6["rx_decap_packets"], 0, "{g6:#}");
    assert!(
        found
            .iter()
            .all(|(_, o)| o.as_deref() == Some("flannel-v6.1")),
        "nothing wrong on flannel.1: {found:?}"
    );
    assert_eq!(r["node"]["overlay_state"], "up");
    assert_eq!(overlay(&r, "flannel.1")["state"], "up");
    assert_eq!(overlay(&r, "flannel-v6.1")["state"], "missing");
    assert_eq!(overlay(&r, "flannel-v6.1")["port_bound"], false);
    // The IPv4 peers' counts are untouched by the other family's fault.
    let to_g = reports::peer(&r, "192.0.2.11");
    assert_eq!(to_g["rx_encap_packets"], 5);
    assert_eq!(to_g["rx_decap_packets"], 5);
}

#[test]
fn flannel_1_deleted_is_found_alone_while_flannel_v6_is_healthy() {
    let Some((_lab, r, v4, v6)) = one_overlay_deleted(IpFamily::V4) else {
        return;
    };
    assert_eq!(v4.received, 0, "IPv4 to eq14-001's pod is gone: {v4:?}");
    assert!(v6.all_received(), "IPv6 still works: {v6:?}");
    let found = serious_on(&r);
    assert_incident_on(&found, "flannel.1");
    assert!(
        found.iter().all(|(_, o)| o.as_deref() == Some("flannel.1")),
        "nothing wrong on flannel-v6.1: {found:?}"
    );
    assert_eq!(r["node"]["overlay_state"], "missing");
    // The kernel's IPv6 VXLAN socket still holds 8472, for IPv6 only.
    assert_eq!(r["node"]["port_bound"], false);
    assert_eq!(overlay(&r, "flannel-v6.1")["state"], "up");
    assert_eq!(overlay(&r, "flannel-v6.1")["port_bound"], true);
}

#[test]
fn ipv6_only_node_shows_flannel_v6_with_its_ipv6_vtep_and_fdb() {
    let Some(mut lab) = lab(Family::V6) else {
        return;
    };
    let e = lab.node("eq14-001");
    let run = reports::start(&lab, e, 3);
    let (code, r) = finish(run, "eq14-001");
    assert_eq!(code, 0, "{:#}", r["findings"]);
    assert_eq!(r["node"]["overlay"], "flannel-v6.1");
    assert_eq!(r["node"]["overlay_state"], "up");
    assert_eq!(r["node"]["local_vtep"], "fd00:192:0:2::13");
    assert_eq!(r["node"]["uplink"], "eth0");
    let o = overlay(&r, "flannel-v6.1");
    // flannel.1 is looked for by default (its absence beside flannel-v6.1
    // is the dual-stack incident) and listed missing, but with no IPv4
    // VXLAN arriving the node is IPv6-only: no finding about it.
    assert_eq!(r["node"]["overlays"].as_array().map(Vec::len), Some(2));
    assert_eq!(overlay(&r, "flannel.1")["state"], "missing");
    assert_eq!(o["family"], "ipv6");
    assert_eq!(o["fdb_entries"], 2);
    assert_eq!(o["neighbours"], 2);
    assert_eq!(o["routes"], 2);

    // The incident on IPv6: flannel-v6.1 deleted.
    lab.fault(&Fault::DeleteOverlay {
        node: "eq14-001".into(),
    })
    .expect("delete flannel-v6.1");
    let e = lab.node("eq14-001");
    let run = reports::start_with(&lab, e, 2, &["--overlay", "flannel-v6.1"]);
    let (code, r) = finish(run, "eq14-001");
    assert_eq!(code, 1);
    let found = serious_on(&r);
    assert!(
        found.contains(&("OVERLAY_DEVICE_MISSING".into(), None)),
        "one overlay: no overlay field: {found:?}"
    );
    assert_eq!(r["node"]["overlay"], "flannel-v6.1");
    // Without the device the uplink's IPv6 address is the local VTEP.
    assert_eq!(r["node"]["local_vtep"], "fd00:192:0:2::13");
}

/// Every lab fault but `bad-checksum` (its own test below) applies to the IPv6
/// overlay of a dual-stack lab and breaks IPv6 pod traffic where it
/// should, leaving IPv4 alone.
#[test]
fn faults_hit_the_ipv6_overlay_only() {
    if !flannel_probe_tests::require_root() {
        return;
    }
    // (fault, IPv6 pod traffic to eq14-001 still flows afterwards)
    let cases = [
        ("incident", false),
        ("overlay-down", false),
        ("other-vni", false),
        ("recreate-overlay", true),
        ("firewall", false),
        ("missing-fdb", true),
        ("missing-neigh", true),
        ("stale-fdb", true),
        ("forwarding-off", false),
        ("mtu", true),
        ("underlay-loss=100", false),
        ("other-port", false),
        ("forward-drop", false),
        ("mac-change", false),
        ("underlay-mtu", true),
    ];
    for (name, flows) in cases {
        let Some(mut lab) = lab(Family::Dual) else {
            return;
        };
        let fault = Fault::parse(name, "eq14-001", None).expect(name);
        lab.fault_on(IpFamily::V6, &fault)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
        // missing-fdb/-neigh/stale-fdb break gladius's entries on eq14-001:
        // ping from eq14-001's side for those, so the fault is on the path.
        let (from, to) = match name {
            "missing-fdb" | "missing-neigh" | "stale-fdb" => (e, g),
            _ => (g, e),
        };
        let v6 = lab
            .ping(from, to.pod_ip6.expect("IPv6 pod"), 3, 0.1)
            .expect("IPv6 ping");
        let v4 = lab.ping(from, to.pod_ip, 3, 0.1).expect("IPv4 ping");
        assert!(v4.all_received(), "{name}: IPv4 untouched: {v4:?}");
        match (name, flows) {
            // Reachability after these depends on entries, not the fault
            // itself: checked through the kernel state below.
            ("missing-fdb" | "missing-neigh" | "stale-fdb", _) => {}
            (_, true) => assert!(v6.all_received(), "{name}: {v6:?}"),
            (_, false) => assert_eq!(v6.received, 0, "{name}: {v6:?}"),
        }
        let peer6 = g.ip6.expect("v6").to_string();
        let fdb = String::from_utf8_lossy(
            &netns::run(
                "bridge",
                &["-netns", &e.ns, "fdb", "show", "dev", "flannel-v6.1"],
            )
            .map(|o| o.stdout)
            .unwrap_or_default(),
        )
        .into_owned();
        let g_mac6 = flannel_probe_tests::lab::format_mac(&g.vtep_mac6);
        match name {
            "missing-fdb" => assert!(!fdb.contains(&g_mac6), "{fdb}"),
            "stale-fdb" => assert!(
                fdb.contains(&g_mac6) && !fdb.contains(&format!("{g_mac6} dst {peer6}")),
                "{fdb}"
            ),
            "missing-neigh" => {
                let n = netns::run(
                    "ip",
                    &["-n", &e.ns, "-6", "neigh", "show", "dev", "flannel-v6.1"],
                )
                .expect("ip");
                // The ping may leave an INCOMPLETE entry (NDP cannot resolve
                // over the overlay): flannel's permanent one is gone.
                let n = String::from_utf8_lossy(&n.stdout).into_owned();
                assert!(!n.contains("2001:cafe:42:1:: lladdr"), "{n}");
            }
            _ => {}
        }
    }
}

/// `serve` with the default overlays keeps watching an overlay it has seen:
/// `flannel-v6.1` deleted while it runs is a finding about that overlay,
/// not an overlay left out of the report.
#[test]
fn the_agent_keeps_watching_an_overlay_it_has_seen() {
    let Some(mut lab) = lab(Family::Dual) else {
        return;
    };
    let e = lab.node("eq14-001").clone();
    let agent = start_agent(&lab, &e, &["--interval", "1s"]);
    let report = |node| -> Value {
        let (code, body) = agent_get(node, "/report");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("report JSON")
    };
    let before = report(&e);
    assert_eq!(before["node"]["overlays"].as_array().map(Vec::len), Some(2));
    assert!(serious_on(&before).is_empty(), "{:#}", before["findings"]);

    lab.fault_on(
        IpFamily::V6,
        &Fault::DeleteOverlay {
            node: "eq14-001".into(),
        },
    )
    .expect("delete flannel-v6.1");
    let want = (
        "OVERLAY_DEVICE_MISSING".to_owned(),
        Some("flannel-v6.1".to_owned()),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let r = report(&e);
        if serious_on(&r).contains(&want) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        serious_on(&after).contains(&want),
        "{:#}",
        after["findings"]
    );
    assert_eq!(overlay(&after, "flannel-v6.1")["state"], "missing");
    assert_eq!(overlay(&after, "flannel.1")["state"], "up");
    terminate(agent.pid());
    let (code, _) = agent
        .finish(Duration::from_secs(20))
        .expect("the agent exits");
    assert_eq!(code, 0);
}

/// `mesh` on a dual-stack lab: links per family (IPv4 VTEP to IPv4 VTEPs,
/// IPv6 to IPv6, never across), and 40 % of gladius's IPv6 VXLAN to
/// eq14-001 dropped by the switch names exactly that IPv6 link, while the
/// same two nodes' IPv4 link is clean.
#[test]
fn the_mesh_has_links_per_family_and_names_the_lossy_ipv6_link() {
    let Some(mut lab) = lab(Family::Dual) else {
        return;
    };
    let runs = start_agents(&lab);
    lab.fault_on(
        IpFamily::V6,
        &Fault::LinkLoss {
            node: "eq14-001".into(),
            peer: "gladius".into(),
            percent: 40,
        },
    )
    .expect("IPv6 link loss");
    let lab = &lab;
    let (out, code) = std::thread::scope(|s| {
        // Every pod pings every other pod over both families, 10/s, ~9 s.
        let v4 = s.spawn(|| lab.traffic_on(IpFamily::V4, 90, 0.1));
        let v6 = s.spawn(|| lab.traffic_on(IpFamily::V6, 90, 0.1));
        std::thread::sleep(Duration::from_millis(1500));
        let args: Vec<String> = [
            "--agents",
            &crate::mesh::agents(lab),
            "--duration",
            "6s",
            "--format",
            "json",
        ]
        .map(String::from)
        .to_vec();
        let (code, out) = crate::mesh::mesh(lab, &args);
        for t in [v4, v6] {
            t.join().expect("traffic thread").expect("traffic");
        }
        (out, code)
    });
    let m: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("mesh JSON ({e}): {out}"));
    assert_eq!(code, 1, "{m:#}");
    let links = m["links"].as_array().expect("links");
    assert_eq!(links.len(), 12, "6 per family: {m:#}");
    for l in links {
        let (from, to) = (
            l["from"].as_str().unwrap_or(""),
            l["to"].as_str().unwrap_or(""),
        );
        assert_eq!(from.contains(':'), to.contains(':'), "across families: {l}");
    }
    let lossy: Vec<(&str, &str)> = m["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["code"] == "UNDERLAY_LOSS")
        .map(|f| {
            (
                f["from"].as_str().unwrap_or(""),
                f["to"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(lossy, [("fd00:192:0:2::11", "fd00:192:0:2::13")], "{m:#}");
    let link = |from: &str, to: &str| {
        links
            .iter()
            .find(|l| l["from"] == from && l["to"] == to)
            .unwrap_or_else(|| panic!("no link {from} -> {to}: {m:#}"))
    };
    let l6 = link("fd00:192:0:2::11", "fd00:192:0:2::13");
    let loss = l6["loss_pct"].as_f64().expect("loss_pct");
    assert!(l6["sent"].as_u64() >= Some(60), "{l6}");
    assert!((15.0..65.0).contains(&loss), "{l6}");
    let l4 = link("192.0.2.11", "192.0.2.13");
    let lost = l4["lost"].as_u64().expect("lost");
    assert!(l4["sent"].as_u64() >= Some(60), "{l4}");
    assert!(
        lost <= l4["in_flight_allowance"].as_u64().expect("allowance"),
        "the IPv4 link is clean: {l4}"
    );
    drop(runs);
}

/// flannel-v6.1 recreated (a CNI restart: new ifindex and MAC, peers
/// reprogrammed) under `watch` on a dual-stack node: the overlay programs
/// are attached to the new device within 2 s while flannel.1 keeps its
/// own, and IPv6 decapsulation is counted again.
#[test]
fn a_recreated_flannel_v6_is_reattached_and_counts_again() {
    let Some(mut lab) = lab(Family::Dual) else {
        return;
    };
    let e = lab.node("eq14-001").clone();
    let mut cmd = lab.node_command(&e, &probe_bin());
    cmd.args(["watch", "--plain", "--format", "json", "--interval", "1s"]);
    let mut run = ProbeRun::spawn(cmd).expect("start watch");
    // "watching the overlay device" once per device (the log's fields
    // may be coloured: the device is matched on the line alone).
    let attached_v6 = |run: &mut ProbeRun, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            run.wait_for("watching the overlay device", left)
                .expect("attached");
            if run
                .stderr_lines
                .last()
                .is_some_and(|l| l.contains("flannel-v6.1"))
            {
                return;
            }
        }
    };
    attached_v6(&mut run, scaled(Duration::from_secs(60)));
    let t0 = Instant::now();
    lab.fault_on(
        IpFamily::V6,
        &Fault::RecreateOverlay {
            node: "eq14-001".into(),
        },
    )
    .expect("recreate flannel-v6.1");
    attached_v6(&mut run, scaled(Duration::from_secs(10)));
    let took = t0.elapsed();
    let bound = scaled(Duration::from_secs(2));
    assert!(took < bound, "re-attach took {took:?} (bound {bound:?})");
    let (g, e2) = (lab.node("gladius"), lab.node("eq14-001"));
    assert_ne!(
        e2.vtep_mac6, e.vtep_mac6,
        "a new MAC, as after a CNI restart"
    );
    let pod6 = e2.pod_ip6.expect("IPv6 pod");
    let after = lab.ping(g, pod6, 20, 0.1).expect("IPv6 ping after");
    assert_eq!(
        after.received, 20,
        "the recreated flannel-v6.1 carries traffic"
    );
    let v4 = lab.ping(g, e2.pod_ip, 5, 0.1).expect("IPv4 ping");
    assert_eq!(v4.received, 5, "flannel.1 untouched");
    std::thread::sleep(Duration::from_millis(1500));
    terminate(run.pid());
    let (code, out) = run.finish(scaled(Duration::from_secs(20))).expect("exits");
    assert_eq!(code, 0);
    let reports = json_lines(&out);
    let decap_after = |peer: &str| -> u64 {
        reports
            .iter()
            .rev()
            .take(4)
            .filter_map(|r| {
                r["peers"]
                    .as_array()?
                    .iter()
                    .find(|p| p["peer"] == peer)
                    .and_then(|p| p["rx_decap_packets"].as_u64())
            })
            .sum()
    };
    assert!(
        decap_after("fd00:192:0:2::11") > 0,
        "IPv6 decapsulation counted after the restart"
    );
    assert!(decap_after("192.0.2.11") > 0, "and IPv4's");
}

/// `bad-checksum` on the IPv6 overlay: gladius's IPv6 VXLAN with a wrong
/// UDP checksum is dropped (`UDP_CSUM`) before `flannel-v6.1`; the finding
/// names the IPv6 peer and the overlay, its witness is `Udp6InCsumErrors`
/// (`/proc/net/snmp6`, not IPv4's counter) and the remedy the IPv6 device.
#[test]
fn bad_checksums_over_ipv6_are_named_on_flannel_v6() {
    let Some(mut lab) = lab(Family::Dual) else {
        return;
    };
    const SENT: u32 = 20;
    let e = lab.node("eq14-001").clone();
    let run = reports::start_with(&lab, &e, 4, BOTH);
    lab.fault_on(
        IpFamily::V6,
        &Fault::BadChecksum {
            node: "eq14-001".into(),
            peer: "gladius".into(),
            count: SENT,
        },
    )
    .unwrap_or_else(|err| panic!("inject bad-checksum: {err:#}"));
    let (code, r) = finish(run, "eq14-001");
    assert_eq!(code, 1, "{:#}", r["findings"]);
    let g6 = "fd00:192:0:2::11";
    let p = reports::peer(&r, g6);
    assert_eq!(p["drops"]["UDP_CSUM"], SENT, "{p:#}");
    assert_eq!(p["rx_encap_packets"], SENT, "{p:#}");
    assert_eq!(p["rx_decap_packets"], 0, "{p:#}");
    let f = r["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["code"] == "VXLAN_CHECKSUM_ERRORS")
        .unwrap_or_else(|| panic!("no VXLAN_CHECKSUM_ERRORS: {:#}", r["findings"]));
    assert_eq!(f["peer"], g6, "{f:#}");
    assert_eq!(f["overlay"], "flannel-v6.1", "{f:#}");
    // Nothing of gladius's IPv6 VXLAN got through: critical.
    assert_eq!(f["severity"], "critical", "{f:#}");
    let evidence: Vec<&str> = f["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        evidence
            .iter()
            .any(|l| l.contains(&format!("Udp6InCsumErrors={SENT} (/proc/net/snmp6"))),
        "{evidence:?}"
    );
    let fix = f["remediation"].as_str().unwrap_or_default();
    assert!(
        fix.contains("ethtool -K flannel-v6.1 tx-checksum-ip-generic off"),
        "{f:#}"
    );
    // The IPv4 side saw none of it.
    let found = serious_on(&r);
    assert!(
        found
            .iter()
            .all(|(_, o)| o.as_deref() == Some("flannel-v6.1")),
        "nothing on flannel.1: {found:?}"
    );
    let g4 = reports::peer(&r, "192.0.2.11");
    assert!(g4["drops"].get("UDP_CSUM").is_none(), "{g4:#}");
}
