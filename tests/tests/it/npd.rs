//! The node-problem-detector plugin's own command line, run on lab nodes:
//! NPD's custom-plugin convention is exit 0 = OK, 1 = NonOK (the condition
//! becomes True), anything else = Unknown. A healthy node must give 0 and
//! the incident's node 1, with the verdict first in what NPD keeps as the
//! condition's message. The plugin reads the node's agent
//! (`report --from http://$(NODE_IP):9465 --format npd`), so each node runs
//! `serve` as the DaemonSet does.
use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    support::{
        attached::probe_programs,
        http_get_in, probe_bin,
        reports::{codes, peer},
        scaled, start_agent,
    },
};
use serde_json::Value;

fn plugin() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/node-problem-detector/flannel-probe-plugin.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("read plugin config"))
        .expect("plugin JSON")
}

/// Runs the plugin's rule as NPD would (its path is our binary here, and
/// NPD's DaemonSet gives it NODE_IP), without privileges: as nobody, with
/// no capabilities at all.
fn run_unprivileged(lab: &Lab, node: &LabNode, args: &[String]) -> Output {
    let mut cmd = lab.node_command(node, Path::new("setpriv"));
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ])
    .arg(probe_bin())
    .args(args)
    .env("NODE_IP", node.ip.to_string());
    cmd.output().expect("run the plugin's command")
}

