//! `cargo xtask bench`: what the probe costs, measured side by side with no
//! probe at all (issue #7), written to BENCHMARKS.md and bench/.
//!
//! In a lab of two nodes (momonoke's pod sends to gladius's pod over VXLAN):
//!
//! 1. TCP throughput and 2. 64-byte UDP packet rate, in interleaved pairs
//!    (probe off, probe on) so that background load hits both alike; "on"
//!    is the real `flannel-probe watch --plain` on both nodes;
//! 3. the cost per run of each of our programs, from the kernel's BPF
//!    statistics under both loads, and under BPF_PROG_TEST_RUN;
//! 4. the agent: read + sum + diagnose with 1 to 10 000 peers in the real
//!    maps, and the running agent's CPU share and peak RSS;
//! 5. the agent (`serve`) under pod churn: 100 veth pairs created and
//!    deleted per second in its namespace, its CPU next to no churn;
//! 6. the kernel CPU time per packet at a fixed offered rate below
//!    saturation, off/on pairs interleaved (`cpu.rs`).
//!
//! Kept out of `cargo xtask test`: it takes minutes. Its pure parts
//! (statistics, iperf3's JSON, the rendering) are unit-tested.
mod agent;
mod churn;
mod cpu;
mod iperf;
mod procfs;
mod render;
mod results;
mod stats;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Args;
use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec},
    synthetic,
};

use agent::{Agent, Reference};
use results::{
    AgentPeers, AgentSample, HookRun, Machine, MicroCost, Pair, ProgCost, Results, Run, Settings,
    Timing, Workload,
};

use crate::{Profile, workspace};

/// The lab nodes' underlay interface, where the uplink programs sit.
const UPLINK_IFACE: &str = "eth0";
/// Where all four classifiers sit.
const REFERENCE_IFACES: [&str; 2] = [UPLINK_IFACE, "flannel.1"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Network,
    Hooks,
    Agent,
    Churn,
    Cpu,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Off/on pairs per load (at least 5 for the published figures).
    #[arg(long, default_value_t = 7)]
    pairs: usize,
    /// Measured seconds per iperf3 run.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Seconds each iperf3 run warms up before measuring (`iperf3 -O`).
    #[arg(long, default_value_t = 1)]
    omit: u32,
    /// Runs of each load with BPF statistics on, for the cost per hook run.
    #[arg(long, default_value_t = 3)]
    hook_runs: usize,
    /// Peer counts for the running agent's figures (programmed in the lab).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
    peers: Vec<u32>,
    /// Peer counts for the read + sum + diagnose timings (in memory only).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000,100000")]
    timing_peers: Vec<u32>,
    /// Seconds the idle agents are watched.
    #[arg(long, default_value_t = 10)]
    idle_secs: u32,
    /// Seconds the agent with N synthetic peers is watched.
    #[arg(long, default_value_t = 5)]
    agent_secs: u32,
    /// Where the report goes (relative to the workspace); bench/ goes next to it.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// What to measure: network (parts 1 and 2), hooks (3), agent (4),
    /// churn (5), cpu (6).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "network,hooks,agent,churn,cpu"
    )]
    parts: Vec<Part>,
    /// Off/on pairs of each load in part 6.
    #[arg(long, default_value_t = 10)]
    cpu_pairs: usize,
    /// Seconds per run in part 6.
    #[arg(long, default_value_t = 5)]
    cpu_seconds: u32,
    /// The fixed rate of part 6's 64-byte UDP, in thousands of datagrams a
    /// second (below what the lab saturates at).
    #[arg(long, default_value_t = 30)]
    cpu_udp_kpps: u32,
    /// The cap of part 6's TCP stream (iperf3 -b), in Mbit/s.
    #[arg(long, default_value_t = 2000)]
    cpu_tcp_mbits: u32,
    /// Veth pairs created and deleted per second in part 5.
    #[arg(long, default_value_t = 100)]
    churn_per_sec: u32,
    /// Seconds of each stretch of part 5 (quiet, then churn).
    #[arg(long, default_value_t = 10)]
    churn_secs: u32,
    /// Also run as many control pairs (probe off on both sides, with the
    /// same wait as for starting it): the method's own bias and noise.
    #[arg(long)]
    control: bool,
    /// Also run as many pairs of off against the do-nothing reference
    /// program at the same four hooks: what having programs there costs,
    /// whatever they do.
    #[arg(long)]
    reference_pairs: bool,
    /// Measure nothing: render the report and the plot again from
    /// bench/results.json (after editing bench/analysis.md, say).
    #[arg(long)]
    render: bool,
    /// Measure this flannel-probe binary instead of building the
    /// workspace's (another commit's release build, for a before/after in
    /// one session).
    #[arg(long)]
    probe_bin: Option<PathBuf>,
}

