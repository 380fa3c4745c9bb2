//! Everything one `cargo xtask bench` measured: plain data, written to
//! `bench/results.json` and rendered into BENCHMARKS.md.
use serde::{Deserialize, Serialize};

use super::{
    iperf::{TcpResult, UdpResult},
    stats::Summary,
};

/// Targets of issue #7, raised by issue #16 (the ratios; the hook and
/// overlay/tracer costs, and 100 000 peers, are issue 16's).
pub(super) const TCP_RATIO_TARGET: f64 = 0.99;
pub(super) const UDP_RATIO_TARGET: f64 = 0.98;
pub(super) const HOOK_NS_TARGET: f64 = 60.0;
pub(super) const OVERLAY_NS_TARGET: f64 = 40.0;
pub(super) const TRACER_NS_TARGET: f64 = 150.0;
/// The eBPF object's do-nothing classifier, attached next to ours in part 3.
pub(super) const REFERENCE_PROGRAM: &str = "reference_pass";
pub(super) const DIAGNOSE_MS_TARGET: f64 = 20.0;
pub(super) const RSS_MB_TARGET: f64 = 50.0;
/// The peer count the agent targets are about.
pub(super) const TARGET_PEERS: u32 = 10_000;
/// The big cluster of issue 16, and its read + sum + diagnose target.
pub(super) const BIG_PEERS: u32 = 100_000;
pub(super) const BIG_DIAGNOSE_MS_TARGET: f64 = 150.0;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Results {
    pub machine: Machine,
    pub settings: Settings,
    /// Interleaved off/on pairs of TCP throughput runs.
    pub tcp: Vec<Pair<TcpResult>>,
    /// Interleaved off/on pairs of 64-byte UDP runs.
    pub udp: Vec<Pair<UdpResult>>,
    /// Control pairs (`--control`): off/off, the second after the same
    /// wait as for starting the probes.
    #[serde(default)]
    pub control_tcp: Vec<Pair<TcpResult>>,
    #[serde(default)]
    pub control_udp: Vec<Pair<UdpResult>>,
    /// Reference pairs (`--reference-pairs`): off against the do-nothing
    /// program at the same four hooks.
    #[serde(default)]
    pub reference_tcp: Vec<Pair<TcpResult>>,
    #[serde(default)]
    pub reference_udp: Vec<Pair<UdpResult>>,
    /// Probe on, kernel BPF statistics on: per-program cost per run.
    pub hooks: Vec<HookRun>,
    /// Each classifier alone under BPF_PROG_TEST_RUN.
    pub hook_micro: Vec<MicroCost>,
    /// The agent with its own lab peers and no traffic.
    pub agent_idle: Vec<AgentSample>,
    /// snapshot + since + diagnose with N synthetic peers in the maps.
    pub agent_timing: Vec<Timing>,
    /// The real agent (`watch --plain`) with N synthetic peers in its maps
    /// and programmed on its node.
    pub agent_peers: Vec<AgentPeers>,
    /// 1-minute load average at the start of every network run.
    pub load: Vec<f64>,
    /// Part 5: the agent (`serve`) quiet and under pod veth churn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_churn: Option<ChurnCost>,
    /// Part 6: interleaved off/on pairs at a fixed offered rate, kernel
    /// CPU time per packet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<CpuPair>,
}

/// One off/on pair of part 6.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CpuPair {
    pub workload: Workload,
    /// The rate asked of iperf3 (`30 kpps`, `2000 Mbit/s`).
    pub offered: String,
    pub off: CpuRun,
    pub on: CpuRun,
}

/// One run of part 6: the CPU time of what carries the packets over the
/// packets that crossed the receiving node's uplink.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) struct CpuRun {
    /// rx + tx packets of the receiving node's uplink.
    pub packets: u64,
    pub seconds: f64,
    /// The sender's user + system time (wait4 rusage), ns.
    pub client_ns: u64,
    /// The sink's, ns.
    pub server_ns: u64,
    /// Every ksoftirqd thread's runtime over the run, ns.
    pub ksoftirqd_ns: u64,
    /// 1-minute load average when it started.
    pub load: f64,
}

impl CpuRun {
    /// CPU nanoseconds per packet.
    pub(super) fn ns_per_packet(&self) -> f64 {
        if self.packets == 0 {
            return f64::NAN;
        }
        (self.client_ns + self.server_ns + self.ksoftirqd_ns) as f64 / self.packets as f64
    }
}

