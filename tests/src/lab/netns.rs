//! Running commands and managing network namespaces: the lab's, and the
//! single throw-away namespace a unit test needs ([`Netns`]). This is the
//! one namespace harness of the workspace (flannel-probe's own tests use it
//! too, as a dev-dependency).
//!
//! Every command that changes network state names a namespace we created
//! (`ip -n`, `bridge -netns`, `ip netns exec`, or a thread that entered it);
//! nothing here runs a state-changing command in the caller's own namespace.

use std::io::{Read, Write};
use std::os::fd::AsRawFd as _;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// First component of the names of test labs' namespaces, which are
/// `fpt-<pid>-<counter>-<role>`.
pub const TEST_PREFIX: &str = "fpt";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// `ip netns add` turns /run/netns into a shared mount the first time it
/// runs; serialising it keeps parallel tests of one process from racing there.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// A fresh `fpt-<pid>-<counter>` prefix for a test lab.
pub fn unique_prefix() -> String {
    let counter = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TEST_PREFIX}-{}-{counter}", std::process::id())
}

/// Writes one line to stderr without ever panicking (used on teardown paths).
pub fn log(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "flannel-probe lab: {message}");
}

/// The command line as a human would type it, for error messages.
pub fn describe(program: &str, args: &[&str]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"$<>|&;".contains(c)) {
            line.push('\'');
            line.push_str(&arg.replace('\'', r"'\''"));
            line.push('\'');
        } else {
            line.push_str(arg);
        }
    }
    line
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    // The C locale keeps tool output (ping's summary) in the format we parse.
    cmd.args(args).env("LC_ALL", "C");
    cmd
}

/// Turns a non-zero exit into an error naming the command and its stderr.
pub fn check(cmdline: &str, output: Output) -> Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let detail = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    bail!("`{cmdline}` failed ({}): {detail}", output.status)
}

