//! Part 5: what pod churn costs the agent. `flannel-probe serve` on gladius
//! with no churn, then with veth pairs created and deleted by the hundred
//! per second in its namespace: its CPU (utime + stime from /proc) and its
//! readings (`samples` of `GET /counters`) over each stretch.
use std::{
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use flannel_probe_tests::{
    lab::{Lab, LabNode, churn::Churn},
    support::{http_get_in, line_channel},
};

use super::{procfs, results::ChurnCost};

/// The agent's reading interval in this part.
pub(super) const INTERVAL_SECS: f64 = 1.0;

/// `serve` in a lab node, killed and reaped when dropped.
struct Serve {
    child: Child,
    pid: u32,
    addr: String,
    ns: String,
}

impl Serve {
    fn start(lab: &Lab, node: &LabNode, bin: &Path) -> Result<Serve> {
        let addr = format!("{}:9465", node.ip);
        let mut cmd = lab.node_command(node, bin);
        cmd.args(["serve", "--listen", &addr, "--interval", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let err = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let rx = line_channel(err);
        let pid = child.id();
        let serve = Serve {
            child,
            pid,
            addr,
            ns: node.ns.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("serving on") => return Ok(serve),
                Ok(_) => {}
                Err(_) => bail!("flannel-probe serve on {} did not start in 60 s", node.name),
            }
        }
    }

    fn samples(&self) -> Result<u64> {
        let (code, body) = http_get_in(&self.ns, &self.addr, "/counters", Duration::from_secs(10))?;
        if code != 200 {
            bail!("GET /counters: HTTP {code}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body).context("the counters JSON")?;
        v["samples"]
            .as_u64()
            .ok_or_else(|| anyhow!("GET /counters has no samples"))
    }

    /// (CPU % of one core, readings) over `work`.
    fn measure(&self, work: impl FnOnce() -> Result<()>) -> Result<(f64, u64, f64)> {
        let (t0, ticks0, s0) = (
            Instant::now(),
            procfs::cpu_ticks(self.pid)?,
            self.samples()?,
        );
        work()?;
        let ticks = procfs::cpu_ticks(self.pid)?.saturating_sub(ticks0);
        let wall = t0.elapsed().as_secs_f64();
        let samples = self.samples()?.saturating_sub(s0);
        Ok((
            100.0 * ticks as f64 / procfs::clk_tck() / wall.max(1e-9),
            samples,
            wall,
        ))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Quiet for `secs`, then `per_sec` veth pairs a second for `secs`.
pub(super) fn measure(
    lab: &Lab,
    node: &LabNode,
    bin: &Path,
    per_sec: u32,
    secs: u32,
) -> Result<ChurnCost> {
    let serve = Serve::start(lab, node, bin)?;
    // Past start-up (loading, attaching, the first readings).
    std::thread::sleep(Duration::from_secs(2));
    let stretch = Duration::from_secs(u64::from(secs));
    let (quiet_cpu, quiet_samples, quiet_secs) = serve.measure(|| {
        std::thread::sleep(stretch);
        Ok(())
    })?;
    let mut churned = None;
    let (churn_cpu, churn_samples, churn_secs) = serve.measure(|| {
        churned = Some(Churn::start(&node.ns, per_sec, stretch).finish()?);
        Ok(())
    })?;
    let churned = churned.unwrap_or_default();
    Ok(ChurnCost {
        node: node.name.clone(),
        per_sec_asked: per_sec,
        pairs: churned.pairs,
        pairs_per_sec: churned.pairs_per_sec(),
        interval_secs: INTERVAL_SECS,
        quiet_secs,
        quiet_cpu_percent: quiet_cpu,
        quiet_samples,
        churn_secs,
        churn_cpu_percent: churn_cpu,
        churn_samples,
    })
}
