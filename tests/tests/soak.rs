//! The soak test (`cargo xtask soak`, kept out of the default run because
//! it takes ten minutes): `serve` on eq14-001 under steady traffic while
//! flannel.1 is recreated every 30 s, as a crash-looping CNI would. Memory
//! and file descriptors must stay flat, no packet may go uncounted across
//! the recreations, and nothing may stay behind.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabSpec, parse_ping_summary},
    support::{ProbeRun, attached::tcx_programs, http_get_in, probe_bin},
};
use serde_json::Value;
// A test binary sees every dependency of the package; these are the
// integration tests' (`it`), not the soak test's.
use {
    anyhow as _, aya as _, clap as _, flannel_probe as _, flannel_probe_common as _, libc as _,
    percent_encoding as _, serde as _, serde_norway as _, tempfile as _,
};

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// (VmRSS in kB, open file descriptors) of a process.
fn rss_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count();
    (rss, fds)
}

fn counters(ns: &str) -> Value {
    let (status, body) = http_get_in(
        ns,
        "127.0.0.1:9465",
        "/counters?fresh=1",
        Duration::from_secs(10),
    )
    .expect("GET /counters");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn outer(c: &Value, peer: &str, field: &str) -> u64 {
    c["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == peer))
        .and_then(|p| p[field].as_u64())
        .unwrap_or(0)
}

#[test]
#[ignore = "soak: ten minutes; run with `cargo xtask soak` (SOAK_SECS to shorten)"]
fn serve_survives_a_crash_looping_cni() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let total = env_secs("SOAK_SECS", 600);
    let every = env_secs("SOAK_RECREATE_SECS", 30);
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let mut cmd = lab.node_command(&e, &probe_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:9465", "--interval", "1s"]);
    let mut agent = ProbeRun::spawn(cmd).expect("start serve");
    agent
        .wait_for("serving on", Duration::from_secs(60))
        .expect("serving");
    let pid = agent.pid();
    // The other end of the tunnel, to compare with.
    let mut cmd = lab.node_command(&g, &probe_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:9465", "--interval", "1s"]);
    let mut sender = ProbeRun::spawn(cmd).expect("start serve on gladius");
    sender
        .wait_for("serving on", Duration::from_secs(60))
        .expect("serving");

    // 20 echo requests a second for the whole run, in a process of its own.
    let count = (total.as_secs() * 20).to_string();
    let pinger = Command::new("ip")
        .args([
            "netns", "exec", &g.pod_ns, "ping", "-q", "-i", "0.05", "-W", "1", "-c", &count,
        ])
        .arg(e.pod_ip.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ping");

    let start = Instant::now();
    let mut next_recreate = start + every;
    let mut samples: Vec<(Duration, u64, usize)> = Vec::new();
    let mut recreations = 0;
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(5));
        if Instant::now() >= next_recreate {
            lab.fault(&Fault::RecreateOverlay {
                node: "eq14-001".into(),
            })
            .expect("recreate flannel.1");
            recreations += 1;
            next_recreate += every;
        }
        let (rss, fds) = rss_and_fds(pid);
        samples.push((start.elapsed(), rss, fds));
    }
    let out = pinger.wait_with_output().expect("ping ends");
    let ping = parse_ping_summary(&String::from_utf8_lossy(&out.stdout)).expect("ping summary");
    std::thread::sleep(Duration::from_secs(3));
    let c = counters(&e.ns);
    let cg = counters(&g.ns);

    // Both ends of the tunnel must agree across every recreation: what
    // gladius encapsulated towards eq14-001 arrived there (device or not),
    // and every reply eq14-001 sent is one gladius received and one the
    // ping saw. (A few requests die on gladius itself while the lab
    // reprograms its FDB entry for the new MAC, as with a real CNI restart.)
    let rx = outer(&c, &g.ip.to_string(), "rx_encap_packets");
    let tx = outer(&c, &g.ip.to_string(), "tx_encap_packets");
    let g_tx = outer(&cg, &e.ip.to_string(), "tx_encap_packets");
    let g_rx = outer(&cg, &e.ip.to_string(), "rx_encap_packets");
    eprintln!(
        "soak: {:?}, {recreations} recreations, ping {} sent / {} answered; gladius tx {g_tx} rx {g_rx}; eq14-001 rx {rx} tx {tx}",
        start.elapsed(),
        ping.transmitted,
        ping.received
    );
    assert!(recreations >= total.as_secs() / every.as_secs().max(1) - 1);
    assert_eq!(
        g_tx, rx,
        "gladius's VXLAN to eq14-001 all counted on arrival"
    );
    assert_eq!(tx, g_rx, "eq14-001's replies all counted on arrival");
    assert_eq!(
        u64::from(ping.received),
        tx,
        "every answered ping is one counted reply"
    );
    assert!(g_tx <= u64::from(ping.transmitted));

    // Flat memory and descriptors, after a minute of warm-up.
    let warm: Vec<&(Duration, u64, usize)> = samples
        .iter()
        .filter(|(t, _, _)| *t >= total.min(Duration::from_secs(60)))
        .collect();
    let (first_rss, last_rss) = (
        warm.first().map_or(0, |s| s.1),
        warm.last().map_or(0, |s| s.1),
    );
    let max_rss = warm.iter().map(|s| s.1).max().unwrap_or(0);
    let fds: Vec<usize> = warm.iter().map(|s| s.2).collect();
    eprintln!(
        "soak: RSS {first_rss} kB -> {last_rss} kB (max {max_rss} kB), fds {:?}..{:?}",
        fds.iter().min(),
        fds.iter().max()
    );
    assert!(
        last_rss <= first_rss + first_rss / 5 + 1024,
        "RSS grew: {first_rss} -> {last_rss} kB"
    );
    assert!(
        fds.iter().max().unwrap_or(&0) - fds.iter().min().unwrap_or(&0) <= 2,
        "fds changed: {fds:?}"
    );

    // SAFETY: signalling our own children.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
        libc::kill(sender.pid() as i32, libc::SIGTERM);
    }
    let (code, _) = agent.finish(Duration::from_secs(20)).expect("exits");
    assert_eq!(code, 0);
    assert_eq!(sender.finish(Duration::from_secs(20)).expect("exits").0, 0);
    for dev in ["eth0", "flannel.1"] {
        let left = tcx_programs(&e.ns, dev);
        assert!(left.is_empty(), "{dev} still has {left:?}");
    }
}
