use super::*;
use crate::bench::{
    iperf::{TcpResult, UdpResult},
    results::{
        AgentPeers, AgentSample, CpuPair, CpuRun, HookRun, Machine, MicroCost, ProgCost, Run,
        Settings, Timing,
    },
};

fn run<T>(result: T, cpu: Option<f64>) -> Run<T> {
    Run {
        result,
        load: 2.0,
        agents: cpu
            .map(|c| {
                vec![AgentSample {
                    node: "gladius".into(),
                    cpu_percent: c,
                    vm_hwm_kb: 10_000,
                    vm_rss_kb: 9_000,
                }]
            })
            .unwrap_or_default(),
    }
}

fn tcp(gbit: f64) -> TcpResult {
    TcpResult {
        bits_per_second: gbit * 1e9,
        seconds: 5.0,
        retransmits: 0,
    }
}

fn udp(kpps: f64) -> UdpResult {
    UdpResult {
        seconds: 5.0,
        sent: (kpps * 5e3 * 2.0) as u64,
        received: (kpps * 5e3) as u64,
        lost_percent: 50.0,
    }
}

fn sample() -> Results {
    let prog = |name: &str, runs: u64, ns: u64| ProgCost {
        name: name.into(),
        runs,
        run_time_ns: runs * ns,
    };
    Results {
        machine: Machine {
            cpu: "AMD EPYC".into(),
            cores: 2,
            kernel: "6.18.44".into(),
            memory_mb: 4096,
            iperf3: "iperf 3.12".into(),
            commit: "abc1234".into(),
            date: "2025-01-01 00:00 UTC".into(),
            minutes: 6.0,
            load_start: [2.0, 2.5, 3.0],
            load_end: [2.2, 2.4, 2.9],
        },
        settings: Settings {
            pairs: 3,
            seconds: 5,
            omit: 1,
            hook_runs: 1,
            peers: vec![1, 10_000],
            idle_secs: 10,
            agent_secs: 5,
            max_peers: 24_576,
            timing_peers: vec![1, 10_000],
            timing_max_peers: 131_072,
            control: true,
            reference_pairs: false,
            commands: vec![("TCP".into(), "iperf3 -c 10.42.1.54 | x".into())],
        },
        tcp: [(8.0, 7.96), (8.2, 8.2), (7.9, 7.6)]
            .into_iter()
            .map(|(off, on)| Pair {
                off: run(tcp(off), None),
                on: run(tcp(on), Some(0.5)),
            })
            .collect(),
        udp: [(100.0, 95.0), (100.0, 96.0), (100.0, 97.0)]
            .into_iter()
            .map(|(off, on)| Pair {
                off: run(udp(off), None),
                on: run(udp(on), Some(1.0)),
            })
            .collect(),
        hooks: vec![
            HookRun {
                workload: Workload::Tcp,
                seconds: 5.0,
                progs: vec![
                    prog("kfree_skb", 10, 30),
                    prog("uplink_egress", 1000, 50),
                    prog(REFERENCE_PROGRAM, 1000, 30),
                ],
            },
            HookRun {
                workload: Workload::Udp64,
                seconds: 5.0,
                progs: vec![
                    prog("uplink_egress", 2000, 80),
                    prog("uplink_ingress", 2000, 40),
                    prog(REFERENCE_PROGRAM, 2000, 35),
                ],
            },
        ],
        hook_micro: vec![MicroCost {
            program: "uplink_egress".into(),
            frame: "vxlan_udp64".into(),
            ns: 115.0,
            ns_with_stats: Some(160.0),
        }],
        agent_idle: vec![AgentSample {
            node: "gladius".into(),
            cpu_percent: 0.1,
            vm_hwm_kb: 9000,
            vm_rss_kb: 8000,
        }],
        agent_timing: vec![Timing {
            peers: 10_000,
            map_entries: 40_000,
            snapshot_us: vec![9000.0, 11000.0, 10000.0],
            since_us: vec![1000.0; 3],
            diagnose_us: vec![5000.0; 3],
            total_us: vec![15000.0, 17000.0, 16000.0],
            serious_findings: 0,
        }],
        agent_peers: vec![AgentPeers {
            peers: 10_000,
            sample: AgentSample {
                node: "gladius".into(),
                cpu_percent: 12.0,
                vm_hwm_kb: 60_000,
                vm_rss_kb: 30_000,
            },
            refresh_secs: 1.0,
        }],
        load: vec![1.0, 2.0, 3.0],
        agent_churn: None,
        control_tcp: vec![Pair {
            off: run(tcp(8.0), None),
            on: run(tcp(8.08), None),
        }],
        control_udp: vec![],
        reference_tcp: vec![Pair {
            off: run(tcp(10.0), None),
            on: run(tcp(9.9), None),
        }],
        reference_udp: vec![],
        cpu: vec![],
    }
}

