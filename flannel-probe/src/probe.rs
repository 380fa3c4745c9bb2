//! The running probe: node state from netlink, the datapath attached where
//! that state says, and the diagnosis of a window. Every face drives one.
use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt as _;

use crate::{
    datapath::{
        AttachMode, Datapath, DropMatch, Hook, LoadOptions, Matching, Snapshot, drops_netns_inum,
    },
    diagnose::{Inputs, diagnose},
    node::{DiscoverOptions, NoUplink, NodeState, discover, discover_after},
    report::{OverlayChange, Report, mac_string},
};

type LinkEvents = futures::channel::mpsc::UnboundedReceiver<(
    netlink_packet_core::NetlinkMessage<netlink_packet_route::RouteNetlinkMessage>,
    netlink_sys::SocketAddr,
)>;

/// Everything a probe needs to start, built once by the faces (the CLI
/// turns its flags into this; the engine never sees the flags).
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub discover: DiscoverOptions,
    /// Slots per eBPF map (peers, VTEP MACs).
    pub max_peers: u32,
    pub attach_mode: AttachMode,
}

pub(crate) struct Probe {
    handle: rtnetlink::Handle,
    opts: DiscoverOptions,
    dp: Datapath,
    node: NodeState,
    /// (name, ifindex) the uplink programs are attached to.
    uplink_at: Option<(String, u32)>,
    /// ifindex the overlay programs are attached to.
    overlay_at: Option<u32>,
    matching: Option<Matching>,
    drop_match: Option<DropMatch>,
    netns_inum: u32,
    /// Link notifications (RTNLGRP_LINK): a device appearing, going or
    /// changing wakes the faces at once instead of at the next tick.
    link_events: Option<LinkEvents>,
    history: Vec<OverlayChange>,
    /// Self-health: attachments that vanished and were restored.
    attach_gaps: u64,
    /// Attachments that vanished and are not restored yet (hook -> device).
    detached: BTreeMap<Hook, String>,
}

/// How many overlay changes are kept (the newest).
const OVERLAY_HISTORY: usize = 64;

impl Probe {
    /// Checks privileges, discovers the node, loads and attaches the datapath.
    pub(crate) async fn start(options: &ProbeOptions) -> Result<Self> {
        check_privileges()?;
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket failed")?;
        tokio::spawn(conn);
        let opts = options.discover.clone();
        let node = discover(&handle, &opts).await?;
        let dp = Datapath::load(&LoadOptions {
            max_peers: options.max_peers,
            attach_mode: options.attach_mode,
        })?;
        let mut probe = Self {
            handle,
            opts,
            dp,
            node,
            uplink_at: None,
            overlay_at: None,
            matching: None,
            drop_match: None,
            netns_inum: drops_netns_inum()?,
            link_events: link_events(),
            history: Vec::new(),
            attach_gaps: 0,
            detached: BTreeMap::new(),
        };
        probe.sync()?;
        Ok(probe)
    }

    /// Resolves when the kernel announces a link change (never, when the
    /// subscription failed: the faces' ticks still refresh).
    pub(crate) async fn link_changed(&mut self) {
        match self.link_events.as_mut() {
            Some(ev) => {
                if ev.next().await.is_none() {
                    self.link_events = None;
                }
                // Changes come in bursts (delete, add, up): take them all.
                while let Some(ev) = self.link_events.as_mut() {
                    if ev.try_recv().is_err() {
                        break;
                    }
                }
            }
            None => std::future::pending().await,
        }
    }

    fn record(&mut self) {
        let o = self.node.overlay.as_ref();
        let change = OverlayChange {
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            state: self.node.overlay_state(),
            ifindex: o.map(|o| o.ifindex),
            mac: o.and_then(|o| o.mac).map(|m| mac_string(&m)),
        };
        let same = self.history.last().is_some_and(|l| {
            (l.state, l.ifindex, &l.mac) == (change.state, change.ifindex, &change.mac)
        });
        if !same {
            if self.history.len() == OVERLAY_HISTORY {
                self.history.remove(0);
            }
            self.history.push(change);
        }
    }

