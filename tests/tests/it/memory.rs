//! The maps' kernel memory: what the agent computes from `--max-peers` and
//! the possible CPUs before loading (logged, `flannel_probe_map_memory_bytes`)
//! against the kernel's own accounting (`memlock` in the fdinfo of every
//! map the process holds), for two sizes; and the refusal above
//! `--map-memory-limit`.
use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::netns::Netns,
    support::{ProbeRun, http_get_in, probe_bin, scaled, terminate},
};

/// `memlock` of every eBPF map `pid` holds a descriptor of, by map id (a
/// map held twice counts once).
fn kernel_map_memory(pid: u32) -> u64 {
    let mut maps: BTreeMap<u64, u64> = BTreeMap::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).expect("fdinfo").flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if !text.contains("map_type:") {
            continue;
        }
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) {
            maps.insert(id, memlock);
        }
    }
    assert!(maps.len() >= 8, "the probe's maps in {dir}: {maps:?}");
    maps.values().sum()
}

fn gauge(ns: &Netns) -> u64 {
    let (code, body) = http_get_in(
        ns.name(),
        "127.0.0.1:9465",
        "/metrics",
        Duration::from_secs(10),
    )
    .expect("GET /metrics");
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("flannel_probe_map_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no flannel_probe_map_memory_bytes in\n{body}"))
}

fn probe(ns: &Netns) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()]).arg(probe_bin());
    cmd
}

/// `serve` in `ns` with `--max-peers max_peers`: the computed figure (the
/// gauge, also in the log line) and the kernel's sum.
fn measure(ns: &Netns, max_peers: u32) -> (u64, u64) {
    let mut cmd = probe(ns);
    cmd.args(["serve", "--uplink", "lo", "--interval", "1s", "--max-peers"])
        .arg(max_peers.to_string());
    let mut run = ProbeRun::spawn(cmd).expect("start serve");
    run.wait_for("serving on", scaled(Duration::from_secs(60)))
        .expect("serving");
    let computed = gauge(ns);
    let logged = run
        .stderr_lines
        .iter()
        .find(|l| l.contains("eBPF maps:"))
        .unwrap_or_else(|| panic!("no eBPF maps line in {:?}", run.stderr_lines))
        .clone();
    assert!(
        logged.contains(&format!(
            "({computed} bytes) for --max-peers {max_peers} on "
        )),
        "{logged}"
    );
    let kernel = kernel_map_memory(run.pid());
    terminate(run.pid());
    let (code, _) = run.finish(Duration::from_secs(20)).expect("serve exits");
    assert_eq!(code, 0);
    (computed, kernel)
}

#[test]
fn the_computed_map_memory_is_the_kernels_for_two_sizes() {
    let Some(ns) = Netns::for_test() else {
        return;
    };
    let (small, small_kernel) = measure(&ns, 4096);
    let (big, big_kernel) = measure(&ns, 65536);
    eprintln!(
        "map memory: 4096 peers {small} B (kernel {small_kernel} B), 65536 peers {big} B (kernel {big_kernel} B)"
    );
    // The per-peer tables are arrays, accounted exactly alike on every
    // kernel: the growth is exact. The fixed rest (kernel struct sizes) is
    // exact on the kernel the constants were measured on, and within 1%.
    assert_eq!(
        big - small,
        big_kernel - small_kernel,
        "growth with --max-peers"
    );
    for (ours, kernel) in [(small, small_kernel), (big, big_kernel)] {
        assert!(
            ours.abs_diff(kernel) * 100 <= kernel,
            "computed {ours} B, the kernel says {kernel} B"
        );
    }
    assert!(
        big > 10 * small / 2,
        "the tables dominate: {small} -> {big}"
    );
}

#[test]
fn too_large_max_peers_for_the_limit_exits_2_naming_the_figure() {
    let Some(ns) = Netns::for_test() else {
        return;
    };
    let t0 = Instant::now();
    let out = probe(&ns)
        .args([
            "report",
            "--uplink",
            "lo",
            "--duration",
            "1s",
            "--max-peers",
            "1000000",
            "--map-memory-limit",
            "16Mi",
        ])
        .output()
        .expect("run report");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("flannel-probe: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let line = errors[0];
    for want in [
        "the eBPF maps would take ",
        " MiB (",
        " bytes) of kernel memory for --max-peers 1000000 on ",
        "above --map-memory-limit 16.0 MiB (16777216 bytes)",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    assert!(!line.contains('\n'));
    // Refused before loading anything: nothing of ours to clean up.
    assert!(t0.elapsed() < scaled(Duration::from_secs(10)));
    // The same size fits a large enough limit.
    let out = probe(&ns)
        .args([
            "report",
            "--uplink",
            "lo",
            "--duration",
            "1s",
            "--max-peers",
            "100000",
            "--map-memory-limit",
            "1G",
        ])
        .output()
        .expect("run report");
    assert_ne!(out.status.code(), Some(2), "{out:?}");
}

/// The default `--map-memory-limit` leaves the agent process room inside
/// the DaemonSet's memory limit (the maps are charged to the same cgroup).
#[test]
fn the_default_limit_fits_the_daemonsets_memory_limit() {
    use clap::Parser as _;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/base/daemonset.yaml"
    );
    let text = std::fs::read_to_string(path).expect("the DaemonSet");
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let agent = doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers")
        .iter()
        .find(|c| {
            c["args"]
                .as_sequence()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("serve")))
        })
        .expect("the serve container");
    let limit = agent["resources"]["limits"]["memory"]
        .as_str()
        .expect("limits.memory");
    let mib: u64 = limit
        .strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("limits.memory {limit} is not in Mi"));
    let cli = flannel_probe::cli::Cli::try_parse_from(["flannel-probe", "serve"]).expect("parse");
    let maps = cli.common.map_memory_limit;
    // The agent's own RSS is about 25 MiB (it/churn.rs measures it): keep
    // twice that free.
    assert!(
        maps + (50 << 20) <= mib << 20,
        "--map-memory-limit {maps} leaves too little of limits.memory {limit}"
    );
}
