//! `flannel-probe watch` full screen, as an operator sees it: the real
//! binary in a tmux pane inside eq14-001, read back with capture-pane,
//! through the incident (flannel.1 deleted) and its repair.
//!
//! With `FLANNEL_PROBE_CAPTURE_DIR` set, the screens are also written there
//! (`healthy.txt`, `incident.txt`, `recovered.txt`): the README shows them.
use std::{
    ffi::OsStr,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    support::{ProbeRun, probe_bin},
};

/// A tmux server of its own (own socket, own config) running one session;
/// the server and everything in it are killed on drop, also on panic, and
/// its files removed.
struct Tmux {
    socket: PathBuf,
    session: String,
    config: PathBuf,
    /// Where the wrapper shell writes the command's exit status.
    status: PathBuf,
}

impl Tmux {
    /// Starts `argv` in a detached `width` x `height` pane, under a shell
    /// that records its exit status. The pane stays after the exit, so the
    /// screen it left can be read.
    fn start(argv: &[&OsStr], width: u16, height: u16) -> Tmux {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "fpt-watch-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let config = std::env::temp_dir().join(format!("{id}.tmux.conf"));
        std::fs::write(
            &config,
            "set -g remain-on-exit on\nset -g history-limit 0\n",
        )
        .expect("write tmux config");
        let status = std::env::temp_dir().join(format!("{id}.status"));
        let _ = std::fs::remove_file(&status);
        let t = Tmux {
            socket: std::env::temp_dir().join(format!("{id}.sock")),
            session: id,
            config,
            status,
        };
        // The shell waits for the command itself: tmux 3.3 was seen to
        // leave an exited pane process unreaped (no status) for seconds.
        let script = format!("\"$@\"; echo $? > '{}'", t.status.display());
        let (w, h) = (width.to_string(), height.to_string());
        let mut args: Vec<&OsStr> = ["new-session", "-d", "-s", &t.session, "-x", &w, "-y", &h]
            .into_iter()
            .map(OsStr::new)
            .collect();
        args.extend(["sh", "-c", &script, "sh"].map(OsStr::new));
        args.extend_from_slice(argv);
        let out = t.tmux(&args);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config)
            .args(args)
            // UTF-8 for the box and bar characters.
            .env("LANG", "C.UTF-8")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn capture(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send_keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", &self.session, keys]);
    }

    /// `Some(status)` once the command has exited (128 + n for signal n).
    fn exit_status(&self) -> Option<i32> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        // Written but not yet flushed: ask again.
        text.trim().parse().ok()
    }

    /// Waits for the command's exit status; fails with `what` and the
    /// screen after `timeout`. (Not `support::wait_exit`: the command is
    /// tmux's child, not ours, so its status comes from the wrapper shell.)
    fn wait_exit(&self, timeout: Duration, what: &str) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}:\n{}", self.capture());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process the wrapper shell started: `ip netns exec` execs down
    /// (unshare, sh, the probe) without forking, so it is the probe.
    fn command_pid(&self) -> Option<u32> {
        let out = self.tmux(&["display-message", "-p", "-t", &self.session, "#{pane_pid}"]);
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// Polls the screen until `ok` holds; the last screen either way.
    fn wait_for(&self, timeout: Duration, ok: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                return Err(screen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.status);
    }
}

/// Pings that run until dropped.
struct Pings(Vec<Child>);

impl Pings {
    fn start(from: &[&LabNode], to: std::net::Ipv4Addr) -> Pings {
        Pings(
            from.iter()
                .map(|n| {
                    Command::new("ip")
                        .args(["netns", "exec", &n.pod_ns, "ping", "-q", "-n", "-i", "0.2"])
                        .arg(to.to_string())
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("start ping")
                })
                .collect(),
        )
    }
}

impl Drop for Pings {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The cells of the table row of `peer` (the line that starts with it).
fn row<'a>(screen: &'a str, peer: &str) -> Option<Vec<&'a str>> {
    screen.lines().find_map(|l| {
        let cells: Vec<&str> = l.split_whitespace().collect();
        (cells.first() == Some(&peer)).then_some(cells)
    })
}

