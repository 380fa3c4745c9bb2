//! Least privilege: once the programs are loaded and attached, the process
//! keeps only the capabilities its later work needs (see [`needed`]), in
//! every thread, with `no_new_privs` set.
//!
//! Capabilities belong to threads, not processes: `capset(2)` changes the
//! calling thread only. The heartbeat thread (and any other) already runs
//! when the probe has attached, so every other thread is asked by a signal
//! to drop its own, and `/proc/self/task/*/status` is read back until every
//! thread shows exactly the kept set.
use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use caps::{CapSet, Capability};

/// The capabilities `serve`, `watch` and `report` keep after attaching.
///
/// - `CAP_NET_ADMIN`: attaching again (a recreated overlay, a vanished
///   attachment): tcx links, clsact qdiscs and filters, and the tcx chain
///   query of self-health.
/// - `CAP_BPF`: kernels before 6.5 with `unprivileged_bpf_disabled` check it
///   on every bpf(2) command, map reads included.
/// - `CAP_SYS_ADMIN`, only with clsact and only when the process had it:
///   a filter of ours vanished from a qdisc others share is re-added after
///   the dead-instance reclaim, which opens the filters' programs and maps
///   by id (the kernel asks CAP_SYS_ADMIN for that). Without it the reclaim
///   keeps every filter, which is the safe side.
///
/// Netlink dumps, sock_diag and reading `/proc` need none.
pub(crate) fn needed(clsact: bool) -> Vec<Capability> {
    let mut keep = vec![Capability::CAP_BPF, Capability::CAP_NET_ADMIN];
    if clsact {
        keep.push(Capability::CAP_SYS_ADMIN);
    }
    keep
}

/// Test knob: `FLANNEL_PROBE_KEEP_CAPS=net_admin,bpf` narrows the kept set
/// (never widens it), so that a lab test can show each one is needed.
const KEEP_ENV: &str = "FLANNEL_PROBE_KEEP_CAPS";

fn narrowed(keep: Vec<Capability>) -> Result<Vec<Capability>> {
    let Ok(list) = std::env::var(KEEP_ENV) else {
        return Ok(keep);
    };
    let mut only = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let full = format!(
            "CAP_{}",
            name.to_ascii_uppercase().trim_start_matches("CAP_")
        );
        let cap: Capability = full
            .parse()
            .map_err(|_| anyhow!("{KEEP_ENV}: '{name}' is not a capability name"))?;
        only.push(cap);
    }
    Ok(keep.into_iter().filter(|c| only.contains(c)).collect())
}

fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

/// What every thread is to end with.
static TARGET: AtomicU64 = AtomicU64::new(0);
/// Whether to drop from the bounding set (needs CAP_SETPCAP).
static DROP_BOUNDING: AtomicBool = AtomicBool::new(false);
/// The highest capability number this kernel knows.
static LAST_CAP: AtomicU64 = AtomicU64::new(0);
/// The first errno a thread met (0: none).
static FAILED: AtomicI32 = AtomicI32::new(0);

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Drops the calling thread's capabilities to [`TARGET`]. Only raw
/// syscalls: it runs in a signal handler.
fn drop_this_thread() {
    let target = TARGET.load(Ordering::SeqCst);
    let fail = || {
        // SAFETY: reading errno of this thread.
        let errno = unsafe { *libc::__errno_location() };
        let _ = FAILED.compare_exchange(0, errno.max(1), Ordering::SeqCst, Ordering::SeqCst);
    };
    // Bounding set first: dropping from it needs CAP_SETPCAP, which the
    // capset below removes.
    if DROP_BOUNDING.load(Ordering::SeqCst) {
        for cap in 0..=LAST_CAP.load(Ordering::SeqCst) {
            if target & (1 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
            // SAFETY: as above.
            if present == 1 && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
                fail();
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        fail();
    }
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    for (i, d) in data.iter_mut().enumerate() {
        let word = (target >> (32 * i)) as u32;
        d.effective = word;
        d.permitted = word;
    }
    // SAFETY: a v3 header and two data words, as capset(2) expects.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut hdr, data.as_ptr()) };
    if rc != 0 {
        fail();
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    // Keep the interrupted code's errno.
    // SAFETY: errno of this thread.
    let saved = unsafe { *libc::__errno_location() };
    drop_this_thread();
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

fn signal() -> libc::c_int {
    // One real-time signal nobody else here uses (glibc reserves those
    // below SIGRTMIN).
    libc::SIGRTMIN() + 6
}

fn install_handler() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), i32>> = OnceLock::new();
    let res = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction with our handler; the handler only
        // makes raw syscalls and touches atomics.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut sa.sa_mask);
            if libc::sigaction(signal(), &raw const sa, std::ptr::null_mut()) != 0 {
                return Err(*libc::__errno_location());
            }
        }
        Ok(())
    });
    res.map_err(|e| {
        anyhow!(
            "installing the capability-drop signal handler failed: {}",
            std::io::Error::from_raw_os_error(e)
        )
    })
}

