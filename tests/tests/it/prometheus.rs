//! `flannel-probe serve` scraped by a real Prometheus (Debian's package)
//! running inside the lab: the contract's series exist with their labels,
//! the shipped alert rules fire in the incident (INC-0001), what we serve
//! passes `promtool check metrics`, and the agent shuts down cleanly.
use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabSpec},
    prometheus::{Prometheus, prometheus_bin, promtool_bin},
    support::{attached::tcx_programs, http_get_in, require_tool, start_agent, terminate},
};
use serde_json::Value;

const RULES: &str = include_str!("../../../deploy/prometheus/flannel-probe.rules.yml");

/// The shipped rules, evaluated every second and firing without `for:`.
fn test_rules() -> String {
    let mut doc: serde_norway::Value = serde_norway::from_str(RULES).expect("rules parse");
    for group in doc["groups"].as_sequence_mut().expect("groups") {
        group["interval"] = "1s".into();
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            if let Some(m) = rule.as_mapping_mut()
                && m.contains_key("for")
            {
                m.insert("for".into(), "0s".into());
            }
        }
    }
    serde_norway::to_string(&doc).expect("rules encode")
}

fn config(targets: &[String]) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - rules.yml\n\
         scrape_configs:\n  - job_name: flannel-probe\n    static_configs:\n      - targets: [{}]\n",
        targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The one sample of `expr`, once it exists.