/// A figure as the table prints it (`12`, `2.5`, `11.8k`, `3.4M`).
fn figure(s: &str) -> Option<f64> {
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'G' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// Columns at 160 cells: PEER HEALTH MAC TX-pkt TX-bit RX-pkt RX-bit DECAP/s DECAP% ...
const RX_PKTS: usize = 5;
const TX_PKTS: usize = 3;
const RX_BITS: usize = 6;
const SHARE: usize = 8;

fn rx_rate(screen: &str, peer: &str) -> f64 {
    row(screen, peer)
        .and_then(|c| c.get(RX_PKTS).and_then(|v| figure(v)))
        .unwrap_or(0.0)
}

fn save(name: &str, screen: &str) {
    if let Some(dir) = std::env::var_os("FLANNEL_PROBE_CAPTURE_DIR") {
        let path = PathBuf::from(dir).join(format!("{name}.txt"));
        std::fs::write(&path, screen).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn watch_shows_the_peers_live_and_the_incident_in_time() {
    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (gladius, momonoke, eq14) = (
        lab.node("gladius").clone(),
        lab.node("momonoke").clone(),
        lab.node("eq14-001").clone(),
    );
    lab.wait_ready(Duration::from_secs(20)).expect("lab ready");
    let _pings = Pings::start(&[&gladius, &momonoke], eq14.pod_ip);

    let mut cmd = lab.node_command(&eq14, &probe_bin());
    cmd.args(["watch", "--interval", "1s"]);
    let mut argv: Vec<&OsStr> = vec![cmd.get_program()];
    argv.extend(cmd.get_args());
    let tmux = Tmux::start(&argv, 160, 40);

    // Healthy: both senders' rows, with traffic both ways, decapsulated.
    let healthy = tmux
        .wait_for(Duration::from_secs(60), |s| {
            rx_rate(s, "192.0.2.11") > 0.0 && rx_rate(s, "192.0.2.12") > 0.0
        })
        .unwrap_or_else(|s| panic!("no live rows for both peers:\n{s}"));
    // One more interval so the screen is a full steady window.
    std::thread::sleep(Duration::from_millis(1500));
    let healthy = {
        let s = tmux.capture();
        if rx_rate(&s, "192.0.2.11") > 0.0 {
            s
        } else {
            healthy
        }
    };
    save("healthy", &healthy);
    let top = healthy.lines().next().unwrap_or_default();
    assert!(
        top.contains("eq14-001"),
        "hostname in the header:\n{healthy}"
    );
    assert!(top.contains("flannel.1  up "), "overlay up:\n{healthy}");
    assert!(top.contains("UDP 8472 bound"), "{healthy}");
    assert!(top.contains("VTEP 192.0.2.13"), "{healthy}");
    assert!(healthy.contains("HEALTHY"), "{healthy}");
    for peer in ["192.0.2.11", "192.0.2.12"] {
        let cells = row(&healthy, peer).unwrap_or_else(|| panic!("no row {peer}:\n{healthy}"));
        for (i, what) in [
            (TX_PKTS, "tx pkt/s"),
            (RX_PKTS, "rx pkt/s"),
            (RX_BITS, "rx bit/s"),
        ] {
            let v = cells.get(i).and_then(|v| figure(v));
            assert!(v > Some(0.0), "{peer} {what} is {v:?}:\n{healthy}");
        }
        assert_eq!(cells[1], "ok", "{healthy}");
        assert!(
            cells[SHARE].ends_with('%') && cells[SHARE] != "0%",
            "{peer} decapsulated share:\n{healthy}"
        );
    }

    // The incident: flannel.1 deleted under the running probe.
    lab.fault(&Fault::DeleteOverlay {
        node: eq14.name.clone(),
    })
    .expect("delete flannel.1");
    let t0 = Instant::now();
    let incident = tmux
        .wait_for(Duration::from_secs(3), |s| {
            s.contains("VXLAN_NOT_DECAPSULATED")
                && s.lines().next().unwrap_or_default().contains(" missing ")
        })
        .unwrap_or_else(|s| panic!("the incident is not on screen 3 s after the fault:\n{s}"));
    let took = t0.elapsed();
    // Let the screen settle on a whole window of the incident for the record.
    std::thread::sleep(Duration::from_millis(1200));
    let settled = tmux.capture();
    let incident = if settled.contains("VXLAN_NOT_DECAPSULATED") {
        settled
    } else {
        incident
    };
    save("incident", &incident);
    eprintln!("the incident showed {took:?} after the fault");
    assert!(incident.contains("OVERLAY_DEVICE_MISSING"), "{incident}");
    assert!(incident.contains("NOT bound"), "{incident}");
    assert!(incident.contains("CRITICAL"), "{incident}");
    // Still counting the uplink's VXLAN per peer, and both peers marked.
    for peer in ["192.0.2.11", "192.0.2.12"] {
        let cells = row(&incident, peer).unwrap_or_else(|| panic!("no row {peer}:\n{incident}"));
        assert!(rx_rate(&incident, peer) > 0.0, "{peer} rx:\n{incident}");
        assert_eq!(cells[1], "CRIT", "{peer}:\n{incident}");
        assert_eq!(
            cells[SHARE], "0%",
            "{peer}: nothing decapsulated:\n{incident}"
        );
    }

    // The repair (what restarting k3s does): the device comes back, the
    // probe re-attaches, the screen says so.
    lab.fault(&Fault::RecreateOverlay {
        node: eq14.name.clone(),
    })
    .expect("recreate flannel.1");
    let recovered = tmux
        .wait_for(Duration::from_secs(10), |s| {
            s.lines().next().unwrap_or_default().contains(" up ")
                && !s.contains("VXLAN_NOT_DECAPSULATED")
                && row(s, "192.0.2.11")
                    .and_then(|c| c.get(SHARE).copied())
                    .is_some_and(|v| v != "0%" && v != "-")
        })
        .unwrap_or_else(|s| panic!("the repair is not on screen:\n{s}"));
    save("recovered", &recovered);
    assert!(
        recovered.contains("missing -> up"),
        "the change is noted:\n{recovered}"
    );

    // q: a clean exit, and the terminal is given back (the table is gone
    // with the alternate screen).
    tmux.send_keys("q");
    let status = tmux.wait_exit(Duration::from_secs(10), "watch did not exit on q");
    assert_eq!(status, 0, "exit status:\n{}", tmux.capture());
    let after = tmux.capture();
    assert!(
        !after.contains("RX pkt/s"),
        "terminal not restored:\n{after}"
    );
}

#[test]
fn watch_restores_the_terminal_on_signals() {
    let Some(lab) = Lab::for_test(LabSpec::with_nodes(2)) else {
        return;
    };
    let node = lab.node("gladius");
    for signal in ["TERM", "HUP", "INT"] {
        let mut cmd = lab.node_command(node, &probe_bin());
        cmd.args(["watch"]);
        let mut argv: Vec<&OsStr> = vec![cmd.get_program()];
        argv.extend(cmd.get_args());
        let tmux = Tmux::start(&argv, 100, 30);
        tmux.wait_for(Duration::from_secs(60), |s| {
            s.contains("RX pkt/s") && s.contains("gladius")
        })
        .unwrap_or_else(|s| panic!("no table:\n{s}"));
        let pid = tmux.command_pid().expect("the probe's pid").to_string();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "flannel-probe", "pane process {pid}");
        let out = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .output()
            .expect("kill");
        assert!(out.status.success());
        let status = tmux.wait_exit(
            Duration::from_secs(10),
            &format!("watch ignored SIG{signal}"),
        );
        assert_eq!(status, 0, "SIG{signal}");
        let after = tmux.capture();
        assert!(
            !after.contains("RX pkt/s"),
            "terminal not restored after SIG{signal}:\n{after}"
        );
    }
}

#[test]
fn watch_without_a_terminal_prints_plain_lines() {
    let Some(lab) = Lab::for_test(LabSpec::with_nodes(2)) else {
        return;
    };
    let node = lab.node("gladius");
    for format in ["json", "text"] {
        // stdout is a pipe: plain output without asking for it.
        let mut cmd = lab.node_command(node, &probe_bin());
        cmd.args(["watch", "--interval", "300ms", "--format", format]);
        let mut run = ProbeRun::spawn(cmd).expect("start watch");
        run.wait_for("watching the uplink", Duration::from_secs(60))
            .expect("probe attached");
        std::thread::sleep(Duration::from_millis(1200));
        let pid = i32::try_from(run.pid()).expect("pid");
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let (code, out) = run.finish(Duration::from_secs(10)).expect("exit");
        assert_eq!(code, 0, "{format}: {out}");
        assert!(
            !out.contains('\x1b'),
            "no terminal control in plain output: {out:?}"
        );
        match format {
            "json" => {
                let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
                assert!(lines.len() >= 2, "one object per interval: {out}");
                for l in lines {
                    let v: serde_json::Value =
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                    assert_eq!(v["schema"], 1);
                    assert_eq!(v["node"]["hostname"], "gladius");
                    assert_eq!(v["node"]["overlay_state"], "up");
                }
            }
            _ => {
                assert!(
                    out.matches("--- ").count() >= 2,
                    "a table per interval: {out}"
                );
                assert!(out.contains("Node gladius: overlay flannel.1 up"), "{out}");
                assert!(out.contains("PEER"), "{out}");
            }
        }
    }
}
