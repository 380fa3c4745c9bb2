//! Instances side by side (the DaemonSet's `serve` and node-problem-
//! detector's `report` every minute): none removes or disturbs another's
//! attachments, each counts exactly, and a killed clsact instance's
//! filters are reclaimed only once provably dead.
use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec, parse_ping_summary},
    support::{ProbeRun, http_get_in, probe_bin, start_agent, terminate},
};

/// gladius's node address, the peer eq14-001's agent counts.
const GLADIUS: &str = "192.0.2.11";

/// The agent's `flannel_probe_peer_packets_total` for one peer and side.
fn packets(node: &LabNode, peer: &str, dir: &str, layer: &str) -> u64 {
    let addr = format!("{}:9465", node.ip);
    let (code, body) =
        http_get_in(&node.ns, &addr, "/metrics", Duration::from_secs(5)).expect("GET /metrics");
    assert_eq!(code, 200);
    let series = format!(
        "flannel_probe_peer_packets_total{{peer=\"{peer}\",direction=\"{dir}\",layer=\"{layer}\"}} "
    );
    body.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// Our clsact filters named `name` on eq14-001-like `node`'s eth0 ingress.
fn filters_named(lab: &Lab, node: &LabNode, name: &str) -> usize {
    let out = lab.try_sh(
        &node.ns,
        &["tc", "filter", "show", "dev", "eth0", "ingress"],
    );
    String::from_utf8_lossy(&out.stdout)
        .matches(&format!("name {name} "))
        .count()
}

fn probe(lab: &Lab, node: &LabNode, args: &[&str]) -> ProbeRun {
    let mut cmd: Command = lab.node_command(node, &probe_bin());
    cmd.args(args);
    ProbeRun::spawn(cmd).expect("start flannel-probe")
}

/// `serve --attach MODE` on eq14-001 while gladius pings its pod for
/// `secs` seconds and a `report --attach MODE --duration 1s` starts every
/// 2 s beside it: the agent's counters equal the pings, exactly.
fn serve_beside_reports(mode: &str, secs: u32) {
    const MIN_REPORTS: u32 = 3;
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let agent = start_agent(&lab, &e, &["--attach", mode, "--interval", "1s"]);
    let count = secs * 10;
    let pinger = Command::new("ip")
        .args([
            "netns", "exec", &g.pod_ns, "ping", "-q", "-i", "0.1", "-W", "1",
        ])
        .arg("-c")
        .arg(count.to_string())
        .arg(e.pod_ip.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ping");
    let started = Instant::now();
    let mut reports = 0;
    // At least three reports however long each takes on a loaded machine
    // (the verifier's start-up is most of one): the last ones may outlast
    // the pings, which still tests two instances attached at once.
    while started.elapsed() < Duration::from_secs(u64::from(secs)) || reports < MIN_REPORTS {
        let t0 = Instant::now();
        let out = lab
            .node_command(&e, &probe_bin())
            .args([
                "report",
                "--attach",
                mode,
                "--duration",
                "1s",
                "--format",
                "json",
            ])
            .output()
            .expect("run report");
        assert_eq!(
            out.status.code(),
            Some(0),
            "report beside serve: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
        assert_eq!(r["node"]["attached"]["eth0"], mode, "{r:#}");
        reports += 1;
        thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
    }
    let out = pinger.wait_with_output().expect("ping ends");
    let stats = parse_ping_summary(&String::from_utf8_lossy(&out.stdout)).expect("ping summary");
    assert_eq!(stats.transmitted, count);
    assert_eq!(stats.received, count, "the probes disturb nothing");
    eprintln!("{reports} reports ran beside serve --attach {mode}");
    // The agent samples every second.
    thread::sleep(Duration::from_millis(2500));
    let n = u64::from(count);
    for (dir, layer) in [
        ("rx", "outer"),
        ("rx", "inner"),
        ("tx", "outer"),
        ("tx", "inner"),
    ] {
        assert_eq!(
            packets(&e, GLADIUS, dir, layer),
            n,
            "serve's {dir} {layer} packets from {GLADIUS}"
        );
    }
    if mode == "clsact" {
        assert_eq!(
            filters_named(&lab, &e, "uplink_ingress"),
            1,
            "only serve's is left"
        );
    }
    terminate(agent.pid());
    let (code, _) = agent.finish(Duration::from_secs(20)).expect("serve exits");
    assert_eq!(code, 0);
    assert_eq!(filters_named(&lab, &e, "uplink_ingress"), 0);
}

/// The regular suite's variant: 20 s (the minute:
/// `FLANNEL_PROBE_COEXIST_SECS=60`).
fn coexist_secs() -> u32 {
    std::env::var("FLANNEL_PROBE_COEXIST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[test]
fn clsact_serve_counts_exactly_beside_a_report_every_two_seconds() {
    serve_beside_reports("clsact", coexist_secs());
}

#[test]
fn tcx_serve_counts_exactly_beside_a_report_every_two_seconds() {
    serve_beside_reports("tcx", coexist_secs() / 2);
}

/// A SIGKILLed clsact instance's filter stays while its heartbeat is
/// fresh, and goes with the next instance once it is stale; a live
/// instance's filter never goes, even for an instance in a PID namespace
/// of its own that cannot see the live one's descriptors.
#[test]
fn killed_clsact_filters_are_reclaimed_and_live_ones_never() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let agent = start_agent(&lab, &e, &["--attach", "clsact", "--interval", "1s"]);
    let mut killed = probe(&lab, &e, &["watch", "--plain", "--attach", "clsact"]);
    killed
        .wait_for("watching the overlay device", Duration::from_secs(60))
        .expect("attached");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(killed.pid() as i32, libc::SIGKILL) };
    let _ = killed.finish(Duration::from_secs(20));
    assert_eq!(
        filters_named(&lab, &e, "uplink_ingress"),
        2,
        "serve's and the killed one's"
    );

    // At once: the killed one's heartbeat is fresh, so it is not provably dead.
    let mut early = probe(
        &lab,
        &e,
        &["report", "--attach", "clsact", "--duration", "1s"],
    );
    early
        .wait_for("observing", Duration::from_secs(60))
        .expect("observing");
    assert_eq!(filters_named(&lab, &e, "uplink_ingress"), 3);
    let (code, _) = early.finish(Duration::from_secs(20)).expect("exits");
    assert!(code == 0 || code == 1, "report exit {code}");
    assert_eq!(filters_named(&lab, &e, "uplink_ingress"), 2);

    // Ten missed beats later it is, and a report in a PID namespace of its
    // own (serve's descriptors invisible to it) removes exactly that one.
    thread::sleep(Duration::from_secs(12));
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &e.ns,
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
    ])
    .arg(probe_bin())
    .args(["report", "--attach", "clsact", "--duration", "1s"]);
    let mut late = ProbeRun::spawn(cmd).expect("start report in its own PID namespace");
    late.wait_for("observing", Duration::from_secs(60))
        .expect("observing");
    assert_eq!(
        filters_named(&lab, &e, "uplink_ingress"),
        2,
        "serve's and the new one's"
    );
    let (code, _) = late.finish(Duration::from_secs(20)).expect("exits");
    assert!(code == 0 || code == 1, "report exit {code}");
    assert_eq!(
        filters_named(&lab, &e, "uplink_ingress"),
        1,
        "serve's stays"
    );

    // And serve still counts, exactly.
    let before = packets(&e, GLADIUS, "rx", "inner");
    let s = lab.ping(&g, e.pod_ip, 10, 0.1).expect("ping");
    assert_eq!(s.received, 10);
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(packets(&e, GLADIUS, "rx", "inner") - before, 10);
    terminate(agent.pid());
    let (code, _) = agent.finish(Duration::from_secs(20)).expect("serve exits");
    assert_eq!(code, 0);
    assert_eq!(filters_named(&lab, &e, "uplink_ingress"), 0);
}