fn one(p: &Prometheus, expr: &str, timeout: Duration) -> Value {
    p.wait_for(expr, timeout, |p| {
        let r = p.query(expr)?;
        Ok((r.len() == 1).then(|| r[0].clone()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn prometheus_scrapes_the_agents_and_the_incident_alerts_fire() {
    if !require_tool(&prometheus_bin()) || !require_tool(&promtool_bin()) {
        return;
    }
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, m, e) = (
        lab.node("gladius").clone(),
        lab.node("momonoke").clone(),
        lab.node("eq14-001").clone(),
    );
    let args = ["--window", "5s", "--interval", "1s"];
    let agent_g = start_agent(&lab, &g, &args);
    let agent_e = start_agent(&lab, &e, &args);
    let (ig, ie) = (format!("{}:9465", g.ip), format!("{}:9465", e.ip));

    // Prometheus lives in momonoke's namespace and scrapes over the underlay.
    let prom = Prometheus::start(
        &m.ns,
        &config(&[ig.clone(), ie.clone()]),
        &[("rules.yml", test_rules())],
        Duration::from_secs(300),
    )
    .expect("prometheus starts");
    for t in [&ig, &ie] {
        let up = one(
            &prom,
            &format!("up{{instance='{t}'}} == 1"),
            Duration::from_secs(30),
        );
        assert_eq!(value(&up), 1.0);
    }

    // Healthy traffic: gladius <-> eq14-001 and gladius <-> momonoke.
    let s = lab.ping(&g, e.pod_ip, 5, 0.1).expect("ping");
    assert!(s.all_received(), "{s:?}");
    lab.ping(&g, m.pod_ip, 5, 0.1).expect("ping");

    // Every per-peer series, with the contract's names and labels.
    for (peer, n) in [(e.ip, 5.0), (m.ip, 5.0)] {
        for (dir, layer) in [
            ("tx", "outer"),
            ("rx", "outer"),
            ("tx", "inner"),
            ("rx", "inner"),
        ] {
            let expr = format!(
                "flannel_probe_peer_packets_total{{instance='{ig}',job='flannel-probe',peer='{peer}',direction='{dir}',layer='{layer}'}} >= {n}"
            );
            let s = one(&prom, &expr, Duration::from_secs(20));
            let mut labels: Vec<&str> = s["metric"]
                .as_object()
                .expect("labels")
                .keys()
                .map(String::as_str)
                .collect();
            labels.sort_unstable();
            assert_eq!(
                labels,
                ["__name__", "direction", "instance", "job", "layer", "peer"],
                "{s}"
            );
            let bytes = one(
                &prom,
                &format!(
                    "flannel_probe_peer_bytes_total{{instance='{ig}',peer='{peer}',direction='{dir}',layer='{layer}'}}"
                ),
                Duration::from_secs(5),
            );
            assert!(value(&bytes) >= n * 98.0, "{bytes}");
        }
    }
    // eq14-001 counts what gladius sent it: 5 requests, 5 decapsulated.
    let rx = one(
        &prom,
        &format!(
            "flannel_probe_peer_packets_total{{instance='{ie}',peer='{}',direction='rx',layer='inner'}} >= 5",
            g.ip
        ),
        Duration::from_secs(5),
    );
    assert_eq!(value(&rx), 5.0, "{rx}");
    for (t, peer) in [(&ig, e.ip), (&ie, g.ip)] {
        for gauge in ["flannel_probe_overlay_up", "flannel_probe_vxlan_port_bound"] {
            let s = one(
                &prom,
                &format!("{gauge}{{instance='{t}'}}"),
                Duration::from_secs(5),
            );
            assert_eq!(value(&s), 1.0, "{s}");
        }
        one(
            &prom,
            &format!(
                "flannel_probe_peer_icmp_port_unreachable_total{{instance='{t}',peer='{peer}'}} == 0"
            ),
            Duration::from_secs(5),
        );
    }
    let info = one(
        &prom,
        &format!("flannel_probe_node_info{{instance='{ie}'}}"),
        Duration::from_secs(5),
    );
    assert_eq!(info["metric"]["hostname"], "eq14-001");
    assert_eq!(info["metric"]["local_vtep"], e.ip.to_string());
    assert!(
        prom.query("flannel_probe_finding{severity=~'critical|warning'}")
            .expect("query")
            .is_empty(),
        "a healthy mesh raises nothing"
    );

    // What we serve passes promtool's linter; /report and /healthz answer.
    let (code, metrics) =
        http_get_in(&m.ns, &ig, "/metrics", Duration::from_secs(5)).expect("GET /metrics");
    assert_eq!(code, 200);
    let mut lint = Command::new(promtool_bin())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = lint.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, report) =
        http_get_in(&m.ns, &ie, "/report", Duration::from_secs(5)).expect("GET /report");
    assert_eq!(code, 200);
    let report: Value = serde_json::from_str(&report).expect("report JSON");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["node"]["hostname"], "eq14-001");
    assert!(
        report["window_secs"]
            .as_f64()
            .is_some_and(|w| w > 0.0 && w < 7.0),
        "{report}"
    );
    let (code, body) =
        http_get_in(&m.ns, &ie, "/healthz", Duration::from_secs(5)).expect("GET /healthz");
    assert_eq!((code, body.trim()), (200, "ok"));

    // The incident: flannel.1 disappears on eq14-001 while pods ping it.
    lab.fault(&Fault::DeleteOverlay {
        node: e.name.clone(),
    })
    .expect("delete flannel.1");
    let lab = &lab;
    std::thread::scope(|s| {
        s.spawn(|| lab.ping(&g, e.pod_ip, 80, 0.25));
        s.spawn(|| lab.ping(&m, e.pod_ip, 80, 0.25));
        let firing = |name: &str, sel: &str| {
            format!("ALERTS{{alertname='{name}',alertstate='firing',{sel}}}")
        };
        let a = one(
            &prom,
            &firing("FlannelVxlanNotDecapsulated", &format!("instance='{ie}'")),
            Duration::from_secs(60),
        );
        assert_eq!(a["metric"]["hostname"], "eq14-001", "{a}");
        assert_eq!(a["metric"]["severity"], "critical");
        let a = one(
            &prom,
            &firing("FlannelPeerPortUnreachable", &format!("instance='{ig}'")),
            Duration::from_secs(60),
        );
        assert_eq!(
            a["metric"]["peer"],
            e.ip.to_string(),
            "gladius names eq14-001: {a}"
        );
        one(
            &prom,
            &firing("FlannelOverlayDeviceDown", &format!("instance='{ie}'")),
            Duration::from_secs(30),
        );
        let f = one(
            &prom,
            &format!(
                "flannel_probe_finding{{instance='{ie}',code='VXLAN_NOT_DECAPSULATED',severity='critical'}}"
            ),
            Duration::from_secs(5),
        );
        assert_eq!(value(&f), 1.0);
        // Nobody blames the healthy nodes.
        let wrong = prom
            .query(&format!(
                "ALERTS{{alertname='FlannelPeerPortUnreachable',peer!='{}'}}",
                e.ip
            ))
            .expect("query");
        assert!(wrong.is_empty(), "{wrong:?}");
        let ov = one(
            &prom,
            &format!("flannel_probe_overlay_up{{instance='{ie}'}}"),
            Duration::from_secs(5),
        );
        assert_eq!(value(&ov), 0.0);
    });
    drop(prom);

    // SIGTERM: exit 0, nothing of ours left attached.
    for (run, node) in [(agent_g, &g), (agent_e, &e)] {
        terminate(run.pid());
        let (code, _) = run.finish(Duration::from_secs(15)).expect("agent exits");
        assert_eq!(code, 0, "serve on {} exits 0 on SIGTERM", node.name);
        let left = tcx_programs(&node.ns, "eth0");
        assert!(left.is_empty(), "{} still has {left:?}", node.name);
    }
}
