//! What `cargo xtask vm-test` adds to the proof on other kernels (6.1,
//! PREEMPT_RT), written attach-mode neutral so they hold with tcx and with
//! clsact: two probes side by side, and exact counts under concurrent flows
//! in both directions (the per-CPU slot claim of flannel-probe-ebpf's
//! counters module, on a kernel where softirqs are preemptible threads).
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

#[test]
fn concurrent_flows_in_both_directions_count_exactly() {
    const N: u32 = 300;
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
    // Four flows at once, two into eq14-001 and two out of it, on two
    // peers: ingress and egress programs run on both CPUs at the same time,
    // and the slots of both peers are updated concurrently.
    let results: Vec<_> = thread::scope(|s| {
        let flows = [
            s.spawn(|| lab.ping(g, e.pod_ip, N, 0.005)),
            s.spawn(|| lab.ping(e, g.pod_ip, N, 0.005)),
            s.spawn(|| lab.ping(m, e.pod_ip, N, 0.005)),
            s.spawn(|| lab.ping(e, m.pod_ip, N, 0.005)),
        ];
        flows
            .into_iter()
            .map(|f| f.join().expect("ping thread"))
            .collect()
    });
    for r in results {
        let stats = r.expect("ping");
        assert_eq!((stats.transmitted, stats.received), (N, N), "no loss");
    }
    let (code, r) = reports::finish(on_e, "eq14-001");
    assert_eq!(code, 0, "{r:#}");
    // Each peer: N requests in and N replies out for its flow into
    // eq14-001, N requests out and N replies in for the flow out of it.
    let n = u64::from(2 * N);
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