    /// Makes the datapath follow the node: port and VNI, and attachments to
    /// devices that appeared or were recreated (new ifindex).
    fn sync(&mut self) -> Result<()> {
        self.record();
        let m = Matching {
            vxlan_port: self.node.vxlan_port,
            vni: self.node.vni,
            local_vtep: self.node.local_vtep,
        };
        if self.matching != Some(m) {
            self.dp.configure(m)?;
            self.matching = Some(m);
        }
        let uplink = self.node.uplink.as_ref().ok_or_else(|| {
            let why = self.node.no_uplink.clone().unwrap_or(NoUplink::NoCandidate);
            anyhow!("{}", why.message(&self.node.overlay_name))
        })?;
        let at = Some((uplink.name.clone(), uplink.ifindex));
        if self.uplink_at != at {
            for hook in [Hook::UplinkIngress, Hook::UplinkEgress] {
                self.dp.attach(hook, &uplink.name)?;
            }
            tracing::info!(uplink = %uplink.name, "watching the uplink");
            self.uplink_at = at;
        }
        let dm = DropMatch {
            netns_inum: self.netns_inum,
            overlay_ifindex: self.node.overlay.as_ref().map(|o| o.ifindex),
            overlay_mac: self.node.overlay.as_ref().and_then(|o| o.mac),
            local_vtep: self.node.local_vtep,
            vxlan_port: self.node.vxlan_port,
        };
        if self.drop_match != Some(dm) {
            self.dp.configure_drops(&dm)?;
            self.drop_match = Some(dm);
        }
        match &self.node.overlay {
            Some(o) if self.overlay_at != Some(o.ifindex) => {
                let name = o.name.clone();
                let res: Result<()> = [Hook::OverlayIngress, Hook::OverlayEgress]
                    .into_iter()
                    .try_for_each(|h| self.dp.attach(h, &name));
                match res {
                    Ok(()) => {
                        tracing::info!(overlay = %name, ifindex = o.ifindex, "watching the overlay device");
                        self.overlay_at = Some(o.ifindex);
                    }
                    // It may vanish between discovery and attach: next refresh retries.
                    Err(e) => tracing::warn!("attaching to {name} failed: {e:#}"),
                }
            }
            None if self.overlay_at.is_some() => {
                tracing::warn!(overlay = %self.node.overlay_name, "the overlay device disappeared");
                self.dp.detach(Hook::OverlayIngress);
                self.dp.detach(Hook::OverlayEgress);
                self.overlay_at = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// Re-reads the node and follows it, then re-verifies the attachments
    /// (`serve` and `watch` call this every interval).
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        let previous = self.uplink_at.as_ref().map(|(name, _)| name.clone());
        self.node = discover_after(&self.handle, &self.opts, previous.as_deref()).await?;
        self.sync()?;
        self.self_check();
        Ok(())
    }

    /// Self-health: every attachment still in the kernel (tcx link on its
    /// chain, clsact filter with our program at our priority); a vanished
    /// one is attached again now, or at the next interval while that fails
    /// (then the report carries `DATAPATH_DETACHED`).
    fn self_check(&mut self) {
        for (hook, iface) in self.dp.vanished() {
            tracing::warn!(
                program = hook.program(),
                iface,
                "an attachment of ours vanished"
            );
            self.detached.insert(hook, iface);
        }
        let attached: Vec<Hook> = self
            .dp
            .attachments()
            .into_iter()
            .map(|(h, _, _)| h)
            .collect();
        // Attached again by sync (a recreated device), or an overlay that is
        // gone (its own finding): nothing left to restore.
        let overlay_gone = self.overlay_at.is_none();
        self.detached.retain(|h, _| {
            let overlay_hook = matches!(h, Hook::OverlayIngress | Hook::OverlayEgress);
            !(attached.contains(h) || overlay_gone && overlay_hook)
        });
        let pending: Vec<(Hook, String)> =
            self.detached.iter().map(|(h, i)| (*h, i.clone())).collect();
        for (hook, iface) in pending {
            match self.dp.attach(hook, &iface) {
                Ok(()) => {
                    self.attach_gaps += 1;
                    self.detached.remove(&hook);
                    tracing::warn!(
                        program = hook.program(),
                        iface,
                        "restored a vanished attachment"
                    );
                }
                Err(e) => tracing::warn!("restoring {} on {iface} failed: {e:#}", hook.program()),
            }
        }
    }

    pub(crate) fn snapshot(&mut self) -> Result<Snapshot> {
        self.dp.snapshot()
    }

    /// The diagnosis of `window` (counters over `secs` seconds).
    pub(crate) fn report(&self, window: &Snapshot, secs: f64) -> Report {
        let attached: BTreeMap<String, String> = self
            .dp
            .attachments()
            .into_iter()
            .map(|(_, iface, mode)| (iface, format!("{mode:?}").to_lowercase()))
            .collect();
        let mut r = diagnose(&Inputs {
            window,
            window_secs: secs,
            node: &self.node,
            drop_reason: &|n| self.dp.drop_reason(n),
            attached,
            drops_unavailable: self.dp.drops_unavailable(),
            attach_gaps: self.attach_gaps,
            detached: self
                .detached
                .keys()
                .map(|h| h.program().to_string())
                .collect(),
        });
        r.overlay_history = self.history.clone();
        r
    }
}

/// Consecutive windows of a probe's counters, one report per call (the
/// faces that show "the last interval": `watch`).
pub(crate) struct Windows {
    prev: Snapshot,
    t_prev: Instant,
}

impl Windows {
    pub(crate) fn new(probe: &mut Probe) -> Result<Self> {
        Ok(Self {
            prev: probe.snapshot()?,
            t_prev: Instant::now(),
        })
    }

    /// The report of the window since the last call.
    pub(crate) fn next(&mut self, probe: &mut Probe) -> Result<Report> {
        let now = probe.snapshot()?;
        let secs = self.t_prev.elapsed().as_secs_f64();
        let report = probe.report(&now.since(&self.prev), secs);
        self.prev = now;
        self.t_prev = Instant::now();
        Ok(report)
    }
}

/// The three capabilities eBPF observation needs; all missing ones named.
pub(crate) fn check_privileges() -> Result<()> {
    use caps::{CapSet, Capability};
    let have = caps::read(None, CapSet::Effective)
        .map_err(|e| anyhow!("reading this process's capabilities failed: {e}"))?;
    let missing: Vec<&str> = [
        (Capability::CAP_BPF, "CAP_BPF"),
        (Capability::CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (Capability::CAP_PERFMON, "CAP_PERFMON"),
    ]
    .into_iter()
    .filter(|(c, _)| !have.contains(c))
    .map(|(_, n)| n)
    .collect();
    if !missing.is_empty() {
        bail!(
            "missing capabilities {}: run flannel-probe as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON",
            missing.join(", ")
        );
    }
    Ok(())
}

/// A netlink socket subscribed to link changes, or `None` (logged).
fn link_events() -> Option<LinkEvents> {
    let open = || -> Result<LinkEvents> {
        let (mut conn, _handle, events) =
            rtnetlink::new_connection().context("opening a netlink socket failed")?;
        use netlink_sys::AsyncSocket as _;
        let addr = netlink_sys::SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK);
        conn.socket_mut()
            .socket_mut()
            .bind(&addr)
            .context("subscribing to link changes failed")?;
        tokio::spawn(conn);
        Ok(events)
    };
    open()
        .map_err(|e| tracing::warn!("{e:#}: device changes are noticed at the next refresh only"))
        .ok()
}

/// SIGINT, SIGTERM and SIGHUP, caught from the moment [`Shutdown::install`]
/// returns: a signal during start-up still ends in a clean detach.
pub(crate) struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub(crate) fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler failed")?,
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler failed")?,
            hup: signal(SignalKind::hangup()).context("installing a SIGHUP handler failed")?,
        })
    }

    /// Resolves on the next of the three.
    pub(crate) async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
            _ = self.hup.recv() => {},
        }
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP received after the first poll.
pub(crate) async fn shutdown_signal() -> Result<()> {
    Shutdown::install()?.wait().await;
    Ok(())
}
