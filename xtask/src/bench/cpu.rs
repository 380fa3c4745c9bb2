//! Part 6: the CPU time per packet at a fixed offered rate, probe off and
//! on, interleaved (issue 16).
//!
//! A throughput ratio at saturation hides a small cost in the machine's
//! noise: the sender simply runs a little slower. At a fixed rate below
//! saturation the same packets cross the same path either way, and what
//! the probe adds shows as CPU time. Whole-machine counters (`/proc/stat`)
//! were tried first and drowned in whatever else the machine ran (26-37 us
//! a packet with builds beside it), and iperf3's `-b` pacing spins in user
//! space (17 us a datagram). So the load is `pace` (tests/examples), which
//! sleeps between sends, and only the time of what carries the packets is
//! counted: the sender and its sink, each a child of this run reaped with
//! wait4(2) (rusage: the kernel's exact runtime), and the ksoftirqd threads
//! (`/proc/PID/schedstat`, ns). On veth the whole path runs in softirq on the sending
//! CPU: in the sender's (or, for ACKs, the receiver's) own time when it is
//! processed at bh-enable, or in ksoftirqd when deferred; our programs run
//! inside it. Divided by the packets the receiving node's uplink counted
//! (rx + tx skbs, as the kernel counts them there). The agents' own time
//! (their map reads, not per packet) is not in it.
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use super::{
    Bench, Side, progress,
    results::{CpuPair, CpuRun, Results, Workload},
    stats,
};

/// The receiving node's uplink: every VXLAN packet of the pair of nodes
/// crosses it.
const COUNTED_IFACE: &str = super::UPLINK_IFACE;
/// The sink's port in gladius's pod.
const PORT: &str = "5301";

/// CPU time of a reaped child (user + system, every thread), in ns.
fn reap(child: &mut Child, timeout: Duration) -> Result<u64> {
    let pid = libc::pid_t::try_from(child.id()).context("child pid")?;
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own unreaped child; the pointers are live.
        let r = unsafe { libc::wait4(pid, &raw mut status, libc::WNOHANG, &raw mut ru) };
        if r == pid {
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                bail!("pid {pid} failed with wait status {status:#x}");
            }
            let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
            return Ok((us(ru.ru_utime) + us(ru.ru_stime)) * 1000);
        }
        if r < 0 {
            bail!("wait4({pid}): {}", std::io::Error::last_os_error());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("pid {pid} did not finish in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runtime of every ksoftirqd thread so far, in ns (`/proc/PID/schedstat`'s
/// first field).
fn ksoftirqd_ns() -> Result<u64> {
    let mut sum = 0;
    let mut found = false;
    for e in std::fs::read_dir("/proc").context("reading /proc")? {
        let dir = e?.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.starts_with("ksoftirqd/") {
            continue;
        }
        let text = std::fs::read_to_string(dir.join("schedstat"))
            .with_context(|| format!("reading {}/schedstat", dir.display()))?;
        sum += parse_schedstat(&text)
            .ok_or_else(|| anyhow!("cannot parse {}/schedstat", dir.display()))?;
        found = true;
    }
    ensure!(found, "no ksoftirqd thread in /proc");
    Ok(sum)
}

/// The runtime (ns) of `/proc/PID/schedstat`: "runtime wait timeslices".
pub(super) fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

impl Bench<'_> {
    /// The sink's and the sender's command lines at the part's fixed rate.
    pub(super) fn rated_args(&self, w: Workload) -> (Vec<String>, Vec<String>) {
        let a = self.args;
        let pace = self.bins.pace.display().to_string();
        let to = format!("{}:{PORT}", self.server().pod_ip);
        let secs = a.cpu_seconds.to_string();
        match w {
            Workload::Udp64 => (
                vec![
                    pace.clone(),
                    "udp-sink".into(),
                    PORT.into(),
                    (a.cpu_seconds + 1).to_string(),
                ],
                vec![
                    pace,
                    "udp-send".into(),
                    to,
                    (u64::from(a.cpu_udp_kpps) * 1000).to_string(),
                    secs,
                ],
            ),
            Workload::Tcp => (
                vec![pace.clone(), "tcp-sink".into(), PORT.into()],
                vec![
                    pace,
                    "tcp-send".into(),
                    to,
                    a.cpu_tcp_mbits.to_string(),
                    secs,
                ],
            ),
        }
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

    /// One run at the fixed rate: the sink, then the sender, both reaped
    /// here for their CPU time.
    fn rated_run(&self, w: Workload) -> Result<CpuRun> {
        let spawn = |ns: &str, args: &[String]| -> Result<Child> {
            Command::new("ip")
                .args(["netns", "exec", ns])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting {} in {ns}", args.join(" ")))
        };
        let load = super::procfs::loadavg()[0];
        let (sink, send) = self.rated_args(w);
        // `ip netns exec` execs the program in place: the child is it.
        let mut server = spawn(&self.server().pod_ns, &sink)?;
        std::thread::sleep(Duration::from_millis(300));
        let (p0, k0, t0) = (self.uplink_packets()?, ksoftirqd_ns()?, Instant::now());
        let mut client = spawn(&self.client().pod_ns, &send)?;
        let limit = Duration::from_secs(u64::from(self.args.cpu_seconds) + 30);
        let client_ns = reap(&mut client, limit);
        let server_ns = reap(&mut server, Duration::from_secs(10));
        let (client_ns, server_ns) = (client_ns?, server_ns?);
        let (k1, p1, seconds) = (
            ksoftirqd_ns()?,
            self.uplink_packets()?,
            t0.elapsed().as_secs_f64(),
        );
        let packets = p1.saturating_sub(p0);
        ensure!(
            packets > 0,
            "no packet crossed {COUNTED_IFACE} during a run"
        );
        Ok(CpuRun {
            packets,
            seconds,
            client_ns,
            server_ns,
            ksoftirqd_ns: k1.saturating_sub(k0),
            load,
        })
    }

    fn rated_side(&self, w: Workload, side: Side) -> Result<CpuRun> {
        if side == Side::Off {
            return self.rated_run(w);
        }
        let agents = self.start_agents(&[])?;
        let run = self.rated_run(w);
        Self::stop_agents(agents)?;
        run
    }

    /// Part 6: `cpu_pairs` interleaved off/on pairs of each load at its
    /// fixed rate.
    pub(super) fn cpu(&self, r: &mut Results) -> Result<()> {
        progress(format_args!(
            "cpu per packet: {} pairs of UDP at {} kpps and TCP at {} Mbit/s, {} s each",
            self.args.cpu_pairs,
            self.args.cpu_udp_kpps,
            self.args.cpu_tcp_mbits,
            self.args.cpu_seconds
        ));
        // Warm-up: ARP, FDB, the server's first accept.
        self.rated_run(Workload::Udp64)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_runtime() {
        assert_eq!(
            parse_schedstat("576490416 4650874987 13133\n"),
            Some(576_490_416)
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn a_failing_child_is_an_error_and_its_time_is_counted() {
        let mut ok = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let ns = reap(&mut ok, Duration::from_secs(30)).unwrap();
        assert!(ns > 0, "a busy loop used no CPU time");
        let mut bad = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let e = reap(&mut bad, Duration::from_secs(30)).unwrap_err();
        assert!(e.to_string().contains("failed with wait status"), "{e}");
    }
}
