//! The node-problem-detector plugin's own command line, run on lab nodes:
//! NPD's custom-plugin convention is exit 0 = OK, 1 = NonOK (the condition
//! becomes True), anything else = Unknown. A healthy node must give 0 and
//! the incident's node 1, with the verdict first in what NPD keeps as the
//! condition's message.
use std::{path::PathBuf, time::Duration};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    support::{ProbeRun, probe_bin},
};
use serde_json::Value;

fn plugin() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/node-problem-detector/flannel-probe-plugin.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("read plugin config"))
        .expect("plugin JSON")
}

/// Runs the plugin's rule as NPD would (its path is our binary here).
fn start(lab: &Lab, node: &LabNode, rule: &Value) -> ProbeRun {
    let mut cmd = lab.node_command(node, &probe_bin());
    for a in rule["args"].as_array().expect("args") {
        cmd.arg(a.as_str().expect("string arg"));
    }
    let mut run = ProbeRun::spawn(cmd).expect("start the plugin's command");
    run.wait_for("observing", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{}: {e:#}", node.name));
    run
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
    lab.fault(&Fault::DeleteOverlay {
        node: "eq14-001".into(),
    })
    .expect("the incident");
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    let on_m = start(&lab, m, rule);
    let on_e = start(&lab, e, rule);
    std::thread::scope(|s| {
        // momonoke only talks to healthy gladius; gladius pings the broken
        // node, whose report must say so.
        s.spawn(|| lab.ping(m, g.pod_ip, 10, 0.2));
        s.spawn(|| lab.ping(g, e.pod_ip, 10, 0.2));
    });
    let (code_m, out_m) = on_m.finish(Duration::from_secs(60)).expect("exits");
    let (code_e, out_e) = on_e.finish(Duration::from_secs(60)).expect("exits");
    // NPD: 0 -> OK, 1 -> NonOK.
    assert_eq!(code_m, 0, "healthy momonoke: {out_m}");
    assert_eq!(code_e, 1, "broken eq14-001: {out_e}");
    for (out, node, verdict) in [
        (&out_m, "momonoke", "HEALTHY"),
        (&out_e, "eq14-001", "CRITICAL"),
    ] {
        let message: String = out.chars().take(max_output).collect();
        let first = message.lines().next().unwrap_or_default();
        assert!(
            first.contains(node) && first.contains(verdict),
            "NPD's condition message starts with the verdict: {first:?}"
        );
    }
    assert!(out_e.contains("VXLAN_NOT_DECAPSULATED"), "{out_e}");
}