impl Results {
    /// Per pair of part 6 under `w`: on minus off, ns per packet.
    pub(super) fn cpu_added_ns(&self, w: Workload) -> Vec<f64> {
        self.cpu
            .iter()
            .filter(|p| p.workload == w)
            .map(|p| p.on.ns_per_packet() - p.off.ns_per_packet())
            .collect()
    }
}

/// The agent's target under pod churn (issue 12): % of one core.
pub(super) const CHURN_CPU_TARGET: f64 = 5.0;

/// `serve` over two stretches: no churn, then veth pairs created and
/// deleted in its namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct ChurnCost {
    pub node: String,
    /// Pairs a second asked for, and what the machine managed.
    pub per_sec_asked: u32,
    pub pairs: u64,
    pub pairs_per_sec: f64,
    pub interval_secs: f64,
    pub quiet_secs: f64,
    pub quiet_cpu_percent: f64,
    /// Readings (`samples` of `GET /counters`) during the quiet stretch.
    pub quiet_samples: u64,
    pub churn_secs: f64,
    pub churn_cpu_percent: f64,
    pub churn_samples: u64,
}

/// What the run was on and of.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_mb: u64,
    pub iperf3: String,
    /// The commit measured (`+dirty` with local changes).
    pub commit: String,
    /// UTC, when the run started.
    pub date: String,
    /// The whole run's wall time.
    pub minutes: f64,
    /// /proc/loadavg (1, 5, 15 min) at the start and the end.
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
}

/// How the run was made (the command line's options).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Settings {
    pub pairs: usize,
    /// Measured seconds per iperf3 run (after `omit`).
    pub seconds: u32,
    /// Seconds iperf3 runs first without measuring (TCP slow start).
    pub omit: u32,
    pub hook_runs: usize,
    pub peers: Vec<u32>,
    pub idle_secs: u32,
    pub agent_secs: u32,
    pub max_peers: u32,
    /// Peer counts of the read + sum + diagnose timings (older runs: `peers`).
    #[serde(default)]
    pub timing_peers: Vec<u32>,
    /// `--max-peers` of those timings.
    #[serde(default)]
    pub timing_max_peers: u32,
    /// Control pairs were run.
    #[serde(default)]
    pub control: bool,
    /// Reference pairs were run.
    #[serde(default)]
    pub reference_pairs: bool,
    /// The command lines, for the reader to reproduce by hand.
    pub commands: Vec<(String, String)>,
}

/// One off/on pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Pair<T> {
    pub off: Run<T>,
    pub on: Run<T>,
}

/// One iperf3 run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Run<T> {
    pub result: T,
    /// 1-minute load average when it started.
    pub load: f64,
    /// The probes during the run (none when off).
    pub agents: Vec<AgentSample>,
}

/// One probe process over a stretch of time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct AgentSample {
    pub node: String,
    /// utime + stime over the stretch, in percent of one core.
    pub cpu_percent: f64,
    /// Peak resident set (VmHWM) so far.
    pub vm_hwm_kb: u64,
    /// Resident set (VmRSS) at the end.
    pub vm_rss_kb: u64,
}

/// Which load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Workload {
    Tcp,
    Udp64,
}

impl Workload {
    pub(super) fn label(self) -> &'static str {
        match self {
            Workload::Tcp => "TCP throughput",
            Workload::Udp64 => "UDP 64-byte flood",
        }
    }
}

/// One run with BPF statistics: each of our programs, summed over the
/// probes of every node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct HookRun {
    pub workload: Workload,
    pub seconds: f64,
    pub progs: Vec<ProgCost>,
}

/// A program's runs and run time over one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ProgCost {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgCost {
    pub(super) fn ns_per_run(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.run_time_ns as f64 / self.runs as f64)
    }
}

/// A classifier on one frame under BPF_PROG_TEST_RUN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct MicroCost {
    pub program: String,
    pub frame: String,
    pub ns: f64,
    /// The same with the kernel's BPF run-time statistics on.
    #[serde(default)]
    pub ns_with_stats: Option<f64>,
}

/// The agent's read + sum + diagnose with `peers` peers in the maps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Timing {
    pub peers: u32,
    pub map_entries: u64,
    pub snapshot_us: Vec<f64>,
    pub since_us: Vec<f64>,
    pub diagnose_us: Vec<f64>,
    pub total_us: Vec<f64>,
    pub serious_findings: u64,
}

/// The real agent with `peers` synthetic peers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct AgentPeers {
    pub peers: u32,
    pub sample: AgentSample,
    /// Median time from one printed table to the next (1 s when a refresh
    /// fits in the interval).
    pub refresh_secs: f64,
}