/// The second run of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Off,
    On,
    /// Off again, after a wait like the one for the probes to start.
    Control,
    /// The do-nothing reference program where the probe's classifiers go.
    Reference,
}

/// About what starting the probes takes (ready, then settled).
const CONTROL_WAIT: Duration = Duration::from_millis(2000);

/// Map slots the agent gets: one per peer, room for 10 000 synthetic peers
/// next to the lab's own.
const MAX_PEERS_SLOTS: u32 = 16_384;
/// Map slots of the timings: room for 100 000 synthetic peers.
const TIMING_SLOTS: u32 = 131_072;
/// The lab: gladius (index 0) receives, momonoke (index 1) sends.
const SERVER: &str = "gladius";
const CLIENT: &str = "momonoke";

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let ws = workspace();
    let out = ws.join(&args.out);
    if args.render {
        let json = out.parent().unwrap_or(&ws).join(render::RESULTS_JSON);
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("reading {}", json.display()))?;
        let r: Results =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
        return write_outputs(&r, &ws, &out);
    }
    ensure!(
        flannel_probe_tests::require_root(),
        "cargo xtask bench needs root (eBPF and network namespaces)"
    );
    ensure!(args.pairs >= 1 && args.seconds >= 1, "nothing to measure");
    let max_peer = args.peers.iter().copied().max().unwrap_or(0);
    ensure!(
        max_peer < MAX_PEERS_SLOTS.min(synthetic::MAX_PEERS),
        "at most {} synthetic peers for --peers",
        MAX_PEERS_SLOTS.min(synthetic::MAX_PEERS) - 1
    );
    let max_timed = args.timing_peers.iter().copied().max().unwrap_or(0);
    ensure!(
        max_timed <= TIMING_SLOTS.min(synthetic::MAX_PEERS),
        "at most {} synthetic peers for --timing-peers",
        TIMING_SLOTS.min(synthetic::MAX_PEERS)
    );
    crate::setup::all()?;
    crate::setup::bench_packages()?;
    let probe = match &args.probe_bin {
        Some(p) => {
            ensure!(p.is_file(), "--probe-bin {}: no such file", p.display());
            p.clone()
        }
        None => crate::probe(Profile::Release)?,
    };
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "flannel-probe-tests",
        "--example",
        "bench_agent",
        "--example",
        "pace",
    ])?;
    let bins = Bins {
        probe,
        helper: crate::built(Profile::Release, "examples/bench_agent"),
        pace: crate::built(Profile::Release, "examples/pace"),
    };

    let started = Instant::now();
    let mut peers = args.peers.clone();
    peers.sort_unstable();
    peers.dedup();
    let mut timed = args.timing_peers.clone();
    timed.sort_unstable();
    timed.dedup();
    let mut r = Results {
        machine: machine(),
        ..Results::default()
    };
    if let Some(p) = &args.probe_bin {
        // The figures are that binary's, not this checkout's.
        r.machine.commit = format!("{} measuring {}", r.machine.commit, p.display());
    }
    let lab = Lab::up(LabSpec {
        nodes: 2,
        ..LabSpec::default()
    })?;
    lab.wait_ready(Duration::from_secs(30))?;
    let bench = Bench {
        lab: &lab,
        bins: &bins,
        args: &args,
    };
    r.settings = bench.settings(&peers, &timed);
    if args.parts.contains(&Part::Network) {
        bench.network(&mut r)?;
    }
    if args.parts.contains(&Part::Hooks) {
        bench.hook_costs(&mut r)?;
    }
    if args.parts.contains(&Part::Agent) {
        bench.agent(&mut r, &peers, &timed)?;
    }
    if args.parts.contains(&Part::Churn) {
        progress(format_args!(
            "churn: serve quiet, then {} veth pairs/s, {} s each",
            args.churn_per_sec, args.churn_secs
        ));
        let c = churn::measure(
            &lab,
            bench.server(),
            &bins.probe,
            args.churn_per_sec,
            args.churn_secs,
        )?;
        progress(format_args!(
            "churn: {:.2} % CPU quiet, {:.2} % under {:.0} pairs/s",
            c.quiet_cpu_percent, c.churn_cpu_percent, c.pairs_per_sec
        ));
        r.agent_churn = Some(c);
    }
    if args.parts.contains(&Part::Cpu) {
        bench.cpu(&mut r)?;
    }
    drop(lab);

    r.machine.load_end = procfs::loadavg();
    r.machine.minutes = started.elapsed().as_secs_f64() / 60.0;
    write_outputs(&r, &ws, &out)
}