#[test]
fn verdicts_compare_medians_with_the_targets() {
    let v = verdicts(&sample());
    assert_eq!(v.len(), 8);
    // TCP ratios 0.995, 1.0, 0.962: median 0.995.
    assert_eq!(v[0].met, Some(true));
    assert!(
        v[0].measured.starts_with("median 0.995 (0.962–1.000, n=3)"),
        "{}",
        v[0].measured
    );
    // UDP 0.95, 0.96, 0.97: median 0.96, missed by 0.02.
    assert_eq!(v[1].met, Some(false));
    assert_eq!(
        v[1].note,
        "missed by 0.020 (4.0 % of the baseline lost, 2.0 % allowed)"
    );
    // The worst uplink program: uplink_egress under UDP, 80 ns as
    // counted, 45 ns past the reference's 35.
    assert_eq!(v[2].met, Some(true), "{}", v[2].measured);
    assert!(
        v[2].measured.starts_with(
            "worst 45 ns of its own (uplink_egress, UDP 64 B); the statistics count 30 ns \
             (TCP), 35 ns (UDP 64 B) for a program that does nothing"
        ),
        "{}",
        v[2].measured
    );
    // Without the reference (older runs) the figure is the counted one.
    let mut old = sample();
    for h in &mut old.hooks {
        h.progs.retain(|p| p.name != REFERENCE_PROGRAM);
    }
    let v2 = verdicts(&old);
    assert!(
        v2[2]
            .measured
            .starts_with("worst 80 ns (uplink_egress, UDP 64 B)"),
        "{}",
        v2[2].measured
    );
    assert_eq!(v2[2].note, "missed by 20.0 ns (1.3× the target)");
    assert_eq!(v[3].met, Some(true));
    assert_eq!(v[3].measured, "median 16.0 ms (15.0–17.0, n=3)");
    // 60 000 kB = 61.4 MB.
    assert_eq!(v[4].met, Some(false));
    assert_eq!(v[4].measured, "61.4 MB (VmHWM)");
    // Issue 16's: no overlay program in the sample; the tracer as counted
    // (30 ns, the classifier reference not subtracted); no 100 000 peers.
    assert_eq!(
        (v[5].figure, v[5].met),
        ("mean cost per hook run, overlay programs", None)
    );
    assert_eq!(v[6].met, Some(true));
    assert!(
        v[6].measured.starts_with("worst 30 ns (kfree_skb, TCP)"),
        "{}",
        v[6].measured
    );
    assert_eq!(v[6].target, "≤ 150 ns");
    assert_eq!(
        (v[7].figure, v[7].met, v[7].target.as_str()),
        ("read + sum + diagnose, 100 000 peers", None, "≤ 150 ms")
    );
}

#[test]
fn what_was_not_measured_says_so() {
    let v = verdicts(&Results::default());
    assert!(
        v.iter()
            .all(|v| v.met.is_none() && v.measured == "not measured")
    );
    // And the document still renders.
    let md = render(&Results::default(), None, None);
    assert!(md.contains(
        "| TCP throughput ratio (probe on / off) | ≥ 0.99 | not measured | not measured |"
    ));
}