impl<T> Pair<T> {
    pub(super) fn ratio(&self, value: impl Fn(&T) -> f64) -> f64 {
        value(&self.on.result) / value(&self.off.result)
    }
}

pub(super) fn tcp_gbits(r: &TcpResult) -> f64 {
    r.bits_per_second / 1e9
}

pub(super) fn udp_kpps(r: &UdpResult) -> f64 {
    r.pps() / 1e3
}

impl Results {
    pub(super) fn tcp_ratios(&self) -> Vec<f64> {
        self.tcp.iter().map(|p| p.ratio(tcp_gbits)).collect()
    }

    pub(super) fn udp_ratios(&self) -> Vec<f64> {
        self.udp.iter().map(|p| p.ratio(udp_kpps)).collect()
    }

    /// Program names in a stable order: uplink, overlay, then the rest.
    pub(super) fn program_names(&self) -> Vec<String> {
        let order = [
            "uplink_ingress",
            "uplink_egress",
            "overlay_ingress",
            "overlay_egress",
        ];
        let mut names: Vec<String> = self
            .hooks
            .iter()
            .flat_map(|h| h.progs.iter().map(|p| p.name.clone()))
            .chain(self.hook_micro.iter().map(|m| m.program.clone()))
            .collect();
        names.sort_by_key(|n| {
            (
                order.iter().position(|o| o == n).unwrap_or(order.len()),
                n.clone(),
            )
        });
        names.dedup();
        names
    }

    /// ns per run of `program` in each run of `workload`.
    pub(super) fn hook_ns(&self, program: &str, workload: Workload) -> Vec<f64> {
        self.hooks
            .iter()
            .filter(|h| h.workload == workload)
            .filter_map(|h| h.progs.iter().find(|p| p.name == program))
            .filter_map(ProgCost::ns_per_run)
            .collect()
    }

    /// ns per run of `program` minus the do-nothing reference's in the
    /// same run of `workload` (both saw the same packets): what the
    /// program itself costs, without the statistics' own clock reads and
    /// the dispatch any program pays.
    pub(super) fn hook_net_ns(&self, program: &str, workload: Workload) -> Vec<f64> {
        self.hooks
            .iter()
            .filter(|h| h.workload == workload)
            .filter_map(|h| {
                let ours = h.progs.iter().find(|p| p.name == program)?.ns_per_run()?;
                let floor = h
                    .progs
                    .iter()
                    .find(|p| p.name == REFERENCE_PROGRAM)?
                    .ns_per_run()?;
                Some(ours - floor)
            })
            .collect()
    }

    /// Runs per second of `program` in each run of `workload`.
    pub(super) fn hook_rate(&self, program: &str, workload: Workload) -> Vec<f64> {
        self.hooks
            .iter()
            .filter(|h| h.workload == workload && h.seconds > 0.0)
            .filter_map(|h| {
                let p = h.progs.iter().find(|p| p.name == program)?;
                Some(p.runs as f64 / h.seconds)
            })
            .collect()
    }

    /// Share of one core spent in all our programs, per run of `workload`.
    pub(super) fn kernel_cpu_percent(&self, workload: Workload) -> Vec<f64> {
        self.hooks
            .iter()
            .filter(|h| h.workload == workload && h.seconds > 0.0)
            .map(|h| {
                let ns: u64 = h
                    .progs
                    .iter()
                    .filter(|p| p.name != REFERENCE_PROGRAM)
                    .map(|p| p.run_time_ns)
                    .sum();
                100.0 * ns as f64 / (h.seconds * 1e9)
            })
            .collect()
    }

    /// The agents' CPU share over the on-runs of `pairs`, per node.
    pub(super) fn agent_cpu_under_load<T>(pairs: &[Pair<T>]) -> Vec<(String, Summary)> {
        let mut nodes: Vec<String> = pairs
            .iter()
            .flat_map(|p| p.on.agents.iter().map(|a| a.node.clone()))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
            .into_iter()
            .filter_map(|node| {
                let v: Vec<f64> = pairs
                    .iter()
                    .flat_map(|p| p.on.agents.iter())
                    .filter(|a| a.node == node)
                    .map(|a| a.cpu_percent)
                    .collect();
                Summary::of(&v).map(|s| (node, s))
            })
            .collect()
    }

    /// The highest VmHWM any probe reached in the network runs.
    pub(super) fn peak_rss_under_load_kb(&self) -> u64 {
        let tcp = self.tcp.iter().flat_map(|p| p.on.agents.iter());
        let udp = self.udp.iter().flat_map(|p| p.on.agents.iter());
        tcp.chain(udp).map(|a| a.vm_hwm_kb).max().unwrap_or(0)
    }
}
