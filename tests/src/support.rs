//! What every kernel test needs before it starts.

/// True when the test can run (we are root). Under `CI=true` a missing
/// privilege fails the test instead: CI must never skip a kernel test.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "this test needs root (eBPF and network namespaces), and CI=true forbids skipping it"
        );
    }
    eprintln!("skipped: this test needs root (eBPF and network namespaces)");
    false
}

use std::{
    io::{BufRead as _, BufReader},
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

/// The flannel-probe binary under test: `FLANNEL_PROBE_BIN` (set by `cargo
/// xtask test`), else the workspace's debug build.
pub fn probe_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLANNEL_PROBE_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/flannel-probe");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        p.display()
    );
    p
}

/// Runs `f` on a thread that has entered network namespace `ns`, so
/// anything it opens (netlink sockets, ifindex lookups) is in that namespace.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path} failed"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow!(
                    "setns into {ns} failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("the thread in {ns} panicked"))?
    })
}

/// A flannel-probe process under test; killed if the test ends first.
pub struct ProbeRun {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: mpsc::Receiver<String>,
    pub stderr_lines: Vec<String>,
}

impl ProbeRun {
    /// Starts `cmd` (a probe command line) with stdout and stderr captured.
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?} failed"))?;
        let err = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        // Drained continuously, so a chatty child never blocks on a full pipe.
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdout: Some(stdout),
            stderr: rx,
            stderr_lines: Vec::new(),
        })
    }

    /// Waits until a stderr line contains `needle` (the probe says it is
    /// attached and observing).
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.stderr_lines.push(line);
                    if hit {
                        return Ok(());
                    }
                }
                Err(_) => bail!(
                    "the probe did not say {needle:?} within {timeout:?}; stderr so far:\n{}",
                    self.stderr_lines.join("\n")
                ),
            }
        }
    }

    /// Waits for exit; returns the exit code and stdout.
    pub fn finish(mut self, timeout: Duration) -> Result<(i32, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let out = match self.stdout.take() {
                    Some(h) => h
                        .join()
                        .map_err(|_| anyhow!("the stdout reader panicked"))?,
                    None => String::new(),
                };
                while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(100)) {
                    self.stderr_lines.push(l);
                }
                return Ok((status.code().unwrap_or(-1), out));
            }
            if Instant::now() > deadline {
                bail!("the probe did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ProbeRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reading probe reports (JSON, schema 1) in tests.
pub mod reports {
    use std::{process::Command, time::Duration};

    use serde_json::Value;

    use super::{ProbeRun, probe_bin};
    use crate::lab::{Lab, LabNode};

    /// `report --format json` for `secs` seconds inside `node`, returned
    /// once attached and observing.
    pub fn start(lab: &Lab, node: &LabNode, secs: u32) -> ProbeRun {
        let mut cmd: Command = lab.node_command(node, &probe_bin());
        cmd.args([
            "report",
            "--format",
            "json",
            "--duration",
            &format!("{secs}s"),
        ]);
        let mut run = ProbeRun::spawn(cmd).expect("start flannel-probe");
        run.wait_for("observing", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("probe on {}: {e:#}", node.name));
        run
    }

    /// Waits for the report; checks it is schema 1 about `node`.
    pub fn finish(run: ProbeRun, node: &str) -> (i32, Value) {
        let (code, out) = run.finish(Duration::from_secs(60)).expect("probe exits");
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("report of {node} is not JSON ({e}): {out:?}"));
        assert_eq!(v["schema"], 1);
        assert_eq!(v["node"]["hostname"], node, "the report names its node");
        (code, v)
    }

    /// The entry of peer `ip`.
    pub fn peer<'a>(report: &'a Value, ip: &str) -> &'a Value {
        report["peers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["peer"] == ip))
            .unwrap_or_else(|| panic!("no peer {ip} in {report:#}"))
    }

    fn findings(report: &Value) -> impl Iterator<Item = &Value> {
        report["findings"].as_array().into_iter().flatten()
    }

    /// (code, peer) of every finding above `info`, sorted.
    pub fn serious(report: &Value) -> Vec<(String, Option<String>)> {
        let mut v: Vec<(String, Option<String>)> = findings(report)
            .filter(|f| f["severity"] != "info")
            .map(|f| {
                (
                    f["code"].as_str().unwrap_or_default().to_string(),
                    f["peer"].as_str().map(String::from),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Every finding code, info included.
    pub fn codes(report: &Value) -> Vec<String> {
        findings(report)
            .filter_map(|f| f["code"].as_str().map(String::from))
            .collect()
    }

    /// The finding `code` (the first one), if raised.
    pub fn finding<'a>(report: &'a Value, code: &str) -> Option<&'a Value> {
        findings(report).find(|f| f["code"] == code)
    }

    /// (reason, direction) -> packets of the report's drops table.
    pub fn drops(report: &Value) -> Vec<(String, String, u64)> {
        report["drops"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["reason"].as_str().unwrap_or_default().to_string(),
                    d["direction"].as_str().unwrap_or_default().to_string(),
                    d["packets"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
}
