//! Pod-to-pod traffic: pings across the overlay.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::netns::{self, describe};
use super::{IpFamily, Lab, LabNode};

/// What one ping run saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
}

impl PingStats {
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }

    /// Lost share in percent (0 when nothing was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        f64::from(self.lost()) * 100.0 / f64::from(self.transmitted)
    }

    /// Something was sent and every request got its reply.
    pub fn all_received(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

/// Pings running at the same time in `traffic` (each is a process).
const MAX_PARALLEL_PINGS: usize = 32;

/// Parses ping's summary line, e.g.
/// `3 packets transmitted, 2 received, +1 errors, 33.3333% packet loss, time 402ms`.
pub fn parse_ping_summary(stdout: &str) -> Option<PingStats> {
    let line = stdout.lines().find(|l| l.contains("packets transmitted"))?;
    let mut stats = PingStats::default();
    let mut seen = (false, false);
    for part in line.split(',') {
        let mut words = part.split_whitespace();
        let (Some(number), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        match what {
            "packets" => {
                stats.transmitted = number.parse().ok()?;
                seen.0 = true;
            }
            "received" => {
                stats.received = number.parse().ok()?;
                seen.1 = true;
            }
            _ => {}
        }
    }
    (seen.0 && seen.1).then_some(stats)
}

impl Lab {
    /// Pings `to` from `from`'s pod: `count` requests every `interval_secs`,
    /// waiting at most one second for the last reply. Loss is not an error;
    /// a ping that cannot run or prints no summary is.
    pub fn ping(
        &self,
        from: &LabNode,
        to: impl Into<IpAddr>,
        count: u32,
        interval_secs: f64,
    ) -> Result<PingStats> {
        Self::ping_with(from, to.into(), count, interval_secs, None, None)
    }

    /// `ping` run under SCHED_FIFO at `priority` (`chrt -f`): on a
    /// PREEMPT_RT kernel its sends and replies preempt ordinary tasks on
    /// the same CPU, also inside their softirq processing.
    pub fn ping_fifo(
        &self,
        from: &LabNode,
        to: impl Into<IpAddr>,
        count: u32,
        interval_secs: f64,
        priority: u8,
    ) -> Result<PingStats> {
        Self::ping_with(from, to.into(), count, interval_secs, None, Some(priority))
    }

    /// `ping` with `payload` bytes of ICMP data (`ping -s`); a payload of
    /// `spec.overlay_mtu() - 28` makes packets exactly the pod MTU.
    pub fn ping_size(
        &self,
        from: &LabNode,
        to: impl Into<IpAddr>,
        count: u32,
        interval_secs: f64,
        payload: u32,
    ) -> Result<PingStats> {
        Self::ping_with(from, to.into(), count, interval_secs, Some(payload), None)
    }

    /// `ping` (iputils picks ICMPv6 for an IPv6 address, as `ping -6`).
    fn ping_with(
        from: &LabNode,
        to: IpAddr,
        count: u32,
        interval_secs: f64,
        payload: Option<u32>,
        fifo: Option<u8>,
    ) -> Result<PingStats> {
        ensure!(
            (1..=100_000).contains(&count),
            "ping count {count} is out of range"
        );
        ensure!(
            interval_secs.is_finite() && (0.001..=60.0).contains(&interval_secs),
            "ping interval {interval_secs}s is out of range"
        );
        // The wait for a late reply stretches with the lab's time scale:
        // in an emulated guest a reply can take longer than a second.
        let wait = crate::support::time_scale();
        let (count_arg, interval_arg, to_arg, wait_arg) = (
            count.to_string(),
            interval_secs.to_string(),
            to.to_string(),
            wait.to_string(),
        );
        let size_arg = payload.map(|bytes| bytes.to_string());
        let mut args = vec![
            "netns",
            "exec",
            &from.pod_ns,
            "ping",
            "-n",
            "-q",
            "-c",
            &count_arg,
            "-i",
            &interval_arg,
            "-W",
            &wait_arg,
        ];
        if let Some(size) = &size_arg {
            args.extend(["-s", size.as_str()]);
        }
        args.push(&to_arg);
        // The run takes about count * interval plus the 1 s wait for the
        // last reply; the margin only matters if ping itself gets stuck.
        let timeout =
            Duration::from_secs_f64(f64::from(count) * interval_secs + 10.0 + f64::from(wait));
        let prio = fifo.map(|p| p.to_string());
        let (program, args) = match &prio {
            Some(p) => (
                "chrt",
                ["-f", p.as_str(), "ip"].into_iter().chain(args).collect(),
            ),
            None => ("ip", args),
        };
        let output = netns::run_with_timeout(program, &args, timeout)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        parse_ping_summary(&stdout).with_context(|| {
            format!(
                "`{}` printed no summary ({}): {} {}",
                describe(program, &args),
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
    }

    /// Pings every other node's pod from every node's pod, several pings
    /// at a time; returns `(from, to, stats)` in node order.
    pub fn traffic(
        &self,
        count: u32,
        interval_secs: f64,
    ) -> Result<Vec<(String, String, PingStats)>> {
        self.traffic_between(count, interval_secs, |node| Some(node.pod_addr()))
    }

    /// [`Lab::traffic`] to the pods' addresses of `family`, over the
    /// overlay of that family (nodes without one are left out).
    pub fn traffic_on(
        &self,
        family: IpFamily,
        count: u32,
        interval_secs: f64,
    ) -> Result<Vec<(String, String, PingStats)>> {
        self.traffic_between(count, interval_secs, |node| node.pod_ip_of(family))
    }

    fn traffic_between(
        &self,
        count: u32,
        interval_secs: f64,
        address: impl Fn(&LabNode) -> Option<IpAddr>,
    ) -> Result<Vec<(String, String, PingStats)>> {
        let pairs: Vec<(&LabNode, &LabNode, IpAddr)> = self
            .nodes
            .iter()
            .flat_map(|from| {
                let address = &address;
                self.nodes
                    .iter()
                    .filter(move |to| to.index != from.index)
                    .filter_map(move |to| Some((from, to, address(to)?)))
            })
            .collect();
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<PingStats>>>> =
            pairs.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..pairs.len().min(MAX_PARALLEL_PINGS) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((from, _, to)) = pairs.get(i) else {
                            break;
                        };
                        let result = self.ping(from, *to, count, interval_secs);
                        if let Ok(mut slot) = results[i].lock() {
                            *slot = Some(result);
                        }
                    }
                });
            }
        });
        pairs
            .iter()
            .zip(results)
            .map(|((from, to, _), slot)| {
                let result = slot
                    .into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Err(anyhow::anyhow!("ping thread panicked")));
                let stats =
                    result.with_context(|| format!("pinging {} from {}", to.name, from.name))?;
                Ok((from.name.clone(), to.name.clone(), stats))
            })
            .collect()
    }

    /// Waits until the first node's pod gets a reply from every other pod
    /// (one ping each, retried; on every address family of the lab), or
    /// fails after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let Some(first) = self.nodes.first() else {
            return Ok(());
        };
        let families = self.spec.family.ip_families();
        let targets = self.nodes.iter().skip(1).flat_map(|to| {
            families
                .iter()
                .filter_map(move |f| Some((to, to.pod_ip_of(*f)?)))
        });
        for (to, address) in targets {
            loop {
                if self.ping(first, address, 1, 0.2)?.all_received() {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "pod of {} gets no reply from the pod of {} after {timeout:?}",
                        first.name,
                        to.name
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_summaries() {
        let ok = "PING 10.42.0.54 (10.42.0.54) 56(84) bytes of data.\n\n--- 10.42.0.54 ping statistics ---\n\
                  3 packets transmitted, 3 received, 0% packet loss, time 402ms\n\
                  rtt min/avg/max/mdev = 0.1/0.2/0.3/0.04 ms\n";
        assert_eq!(
            parse_ping_summary(ok),
            Some(PingStats {
                transmitted: 3,
                received: 3
            })
        );
        let errors = "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4ms\n";
        let stats = parse_ping_summary(errors).expect("summary");
        assert_eq!((stats.transmitted, stats.received, stats.lost()), (5, 0, 5));
        assert_eq!(stats.loss_percent(), 100.0);
        assert_eq!(
            parse_ping_summary("connect: Network is unreachable\n"),
            None
        );
    }
}
