//! Part 6: the CPU time per packet at a fixed offered rate, probe off and
//! on, interleaved (issue 16).
//!
//! A throughput ratio at saturation hides a small cost in the machine's
//! noise: the sender simply runs a little slower. At a fixed rate below
//! saturation the same packets cross the same path either way, and what
//! the probe adds shows as kernel CPU time. Per run: the machine's system +
//! irq + softirq ticks (`/proc/stat`, every CPU: the lab's namespaces share
//! them) minus the probes' own system time (their map reads are not per
//! packet), over the packets the receiving node's uplink counted (both
//! directions, as the kernel counts skbs there).
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};

use super::{
    Bench, Side, procfs, progress,
    results::{CpuPair, CpuRun, Results, Workload},
    stats,
};

/// The receiving node's uplink: every VXLAN packet of the pair of nodes
/// crosses it.
const COUNTED_IFACE: &str = super::UPLINK_IFACE;

impl Bench<'_> {
    /// The iperf3 client's arguments at the part's fixed rate.
    pub(super) fn rated_args(&self, w: Workload) -> Vec<String> {
        let a = self.args;
        let mut v: Vec<String> = [
            "iperf3",
            "-c",
            &self.server().pod_ip.to_string(),
            "-J",
            "-t",
            &a.cpu_seconds.to_string(),
        ]
        .map(String::from)
        .to_vec();
        match w {
            // iperf3's -b is payload bits per second: 64-byte datagrams.
            Workload::Udp64 => v.extend([
                "-u".into(),
                "-l".into(),
                "64".into(),
                "-b".into(),
                format!("{}", u64::from(a.cpu_udp_kpps) * 1000 * 64 * 8),
            ]),
            Workload::Tcp => v.extend(["-b".into(), format!("{}M", a.cpu_tcp_mbits)]),
        }
        v
    }

    /// Packets the node's uplink received and sent so far.
    fn uplink_packets(&self) -> Result<u64> {
        let node = self.server();
        let mut sum = 0;
        for dir in ["rx", "tx"] {
            let path = format!("/sys/class/net/{COUNTED_IFACE}/statistics/{dir}_packets");
            let out = self.lab.sh(&node.ns, &["cat", &path])?;
            sum += String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{path} in {}", node.ns))?;
        }
        Ok(sum)
    }

    /// One run at the fixed rate; `probes` are the agents' pids (their own
    /// system time is taken out).
    fn rated_run(&self, w: Workload, probes: &[u32]) -> Result<CpuRun> {
        let args = self.rated_args(w);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let load = procfs::loadavg()[0];
        let probe_sys = |pids: &[u32]| -> Result<u64> {
            pids.iter()
                .map(|p| procfs::process_times(*p).map(|t| t.1))
                .sum()
        };
        let (p0, sys0, c0, t0) = (
            self.uplink_packets()?,
            probe_sys(probes)?,
            procfs::cpu_times()?,
            Instant::now(),
        );
        self.lab.sh(&self.client().pod_ns, &args)?;
        let (c1, sys1, p1, seconds) = (
            procfs::cpu_times()?,
            probe_sys(probes)?,
            self.uplink_packets()?,
            t0.elapsed().as_secs_f64(),
        );
        let cpu = c1.since(&c0);
        let packets = p1.saturating_sub(p0);
        ensure!(
            packets > 0,
            "no packet crossed {COUNTED_IFACE} during a run"
        );
        Ok(CpuRun {
            packets,
            seconds,
            cpu,
            probe_system_ticks: sys1.saturating_sub(sys0),
            ticks_per_sec: procfs::clk_tck(),
            load,
        })
    }

    fn rated_side(&self, w: Workload, side: Side) -> Result<CpuRun> {
        if side == Side::Off {
            return self.rated_run(w, &[]);
        }
        let agents = self.start_agents(&[])?;
        let pids: Vec<u32> = agents.iter().map(super::Agent::pid).collect();
        let run = self.rated_run(w, &pids);
        Self::stop_agents(agents)?;
        run
    }

    /// Part 6: `cpu_pairs` interleaved off/on pairs of each load at its
    /// fixed rate.
    pub(super) fn cpu(&self, r: &mut Results) -> Result<()> {
        let _server = self.start_server()?;
        progress(format_args!(
            "cpu per packet: {} pairs of UDP at {} kpps and TCP at {} Mbit/s, {} s each",
            self.args.cpu_pairs,
            self.args.cpu_udp_kpps,
            self.args.cpu_tcp_mbits,
            self.args.cpu_seconds
        ));
        // Warm-up: ARP, FDB, the server's first accept.
        self.rated_run(Workload::Udp64, &[])?;
        for i in 0..self.args.cpu_pairs {
            for w in [Workload::Udp64, Workload::Tcp] {
                let (off, on) = if i % 2 == 1 {
                    let on = self.rated_side(w, Side::On)?;
                    (self.rated_side(w, Side::Off)?, on)
                } else {
                    let off = self.rated_side(w, Side::Off)?;
                    (off, self.rated_side(w, Side::On)?)
                };
                progress(format_args!(
                    "cpu pair {}/{} {}: {:.0} -> {:.0} ns/packet ({} -> {} packets)",
                    i + 1,
                    self.args.cpu_pairs,
                    w.label(),
                    off.ns_per_packet(),
                    on.ns_per_packet(),
                    off.packets,
                    on.packets
                ));
                r.cpu.push(CpuPair {
                    workload: w,
                    offered: match w {
                        Workload::Udp64 => format!("{} kpps", self.args.cpu_udp_kpps),
                        Workload::Tcp => format!("{} Mbit/s", self.args.cpu_tcp_mbits),
                    },
                    off,
                    on,
                });
            }
        }
        for w in [Workload::Udp64, Workload::Tcp] {
            if let Some((m, lo, hi)) = stats::mean_ci95(&r.cpu_added_ns(w)) {
                progress(format_args!(
                    "cpu per packet, {}: the probe adds {m:.0} ns (95 % CI {lo:.0} to {hi:.0})",
                    w.label()
                ));
            }
        }
        Ok(())
    }
}