#[test]
fn the_document_has_every_section_and_the_numbers() {
    let md = render(&sample(), Some("The UDP flood is sender-bound.\n"), None);
    for needle in [
        "# What it costs",
        "commit `abc1234`",
        "## Summary",
        "| 64-byte UDP pps ratio | ≥ 0.98 | median 0.960 (0.950–0.970, n=3) | **not met**: missed by 0.020",
        "| TCP throughput ratio (probe on / off) | ≥ 0.99 | median 0.995 (0.962–1.000, n=3); control (off/off): 1.010 (1.010–1.010, n=1); do-nothing programs at the same hooks: 0.990 (0.990–0.990, n=1) | **met** |",
        "![probe on / off per pair](bench/ratios.png)",
        "| CPU | AMD EPYC |",
        "| kernel | 6.18.44 |",
        "| 1-min load at the start of each network run | 2.00 (1.00–3.00, n=3) |",
        "| 1 | 8.000 | 7.960 | 0.995 | 2.00 / 2.00 | gladius 0.5 % |",
        "| 3 | 100.0 | 97.0 | 0.970 | 200.0 | 194.0 | 50.0 % | 50.0 % | 2.00 / 2.00 |",
        "| `uplink_egress` | eth0, tc egress | 200 | 50.0 (50.0–50.0, n=1) | 20.0 (20.0–20.0, n=1) | 400 | 80.0 (80.0–80.0, n=1) | 45.0 (45.0–45.0, n=1) |",
        "| `reference_pass` | eth0, tc ingress and egress (does nothing; not the probe's) | 200 | 30.0 (30.0–30.0, n=1) | – |",
        "| `kfree_skb` | tp_btf/kfree_skb",
        "| `uplink_egress` | VXLAN carrying a 64-byte UDP datagram (counted) | 115 | 160 |",
        "| 10000 | 40000 | 10.000 (9.000–11.000, n=3) |",
        "| 10000 | 12.0 | 61.4 MB | 30.7 MB | 1.00 s |",
        "| idle (10 s, no traffic), gladius | 0.10 | 9.2 MB | 8.2 MB |",
        "| under TCP, gladius | 0.50 (0.50–0.50, n=3) |",
        "cargo xtask bench --pairs 3 --seconds 5 --hook-runs 1 --peers 1,10000 --timing-peers 1,10000 --control",
        "Reference, the price of the hooks themselves: 1 pairs of off against \
         `reference_pass` (returns at once) attached with tcx where the probe's four \
         classifiers go (`eth0` and `flannel.1`, both directions, both nodes; no agent, no \
         drop tracer), in the same alternating order, give a ratio of 0.990 (0.990–0.990, \
         n=1) (per pair: 0.990).",
        "| TCP | `iperf3 -c 10.42.1.54 \\| x` |",
        "## Analysis",
        "The UDP flood is sender-bound.",
        "1 off/off pairs, one run of each after the same wait as for starting the probes but \
         without them (in the same alternating order), give a ratio of 1.010 (1.010–1.010, \
         n=1) (per pair: 1.010).",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
    // Programs in a stable order: uplink first, kfree_skb last.
    let up = md.find("| `uplink_ingress`").unwrap();
    let eg = md.find("| `uplink_egress`").unwrap();
    let kf = md.find("| `kfree_skb`").unwrap();
    assert!(up < eg && eg < kf);
}

#[test]
fn before_and_after() {
    let after = sample();
    let mut before = sample();
    before.machine.commit = "0ld0ld0".into();
    before.agent_timing[0].total_us = vec![20_000_000.0; 3];
    before.agent_peers[0].sample.vm_hwm_kb = 40_000;
    let md = render(&after, None, Some(&before));
    for needle in [
        "## Before and after",
        "commit `0ld0ld0`",
        "| TCP throughput ratio, median | 0.995 | 0.995 | 1.00× |",
        "| `uplink_egress` per run, in the lab (UDP 64 B) | 80.0 ns | 80.0 ns | 1.00× |",
        "| read + sum + diagnose, 10000 peers | 20000.0 ms | 16.0 ms | 1/1250 |",
        "| running agent with 10000 peers, peak RSS | 41.0 MB | 61.4 MB | 1.50× |",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
    // Nothing to compare with: no section.
    assert!(!render(&after, None, None).contains("Before and after"));
}

#[test]
fn plot_input() {
    let r = sample();
    assert_eq!(
        plot_data(&r),
        "# pair tcp_on_off udp64_on_off tcp_control_off_off udp64_control_off_off\n\
         1 0.99500 0.95000 1.01000 NaN\n2 1.00000 0.96000 NaN NaN\n3 0.96203 0.97000 NaN NaN\n"
    );
    let gp = plot_script(&r, "pngcairo");
    assert!(gp.starts_with("set terminal pngcairo size 900,500\nset output 'bench/ratios.png'\n"));
    assert!(gp.contains("set xrange [0.5:3.5]"));
    assert!(gp.contains("set yrange [0.900:1.050]"));
    // A point below 0.9 gets room under it.
    let mut low = r.clone();
    low.tcp[0].on.result.bits_per_second = 0.8 * low.tcp[0].off.result.bits_per_second;
    assert!(plot_script(&low, "png").contains("set yrange [0.780:1.050]"));
    assert!(gp.contains("'bench/ratios.dat' using 1:3"));
    assert!(gp.contains("'bench/ratios.dat' using 1:4 with points"));
    let without = Results {
        control_tcp: vec![],
        ..r.clone()
    };
    assert!(!plot_script(&without, "png").contains("using 1:4"));
}

/// The committed BENCHMARKS.md is what the committed results render to:
/// refactoring the renderer must not change a byte of it.
#[test]
fn committed_report_renders_unchanged() {
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace");
    let read = |rel: &str| {
        std::fs::read_to_string(ws.join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    };
    let results: Results = serde_json::from_str(&read(RESULTS_JSON)).expect("results.json parses");
    let baseline: Results =
        serde_json::from_str(&read(BASELINE_JSON)).expect("baseline.json parses");
    let analysis = read("bench/analysis.md");
    let md = render(&results, Some(&analysis), Some(&baseline));
    let committed = read("BENCHMARKS.md");
    if md != committed {
        let line = md
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the length".into(), |n| format!("line {}", n + 1));
        panic!("BENCHMARKS.md differs from the rendering of {RESULTS_JSON} at {line}");
    }
    // And the plot's data, which the report links to.
    assert_eq!(plot_data(&results), read(PLOT_DATA));
}

#[test]
fn the_churn_part_renders_only_when_it_ran() {
    let mut r = sample();
    assert!(!render(&r, None, None).contains("## 5."));
    r.agent_churn = Some(crate::bench::results::ChurnCost {
        node: "gladius".into(),
        per_sec_asked: 100,
        pairs: 1000,
        pairs_per_sec: 98.7,
        interval_secs: 1.0,
        quiet_secs: 10.0,
        quiet_cpu_percent: 0.4,
        quiet_samples: 10,
        churn_secs: 10.2,
        churn_cpu_percent: 1.25,
        churn_samples: 11,
    });
    let text = render(&r, None, None);
    assert!(text.contains("## 5. The agent under pod churn\n"), "{text}");
    assert!(
        text.contains("| no churn | 0 | 0.40 | 10 | 1.00 |"),
        "{text}"
    );
    assert!(
        text.contains("| churn | 99 (1000 pairs) | 1.25 | 11 | 1.08 |"),
        "{text}"
    );
    assert!(text.contains("1.25 % of a core, within the target of 5 %"));
    // A generator that fell short of the asked rate shows no verdict of met.
    if let Some(c) = r.agent_churn.as_mut() {
        c.pairs_per_sec = 50.0;
    }
    let slow = render(&r, None, None);
    assert!(
        slow.contains("1.25 % of a core, at 50 of the 100 pairs/s asked (scaled to 100: 2.5 %), not shown within the target of 5 %"),
        "{slow}"
    );
    let before_reproduce = text.find("## 5.") < text.find("## Reproduce");
    assert!(before_reproduce, "part 5 comes before Reproduce");
}

fn cpu_run(packets: u64, client_ns: u64) -> CpuRun {
    CpuRun {
        packets,
        seconds: 5.0,
        client_ns,
        server_ns: 100_000_000,
        ksoftirqd_ns: 50_000_000,
        load: 1.5,
    }
}

#[test]
fn cpu_per_packet_is_kernel_time_over_packets_with_an_interval() {
    // 150 000 packets, 0.3 s of CPU in all: 2 000 ns each.
    let off = cpu_run(150_000, 150_000_000);
    assert!((off.ns_per_packet() - 2000.0).abs() < 1e-6);
    assert!(cpu_run(0, 1).ns_per_packet().is_nan());
    let mut r = sample();
    // The client's time grows by 40, 60, 50 ms over 150 000 packets.
    for extra in [40_000_000u64, 60_000_000, 50_000_000] {
        r.cpu.push(CpuPair {
            workload: Workload::Udp64,
            offered: "30 kpps".into(),
            off: cpu_run(150_000, 150_000_000),
            on: cpu_run(150_000, 150_000_000 + extra),
        });
    }
    // Added: 267, 400, 333 ns.
    let added = r.cpu_added_ns(Workload::Udp64);
    assert_eq!(added.len(), 3);
    assert!((added[1] - 400.0).abs() < 1e-6);
    assert!(r.cpu_added_ns(Workload::Tcp).is_empty());
    let md = render(&r, None, None);
    assert!(
        md.contains("## 6. CPU time per packet at a fixed rate"),
        "{md}"
    );
    assert!(
        md.contains("| 1 | UDP 64 B | 30 kpps | 150000 | 2000 | 150000 | 2267 | +267 |"),
        "{md}"
    );
    // mean 333, sd 66.7, t(2) = 4.303: half width 166.
    assert!(
        md.contains("| 3 | UDP 64 B | 30 kpps | 150000 | 2000 | 150000 | 2333 | +333 |"),
        "{md}"
    );
    assert!(
        md.contains("the probe adds 333 (267–400, n=3) ns per packet"),
        "{md}"
    );
    assert!(md.contains("mean +333 ns, 95 % CI +168 to +499 ns"), "{md}");
    // No part 6: no section.
    assert!(!render(&sample(), None, None).contains("## 6."));
}
