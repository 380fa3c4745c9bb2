//! Forgetting (`serve --forget-after`): 5 000 FDB entries churned in and out
//! of eq14-001's overlay, in batches, while the lab's real peers ping it.
//! Every churned peer shows up in `/metrics` while it is in the FDB and is
//! forgotten after it left; at the end the peer series are exactly the live
//! peers, their counts exact, and the agent's memory did not grow with the
//! churn. A live peer that leaves the FDB is forgotten as well, and counts
//! from zero when it is back.
use std::{
    collections::BTreeSet,
    thread,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec},
    support::{http_get_in, scaled, start_agent, terminate},
};

const ROUNDS: u32 = 5;
const PER_ROUND: u32 = 1000;

fn metrics(node: &LabNode) -> String {
    let (code, body) = http_get_in(
        &node.ns,
        &format!("{}:9465", node.ip),
        "/metrics",
        Duration::from_secs(10),
    )
    .expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// The `peer` label values of `flannel_probe_peer_packets_total`.
fn peers(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("flannel_probe_peer_packets_total{peer=\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The value of the sample `series` (name and labels exactly), if present.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a sample value"))
}

fn packets(text: &str, peer: &str, dir: &str, layer: &str) -> u64 {
    sample(
        text,
        &format!(
            "flannel_probe_peer_packets_total{{peer=\"{peer}\",direction=\"{dir}\",layer=\"{layer}\"}}"
        ),
    )
    .unwrap_or_else(|| panic!("no {dir}/{layer} series of {peer}"))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Polls `cond` every 200 ms up to `limit`.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(200));
    }
    cond()
}

/// The underlay addresses of round `r`'s entries.
fn churned(r: u32) -> BTreeSet<String> {
    (0..PER_ROUND)
        .map(|i| format!("100.64.{}.{}", r * 4 + i / 256, i % 256))
        .collect()
}

/// `bridge -batch` lines for round `r`'s entries: MAC 02:cc:00:r:hi:lo to
/// 100.64.r*4+hi.lo (never sent to: no frame is addressed to these MACs).
fn churn_script(verb: &str, r: u32, overlay: &str) -> String {
    (0..PER_ROUND)
        .map(|i| {
            let (hi, lo) = (i / 256, i % 256);
            format!(
                "fdb {verb} 02:cc:00:{r:02x}:{hi:02x}:{lo:02x} dev {overlay} dst 100.64.{}.{lo}\n",
                r * 4 + hi
            )
        })
        .collect()
}