fn rule_args(rule: &Value) -> Vec<String> {
    rule["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

/// The agent's current `/report` on `node`, once `ready` holds for it.
fn agent_report(node: &LabNode, ready: impl Fn(&Value) -> bool) -> Value {
    let addr = format!("{}:9465", node.ip);
    let deadline = std::time::Instant::now() + scaled(Duration::from_secs(30));
    loop {
        let got = http_get_in(&node.ns, &addr, "/report", Duration::from_secs(5))
            .ok()
            .filter(|(code, _)| *code == 200)
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok());
        match got {
            Some(r) if ready(&r) => return r,
            last if std::time::Instant::now() > deadline => {
                panic!(
                    "{}: the agent's report never got ready: {last:#?}",
                    node.name
                )
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn sorted_codes(r: &Value) -> Vec<String> {
    let mut c = codes(r);
    c.sort();
    c
}

#[test]
fn the_plugin_command_says_ok_on_a_healthy_node_and_problem_on_the_broken_one() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let plugin = plugin();
    let rule = &plugin["rules"][0];
    let max_output = plugin["pluginConfig"]["max_output_length"]
        .as_u64()
        .expect("max_output_length") as usize;
    let (g, m, e) = (
        lab.node("gladius").clone(),
        lab.node("momonoke").clone(),
        lab.node("eq14-001").clone(),
    );
    let _agent_m = start_agent(&lab, &m, &[]);
    let _agent_e = start_agent(&lab, &e, &[]);
    lab.fault(&Fault::DeleteOverlay {
        node: "eq14-001".into(),
    })
    .expect("the incident");
    std::thread::scope(|s| {
        // momonoke only talks to healthy gladius; gladius pings the broken
        // node, whose report must say so.
        s.spawn(|| lab.ping(&m, g.pod_ip, 10, 0.2));
        s.spawn(|| lab.ping(&g, e.pod_ip, 10, 0.2));
    });
    let g_ip = g.ip.to_string();
    agent_report(&m, |r| peer_decap(r, &g_ip) >= 10);
    agent_report(&e, |r| {
        codes(r).iter().any(|c| c == "VXLAN_NOT_DECAPSULATED")
    });
    let args = rule_args(rule);
    let on_m = run_unprivileged(&lab, &m, &args);
    let on_e = run_unprivileged(&lab, &e, &args);
    let out_m = String::from_utf8_lossy(&on_m.stdout).into_owned();
    let out_e = String::from_utf8_lossy(&on_e.stdout).into_owned();
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // NPD: 0 -> OK, 1 -> NonOK.
    assert_eq!(
        on_m.status.code(),
        Some(0),
        "healthy momonoke: {out_m} {}",
        err(&on_m)
    );
    assert_eq!(
        on_e.status.code(),
        Some(1),
        "broken eq14-001: {out_e} {}",
        err(&on_e)
    );
    for (out, node, verdict) in [
        (&out_m, "momonoke", "HEALTHY"),
        (&out_e, "eq14-001", "CRITICAL"),
    ] {
        // One line of at most 200 bytes, whole within NPD's cut.
        assert_eq!(out.lines().count(), 1, "{out:?}");
        assert!(out.trim_end().len() <= max_output, "{out:?}");
        let message: String = out.chars().take(max_output).collect();
        let first = message.lines().next().unwrap_or_default();
        assert!(
            first.contains(node) && first.starts_with(verdict),
            "NPD's condition message starts with the verdict: {first:?}"
        );
    }
    assert!(out_e.contains("VXLAN_NOT_DECAPSULATED"), "{out_e}");
    // NPD's default max_output_length (80) still keeps verdict and code.
    let cut: String = out_e.chars().take(80).collect();
    assert!(
        cut.starts_with("CRITICAL ") && cut.contains("VXLAN_NOT_DECAPSULATED"),
        "{cut:?}"
    );
}

fn peer_decap(r: &Value, ip: &str) -> u64 {
    r["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == ip))
        .and_then(|p| p["rx_decap_packets"].as_u64())
        .unwrap_or(0)
}

#[test]
fn report_from_the_agent_needs_no_privileges_loads_nothing_and_matches_its_report() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let _agent = start_agent(&lab, &e, &[]);
    lab.fault(&Fault::DeleteOverlay {
        node: e.name.clone(),
    })
    .expect("the incident");
    lab.ping(&g, e.pod_ip, 10, 0.2).expect("ping");
    let before = agent_report(&e, |r| {
        codes(r).iter().any(|c| c == "VXLAN_NOT_DECAPSULATED")
    });
    assert_eq!(peer(&before, &g.ip.to_string())["rx_decap_packets"], 0);
    let programs = probe_programs(&lab, &e.ns, "eth0");
    assert!(!programs.is_empty(), "the agent is attached");

    let url = "http://$(NODE_IP):9465".to_string();
    let from = |format: &str| {
        run_unprivileged(
            &lab,
            &e,
            &[
                "report".into(),
                "--from".into(),
                url.clone(),
                "--format".into(),
                format.into(),
            ],
        )
    };
    let json = from("json");
    let text = from("text");
    let npd = from("npd");
    let after = agent_report(&e, |_| true);
    // Nothing of the reader's was attached: only the agent's programs.
    assert_eq!(probe_programs(&lab, &e.ns, "eth0"), programs);

    let stderr = String::from_utf8_lossy(&json.stderr);
    assert_eq!(json.status.code(), Some(1), "{stderr}");
    let got: Value = serde_json::from_slice(&json.stdout).expect("the agent's JSON");
    assert_eq!(got["schema"], 1);
    assert_eq!(got["node"]["hostname"], "eq14-001");
    assert_eq!(sorted_codes(&before), sorted_codes(&after), "stable window");
    assert_eq!(sorted_codes(&got), sorted_codes(&before), "{got:#}");
    for want in ["VXLAN_NOT_DECAPSULATED", "OVERLAY_DEVICE_MISSING"] {
        assert!(sorted_codes(&got).iter().any(|c| c == want), "{want}");
    }

    assert_eq!(text.status.code(), Some(1));
    let t = String::from_utf8_lossy(&text.stdout);
    let first = t.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("flannel-probe on eq14-001: CRITICAL"),
        "{first:?}"
    );
    assert!(t.contains("VXLAN_NOT_DECAPSULATED"), "{t}");

    assert_eq!(npd.status.code(), Some(1));
    let line = String::from_utf8_lossy(&npd.stdout);
    assert!(
        line.starts_with("CRITICAL ") && line.contains("VXLAN_NOT_DECAPSULATED"),
        "{line}"
    );
    assert!(line.contains(" on eq14-001: "), "{line}");
    assert!(
        line.trim_end().len() <= 200 && line.lines().count() == 1,
        "{line:?}"
    );

    // Nobody there: exit 2, one line, no report.
    for url in ["http://127.0.0.1:9", "http://$(NODE_IP):9"] {
        let out = run_unprivileged(&lab, &e, &["report".into(), "--from".into(), url.into()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(out.stdout.is_empty(), "{url}");
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        assert!(err.contains("cannot connect"), "{url}: {err}");
    }
    // Something that is no agent's report (here the agent's 404 for
    // /metrics/report): exit 2, one line naming the status.
    let out = run_unprivileged(
        &lab,
        &e,
        &[
            "report".into(),
            "--from".into(),
            "http://$(NODE_IP):9465/metrics".into(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("HTTP 404"), "{err}");
}