/// One thread's capability state, from its `/proc` status.
#[derive(Debug, Default, PartialEq, Eq)]
struct ThreadCaps {
    eff: u64,
    prm: u64,
    inh: u64,
    bnd: u64,
    amb: u64,
    no_new_privs: bool,
}

fn parse_status(text: &str) -> Option<ThreadCaps> {
    let mut t = ThreadCaps::default();
    let mut seen = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let hex = || u64::from_str_radix(value, 16).ok();
        match key {
            "CapEff" => t.eff = hex()?,
            "CapPrm" => t.prm = hex()?,
            "CapInh" => t.inh = hex()?,
            "CapBnd" => t.bnd = hex()?,
            "CapAmb" => t.amb = hex()?,
            "NoNewPrivs" => t.no_new_privs = value == "1",
            _ => continue,
        }
        seen += 1;
    }
    (seen == 6).then_some(t)
}

fn done(t: &ThreadCaps, target: u64, bounding: bool) -> bool {
    t.eff == target
        && t.prm == target
        && t.inh == 0
        && t.amb == 0
        && t.no_new_privs
        && (!bounding || t.bnd & !target == 0)
}

/// Threads of this process that do not show the target yet.
fn pending(target: u64, bounding: bool) -> Result<Vec<libc::pid_t>> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir("/proc/self/task").context("listing /proc/self/task failed")?;
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        // A thread that ended meanwhile has nothing left to drop.
        let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let t = parse_status(&text)
            .ok_or_else(|| anyhow!("thread {tid}'s status has no capability lines"))?;
        if !done(&t, target, bounding) {
            out.push(tid);
        }
    }
    Ok(out)
}

/// Keeps only `keep` (those of it the process has) in every thread:
/// effective, permitted, inheritable, ambient and, with CAP_SETPCAP,
/// bounding; sets `no_new_privs`. Returns the kept set.
pub(crate) fn keep_only(keep: Vec<Capability>) -> Result<Vec<Capability>> {
    let keep = narrowed(keep)?;
    let have = caps::read(None, CapSet::Permitted)
        .map_err(|e| anyhow!("reading this process's capabilities failed: {e}"))?;
    let mut kept: Vec<Capability> = keep.into_iter().filter(|c| have.contains(c)).collect();
    kept.sort_by_key(Capability::index);
    let target = mask(&kept);
    let bounding = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false);
    let last = caps::runtime::procfs_all_supported(None)
        .ok()
        .and_then(|all| all.iter().map(Capability::index).max())
        .unwrap_or(40);
    TARGET.store(target, Ordering::SeqCst);
    DROP_BOUNDING.store(bounding, Ordering::SeqCst);
    LAST_CAP.store(u64::from(last), Ordering::SeqCst);
    FAILED.store(0, Ordering::SeqCst);
    install_handler()?;
    drop_this_thread();
    // SAFETY: plain syscalls with no pointers.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let errno = FAILED.load(Ordering::SeqCst);
        if errno != 0 {
            bail!(
                "dropping capabilities failed: {}; run with fewer capabilities (the DaemonSet's) or report a bug",
                std::io::Error::from_raw_os_error(errno)
            );
        }
        let left: Vec<libc::pid_t> = pending(target, bounding)?;
        if left.is_empty() {
            return Ok(kept);
        }
        if Instant::now() > deadline {
            bail!(
                "dropping capabilities failed: threads {left:?} still hold more than {}",
                names(&kept)
            );
        }
        for tid in left {
            if tid == me {
                drop_this_thread();
                continue;
            }
            // SAFETY: signalling a thread of our own process.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `CAP_BPF,CAP_NET_ADMIN`, or `none`.
pub(crate) fn names(caps: &[Capability]) -> String {
    if caps.is_empty() {
        return "none".into();
    }
    caps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let text = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000008000001000\n\
                    CapEff:\t0000008000001000\nCapBnd:\t0000008000001000\n\
                    CapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        let t = parse_status(text).expect("parses");
        let want = mask(&[Capability::CAP_BPF, Capability::CAP_NET_ADMIN]);
        assert_eq!(t.eff, want);
        assert!(done(&t, want, true));
        assert!(!done(
            &ThreadCaps {
                no_new_privs: false,
                ..t
            },
            want,
            true
        ));
        assert!(parse_status("CapEff:\tzz\n").is_none());
    }

    #[test]
    fn the_set_is_bpf_and_net_admin_and_sys_admin_only_for_clsact() {
        assert_eq!(names(&needed(false)), "CAP_BPF,CAP_NET_ADMIN");
        assert_eq!(names(&needed(true)), "CAP_BPF,CAP_NET_ADMIN,CAP_SYS_ADMIN");
    }
}
