//! Self-health: `serve` re-verifies its attachments every interval; one
//! that vanishes (`tc qdisc del dev eth0 clsact`) is restored within two
//! intervals and counted as a gap; while it cannot be restored the report
//! says `DATAPATH_DETACHED` and `/healthz` answers 503.
use std::{
    thread,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec},
    support::{start_agent, terminate},
};
use serde_json::Value;

const GLADIUS: &str = "192.0.2.11";

use flannel_probe_tests::support::agent_get as get;

/// A sample of the agent's metrics: `name{labels} value`, by its prefix.
fn metric(node: &LabNode, series: &str) -> u64 {
    let (code, body) = get(node, "/metrics");
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

fn rx_inner(node: &LabNode) -> u64 {
    metric(
        node,
        &format!(
            "flannel_probe_peer_packets_total{{peer=\"{GLADIUS}\",direction=\"rx\",layer=\"inner\"}}"
        ),
    )
}

fn report(node: &LabNode) -> Value {
    let (code, body) = get(node, "/report");
    assert_eq!(code, 200);
    serde_json::from_str(&body).expect("report JSON")
}

fn codes(r: &Value) -> Vec<String> {
    r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["code"].as_str().map(str::to_string))
        .collect()
}

/// Polls `cond` every 100 ms up to `limit`; how long it took.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return Some(t0.elapsed());
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_deleted_clsact_qdisc_is_restored_within_two_intervals_and_counted() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let interval = Duration::from_secs(1);
    let mut agent = start_agent(&lab, &e, &["--attach", "clsact", "--interval", "1s"]);
    let reattached = "flannel_probe_datapath_reattach_total";
    assert_eq!(metric(&e, reattached), 0);

    // Someone removes the qdisc, and with it both our uplink filters.
    lab.sh(&e.ns, &["tc", "qdisc", "del", "dev", "eth0", "clsact"])
        .expect("tc qdisc del");
    let took =
        within(interval * 4, || metric(&e, reattached) == 2).expect("both uplink filters restored");
    eprintln!("restored {took:?} after tc qdisc del");
    assert!(took <= interval * 2, "restored after {took:?}");
    let (code, body) = get(&e, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    let out = lab.sh(&e.ns, &["tc", "filter", "show", "dev", "eth0", "egress"]);
    let text = String::from_utf8_lossy(&out.expect("tc").stdout).into_owned();
    assert_eq!(text.matches("name uplink_egress ").count(), 1, "{text}");

    // Counting after the restore is exact.
    let before = rx_inner(&e);
    let s = lab.ping(&g, e.pod_ip, 10, 0.1).expect("ping");
    assert_eq!(s.received, 10);
    thread::sleep(interval * 2 + Duration::from_millis(500));
    assert_eq!(rx_inner(&e) - before, 10);
    assert_eq!(report(&e)["node"]["attach_gaps"], 2);

    // A CNI reinstall that takes our egress priority with a filter of
    // another kind (it matches nothing): the kernel refuses a bpf filter
    // there, so egress cannot come back; ingress can.
    lab.sh(
        &e.ns,
        &[
            "sh",
            "-c",
            "tc qdisc del dev eth0 clsact && tc qdisc add dev eth0 clsact && \
             tc filter add dev eth0 egress prio 61856 protocol all u32 \
             match ip dst 203.0.113.1/32",
        ],
    )
    .expect("reinstall the qdisc");
    if within(interval * 4, || get(&e, "/healthz").0 == 503).is_none() {
        let log = agent.wait_for("\u{0}", Duration::from_secs(1));
        panic!("/healthz never 503: {log:?}");
    }
    let (_, body) = get(&e, "/healthz");
    assert_eq!(body.trim(), "detached: uplink_egress");
    let r = report(&e);
    assert!(
        codes(&r).contains(&"DATAPATH_DETACHED".to_string()),
        "{:?}",
        codes(&r)
    );
    assert_eq!(r["node"]["detached"], serde_json::json!(["uplink_egress"]));
    assert_eq!(metric(&e, reattached), 3, "the ingress filter came back");

    // Once the obstacle is gone, egress is back within two intervals.
    lab.sh(
        &e.ns,
        &[
            "tc", "filter", "del", "dev", "eth0", "egress", "prio", "61856",
        ],
    )
    .expect("tc filter del");
    let took = within(interval * 4, || get(&e, "/healthz").0 == 200).expect("/healthz ok again");
    assert!(took <= interval * 2, "restored after {took:?}");
    assert_eq!(metric(&e, reattached), 4, "and egress");
    thread::sleep(interval * 2);
    assert!(!codes(&report(&e)).contains(&"DATAPATH_DETACHED".to_string()));
    let before = rx_inner(&e);
    let s = lab.ping(&g, e.pod_ip, 10, 0.1).expect("ping");
    assert_eq!(s.received, 10);
    thread::sleep(interval * 2 + Duration::from_millis(500));
    assert_eq!(rx_inner(&e) - before, 10);

    terminate(agent.pid());
    let (code, _) = agent.finish(Duration::from_secs(20)).expect("serve exits");
    assert_eq!(code, 0);
    // Nothing of ours is left; the qdisc the "CNI" added stays.
    for dir in ["ingress", "egress"] {
        let out = lab.sh(&e.ns, &["tc", "filter", "show", "dev", "eth0", dir]);
        let text = String::from_utf8_lossy(&out.expect("tc").stdout).into_owned();
        assert!(!text.contains("uplink_"), "{dir}: {text}");
    }
    let out = lab.sh(&e.ns, &["tc", "qdisc", "show", "dev", "eth0"]);
    assert!(String::from_utf8_lossy(&out.expect("tc").stdout).contains("clsact"));
}

/// With only the DaemonSet's capabilities (BPF, NET_ADMIN, PERFMON; no
/// SYS_ADMIN), self-health sees its tcx links as present: no false gaps,
/// and the counts stay exact.
#[test]
fn tcx_self_health_needs_no_sys_admin() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &e.ns, "setpriv"])
        .arg("--bounding-set=-all,+bpf,+net_admin,+perfmon")
        .arg("--")
        .arg(flannel_probe_tests::support::probe_bin())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:9465",
            "--attach",
            "tcx",
            "--interval",
            "1s",
        ]);
    let mut agent = flannel_probe_tests::support::ProbeRun::spawn(cmd).expect("start serve");
    agent
        .wait_for("serving on", Duration::from_secs(60))
        .expect("serving");
    let before = rx_inner(&e);
    let s = lab.ping(&g, e.pod_ip, 10, 0.1).expect("ping");
    assert_eq!(s.received, 10);
    thread::sleep(Duration::from_millis(3500));
    assert_eq!(rx_inner(&e) - before, 10);
    assert_eq!(metric(&e, "flannel_probe_datapath_reattach_total"), 0);
    let (code, body) = get(&e, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    terminate(agent.pid());
    let (code, _) = agent.finish(Duration::from_secs(20)).expect("serve exits");
    assert_eq!(code, 0);
}