#[test]
fn churned_fdb_entries_are_forgotten_and_the_series_follow_the_live_peers() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, m, e) = (
        lab.node("gladius").clone(),
        lab.node("momonoke").clone(),
        lab.node("eq14-001").clone(),
    );
    let forget = Duration::from_secs(2);
    let agent = start_agent(
        &lab,
        &e,
        &["--forget-after", "2s", "--interval", "1s", "--window", "5s"],
    );
    let live: BTreeSet<String> = [g.ip.to_string(), m.ip.to_string()].into();
    assert!(
        within(scaled(Duration::from_secs(10)), || peers(&metrics(&e))
            == live),
        "the live peers at the start: {:?}",
        peers(&metrics(&e))
    );

    let (mut from_g, mut from_m) = (0u64, 0u64);
    let mut rss_after_first = 0;
    for r in 0..ROUNDS {
        lab.batch(&e.ns, "", &churn_script("add", r, &e.overlay))
            .expect("bridge -batch add");
        // Real traffic from the live peers while the FDB is big.
        let s = lab.ping(&g, e.pod_ip, 5, 0.05).expect("ping from gladius");
        assert_eq!(s.received, 5, "{s:?}");
        from_g += 5;
        let s = lab.ping(&m, e.pod_ip, 3, 0.05).expect("ping from momonoke");
        assert_eq!(s.received, 3, "{s:?}");
        from_m += 3;
        // Every entry of the round is a peer (in the FDB) for a while.
        let round = churned(r);
        assert!(
            within(scaled(Duration::from_secs(20)), || round
                .is_subset(&peers(&metrics(&e)))),
            "round {r}: {} of its {PER_ROUND} entries have series",
            round.intersection(&peers(&metrics(&e))).count()
        );
        lab.batch(&e.ns, "", &churn_script("del", r, &e.overlay))
            .expect("bridge -batch del");
        if r == 0 {
            // Forgotten, then measured: what one round costs to hold is
            // already allocated (and free again).
            assert!(within(scaled(forget * 5), || peers(&metrics(&e)) == live));
            rss_after_first = rss_kib(agent.pid());
        }
    }

    // Within --forget-after and two intervals of the last deletion, only the
    // live peers are left.
    assert!(
        within(scaled(forget + Duration::from_secs(8)), || peers(&metrics(
            &e
        )) == live),
        "peer series at the end: {} ({:?}...)",
        peers(&metrics(&e)).len(),
        peers(&metrics(&e)).iter().take(5).collect::<Vec<_>>()
    );
    let text = metrics(&e);
    assert_eq!(
        sample(&text, "flannel_probe_peers_forgotten_total"),
        Some(u64::from(ROUNDS * PER_ROUND)),
        "every churned entry forgotten once"
    );
    // The live peers' counts are exact: each ping is one VXLAN packet in and
    // one reply out, one frame decapsulated and one sent on the overlay.
    for (peer, n) in [(g.ip.to_string(), from_g), (m.ip.to_string(), from_m)] {
        for (dir, layer) in [
            ("rx", "outer"),
            ("rx", "inner"),
            ("tx", "outer"),
            ("tx", "inner"),
        ] {
            assert_eq!(packets(&text, &peer, dir, layer), n, "{peer} {dir}/{layer}");
        }
    }
    let rss_end = rss_kib(agent.pid());
    eprintln!("agent RSS: {rss_after_first} KiB after round 1, {rss_end} KiB at the end");
    assert!(
        rss_end <= rss_after_first + 16 * 1024,
        "the agent grew from {rss_after_first} KiB to {rss_end} KiB over the churn"
    );

    // A live peer that leaves the FDB and is silent is forgotten too; when
    // it comes back it counts from zero.
    let g_fdb = format!("{} dev {} dst {}", g.vtep_mac_string(), e.overlay, g.ip);
    lab.batch(&e.ns, "", &format!("fdb del {g_fdb} self\n"))
        .expect("bridge fdb del gladius");
    let gip = g.ip.to_string();
    assert!(
        within(scaled(forget + Duration::from_secs(8)), || !peers(
            &metrics(&e)
        )
        .contains(&gip)),
        "gladius left the FDB and is silent: forgotten"
    );
    assert_eq!(
        sample(&metrics(&e), "flannel_probe_peers_forgotten_total"),
        Some(u64::from(ROUNDS * PER_ROUND) + 1)
    );
    lab.batch(&e.ns, "", &format!("fdb add {g_fdb} self permanent\n"))
        .expect("bridge fdb add gladius");
    let s = lab.ping(&g, e.pod_ip, 4, 0.05).expect("ping from gladius");
    assert_eq!(s.received, 4, "{s:?}");
    assert!(
        within(scaled(Duration::from_secs(5)), || {
            let t = metrics(&e);
            peers(&t).contains(&gip) && packets(&t, &gip, "tx", "inner") == 4
        }),
        "gladius back: {:?}",
        metrics(&e)
            .lines()
            .filter(|l| l.contains(&gip))
            .collect::<Vec<_>>()
    );
    let text = metrics(&e);
    for (dir, layer) in [
        ("rx", "outer"),
        ("rx", "inner"),
        ("tx", "outer"),
        ("tx", "inner"),
    ] {
        assert_eq!(
            packets(&text, &gip, dir, layer),
            4,
            "back from zero: {dir}/{layer}"
        );
    }
    assert_eq!(packets(&text, &m.ip.to_string(), "rx", "inner"), from_m);

    terminate(agent.pid());
    let (code, _) = agent.finish(Duration::from_secs(20)).expect("serve exits");
    assert_eq!(code, 0);
}