/// Runs `program args`, feeding it `input` on stdin if given; errors on a
/// non-zero exit.
pub fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<Output> {
    let cmdline = describe(program, args);
    let mut cmd = command(program, args);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{cmdline}`"))?;
    let output = thread::scope(|scope| {
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            // A writer thread, so a chatty child cannot deadlock us; a write
            // error (the child exited early) shows up in its exit status.
            scope.spawn(move || {
                let _ = stdin.write_all(text.as_bytes());
            });
        }
        child.wait_with_output()
    })
    .with_context(|| format!("cannot wait for `{cmdline}`"))?;
    match input {
        Some(text) => check(&cmdline, output).with_context(|| format!("input was:\n{text}")),
        None => check(&cmdline, output),
    }
}

/// Runs `program args`; errors on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    run_with_input(program, args, None)
}

/// Runs `program args` and returns its output whatever the exit status; a
/// command that cannot start looks like a shell's exit 127.
pub fn try_run(program: &str, args: &[&str]) -> Output {
    use std::os::unix::process::ExitStatusExt;
    command(program, args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| Output {
            status: ExitStatus::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("cannot start `{}`: {err}", describe(program, args)).into_bytes(),
        })
}

/// Runs a command, killing it if it has not finished after `timeout`.
pub fn run_with_timeout(program: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let cmdline = describe(program, args);
    let mut child = command(program, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{cmdline}`"))?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status =
        wait_exit(&mut child, timeout).with_context(|| format!("waiting for `{cmdline}`"))?;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let collect = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .map(|handle| handle.join().unwrap_or_default())
            .unwrap_or_default()
    };
    let output = Output {
        status: status.unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            ExitStatus::from_raw(libc::SIGKILL)
        }),
        stdout: collect(stdout),
        stderr: collect(stderr),
    };
    if status.is_none() {
        bail!(
            "`{cmdline}` did not finish within {timeout:?} and was killed; stderr: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Waits up to `timeout` for `child` to exit; `None` means it still runs
/// (the caller decides whether to kill it). The one wait-for-exit loop of
/// the tests.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child failed")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on a thread that has entered network namespace `ns` (a name in
/// /run/netns), so anything it opens (netlink sockets, ifindex lookups,
/// /proc/sys) is that namespace's. A panic in `f` is passed on unchanged.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path} failed"))?;
    thread::scope(|s| {
        let entered = s.spawn(|| {
            // SAFETY: setns on a valid namespace fd affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow!(
                    "setns into {ns} failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(f())
        });
        match entered.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `ip -n NS args...`
pub fn ip(ns: &str, args: &[&str]) -> Result<Output> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// `ip -n NS -batch -` with `script` (one `ip` command per line) on stdin.
pub fn ip_batch(ns: &str, script: &str) -> Result<Output> {
    run_with_input("ip", &["-n", ns, "-batch", "-"], Some(script))
}

/// `bridge -netns NS -batch -` with `script` on stdin.
pub fn bridge_batch(ns: &str, script: &str) -> Result<Output> {
    run_with_input("bridge", &["-netns", ns, "-batch", "-"], Some(script))
}

/// `ip netns exec NS nft -f -` with `script` on stdin.
pub fn nft(ns: &str, script: &str) -> Result<Output> {
    run_with_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script))
}

/// `ip netns exec NS args...`
pub fn exec(ns: &str, args: &[&str]) -> Result<Output> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Names of all named network namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>> {
    let output = run("ip", &["netns", "list"])?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        // Lines look like `name (id: 3)` once the namespace has an id.
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Creates a named network namespace.
pub fn add_namespace(name: &str) -> Result<()> {
    let _guard = NETNS_ADD.lock().unwrap_or_else(PoisonError::into_inner);
    run("ip", &["netns", "add", name])?;
    Ok(())
}

/// SIGKILLs every process inside the namespace (except ourselves).
pub fn kill_processes(name: &str) -> Result<()> {
    let output = run("ip", &["netns", "pids", name])?;
    let me = std::process::id();
    for pid in String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|word| word.parse::<u32>().ok())
        .filter(|&pid| pid != me)
    {
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            continue;
        };
        // SAFETY: kill(2) has no memory-safety preconditions.
        if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
            let err = std::io::Error::last_os_error();
            // ESRCH: it exited in the meantime, which is what we wanted.
            if err.raw_os_error() != Some(libc::ESRCH) {
                log(format_args!("cannot kill pid {pid} in {name}: {err}"));
            }
        }
    }
    Ok(())
}

/// Kills the namespace's processes, then deletes it.
pub fn remove_namespace(name: &str) -> Result<()> {
    if let Err(err) = kill_processes(name) {
        log(format_args!("{err:#}"));
    }
    run("ip", &["netns", "del", name])?;
    Ok(())
}

/// Removes every namespace whose name starts with `prefix`; returns their
/// names. Tries them all before reporting the first failure.
pub fn remove_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let doomed: Vec<String> = list_namespaces()?
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect();
    let mut first_error = None;
    for name in &doomed {
        if let Err(err) = remove_namespace(name) {
            log(format_args!("{err:#}"));
            first_error.get_or_insert(err);
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(doomed),
    }
}

/// The pid in a test namespace name `fpt-<pid>-<counter>-<role>`.
fn test_namespace_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEST_PREFIX)?.strip_prefix('-')?;
    let (pid, rest) = rest.split_once('-')?;
    let (counter, _role) = rest.split_once('-')?;
    counter.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Whether `pid` is a live process. A zombie counts as dead: a killed test
