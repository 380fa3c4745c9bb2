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
