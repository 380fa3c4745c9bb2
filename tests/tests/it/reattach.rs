//! What a CNI restart does to flannel.1 (deleted, recreated with a new
//! ifindex and MAC, peers reprogrammed) must not blind the probe: it
//! re-attaches from the link notification within 2 s and counting resumes.
use std::{
    thread,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabSpec},
    support::{ProbeRun, json_lines, probe_bin, scaled},
};
use serde_json::Value;

#[test]
fn recreated_overlay_is_reattached_within_two_seconds() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let e = lab.node("eq14-001").clone();
    let g = lab.node("gladius").clone();
    let old_mac = e.vtep_mac_string();
    let mut cmd = lab.node_command(&e, &probe_bin());
    cmd.args(["watch", "--plain", "--format", "json", "--interval", "1s"]);
    let mut run = ProbeRun::spawn(cmd).expect("start watch");
    run.wait_for(
        "watching the overlay device",
        scaled(Duration::from_secs(60)),
    )
    .expect("attached");

    // Steady traffic across the restart, from a process of its own so the
    // lab can be changed meanwhile.
    let mut pinger = std::process::Command::new("ip")
        .args([
            "netns", "exec", &g.pod_ns, "ping", "-q", "-c", "80", "-i", "0.1", "-W", "1",
        ])
        .arg(e.pod_ip.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start ping");
    thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    lab.fault(&Fault::RecreateOverlay {
        node: "eq14-001".into(),
    })
    .expect("recreate flannel.1");
    run.wait_for(
        "watching the overlay device",
        scaled(Duration::from_secs(10)),
    )
    .expect("re-attached");
    let took = t0.elapsed();
    eprintln!("re-attached {took:?} after the overlay was recreated");
    // 2 s at native speed; under emulation (vm-test) the bound scales.
    let bound = scaled(Duration::from_secs(2));
    assert!(took < bound, "re-attach took {took:?} (bound {bound:?})");

    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    assert_ne!(
        e.vtep_mac_string(),
        old_mac,
        "a new MAC, as after a CNI restart"
    );
    let _ = pinger.wait();
    let after = lab.ping(g, e.pod_ip, 20, 0.1).expect("ping after");
    assert_eq!(after.received, 20, "the recreated overlay carries traffic");
    thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.pid() as i32, libc::SIGTERM) };
    let (code, out) = run.finish(scaled(Duration::from_secs(20))).expect("exits");
    assert_eq!(code, 0);

    let reports = json_lines(&out);
    let last_decap = reports
        .iter()
        .rev()
        .find_map(|r| {
            r["peers"]
                .as_array()?
                .iter()
                .find(|p| p["peer"] == "192.0.2.11")
                .and_then(|p| p["rx_decap_packets"].as_u64())
                .filter(|n| *n > 0)
        })
        .expect("decapsulated packets counted after the restart");
    assert!(last_decap > 0);
    // The new MAC is known (FDB of the peers, device of eq14-001) and the
    // history shows the old device, the gap and the new one.
    let last = reports.last().expect("a report");
    let history = last["overlay_history"].as_array().expect("history");
    let ifindexes: Vec<&Value> = history.iter().map(|h| &h["ifindex"]).collect();
    assert!(history.len() >= 2, "{history:#?}");
    assert_eq!(
        history.first().map(|h| &h["state"]),
        Some(&Value::from("up"))
    );
    assert_eq!(
        history.last().map(|h| &h["state"]),
        Some(&Value::from("up"))
    );
    assert_ne!(
        ifindexes.first(),
        ifindexes.last(),
        "a new ifindex: {history:#?}"
    );
    assert_eq!(
        history.last().map(|h| &h["mac"]),
        Some(&Value::from(e.vtep_mac_string()))
    );
}
