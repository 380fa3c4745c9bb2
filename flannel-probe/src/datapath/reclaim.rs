//! Instances side by side on clsact: a filter at our priority with one of
//! our program names may be a live instance's (another `serve`, a `report`
//! of node-problem-detector, in this PID namespace or a container's) or
//! the leftover of a killed one (SIGKILL leaves clsact filters, unlike tcx
//! links). It is removed only when two independent witnesses say dead:
//!
//! - no process we can see holds its program: no `/proc/*/fdinfo/*` has
//!   `prog_id: <its id>` (a filter holds the program in the kernel, not
//!   by a file descriptor, so a killed instance's program has none);
//! - its owner stopped beating: every instance writes the CLOCK_BOOTTIME
//!   milliseconds every [`BEAT_EVERY`] into slot [`BEAT_SLOT`] of its own
//!   `STATS` map (one past the slots the programs use), which we read
//!   through the filter's program id (prog info -> map ids). Boot time is
//!   one clock for every PID namespace, so this works across containers
//!   whose processes we cannot see.
//!
//! Anything we cannot read (an older version without the slot, an error)
//! counts as alive: a leftover costs one more filter run per packet, a
//! wrong removal blinds a live instance.
use std::{
    os::fd::AsFd as _,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    maps::{Map, MapData, PerCpuArray, PerCpuValues},
    programs::loaded_programs,
};
use flannel_probe_common::abi::{MAP_STATS, STAT_BEAT};
use futures::{StreamExt as _, TryStreamExt as _};
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcFilterBpfOption, TcMessage, TcOption},
};

use super::attach::{CLSACT_PRIORITY, Hook};

/// The heartbeat's slot in `STATS`: one the programs never touch.
pub(super) const BEAT_SLOT: u32 = STAT_BEAT;
/// How often an instance beats.
pub(super) const BEAT_EVERY: Duration = Duration::from_secs(1);
/// A beat older than this (ten missed beats) is a dead owner's.
pub(super) const DEAD_AFTER: Duration = Duration::from_secs(10);

/// CLOCK_BOOTTIME in milliseconds.
fn boottime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1000 + nanos / 1_000_000
}

fn beat_map(data: MapData) -> Result<PerCpuArray<MapData, u64>> {
    let map = Map::from_map_data(data).context("opening the STATS map failed")?;
    PerCpuArray::try_from(map).context("STATS is not a per-CPU array")
}

/// The thread that beats for this instance; stops when dropped.
pub(super) struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Beats once now (before anything is attached, so a new instance is
    /// never mistaken for a dead one) and then every [`BEAT_EVERY`].
    pub(super) fn start(stats: &MapData) -> Result<Self> {
        let fd = stats
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the STATS map descriptor failed")?;
        let mut map = beat_map(MapData::from_fd(fd).context("reopening the STATS map failed")?)?;
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| anyhow!("reading {what} failed: {e}"))?;
        let mut beat = move || -> Result<()> {
            let values = PerCpuValues::try_from(vec![boottime_ms(); cpus])
                .context("building the heartbeat value failed")?;
            map.set(BEAT_SLOT, values, 0)
                .context("writing the heartbeat failed: the eBPF object's STATS map lacks its slot")
        };
        beat()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(BEAT_EVERY) {
                    if let Err(e) = beat() {
                        tracing::warn!("{e:#}");
                    }
                }
            })
            .context("starting the heartbeat thread failed")?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Some visible process has a descriptor on program `id`.
fn held_by_visible_process(id: u32) -> bool {
    let needle = format!("prog_id:\t{id}\n");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        // Cannot look: assume it is held.
        return true;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_to_string(fd.path()).is_ok_and(|s| s.contains(&needle)) {
                return true;
            }
        }
    }
    false
}

/// Age of the newest beat in program `id`'s `STATS`, if it has one.
fn beat_age(id: u32) -> Option<Duration> {
    let info = loaded_programs().flatten().find(|p| p.id() == id)?;
    for map_id in info.map_ids().ok().flatten()? {
        let Ok(data) = MapData::from_id(map_id) else {
            continue;
        };
        if data.info().ok()?.name_as_str() != Some(MAP_STATS) {
            continue;
        }
        let map = beat_map(data).ok()?;
        let newest = map.get(&BEAT_SLOT, 0).ok()?.iter().copied().max()?;
        if newest == 0 {
            return None;
        }
        return Some(Duration::from_millis(boottime_ms().saturating_sub(newest)));
    }
    None
}

/// Both witnesses say nobody runs program `id` any more.
pub(super) fn provably_dead(id: u32) -> bool {
    if held_by_visible_process(id) {
        return false;
    }
    beat_age(id).is_some_and(|age| age > DEAD_AFTER)
}

/// A filter of one of our programs at our priority.
struct Ours {
    msg: TcMessage,
    prog_id: u32,
    name: String,
}

