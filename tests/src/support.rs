//! What every kernel test needs before it starts.

/// True when the test can run (we are root). Under `CI=true` a missing
/// privilege fails the test instead: CI must never skip a kernel test.
/// Tests call it through [`Lab::for_test`](crate::lab::Lab::for_test) or
/// [`Netns::for_test`](crate::lab::netns::Netns::for_test) when they need
/// a lab or a namespace.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    // libtest names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root (eBPF and network namespaces), and CI=true forbids skipping it");
    }
    // Straight to stderr, past libtest's capture, so the skip is visible.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: it needs root (eBPF and network namespaces)"
    );
    false
}

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

pub use crate::lab::netns::{in_netns, wait_exit};

/// How much slower than native this machine runs the lab:
/// `FLANNEL_PROBE_TEST_TIME_SCALE` (default 1). `cargo xtask vm-test` sets
/// it for guests under emulation (TCG), where starting one probe takes
/// 15-20 s instead of 1 s; report windows and time limits multiply by it.
pub fn time_scale() -> u32 {
    std::env::var("FLANNEL_PROBE_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// `d` times [`time_scale`].
pub fn scaled(d: Duration) -> Duration {
    d * time_scale()
}

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
        let rx = line_channel(err);
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
        let Some(status) = wait_exit(&mut self.child, timeout)? else {
            bail!("the probe did not exit within {timeout:?}");
        };
        let out = match self.stdout.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow!("the stdout reader panicked"))?,
            None => String::new(),
        };
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(100)) {
            self.stderr_lines.push(l);
        }
        Ok((status.code().unwrap_or(-1), out))
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

    use super::{ProbeRun, probe_bin, scaled, time_scale};
    use crate::lab::{Lab, LabNode};

    /// `report --format json` for `secs` seconds (times the
    /// [time scale](super::time_scale), so that the window still covers
    /// the probes started after this one) inside `node`, returned once
    /// attached and observing.
    pub fn start(lab: &Lab, node: &LabNode, secs: u32) -> ProbeRun {
        let mut run = spawn(lab, node, secs);
        observing(&mut run, node);
        run
    }

    /// [`start`] on several nodes at once: every probe is spawned before
    /// any is waited for, so the windows overlap even where starting a
    /// probe is slow (a loaded host, an emulated guest).
    pub fn start_all(lab: &Lab, nodes: &[&LabNode], secs: u32) -> Vec<ProbeRun> {
        let mut runs: Vec<ProbeRun> = nodes.iter().map(|n| spawn(lab, n, secs)).collect();
        for (run, node) in runs.iter_mut().zip(nodes) {
            observing(run, node);
        }
        runs
    }

    /// [`start`] with extra arguments (e.g. `--overlay flannel.1,flannel-v6.1`).
    pub fn start_with(lab: &Lab, node: &LabNode, secs: u32, args: &[&str]) -> ProbeRun {
        let mut run = spawn_with(lab, node, secs, args);
        observing(&mut run, node);
        run
    }

    fn spawn(lab: &Lab, node: &LabNode, secs: u32) -> ProbeRun {
        spawn_with(lab, node, secs, &[])
    }

    fn spawn_with(lab: &Lab, node: &LabNode, secs: u32, args: &[&str]) -> ProbeRun {
        let mut cmd: Command = lab.node_command(node, &probe_bin());
        cmd.args([
            "report",
            "--format",
            "json",
            "--duration",
            &format!("{}s", secs * time_scale()),
        ]);
        cmd.args(args);
        ProbeRun::spawn(cmd).expect("start flannel-probe")
    }

    fn observing(run: &mut ProbeRun, node: &LabNode) {
        run.wait_for("observing", scaled(Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("probe on {}: {e:#}", node.name));
    }

    /// Waits for the report; checks it is schema 1 about `node`.
    pub fn finish(run: ProbeRun, node: &str) -> (i32, Value) {
        let (code, out) = run
            .finish(scaled(Duration::from_secs(60)))
            .expect("probe exits");
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
        serious_by(report, "peer")
    }

    /// (code, the finding's `field`) of every finding above `info`, sorted
    /// (`"overlay"`: which overlay each is about).
    pub fn serious_by(report: &Value, field: &str) -> Vec<(String, Option<String>)> {
        let mut v: Vec<(String, Option<String>)> = findings(report)
            .filter(|f| f["severity"] != "info")
            .map(|f| {
                (
                    f["code"].as_str().unwrap_or_default().to_string(),
                    f[field].as_str().map(String::from),
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

/// The lines of a child's pipe as they come, read on their own thread (so a
/// chatty child never blocks on a full pipe); the thread ends with the pipe
/// or when the receiver is dropped.
pub fn line_channel(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `GET path` from the agent a lab test started on `node` (listening on
/// `NODE_IP:9465`), from inside the node; the test fails when the agent
/// cannot be reached.
pub fn agent_get(node: &crate::lab::LabNode, path: &str) -> (u16, String) {
    http_get_in(
        &node.ns,
        &format!("{}:9465", node.ip),
        path,
        Duration::from_secs(5),
    )
    .expect("GET from the agent")
}

/// `GET http://{addr}{path}` from inside network namespace `ns` (HTTP/1.0,
/// so the answer is never chunked); returns the status and the body.
pub fn http_get_in(ns: &str, addr: &str, path: &str, timeout: Duration) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let sock: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr} is not IP:PORT"))?;
    in_netns(ns, || -> Result<(u16, String)> {
        let mut s = std::net::TcpStream::connect_timeout(&sock, timeout)
            .with_context(|| format!("connecting to {addr} in {ns} failed"))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .with_context(|| format!("reading the answer of {addr}{path} failed"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("{addr}{path}: no HTTP header in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("{addr}{path}: bad status line in {head:?}"))?;
        Ok((status, body.to_string()))
    })?
}

/// True when `program` can be started. Under `CI=true` a missing tool fails
/// the test instead (`cargo xtask setup` installs every tool a test needs).
pub fn require_tool(program: &std::path::Path) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing and CI=true forbids skipping: run cargo xtask setup",
            program.display()
        );
    }
    eprintln!(
        "skipped: {} is missing (cargo xtask setup installs it)",
        program.display()
    );
    false
}

/// Sends SIGTERM to `pid` (a probe this test started).
pub fn terminate(pid: u32) {
    // SAFETY: kill(2) has no memory preconditions; the pid is our child's.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// `flannel-probe serve --listen 0.0.0.0:9465 ARGS` in `node`, once it serves.
pub fn start_agent(lab: &crate::lab::Lab, node: &crate::lab::LabNode, args: &[&str]) -> ProbeRun {
    let mut cmd = lab.node_command(node, &probe_bin());
    cmd.args(["serve", "--listen", "0.0.0.0:9465"]).args(args);
    let mut run = ProbeRun::spawn(cmd).expect("start flannel-probe serve");
    run.wait_for("serving on", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("agent on {}: {e:#}", node.name));
    run
}

/// [`start_agent`] on every node of `lab` with a 1 s interval (what the
/// mesh tests read); the agents stop when the runs are dropped.
pub fn start_agents(lab: &crate::lab::Lab) -> Vec<ProbeRun> {
    lab.nodes
        .iter()
        .map(|n| start_agent(lab, n, &["--interval", "1s"]))
        .collect()
}

/// The reports `watch --format json` printed, one JSON object per line.
pub fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON report per line"))
        .collect()
}

/// What the probe attaches, and what a CNI would have attached, on a lab node.
pub mod attached {
    use aya::programs::{SchedClassifier, TcAttachType};

    use super::in_netns;
    use crate::lab::{Lab, LabNode};

    /// Names of the programs attached with tcx to `iface` in `ns`, both
    /// directions; none for a missing device.
    pub fn tcx_programs(ns: &str, iface: &str) -> Vec<String> {
        in_netns(ns, || {
            let mut names = Vec::new();
            for t in [TcAttachType::Ingress, TcAttachType::Egress] {
                if let Ok((_, progs)) = SchedClassifier::query_tcx(iface, t) {
                    names.extend(
                        progs
                            .iter()
                            .filter_map(|p| p.name_as_str().map(String::from)),
                    );
                }
            }
            names
        })
        .expect("enter the node's namespace")
    }

    /// Our programs on `iface` in `ns`, whichever way they are attached:
    /// tcx programs by name, and clsact filters named after our programs
    /// (`<dir> <name>`), so a test holds on kernels without tcx (6.1).
    pub fn probe_programs(lab: &Lab, ns: &str, iface: &str) -> Vec<String> {
        let mut found = tcx_programs(ns, iface);
        for dir in ["ingress", "egress"] {
            let out = lab.try_sh(ns, &["tc", "filter", "show", "dev", iface, dir]);
            let text = String::from_utf8_lossy(&out.stdout);
            for name in [
                "uplink_ingress",
                "uplink_egress",
                "overlay_ingress",
                "overlay_egress",
            ] {
                if text.contains(name) {
                    found.push(format!("{dir} {name}"));
                }
            }
        }
        found
    }

    /// Stand-in for a filter the CNI added: a u32 filter on a clsact qdisc
    /// of `eth0`.
    pub fn add_cni_filter(lab: &Lab, node: &LabNode) {
        lab.sh(&node.ns, &["tc", "qdisc", "add", "dev", "eth0", "clsact"])
            .expect("add clsact");
        lab.sh(
            &node.ns,
            &[
                "tc",
                "filter",
                "add",
                "dev",
                "eth0",
                "ingress",
                "prio",
                "7",
                "protocol",
                "ip",
                "u32",
                "match",
                "ip",
                "dst",
                "0.0.0.0/0",
            ],
        )
        .expect("add u32 filter");
    }

    /// The filter [`add_cni_filter`] added is still there.
    pub fn cni_filter_present(lab: &Lab, node: &LabNode) -> bool {
        let out = lab
            .sh(
                &node.ns,
                &["tc", "filter", "show", "dev", "eth0", "ingress"],
            )
            .expect("tc filter show");
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("u32") && text.contains("pref 7")
    }
}