/// whose parent has not reaped it yet will never tear its lab down.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`; comm may itself contain spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// Removes test namespaces left behind by processes that no longer exist
/// (a test killed before it could tear down). Never fails: problems are logged.
pub fn sweep_stale() -> Vec<String> {
    let names = match list_namespaces() {
        Ok(names) => names,
        Err(err) => {
            log(format_args!("cannot list namespaces to sweep: {err:#}"));
            return Vec::new();
        }
    };
    let me = std::process::id();
    let mut removed = Vec::new();
    for name in names {
        let Some(pid) = test_namespace_pid(&name) else {
            continue;
        };
        if pid == me || process_alive(pid) {
            continue;
        }
        match remove_namespace(&name) {
            Ok(()) => removed.push(name),
            Err(err) => log(format_args!("cannot sweep stale namespace: {err:#}")),
        }
    }
    removed
}

/// One throw-away network namespace for a test, `fpt-<pid>-<n>-ns` (so a
/// killed test's leftover is swept like a lab's), deleted on drop, also when
/// the test panics. Its helpers panic on failure: they are test steps.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// The namespace for one test: `None` (the test returns, skipped) when
    /// not root, except under `CI=true`, where that fails the test.
    pub fn for_test() -> Option<Netns> {
        if !crate::require_root() {
            return None;
        }
        Some(Netns::new().unwrap_or_else(|err| panic!("{err:#}")))
    }

    /// Creates the namespace with `lo` up (needs root).
    pub fn new() -> Result<Netns> {
        sweep_stale();
        let ns = Netns {
            name: format!("{}-ns", unique_prefix()),
        };
        add_namespace(&ns.name)?;
        // From here on `ns` is dropped (and deleted) on error.
        ip(&ns.name, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (in /run/netns).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>` (args split on whitespace).
    pub fn ip(&self, args: &str) {
        let args: Vec<&str> = args.split_whitespace().collect();
        ip(&self.name, &args).unwrap_or_else(|err| panic!("{err:#}"));
    }

    /// `bridge -netns <ns> <args>` (args split on whitespace).
    pub fn bridge(&self, args: &str) {
        let mut full = vec!["-netns", self.name.as_str()];
        full.extend(args.split_whitespace());
        run("bridge", &full).unwrap_or_else(|err| panic!("{err:#}"));
    }

    /// Adds an up NIC named `name`: a dummy device if the kernel has them,
    /// else a veth whose peer (`<name>p`, also up) stays in the namespace.
    pub fn add_nic(&self, name: &str) {
        if ip(&self.name, &["link", "add", name, "type", "dummy"]).is_err() {
            self.ip(&format!("link add {name} type veth peer name {name}p"));
            self.ip(&format!("link set {name}p up"));
        }
        self.ip(&format!("link set {name} up"));
    }

    /// The ifindex of `ifname` as seen inside the namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        self.run_in(|| {
            let c = std::ffi::CString::new(ifname).expect("no NUL in an interface name");
            // SAFETY: `c` is a valid C string that outlives the call.
            let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
            assert_ne!(index, 0, "no interface {ifname} in {}", self.name);
            index
        })
    }

    /// Writes `value` to `/proc/sys/<key>` inside the namespace.
    pub fn write_sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.run_in(|| {
            std::fs::write(&path, value).unwrap_or_else(|err| panic!("writing {path}: {err}"));
        });
    }

    /// Runs `f` on a thread inside the namespace ([`in_netns`]).
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.name, f).unwrap_or_else(|err| panic!("{err:#}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = remove_namespace(&self.name) {
            log(format_args!("{err:#}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_test_namespace_names() {
        assert_eq!(test_namespace_pid("fpt-123-0-sw"), Some(123));
        assert_eq!(test_namespace_pid("fpt-123-4-eq14-001-pod"), Some(123));
        assert_eq!(test_namespace_pid("fplab-sw"), None);
        assert_eq!(test_namespace_pid("fpt-sw"), None);
        assert_eq!(test_namespace_pid("fpt-12x-0-sw"), None);
        assert_eq!(test_namespace_pid("other"), None);
    }

    #[test]
    fn knows_live_processes() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }

    #[test]
    fn describes_commands() {
        assert_eq!(
            describe("sh", &["-c", "echo 0 > x", "a"]),
            "sh -c 'echo 0 > x' a"
        );
    }
}