fn ours(msg: TcMessage) -> Option<Ours> {
    if msg.header.info >> 16 != u32::from(CLSACT_PRIORITY) {
        return None;
    }
    let (mut name, mut prog_id) = (None, None);
    for a in &msg.attributes {
        let TcAttribute::Options(opts) = a else {
            continue;
        };
        for o in opts {
            match o {
                TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                TcOption::Bpf(TcFilterBpfOption::ProgId(i)) => prog_id = Some(*i),
                _ => {}
            }
        }
    }
    let name = name?;
    // The kernel names a filter's program "<prog name>" or, from tc,
    // "<file>:[<section>]": ours are the first kind.
    Hook::ALL
        .iter()
        .any(|h| name == h.program())
        .then_some(Ours {
            prog_id: prog_id?,
            name,
            msg,
        })
}

async fn filters(
    handle: &mut rtnetlink::Handle,
    ifindex: i32,
    egress: bool,
) -> Result<Vec<TcMessage>> {
    let req = handle.traffic_filter(ifindex).get();
    let req = if egress { req.egress() } else { req.ingress() };
    req.execute()
        .try_collect()
        .await
        .context("listing tc filters failed")
}

/// Runs `f` on a thread of its own with a netlink handle (same network
/// namespace), so it works inside or outside a runtime.
fn on_thread<T: Send + 'static>(
    f: impl FnOnce(rtnetlink::Handle) -> std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send>>
    + Send
    + 'static,
) -> Result<T> {
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime for tc filters failed")?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().context("opening a netlink socket failed")?;
            tokio::spawn(conn);
            f(handle).await
        })
    })
    .join()
    .map_err(|_| anyhow!("the tc filter thread panicked"))?
}

/// A filter running program `prog_id` at our priority is on that side of
/// `ifindex`'s clsact qdisc (none when the qdisc is gone).
pub(super) fn filter_present(ifindex: u32, egress: bool, prog_id: u32) -> Result<bool> {
    let idx = i32::try_from(ifindex).map_err(|_| anyhow!("ifindex {ifindex} out of range"))?;
    on_thread(move |mut h| {
        Box::pin(async move {
            // No qdisc: the dump fails (EINVAL) or is empty; either way absent.
            let Ok(list) = filters(&mut h, idx, egress).await else {
                return Ok(false);
            };
            Ok(list
                .into_iter()
                .filter_map(ours)
                .any(|f| f.prog_id == prog_id))
        })
    })
}

async fn reclaim_async(ifindex: i32, egress: bool, own: Vec<u32>) -> Result<usize> {
    let (conn, mut handle, _) =
        rtnetlink::new_connection().context("opening a netlink socket failed")?;
    tokio::spawn(conn);
    let list = filters(&mut handle, ifindex, egress).await?;
    let mut reclaimed = 0;
    for f in list.into_iter().filter_map(ours) {
        if own.contains(&f.prog_id) || !provably_dead(f.prog_id) {
            continue;
        }
        // Exactly that filter: its parent, priority, protocol and handle.
        let mut del = TcMessage::with_index(ifindex);
        del.header.parent = f.msg.header.parent;
        del.header.info = f.msg.header.info;
        del.header.handle = f.msg.header.handle;
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelTrafficFilter(del));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut resp = handle
            .request(req)
            .context("sending a tc filter delete failed")?;
        let mut failed = None;
        while let Some(m) = resp.next().await {
            if let netlink_packet_core::NetlinkPayload::Error(e) = m.payload
                && e.code.is_some()
            {
                failed = Some(e.to_io());
            }
        }
        match failed {
            // Someone else reclaimed it first.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Some(e) => tracing::warn!("removing a killed instance's {} filter failed: {e}", f.name),
            None => {
                tracing::info!(
                    prog_id = f.prog_id,
                    "reclaimed the {} filter a killed instance left",
                    f.name
                );
                reclaimed += 1;
            }
        }
    }
    Ok(reclaimed)
}

/// Removes the filters of dead instances on one side of `ifindex`'s
/// clsact qdisc (never one of `own` programs); how many went. On a thread
/// of its own, like the qdisc cleanup, so it runs inside or outside a
/// runtime.
pub(super) fn reclaim_dead(ifindex: u32, egress: bool, own: Vec<u32>) -> Result<usize> {
    let idx = i32::try_from(ifindex).map_err(|_| anyhow!("ifindex {ifindex} out of range"))?;
    let t0 = Instant::now();
    let n = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime for the filter reclaim failed")?;
        rt.block_on(reclaim_async(idx, egress, own))
    })
    .join()
    .map_err(|_| anyhow!("the filter reclaim thread panicked"))??;
    tracing::debug!(ifindex, egress, n, took = ?t0.elapsed(), "reclaim pass");
    Ok(n)
}