struct Bins {
    probe: PathBuf,
    helper: PathBuf,
    /// Part 6's paced sender and sink.
    pace: PathBuf,
}

struct Bench<'a> {
    lab: &'a Lab,
    bins: &'a Bins,
    args: &'a BenchArgs,
}

/// A helper process (`iperf3 -s`, `bench_agent fill`, the reference
/// program), killed and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn progress(msg: std::fmt::Arguments<'_>) {
    eprintln!("xtask bench: {msg}");
}

impl Bench<'_> {
    fn server(&self) -> &LabNode {
        self.lab.node(SERVER)
    }

    fn client(&self) -> &LabNode {
        self.lab.node(CLIENT)
    }

    fn iperf_args(&self, w: Workload) -> Vec<String> {
        let mut a: Vec<String> = [
            "iperf3",
            "-c",
            &self.server().pod_ip.to_string(),
            "-J",
            "-t",
            &self.args.seconds.to_string(),
            "-O",
            &self.args.omit.to_string(),
        ]
        .map(String::from)
        .to_vec();
        if w == Workload::Udp64 {
            a.extend(["-u", "-l", "64", "-b", "0"].map(String::from));
        }
        a
    }

    fn settings(&self, peers: &[u32], timed: &[u32]) -> Settings {
        let a = self.args;
        let in_pod = |node: &LabNode, args: &[String]| {
            format!("ip netns exec <pod of {}> {}", node.name, args.join(" "))
        };
        let rated = |w| {
            let (sink, send) = self.rated_args(w);
            format!(
                "{}; {}",
                in_pod(self.server(), &sink),
                in_pod(self.client(), &send)
            )
        };
        let probe = format!(
            "ip netns exec <node> flannel-probe {}",
            agent::WATCH_ARGS.join(" ")
        );
        let commands = vec![
            (
                "iperf3 server".into(),
                in_pod(self.server(), &["iperf3".into(), "-s".into()]),
            ),
            (
                "TCP run".into(),
                in_pod(self.client(), &self.iperf_args(Workload::Tcp)),
            ),
            (
                "UDP run".into(),
                in_pod(self.client(), &self.iperf_args(Workload::Udp64)),
            ),
            ("part 6: UDP at a fixed rate".into(), rated(Workload::Udp64)),
            ("part 6: TCP at a fixed rate".into(), rated(Workload::Tcp)),
            (
                "part 6: CPU time".into(),
                "the sink and the sender above, both reaped with wait4 (rusage user + system), \
                 plus every ksoftirqd's /proc/PID/schedstat runtime, over rx_packets + \
                 tx_packets of gladius's eth0"
                    .into(),
            ),
            ("probe on (both nodes)".into(), probe.clone()),
            (
                "BPF statistics".into(),
                "bpf(BPF_ENABLE_STATS, BPF_STATS_RUN_TIME) held during part 3; \
                 run_time_ns / run_cnt from /proc/<probe pid>/fdinfo"
                    .into(),
            ),
            (
                "hooks in isolation".into(),
                "target/release/examples/bench_agent hooks --repeat 200000 [--stats]".into(),
            ),
            (
                "agent timings".into(),
                format!(
                    "target/release/examples/bench_agent timing --peers {} --reps 15 --budget-secs 60 --max-peers {TIMING_SLOTS}",
                    join(timed)
                ),
            ),
            (
                "agent with N peers".into(),
                format!(
                    "{probe} --max-peers {MAX_PEERS_SLOTS} (on gladius), then \
                     target/release/examples/bench_agent fill --pid <probe pid> --peers N --every-ms 1000"
                ),
            ),
        ];
        Settings {
            pairs: a.pairs,
            seconds: a.seconds,
            omit: a.omit,
            hook_runs: a.hook_runs,
            peers: peers.to_vec(),
            idle_secs: a.idle_secs,
            agent_secs: a.agent_secs,
            max_peers: MAX_PEERS_SLOTS,
            timing_peers: timed.to_vec(),
            timing_max_peers: TIMING_SLOTS,
            control: a.control,
            reference_pairs: a.reference_pairs,
            commands,
        }
    }

    fn start_server(&self) -> Result<Killed> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server().pod_ns, "iperf3", "-s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the iperf3 server")?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Killed(child))
    }

    /// One iperf3 client run (retried once: the server may still be
    /// finishing the previous test).
    fn iperf(&self, w: Workload) -> Result<String> {
        let args = self.iperf_args(w);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut last = None;
        for _ in 0..2 {
            match self.lab.sh(&self.client().pod_ns, &args) {
                Ok(out) => return Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
                Err(e) => {
                    progress(format_args!("iperf3 failed, retrying: {e:#}"));
                    last = Some(e);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("iperf3 did not run")))
    }

    /// One measured run; `agents` are sampled over exactly the run.
    fn measured<T>(
        &self,
        w: Workload,
        agents: &[Agent],
        parse: fn(&str) -> Result<T>,
        r: &mut Results,
    ) -> Result<Run<T>> {
        let load = procfs::loadavg()[0];
        r.load.push(load);
        let marks = agents.iter().map(Agent::mark).collect::<Result<Vec<_>>>()?;
        let out = self.iperf(w)?;
        let samples = agents
            .iter()
            .zip(&marks)
            .map(|(a, m)| a.sample(m))
            .collect::<Result<Vec<_>>>()?;
        Ok(Run {
            result: parse(&out).with_context(|| format!("{} run", w.label()))?,
            load,
            agents: samples,
        })
    }

    fn start_agents(&self, extra: &[&str]) -> Result<Vec<Agent>> {
        let agents = [self.server(), self.client()]
            .into_iter()
            .map(|n| Agent::start(self.lab, n, &self.bins.probe, extra))
            .collect::<Result<Vec<_>>>()?;
        // Past start-up (program loads, first discovery) before measuring.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(agents)
    }

    fn stop_agents(agents: Vec<Agent>) -> Result<()> {
        for a in agents {
            a.stop(Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// One side of a pair: no probe, the probes on both nodes, or (the
    /// control) no probe after the same wait as when starting them.
    fn side<T>(
        &self,
        w: Workload,
        side: Side,
        parse: fn(&str) -> Result<T>,
        r: &mut Results,
    ) -> Result<Run<T>> {
        match side {
            Side::Off => self.measured(w, &[], parse, r),
            Side::Control => {
                std::thread::sleep(CONTROL_WAIT);
                self.measured(w, &[], parse, r)
            }
            Side::On => {
                let agents = self.start_agents(&[])?;
                let run = self.measured(w, &agents, parse, r)?;
                Self::stop_agents(agents)?;
                Ok(run)
            }
            Side::Reference => {
                let refs = [self.server(), self.client()]
                    .into_iter()
                    .map(|n| Reference::start(self.lab, n, &self.bins.helper, &REFERENCE_IFACES))
                    .collect::<Result<Vec<_>>>()?;
                // The same wait as for the probes.
                std::thread::sleep(Duration::from_millis(1500));
                let run = self.measured(w, &[], parse, r)?;
                drop(refs);
                Ok(run)
            }
        }
    }

    /// One pair: off and `second`, in that order or (`flip`) the other.
    fn pair<T>(
        &self,
        w: Workload,
        second: Side,
        flip: bool,
        parse: fn(&str) -> Result<T>,
        r: &mut Results,
    ) -> Result<Pair<T>> {
        if flip {
            let on = self.side(w, second, parse, r)?;
            let off = self.side(w, Side::Off, parse, r)?;
            Ok(Pair { off, on })
        } else {
            let off = self.side(w, Side::Off, parse, r)?;
            let on = self.side(w, second, parse, r)?;
            Ok(Pair { off, on })
        }
    }

    /// Parts 1 and 2: interleaved off/on pairs of each load, then (with
    /// `--control`) as many off/off pairs.
    fn network(&self, r: &mut Results) -> Result<()> {
        let _server = self.start_server()?;
        progress(format_args!("warming up"));
        self.iperf(Workload::Tcp)?;
        self.iperf(Workload::Udp64)?;
        let rounds = [(Side::On, "pair")]
            .into_iter()
            .chain(self.args.control.then_some((Side::Control, "control pair")))
            .chain(
                self.args
                    .reference_pairs
                    .then_some((Side::Reference, "reference pair")),
            );
        for (second, what) in rounds {
            for i in 0..self.args.pairs {
                // Every other pair runs its second side first (off, on,
                // on, off, ...): a drift of the machine, or a bias of going
                // second, then falls on both sides alike.
                let flip = i % 2 == 1;
                let tcp = self.pair(Workload::Tcp, second, flip, iperf::parse_tcp, r)?;
                let udp = self.pair(Workload::Udp64, second, flip, iperf::parse_udp, r)?;
                progress(format_args!(
                    "{what} {}/{}: TCP {:.2} -> {:.2} Gbit/s ({:.3}), UDP {:.1} -> {:.1} kpps ({:.3}), load {:.1}",
                    i + 1,
                    self.args.pairs,
                    results::tcp_gbits(&tcp.off.result),
                    results::tcp_gbits(&tcp.on.result),
                    tcp.ratio(results::tcp_gbits),
                    results::udp_kpps(&udp.off.result),
                    results::udp_kpps(&udp.on.result),
                    udp.ratio(results::udp_kpps),
                    procfs::loadavg()[0],
                ));
                match second {
                    Side::On => {
                        r.tcp.push(tcp);
                        r.udp.push(udp);
                    }
                    Side::Reference => {
                        r.reference_tcp.push(tcp);
                        r.reference_udp.push(udp);
                    }
                    _ => {
                        r.control_tcp.push(tcp);
                        r.control_udp.push(udp);
                    }
                }
            }
        }
        Ok(())
    }

    /// Part 3: per-program cost with the kernel's BPF statistics, then each
    /// classifier in isolation.
    fn hook_costs(&self, r: &mut Results) -> Result<()> {
        let _server = self.start_server()?;
        {
            // Statistics stay on while this descriptor is open, and go back
            // to what they were when it closes (also if we die).
            let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .context("enabling the kernel's BPF statistics")?;
            let agents = self.start_agents(&[])?;
            // The do-nothing reference next to ours on both uplinks: the
            // same packets, run for run.
            let refs = [self.server(), self.client()]
                .into_iter()
                .map(|n| Reference::start(self.lab, n, &self.bins.helper, &[UPLINK_IFACE]))
                .collect::<Result<Vec<_>>>()?;
            let pids: Vec<u32> = agents
                .iter()
                .map(Agent::pid)
                .chain(refs.iter().map(Reference::pid))
                .collect();
            let ids: Vec<u32> = pids
                .iter()
                .map(|p| procfs::process_programs(*p))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flat_map(std::collections::BTreeMap::into_keys)
                .collect();
            let names = agent::program_names(ids);
            let totals = |pids: &[u32]| -> Result<Vec<ProgCost>> {
                let mut by_name: std::collections::BTreeMap<String, ProgCost> = Default::default();
                for pid in pids {
                    for (id, p) in procfs::process_programs(*pid)? {
                        let name = names
                            .get(&id)
                            .cloned()
                            .unwrap_or_else(|| format!("prog{id}"));
                        let e = by_name.entry(name.clone()).or_insert(ProgCost {
                            name,
                            runs: 0,
                            run_time_ns: 0,
                        });
                        e.runs += p.run_cnt;
                        e.run_time_ns += p.run_time_ns;
                    }
                }
                Ok(by_name.into_values().collect())
            };
            for w in [Workload::Tcp, Workload::Udp64] {
                for i in 0..self.args.hook_runs {
                    let before = totals(&pids)?;
                    let t0 = Instant::now();
                    self.iperf(w)?;
                    let seconds = t0.elapsed().as_secs_f64();
                    let after = totals(&pids)?;
                    let progs: Vec<ProgCost> = after
                        .iter()
                        .map(|a| {
                            let b = before.iter().find(|b| b.name == a.name);
                            ProgCost {
                                name: a.name.clone(),
                                runs: a.runs - b.map_or(0, |b| b.runs),
                                run_time_ns: a.run_time_ns - b.map_or(0, |b| b.run_time_ns),
                            }
                        })
                        .collect();
                    progress(format_args!(
                        "hook costs, {} run {}/{}: {}",
                        w.label(),
                        i + 1,
                        self.args.hook_runs,
                        progs
                            .iter()
                            .map(|p| format!(
                                "{} {:.0} ns",
                                p.name,
                                p.ns_per_run().unwrap_or(f64::NAN)
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    r.hooks.push(HookRun {
                        workload: w,
                        seconds,
                        progs,
                    });
                }
            }
            drop(refs);
            Self::stop_agents(agents)?;
        }
        // Each classifier alone, then again with the statistics on: what
        // they add to a run, to read the lab's figures above with.
        let micro = |extra: &[&str]| -> Result<Vec<(String, String, f64)>> {
            let mut args = vec!["hooks", "--repeat", "200000"];
            args.extend_from_slice(extra);
            let out = helper(&self.bins.helper, &args)?;
            let v: serde_json::Value =
                serde_json::from_str(out.trim()).context("bench_agent hooks")?;
            let mut found = Vec::new();
            for (program, frames) in v["ns_per_run"].as_object().into_iter().flatten() {
                for (frame, ns) in frames.as_object().into_iter().flatten() {
                    found.push((
                        program.clone(),
                        frame.clone(),
                        ns.as_f64().unwrap_or(f64::NAN),
                    ));
                }
            }
            Ok(found)
        };
        let with_stats = micro(&["--stats"])?;
        for (program, frame, ns) in micro(&[])? {
            let ns_with_stats = with_stats
                .iter()
                .find(|(p, f, _)| *p == program && *f == frame)
                .map(|(_, _, ns)| *ns);
            r.hook_micro.push(MicroCost {
                program,
                frame,
                ns,
                ns_with_stats,
            });
        }
        Ok(())
    }

    /// Part 4: the agent idle, its timings, and the running agent with N peers.
    fn agent(&self, r: &mut Results, peers: &[u32], timed: &[u32]) -> Result<()> {
        progress(format_args!("agent: idle for {} s", self.args.idle_secs));
        let agents = self.start_agents(&[])?;
        let marks = agents.iter().map(Agent::mark).collect::<Result<Vec<_>>>()?;
        std::thread::sleep(Duration::from_secs(u64::from(self.args.idle_secs)));
        r.agent_idle = agents
            .iter()
            .zip(&marks)
            .map(|(a, m)| a.sample(m))
            .collect::<Result<Vec<_>>>()?;
        Self::stop_agents(agents)?;

        progress(format_args!(
            "agent: read + sum + diagnose with {} peers",
            join(timed)
        ));
        let out = helper(
            &self.bins.helper,
            &[
                "timing",
                "--peers",
                &join(timed),
                "--reps",
                "15",
                "--budget-secs",
                "60",
                "--max-peers",
                &TIMING_SLOTS.to_string(),
            ],
        )?;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).context("bench_agent timing")?;
            let list = |k: &str| -> Vec<f64> {
                v[k].as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_f64)
                    .collect()
            };
            r.agent_timing.push(Timing {
                peers: v["peers"].as_u64().unwrap_or(0) as u32,
                map_entries: v["map_entries"].as_u64().unwrap_or(0),
                snapshot_us: list("snapshot_us"),
                since_us: list("since_us"),
                diagnose_us: list("diagnose_us"),
                total_us: list("total_us"),
                serious_findings: v["serious_findings"].as_u64().unwrap_or(0),
            });
        }

        let node = self.server();
        let mut programmed = 0;
        for &n in peers {
            progress(format_args!("agent: watch with {n} peers on {}", node.name));
            let (ip, bridge) = synthetic::flannel_scripts(&node.overlay, programmed, n);
            self.lab
                .batch(&node.ns, &ip, &bridge)
                .with_context(|| format!("programming {n} synthetic peers on {}", node.name))?;
            programmed = n;
            let slots = MAX_PEERS_SLOTS.to_string();
            let a = Agent::start(self.lab, node, &self.bins.probe, &["--max-peers", &slots])?;
            // Traffic from every peer in every window: the counters rise
            // every second until the filler is dropped.
            let _filler = Killed(
                Command::new(&self.bins.helper)
                    .args(["fill", "--pid", &a.pid().to_string()])
                    .args(["--peers", &n.to_string(), "--every-ms", "1000"])
                    .stdin(Stdio::null())
                    .spawn()
                    .context("starting bench_agent fill")?,
            );
            // Two refreshes after the fill: one of them saw every peer.
            let slow = Duration::from_secs(900);
            a.wait_ticks(a.ticks().len(), 2, slow)?;
            let from = a.ticks().len();
            let m = a.mark()?;
            std::thread::sleep(Duration::from_secs(u64::from(self.args.agent_secs)));
            // At least one whole refresh inside the measurement.
            a.wait_ticks(from, 1, slow)?;
            let sample: AgentSample = a.sample(&m)?;
            let ticks = a.ticks();
            let gaps: Vec<f64> = ticks[from - 1..]
                .windows(2)
                .map(|w| (w[1] - w[0]).as_secs_f64())
                .collect();
            let refresh_secs = stats::median(&gaps);
            progress(format_args!(
                "agent with {n} peers: {:.1} % CPU, VmHWM {} kB, a refresh every {refresh_secs:.2} s",
                sample.cpu_percent, sample.vm_hwm_kb
            ));
            r.agent_peers.push(AgentPeers {
                peers: n,
                sample,
                refresh_secs,
            });
            // A refresh in progress finishes before the signal is seen.
            a.stop(slow)?;
        }
        // Part 5 measures serve on this node "quiet": without the synthetic
        // peers' routes, neighbours and FDB entries, which its netlink dumps
        // would otherwise read every second.
        let (ip, bridge) = synthetic::unprogram_scripts(&node.overlay, 0, programmed);
        self.lab
            .batch(&node.ns, &ip, &bridge)
            .with_context(|| format!("removing {programmed} synthetic peers from {}", node.name))?;
        Ok(())
    }
}

fn join(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Runs the bench_agent example; returns its stdout.
fn helper(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed with {}",
            bin.display(),
            args.join(" "),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn machine() -> Machine {
    let cpuinfo = procfs::read_or("/proc/cpuinfo", "");
    let mem_kb = procfs::status_kb(&procfs::read_or("/proc/meminfo", ""), "MemTotal").unwrap_or(0);
    let ws = workspace();
    let mut commit =
        first_line(
            Command::new("git")
                .current_dir(&ws)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let dirty = !first_line(
        Command::new("git")
            .current_dir(&ws)
            .args(["status", "--porcelain"]),
    )
    .is_empty();
    if dirty {
        commit.push_str("+dirty");
    }
    Machine {
        cpu: procfs::parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        kernel: procfs::read_or("/proc/sys/kernel/osrelease", "unknown"),
        memory_mb: mem_kb / 1024,
        iperf3: first_line(Command::new("iperf3").arg("--version")),
        commit,
        date: first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        minutes: 0.0,
        load_start: procfs::loadavg(),
        load_end: [0.0; 3],
    }
}

/// BENCHMARKS.md, and next to it bench/results.json and the plot's data,
/// script and PNG; bench/analysis.md is read from the workspace.
fn write_outputs(r: &Results, ws: &Path, out: &Path) -> Result<()> {
    let dir = out.parent().unwrap_or(ws).to_path_buf();
    std::fs::create_dir_all(dir.join("bench")).context("creating bench/")?;
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write(
        render::RESULTS_JSON,
        &(serde_json::to_string_pretty(r)? + "\n"),
    )?;
    write(render::PLOT_DATA, &render::plot_data(r))?;
    let terms = Command::new("gnuplot")
        .args(["-e", "set terminal"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    let terminal = if terms.contains("pngcairo") {
        "pngcairo"
    } else {
        "png"
    };
    write(render::PLOT_SCRIPT, &render::plot_script(r, terminal))?;
    crate::run(
        Command::new("gnuplot")
            .current_dir(&dir)
            .arg(render::PLOT_SCRIPT),
    )
    .context("drawing the plot")?;
    let analysis = std::fs::read_to_string(ws.join("bench/analysis.md")).ok();
    let baseline: Option<Results> = std::fs::read_to_string(dir.join(render::BASELINE_JSON))
        .ok()
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .with_context(|| format!("parsing {}", render::BASELINE_JSON))?;
    let md = render::render(r, analysis.as_deref(), baseline.as_ref());
    std::fs::write(out, md).with_context(|| format!("writing {}", out.display()))?;
    progress(format_args!(
        "wrote {} and, next to it, {} and {}",
        out.display(),
        render::PLOT_PNG,
        render::RESULTS_JSON
    ));
    for v in render::verdicts(r) {
        progress(format_args!(
            "{}: {} (target {}) {}",
            v.figure,
            v.measured,
            v.target,
            match v.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "not measured",
            }
        ));
    }
    Ok(())
}
