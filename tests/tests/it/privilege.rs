//! Least privilege: after attaching, `serve` keeps exactly the documented
//! capabilities (README, "Least privilege") in every thread, with
//! `no_new_privs`, and with only those it still re-attaches after the CNI
//! recreates flannel.1 (tcx and clsact) and counts every ping. Narrowing the
//! set further (the `FLANNEL_PROBE_KEEP_CAPS` test knob) shows why
//! CAP_NET_ADMIN is in it.
use std::{thread, time::Duration};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    support::{ProbeRun, probe_bin, scaled, terminate},
};

const GLADIUS: &str = "192.0.2.11";
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << c)
}

use flannel_probe_tests::support::agent_get as get;

/// Inner packets received from gladius, from the agent's metrics.
fn rx_inner(node: &LabNode) -> u64 {
    let series = format!(
        "flannel_probe_peer_packets_total{{peer=\"{GLADIUS}\",direction=\"rx\",layer=\"inner\"}}"
    );
    let (code, body) = get(node, "/metrics");
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// One `/proc` status field of a task.
fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

fn hex(status: &str, key: &str) -> u64 {
    u64::from_str_radix(&field(status, key), 16).expect("a capability mask")
}

/// Every thread of `pid` has exactly `want` effective and permitted, no
/// inheritable or ambient ones, nothing else in its bounding set, and
/// `no_new_privs`.
fn assert_caps(pid: u32, want: u64) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the agent's threads");
    let mut n = 0;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).expect("a task status");
        let tid = task.file_name().to_string_lossy().into_owned();
        assert_eq!(hex(&status, "CapEff"), want, "CapEff of thread {tid}");
        assert_eq!(hex(&status, "CapPrm"), want, "CapPrm of thread {tid}");
        assert_eq!(hex(&status, "CapInh"), 0, "CapInh of thread {tid}");
        assert_eq!(hex(&status, "CapAmb"), 0, "CapAmb of thread {tid}");
        assert_eq!(hex(&status, "CapBnd"), want, "CapBnd of thread {tid}");
        assert_eq!(field(&status, "NoNewPrivs"), "1", "thread {tid}");
        n += 1;
    }
    // The main thread and at least the heartbeat: the drop reached threads
    // that existed before it.
    assert!(n >= 2, "{n} threads");
}

fn serve(lab: &Lab, node: &LabNode, mode: &str, keep: Option<&str>) -> ProbeRun {
    let mut cmd = lab.node_command(node, &probe_bin());
    cmd.args([
        "serve",
        "--listen",
        "0.0.0.0:9465",
        "--attach",
        mode,
        "--interval",
        "1s",
    ]);
    if let Some(keep) = keep {
        cmd.env("FLANNEL_PROBE_KEEP_CAPS", keep);
    }
    let mut run = ProbeRun::spawn(cmd).expect("start serve");
    run.wait_for("serving on", scaled(Duration::from_secs(60)))
        .expect("serving");
    run
}

/// Pings from gladius's pod to eq14-001's; how many the agent counted.
fn counted_pings(lab: &Lab, g: &LabNode, e: &LabNode, n: u32) -> u64 {
    let before = rx_inner(e);
    let s = lab.ping(g, e.pod_ip, n, 0.1).expect("ping");
    assert_eq!(s.received, n, "the overlay carries the pings");
    // Two sampling intervals for the counters to reach the metrics.
    thread::sleep(scaled(Duration::from_millis(2500)));
    rx_inner(e) - before
}

fn keeps_only_the_set_and_reattaches(mode: &str, keep: Option<&str>, want: u64) {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let mut agent = serve(&lab, &e, mode, keep);
    assert!(
        agent
            .stderr_lines
            .iter()
            .any(|l| l.contains("dropped every other capability")),
        "{:#?}",
        agent.stderr_lines
    );
    assert_caps(agent.pid(), want);
    assert_eq!(counted_pings(&lab, &g, &e, 10), 10);

    lab.fault(&Fault::RecreateOverlay {
        node: "eq14-001".into(),
    })
    .expect("recreate flannel.1");
    agent
        .wait_for(
            "watching the overlay device",
            scaled(Duration::from_secs(10)),
        )
        .expect("re-attached with the kept capabilities");
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    assert_eq!(counted_pings(&lab, &g, &e, 10), 10);
    assert_caps(agent.pid(), want);
    let (code, body) = get(&e, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));

    terminate(agent.pid());
    let (code, _) = agent
        .finish(scaled(Duration::from_secs(20)))
        .expect("serve exits");
    assert_eq!(code, 0);
    let left = our_filters(&lab, &e);
    assert!(
        !left.contains("uplink_") && !left.contains("overlay_"),
        "nothing of ours left behind: {left}"
    );
}

