//! `flannel-probe mesh` on the lab: agents on every node, 30% of the VXLAN
//! towards eq14-001 dropped by the switch while every pod pings every other
//! pod; the matrix must name exactly the two links into eq14-001.
use std::{net::Ipv4Addr, time::Duration};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabSpec},
    support::{ProbeRun, probe_bin, start_agents},
};
use serde_json::Value;

/// `mesh ARGS` run inside gladius (mesh needs no privileges: any node will do).
pub(crate) fn mesh(lab: &Lab, args: &[String]) -> (i32, String) {
    let mut cmd = lab.node_command(lab.node("gladius"), &probe_bin());
    cmd.arg("mesh").args(args);
    let run = ProbeRun::spawn(cmd).expect("start mesh");
    run.finish(Duration::from_secs(60)).expect("mesh exits")
}

/// Every lab node's agent URL, as `mesh --agents` takes them.
pub(crate) fn agents(lab: &Lab) -> String {
    lab.nodes
        .iter()
        .map(|n| format!("http://{}:9465", n.ip))
        .collect::<Vec<_>>()
        .join(",")
}

/// The link `from` -> `to` of a mesh JSON report.
pub(crate) fn link(m: &Value, from: Ipv4Addr, to: Ipv4Addr) -> &Value {
    m["links"]
        .as_array()
        .and_then(|ls| {
            ls.iter()
                .find(|l| l["from"] == from.to_string() && l["to"] == to.to_string())
        })
        .unwrap_or_else(|| panic!("no link {from} -> {to} in {m:#}"))
}

#[test]
fn mesh_names_exactly_the_lossy_links() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let runs = start_agents(&lab);
    lab.fault(&Fault::UnderlayLoss {
        node: "eq14-001".into(),
        percent: 30,
    })
    .expect("inject loss");
    let lab = &lab;
    let (g, m, e) = (
        lab.node("gladius").ip,
        lab.node("momonoke").ip,
        lab.node("eq14-001").ip,
    );

    let ((code, out), (text_code, text)) = std::thread::scope(|s| {
        // Every pod pings every other pod, 10 per second, for about 9 s.
        let traffic = s.spawn(|| lab.traffic(90, 0.1));
        std::thread::sleep(Duration::from_millis(1500));
        let args = |format: &str| {
            vec![
                "--agents".to_string(),
                agents(lab),
                "--duration".into(),
                "6s".into(),
                "--format".into(),
                format.into(),
            ]
        };
        // Two meshes at once: the agents serve concurrent readers.
        let as_text = s.spawn(move || mesh(lab, &args("text")));
        let as_json = mesh(lab, &args("json"));
        let as_text = as_text.join().expect("text mesh");
        let pings = traffic.join().expect("traffic thread").expect("traffic");
        assert_eq!(pings.len(), 6);
        (as_json, as_text)
    });
    eprintln!("{text}");
    assert_eq!(text_code, 1, "{text}");
    for want in [
        "FROM \\ TO",
        &format!("UNDERLAY_LOSS [{g} -> {e}]"),
        &format!("UNDERLAY_LOSS [{m} -> {e}]"),
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert_eq!(text.matches("UNDERLAY_LOSS").count(), 2, "{text}");
    eprintln!("{out}");
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("mesh JSON ({e}): {out}"));
    assert_eq!(report["schema"], 1);
    assert!(
        report["window_secs"]
            .as_f64()
            .is_some_and(|w| (5.0..8.0).contains(&w)),
        "{report:#}"
    );
    let nodes = report["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    for (n, (host, ip)) in nodes
        .iter()
        .zip([("gladius", g), ("momonoke", m), ("eq14-001", e)])
    {
        assert_eq!(n["reachable"], true, "{n}");
        assert_eq!(n["hostname"], host);
        assert_eq!(n["local_vtep"], ip.to_string());
    }
    assert_eq!(report["links"].as_array().map(Vec::len), Some(6));

    // The two links into eq14-001 lose about 30%.
    for from in [g, m] {
        let l = link(&report, from, e);
        let loss = l["loss_pct"].as_f64().expect("loss_pct");
        assert!(l["sent"].as_u64() >= Some(60), "{l}");
        assert!((12.0..50.0).contains(&loss), "{from} -> {e}: {l}");
    }
    // Every other link is clean: what is missing is what was in flight
    // while the two nodes were read (a few ms apart, even with a second
    // mesh asking at the same time; the lab's nodes share one clock, so
    // skew_secs is measured, not assumed).
    for (from, to) in [(g, m), (m, g), (e, g), (e, m)] {
        let l = link(&report, from, to);
        assert!(l["sent"].as_u64() >= Some(60), "{l}");
        let lost = l["sent"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(l["received"].as_u64().unwrap_or(0));
        assert_eq!(l["lost"].as_u64(), Some(lost), "{l}");
        let skew = l["skew_secs"].as_f64().expect("skew_secs");
        assert!(skew < 0.3, "{from} -> {to} read {skew}s apart: {l}");
        let allowed = l["in_flight_allowance"].as_u64().expect("allowance");
        assert!(allowed <= 2 + 6, "{l}");
        assert!(lost <= allowed, "{from} -> {to} is healthy: {l}");
    }
    let lossy: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "UNDERLAY_LOSS")
        .map(|f| {
            assert_eq!(f["severity"], "warning");
            (
                f["from"].as_str().unwrap_or_default().to_string(),
                f["to"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        lossy,
        vec![
            (g.to_string(), e.to_string()),
            (m.to_string(), e.to_string())
        ],
        "{report:#}"
    );
    let others: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] != "UNDERLAY_LOSS")
        .collect();
    assert!(others.is_empty(), "nothing else is wrong: {others:#?}");
    assert_eq!(code, 1, "a warning exits 1");

    // The text matrix, and an agent that does not answer.
    let (code, text) = mesh(
        lab,
        &[
            "--agents".into(),
            format!("{},http://{m}:9466", agents(lab)),
            "--duration".into(),
            "1s".into(),
            "--timeout".into(),
            "2s".into(),
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FROM \\ TO"), "{text}");
    assert!(text.contains("eq14-001"), "{text}");
    assert!(
        text.contains(&format!("AGENT_UNREACHABLE [http://{m}:9466]")),
        "{text}"
    );

    // No agent at all: nothing could be observed.
    let (code, out) = mesh(
        lab,
        &[
            "--agents".into(),
            format!("http://{g}:9466"),
            "--timeout".into(),
            "2s".into(),
        ],
    );
    assert_eq!(code, 2, "{out}");
    drop(runs);
}
