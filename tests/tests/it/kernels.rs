//! What `cargo xtask vm-test` adds to the proof on other kernels (6.1,
//! PREEMPT_RT), written attach-mode neutral so they hold with tcx and with
//! clsact: two probes side by side, and exact counts under concurrent flows
//! in both directions, half of them SCHED_FIFO (the per-CPU slot claim of
//! flannel-probe-ebpf's counters module, on a kernel where softirqs are
//! preemptible).
use std::thread;

use flannel_probe_tests::{
    lab::{Lab, LabSpec},
    support::{
        attached::probe_programs,
        reports::{self, peer, serious},
    },
};

#[test]
fn two_instances_side_by_side_count_the_same_and_leave_nothing() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    lab.ping(g, e.pod_ip, 1, 0.2).expect("warm-up ping");
    // Two probes on one node: each attaches its own programs and counts
    // with its own maps, neither disturbs the other.
    let mut both = reports::start_all(&lab, &[e, e], 5).into_iter();
    let (Some(first), Some(second)) = (both.next(), both.next()) else {
        panic!("two probes");
    };
    let stats = lab.ping(g, e.pod_ip, 10, 0.1).expect("ping");
    assert_eq!((stats.transmitted, stats.received), (10, 10));
    let (c1, r1) = reports::finish(first, "eq14-001");
    let (c2, r2) = reports::finish(second, "eq14-001");
    for (code, r) in [(c1, &r1), (c2, &r2)] {
        assert_eq!(code, 0, "{r:#}");
        assert!(serious(r).is_empty(), "{r:#}");
        let from_g = peer(r, "192.0.2.11");
        assert_eq!(from_g["rx_encap_packets"], 10, "{from_g:#}");
        assert_eq!(from_g["rx_decap_packets"], 10, "{from_g:#}");
        assert_eq!(from_g["tx_encap_packets"], 10, "{from_g:#}");
        assert_eq!(from_g["tx_inner_packets"], 10, "{from_g:#}");
        assert_eq!(from_g["rx_encap_bytes"], 10 * 148);
    }
    assert_eq!(
        r1["node"]["attached"], r2["node"]["attached"],
        "both attach the same way"
    );
    for dev in ["eth0", "flannel.1"] {
        let left = probe_programs(&lab, &e.ns, dev);
        assert!(left.is_empty(), "eq14-001 {dev} still has {left:?}");
    }
}

/// Eight ping flows at once over two peers, both directions, half of them
/// SCHED_FIFO: on PREEMPT_RT softirqs run in preemptible task context, so
/// a FIFO sender waking on a CPU preempts an ordinary one there, also in
/// the middle of its tc programs. Every packet must still be counted once:
/// a lost or doubled slot update would show in the exact totals.
#[test]
fn concurrent_flows_in_both_directions_count_exactly() {
    const N: u32 = 400;
    const GAP: f64 = 0.002;
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    for (a, b) in [(g, e), (m, e)] {
        lab.ping(a, b.pod_ip, 1, 0.2).expect("warm-up ping");
    }
    let on_e = reports::start(&lab, e, 5);
    // Each direction of each peer twice: once ordinary, once FIFO.
    let pairs = [(g, e), (e, g), (m, e), (e, m)];
    let lab = &lab;
    let results: Vec<_> = thread::scope(|s| {
        let flows: Vec<_> = pairs
            .iter()
            .flat_map(|&(a, b)| {
                [
                    s.spawn(move || lab.ping(a, b.pod_ip, N, GAP)),
                    s.spawn(move || lab.ping_fifo(a, b.pod_ip, N, GAP, 10)),
                ]
            })
            .collect();
        flows
            .into_iter()
            .map(|f| f.join().expect("ping thread"))
            .collect()
    });
    let (code, r) = reports::finish(on_e, "eq14-001");
    // Exact totals need every request answered; a loss shows with the
    // kernel's drops as the probe saw them.
    for (i, res) in results.into_iter().enumerate() {
        let stats = res.expect("ping");
        assert_eq!(
            (stats.transmitted, stats.received),
            (N, N),
            "flow {i} lost packets; drops: {:?}",
            reports::drops(&r)
        );
    }
    assert_eq!(code, 0, "{r:#}");
    // Each peer: two flows into eq14-001 (N requests in, N replies out
    // each) and two out of it (N requests out, N replies in each).
    let n = u64::from(4 * N);
    for ip in ["192.0.2.11", "192.0.2.12"] {
        let p = peer(&r, ip);
        assert_eq!(p["rx_encap_packets"], n, "{ip}: {p:#}");
        assert_eq!(p["rx_decap_packets"], n, "{ip}: {p:#}");
        assert_eq!(p["tx_encap_packets"], n, "{ip}: {p:#}");
        assert_eq!(p["tx_inner_packets"], n, "{ip}: {p:#}");
        assert_eq!(p["rx_encap_bytes"], n * 148, "{ip}: {p:#}");
        assert_eq!(p["tx_encap_bytes"], n * 148, "{ip}: {p:#}");
    }
}
