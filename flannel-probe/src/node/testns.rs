//! Test harness: a throw-away network namespace per test, set up with `ip`
//! and `bridge` (iproute2), and a way to run code inside it on a dedicated
//! thread. Nothing is created or changed in the namespace the tests run in.

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{DiscoverOptions, NodeState, discover};

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// `ip netns add` sets up the /run/netns mount on first use; serialise it.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A network namespace named `fpnode-<pid>-<n>`, deleted on drop (also when
/// the test panics).
pub(crate) struct TestNs {
    pub(crate) name: String,
}

impl TestNs {
    /// Creates the namespace, or returns `None` (after saying why) when not
    /// root. Under `CI=true` not being root is a failure instead.
    pub(crate) fn new() -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let msg = "network-namespace tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}, and CI=true: run the tests as root");
            }
            eprintln!("skipping: {msg}");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("fpnode-{}-{n}", std::process::id());
        {
            let _g = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            run("ip", &["netns", "add", &name]);
        }
        let ns = TestNs { name };
        ns.ip("link set lo up");
        Some(ns)
    }

    /// `ip -n <ns> <args>` (args split on whitespace); panics on failure.
    pub(crate) fn ip(&self, args: &str) {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend(args.split_whitespace());
        run("ip", &v);
    }

    /// `bridge -n <ns> <args>`; panics on failure.
    pub(crate) fn bridge(&self, args: &str) {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend(args.split_whitespace());
        run("bridge", &v);
    }

    /// Adds an up NIC named `name`: a dummy device if the kernel has them,
    /// else a veth whose peer (`<name>p`, also up) stays in the namespace.
    pub(crate) fn add_nic(&self, name: &str) {
        let dummy = Command::new("ip")
            .args(["-n", &self.name, "link", "add", name, "type", "dummy"])
            .output();
        if !dummy.is_ok_and(|o| o.status.success()) {
            self.ip(&format!("link add {name} type veth peer name {name}p"));
            self.ip(&format!("link set {name}p up"));
        }
        self.ip(&format!("link set {name} up"));
    }

    /// The ifindex of `ifname` inside the namespace (from sysfs as seen there).
    pub(crate) fn ifindex(&self, ifname: &str) -> u32 {
        let name = ifname.to_owned();
        self.run_in(move || {
            let c = std::ffi::CString::new(name.clone()).expect("no NUL in name");
            // SAFETY: `c` is a valid C string that outlives the call.
            let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
            assert_ne!(idx, 0, "no interface {name} in the test namespace");
            idx
        })
    }

    /// Writes `value` to `/proc/sys/<key>` inside the namespace.
    pub(crate) fn write_sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        let value = value.to_owned();
        self.run_in(move || {
            std::fs::write(&path, &value).unwrap_or_else(|e| panic!("writing {path}: {e}"))
        })
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns
    /// its result (re-raising its panic).
    pub(crate) fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: a valid netns fd; affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
                drop(file);
                f()
            });
            match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// Runs an async closure inside the namespace with a fresh rtnetlink
    /// connection on a current-thread runtime.
    pub(crate) fn with_handle<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send,
        F: FnOnce(rtnetlink::Handle) -> Fut + Send,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        self.with_handle_opt(false, f)
    }

    /// [`TestNs::with_handle`], optionally with `NETLINK_GET_STRICT_CHK`.
    pub(crate) fn with_handle_opt<T, F, Fut>(&self, strict: bool, f: F) -> anyhow::Result<T>
    where
        T: Send,
        F: FnOnce(rtnetlink::Handle) -> Fut + Send,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        self.run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let (conn, handle, _) = if strict {
                    rtnetlink::new_connection_with_strict_check()?
                } else {
                    rtnetlink::new_connection()?
                };
                let task = tokio::spawn(conn);
                let out = f(handle).await;
                task.abort();
                out
            })
        })
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// Runs [`discover`] inside `ns`.
pub(crate) fn discover_in(ns: &TestNs, opts: DiscoverOptions) -> anyhow::Result<NodeState> {
    ns.with_handle(|h| async move { discover(&h, &opts).await })
}

/// Runs [`discover`] inside `ns` over a strict-checking connection.
pub(crate) fn discover_in_strict(ns: &TestNs, opts: DiscoverOptions) -> anyhow::Result<NodeState> {
    ns.with_handle_opt(true, |h| async move { discover(&h, &opts).await })
}

fn run(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog} (install iproute2): {e}"));
    assert!(
        out.status.success(),
        "{prog} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