/// The tc filters on eq14-001's uplink and overlay, as `tc` shows them.
fn our_filters(lab: &Lab, e: &LabNode) -> String {
    let mut text = String::new();
    for dev in ["eth0", "flannel.1"] {
        for dir in ["ingress", "egress"] {
            let out = lab.try_sh(&e.ns, &["tc", "filter", "show", "dev", dev, dir]);
            text.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    }
    text
}

#[test]
fn tcx_serve_keeps_bpf_and_net_admin_and_reattaches() {
    keeps_only_the_set_and_reattaches("tcx", None, mask(&[CAP_BPF, CAP_NET_ADMIN]));
}

#[test]
fn clsact_serve_keeps_bpf_net_admin_and_sys_admin_and_reattaches() {
    keeps_only_the_set_and_reattaches(
        "clsact",
        None,
        mask(&[CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN]),
    );
}

/// Without CAP_NET_ADMIN (clsact) the recreated overlay cannot be
/// attached: the pings after the recreation are not counted, and the agent
/// says why.
#[test]
fn without_net_admin_the_recreated_overlay_is_not_attached() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let e = lab.node("eq14-001").clone();
    let mut agent = serve(&lab, &e, "clsact", Some("bpf,sys_admin"));
    assert_caps(agent.pid(), mask(&[CAP_BPF, CAP_SYS_ADMIN]));
    let g = lab.node("gladius").clone();
    assert_eq!(counted_pings(&lab, &g, &e, 5), 5);
    lab.fault(&Fault::RecreateOverlay {
        node: "eq14-001".into(),
    })
    .expect("recreate flannel.1");
    agent
        .wait_for(
            "attaching to flannel.1 failed",
            scaled(Duration::from_secs(10)),
        )
        .expect("the failed attach is logged");
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    assert_eq!(counted_pings(&lab, &g, &e, 10), 0);
    terminate(agent.pid());
    let (code, _) = agent
        .finish(scaled(Duration::from_secs(20)))
        .expect("serve exits");
    assert_eq!(code, 0);
}

/// Without CAP_NET_ADMIN (tcx) self-health cannot query the tcx chains
/// (BPF_PROG_QUERY): every interval it takes its links for vanished and
/// counts false gaps.
#[test]
fn without_net_admin_tcx_self_health_counts_false_gaps() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let e = lab.node("eq14-001").clone();
    let agent = serve(&lab, &e, "tcx", Some("bpf"));
    assert_caps(agent.pid(), mask(&[CAP_BPF]));
    thread::sleep(scaled(Duration::from_secs(3)));
    let (code, body) = get(&e, "/metrics");
    assert_eq!(code, 200);
    let gaps: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("flannel_probe_datapath_reattach_total "))
        .map_or(0, |v| v.trim().parse().expect("a counter"));
    // Nothing vanished, yet every hook is "restored" every interval.
    assert!(gaps >= 4, "{gaps} false gaps");
    terminate(agent.pid());
}

/// CAP_BPF is kept for kernels before 5.19, where
/// `kernel.unprivileged_bpf_disabled` refuses every bpf(2) command (map
/// reads included) without it. From 5.19 on (this kernel) CAP_NET_ADMIN
/// alone re-attaches and counts, on clsact as on tcx: nothing else of the
/// dropped set is needed.
#[test]
fn on_this_kernel_net_admin_alone_reattaches() {
    keeps_only_the_set_and_reattaches("clsact", Some("net_admin"), mask(&[CAP_NET_ADMIN]));
}
