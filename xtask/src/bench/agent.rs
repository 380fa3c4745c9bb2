//! The probe as an operator runs it (`flannel-probe watch --plain`) inside
//! a lab node, watched from the outside through /proc.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use flannel_probe_tests::{
    lab::{Lab, LabNode},
    support::line_channel,
};

use super::{procfs, results::AgentSample};

/// What the probe logs once both the uplink and the overlay device are watched.
const READY: &str = "watching the overlay device";

/// The arguments every agent gets.
pub(super) const WATCH_ARGS: [&str; 4] = ["watch", "--plain", "--interval", "1s"];

pub(super) struct Agent {
    pub node: String,
    child: Child,
    pid: u32,
    stderr: mpsc::Receiver<String>,
    /// When each table (one per refresh) started coming out.
    ticks: Arc<Mutex<Vec<Instant>>>,
}

/// A point in an agent's life: wall clock and CPU ticks used so far.
pub(super) struct Mark {
    at: Instant,
    ticks: u64,
}

impl Agent {
    /// Starts the probe in `node`'s namespace and waits until it watches
    /// the uplink and the overlay device.
    pub(super) fn start(lab: &Lab, node: &LabNode, bin: &Path, extra: &[&str]) -> Result<Agent> {
        let mut cmd = lab.node_command(node, bin);
        cmd.args(WATCH_ARGS)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let err = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        // Each refresh prints "--- <time> ---" and a table: count them,
        // drop the rest.
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&ticks);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("--- ")
                    && let Ok(mut t) = seen.lock()
                {
                    t.push(Instant::now());
                }
            }
        });
        let rx = line_channel(err);
        // `ip netns exec`, `unshare` and `sh -c 'exec ...'` all exec: the
        // child's pid ends up being the probe's.
        let pid = child.id();
        let mut agent = Agent {
            node: node.name.clone(),
            child,
            pid,
            stderr: rx,
            ticks,
        };
        agent.wait_ready(Duration::from_secs(60))?;
        let comm = procfs::read_or(format!("/proc/{pid}/comm"), "?");
        if comm != "flannel-probe" {
            bail!("pid {pid} is {comm:?}, not flannel-probe");
        }
        Ok(agent)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(READY) => return Ok(()),
                Ok(line) => seen.push(line),
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!(
                        "the probe on {} did not get ready within {timeout:?} (exit: {status:?}); stderr:\n{}",
                        self.node,
                        seen.join("\n")
                    );
                }
            }
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// When each refresh so far printed its table.
    pub(super) fn ticks(&self) -> Vec<Instant> {
        self.ticks.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits until `n` more refreshes than `after` have been printed.
    pub(super) fn wait_ticks(&self, after: usize, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.ticks().len() < after + n {
            if Instant::now() > deadline {
                bail!(
                    "the probe on {} printed {} refreshes in {timeout:?}, not {n}",
                    self.node,
                    self.ticks().len() - after
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub(super) fn mark(&self) -> Result<Mark> {
        Ok(Mark {
            at: Instant::now(),
            ticks: procfs::cpu_ticks(self.pid)?,
        })
    }

    /// CPU share since `mark` and the peak RSS so far.
    pub(super) fn sample(&self, since: &Mark) -> Result<AgentSample> {
        let ticks = procfs::cpu_ticks(self.pid)?.saturating_sub(since.ticks);
        let wall = since.at.elapsed().as_secs_f64();
        Ok(AgentSample {
            node: self.node.clone(),
            cpu_percent: 100.0 * ticks as f64 / procfs::clk_tck() / wall.max(1e-9),
            vm_hwm_kb: procfs::status_field_kb(self.pid, "VmHWM")?,
            vm_rss_kb: procfs::status_field_kb(self.pid, "VmRSS")?,
        })
    }

    /// SIGTERM, and a clean exit (status 0) within `timeout`.
    pub(super) fn stop(mut self, timeout: Duration) -> Result<()> {
        let pid = libc::pid_t::try_from(self.pid)?;
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    let lines: Vec<String> = self.stderr.try_iter().collect();
                    bail!(
                        "the probe on {} exited with {status}: {}",
                        self.node,
                        lines.join("\n")
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the probe on {} ignored SIGTERM for {timeout:?}", self.node);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // After `stop` this finds the child reaped, and does nothing.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The do-nothing reference program (`bench_agent reference`) attached next
/// to the probe's on a node's uplink: the floor of what the kernel's
/// statistics report per run there.
pub(super) struct Reference {
    /// Its tcx links are file descriptors: they go with the process.
    _child: super::Killed,
    pid: u32,
}

impl Reference {
    pub(super) fn start(
        lab: &Lab,
        node: &LabNode,
        helper: &Path,
        ifaces: &[&str],
    ) -> Result<Reference> {
        let mut cmd = lab.node_command(node, helper);
        cmd.arg("reference");
        for i in ifaces {
            cmd.args(["--iface", i]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        // One line once attached; EOF if it failed.
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "the reference program did not attach on {}: {}",
                node.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let pid = child.id();
        Ok(Reference {
            _child: super::Killed(child),
            pid,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }
}

/// Names of BPF programs by id (`BPF_OBJ_GET_INFO_BY_FD` through aya).
pub(super) fn program_names(ids: impl IntoIterator<Item = u32>) -> BTreeMap<u32, String> {
    let wanted: std::collections::BTreeSet<u32> = ids.into_iter().collect();
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| wanted.contains(&p.id()))
        .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_string()))
        .collect()
}
