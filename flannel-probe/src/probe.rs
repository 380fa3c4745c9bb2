//! The running probe: node state from netlink, the datapath attached where
//! that state says, and the diagnosis of a window. Every face drives one.
use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    datapath::{
        AttachMode, Datapath, DropMatch, FamilyMatch, Hook, LoadOptions, MapMemory, Matching,
        OverlayDev, Snapshot, drops_netns_inum, map_memory, memory::human,
    },
    diagnose::{Inputs, diagnose},
    node::{
        DiscoverOptions, NoUplink, NodeState, Tables, UplinkChoice, VtepFamily, discover_after,
    },
    report::{OverlayChange, Report, mac_string},
};

/// The RTNLGRP_LINK subscription, read raw: every pod veth's coming and
/// going reaches it, and a full parse of each notification (dozens of
/// attributes) is the agent's main cost under churn, so only the header and
/// the name are looked at (lazily, through netlink-packet-core's buffers).
type LinkEvents = netlink_sys::TokioSocket;

/// Everything a probe needs to start, built once by the faces (the CLI
/// turns its flags into this; the engine never sees the flags).
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub discover: DiscoverOptions,
    /// Slots per eBPF map (peers, VTEP MACs).
    pub max_peers: u32,
    pub attach_mode: AttachMode,
    /// Refuse to start when the maps would take more kernel memory.
    pub map_memory_limit: u64,
}

/// Default of `--map-memory-limit`: half the DaemonSet's 128Mi memory
/// limit (the maps are charged to the agent's cgroup), leaving the rest
/// for the process itself.
pub(crate) const DEFAULT_MAP_MEMORY_LIMIT: u64 = 64 << 20;

pub(crate) struct Probe {
    handle: rtnetlink::Handle,
    /// Neighbours, FDB and routes, kept from notifications between
    /// refreshes.
    tables: Tables,
    opts: DiscoverOptions,
    dp: Datapath,
    node: NodeState,
    /// (name, ifindex) the uplink programs are attached to.
    uplink_at: Option<(String, u32)>,
    /// Other overlays' uplinks (dual-stack over two NICs), when they
    /// differ from `uplink_at`: the uplink programs sit on each.
    more_uplinks_at: Vec<(String, u32)>,
    /// Overlay device -> ifindex the overlay programs are attached to.
    overlays_at: BTreeMap<String, u32>,
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
    detached: BTreeMap<(Hook, String), ()>,
    /// Kernel memory of the maps, computed before they were created.
    map_memory: MapMemory,
}

/// The kinds of program the probe attaches: the classifiers as tcx links or
/// clsact filters, the drop tracer as a BTF tracepoint.
pub(crate) const HOOK_KINDS: [&str; 3] = ["tcx", "clsact", "btf_tracepoint"];

/// How many overlay changes are kept (the newest).
const OVERLAY_HISTORY: usize = 64;

impl Probe {
    /// Kernel memory of the datapath's maps.
    pub(crate) fn map_memory_bytes(&self) -> u64 {
        self.map_memory.bytes
    }

    /// Attached programs by kind, every kind of [`HOOK_KINDS`] present
    /// (`flannel_probe_attached_hooks`).
    pub(crate) fn attached_hooks(&self) -> BTreeMap<String, u64> {
        let mut by_kind: BTreeMap<String, u64> =
            HOOK_KINDS.iter().map(|k| ((*k).to_string(), 0)).collect();
        for (_, _, mode) in self.dp.attachments() {
            *by_kind
                .entry(format!("{mode:?}").to_lowercase())
                .or_default() += 1;
        }
        if self.dp.drops_unavailable().is_none() {
            *by_kind.entry("btf_tracepoint".into()).or_default() += 1;
        }
        by_kind
    }

    /// Checks privileges, discovers the node, loads and attaches the datapath.
    pub(crate) async fn start(options: &ProbeOptions) -> Result<Self> {
        check_privileges()?;
        let map_memory = check_map_memory(options.max_peers, options.map_memory_limit)?;
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket failed")?;
        tokio::spawn(conn);
        let mut opts = options.discover.clone();
        // Subscribed before the first dump: nothing changed meanwhile is missed.
        let mut tables = Tables::subscribed();
        let node = discover_after(&handle, &opts, None, &mut tables).await?;
        remember_overlays(&mut opts, &node);
        let dp = Datapath::load(&LoadOptions {
            max_peers: options.max_peers,
            attach_mode: options.attach_mode,
        })?;
        let mut probe = Self {
            handle,
            tables,
            opts,
            dp,
            node,
            uplink_at: None,
            more_uplinks_at: Vec::new(),
            overlays_at: BTreeMap::new(),
            matching: None,
            drop_match: None,
            netns_inum: drops_netns_inum()?,
            link_events: link_events(),
            history: Vec::new(),
            attach_gaps: 0,
            detached: BTreeMap::new(),
            map_memory,
        };
        probe.sync()?;
        // Logged once attached: bad input (a missing or ambiguous uplink
        // included) stays a one-line error.
        tracing::info!(
            "eBPF maps: {} of kernel memory ({} bytes) for --max-peers {} on {} possible CPUs",
            human(probe.map_memory.bytes),
            probe.map_memory.bytes,
            options.max_peers,
            probe.map_memory.cpus
        );
        probe.drop_privileges();
        Ok(probe)
    }

    /// Keeps only what attaching again needs (`privilege::needed`): from
    /// here on the process cannot load programs or do anything else root
    /// could. A failure is logged, and the probe observes on.
    fn drop_privileges(&self) {
        let clsact = self
            .dp
            .attachments()
            .iter()
            .any(|(_, _, m)| *m == AttachMode::Clsact);
        match crate::privilege::keep_only(crate::privilege::needed(clsact)) {
            Ok(kept) => tracing::info!(
                capabilities = %crate::privilege::names(&kept),
                "dropped every other capability"
            ),
            Err(e) => tracing::warn!("{e:#}"),
        }
    }

    /// Resolves when the kernel announces a change of the overlay or the
    /// uplink (never, when the subscription failed: the faces' ticks still
    /// refresh). Changes of other devices (pod veths come and go by the
    /// hundred on a busy node) are read and dropped here: the next tick's
    /// refresh sees them, so they cost no reading of their own.
    pub(crate) async fn link_changed(&mut self) {
        loop {
            let Some(ev) = self.link_events.as_mut() else {
                return std::future::pending().await;
            };
            use netlink_sys::AsyncSocketExt as _;
            let buf = match ev.recv_from_full().await {
                Ok((buf, _)) => buf,
                // Notifications were lost: one of them may be ours.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return,
                Err(e) => {
                    tracing::warn!(
                        "reading link changes failed: {e}: device changes are noticed at the \
                         next refresh only"
                    );
                    self.link_events = None;
                    continue;
                }
            };
            if link_notes(&buf).any(|n| self.concerns_us(n)) {
                return;
            }
        }
    }

    /// A link message about the overlay or the uplink, by name or ifindex.
    fn concerns_us(&self, note: LinkNote<'_>) -> bool {
        let names: Vec<&str> = self
            .node
            .overlays()
            .map(|o| o.overlay_name.as_str())
            .collect();
        let watched = LinkWatch {
            overlay_names: &names,
            overlay_ifindex: self.overlays_at.get(&self.node.overlay_name).copied(),
            uplink: self.uplink_at.as_ref().map(|(n, i)| (n.as_str(), *i)),
            uplink_choice: match &self.opts.uplink {
                UplinkChoice::Name(n) => Some(n.as_str()),
                UplinkChoice::Auto => None,
            },
        };
        watched.concerns(note)
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
        let m = node_matching(&self.node);
        if self.matching != Some(m) {
            self.dp.configure(m)?;
            self.matching = Some(m);
        }
        // The first overlay's uplink, else (an IPv6-only node, where the
        // flannel.1 looked for by default has no IPv4 underlay) the first
        // one an overlay has; none at all is an error, as before.
        let uplink = self
            .node
            .overlays()
            .find_map(|o| o.uplink.as_ref())
            .ok_or_else(|| {
                let why = self.node.no_uplink.clone().unwrap_or(NoUplink::NoCandidate);
                anyhow!("{}", why.message(&self.node.overlay_name))
            })?;
        let at = Some((uplink.name.clone(), uplink.ifindex));
        // Each overlay's uplink (dual-stack usually shares one NIC).
        let mut more: Vec<(String, u32)> = Vec::new();
        for u in self.node.overlays().filter_map(|o| o.uplink.as_ref()) {
            let key = (u.name.clone(), u.ifindex);
            if Some(&key) != at.as_ref() && !more.contains(&key) {
                more.push(key);
            }
        }
        if self.uplink_at != at || self.more_uplinks_at != more {
            for hook in [Hook::UplinkIngress, Hook::UplinkEgress] {
                self.dp.attach(hook, &uplink.name)?;
                for (name, _) in &more {
                    self.dp.attach_also(hook, name)?;
                }
            }
            tracing::info!(uplink = %uplink.name, more = ?more, "watching the uplink");
            self.uplink_at = at;
            self.more_uplinks_at = more;
        }
        let mut dm = DropMatch {
            netns_inum: self.netns_inum,
            v4: m.v4,
            v6: m.v6,
            ..DropMatch::default()
        };
        let devices = self.node.overlays().filter_map(|o| o.overlay.as_ref());
        for (slot, o) in dm.overlays.iter_mut().zip(devices) {
            *slot = Some(OverlayDev {
                ifindex: o.ifindex,
                mac: o.mac,
            });
        }
        if self.drop_match != Some(dm) {
            self.dp.configure_drops(&dm)?;
            self.drop_match = Some(dm);
        }
        self.sync_overlays();
        Ok(())
    }

    /// The overlay programs on every watched overlay device that exists,
    /// attached again when a device is recreated (new ifindex), taken off
    /// one that is gone.
    fn sync_overlays(&mut self) {
        let want: BTreeMap<String, u32> = self
            .node
            .overlays()
            .filter_map(|o| o.overlay.as_ref())
            .map(|o| (o.name.clone(), o.ifindex))
            .collect();
        let gone: Vec<String> = self
            .overlays_at
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            tracing::warn!(overlay = %name, "the overlay device disappeared");
            for h in [Hook::OverlayIngress, Hook::OverlayEgress] {
                self.dp.detach_from(h, &name);
            }
            self.overlays_at.remove(&name);
        }
        for (name, ifindex) in want {
            if self.overlays_at.get(&name) == Some(&ifindex) {
                continue;
            }
            let res: Result<()> = [Hook::OverlayIngress, Hook::OverlayEgress]
                .into_iter()
                .try_for_each(|h| self.dp.attach_also(h, &name));
            match res {
                Ok(()) => {
                    tracing::info!(overlay = %name, ifindex, "watching the overlay device");
                    self.overlays_at.insert(name, ifindex);
                }
                // It may vanish between discovery and attach: next refresh retries.
                Err(e) => tracing::warn!("attaching to {name} failed: {e:#}"),
            }
        }
    }

    /// Re-reads the node and follows it, then re-verifies the attachments
    /// (`serve` and `watch` call this every interval).
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        let previous = self.uplink_at.as_ref().map(|(name, _)| name.clone());
        self.node = discover_after(
            &self.handle,
            &self.opts,
            previous.as_deref(),
            &mut self.tables,
        )
        .await?;
        remember_overlays(&mut self.opts, &self.node);
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
            self.detached.insert((hook, iface), ());
        }
        let attached: Vec<(Hook, String)> = self
            .dp
            .attachments()
            .into_iter()
            .map(|(h, i, _)| (h, i))
            .collect();
        // Attached again by sync (a recreated device), or an overlay that is
        // gone (its own finding): nothing left to restore.
        let overlays_at = &self.overlays_at;
        self.detached.retain(|(h, iface), _| {
            let overlay_hook = matches!(h, Hook::OverlayIngress | Hook::OverlayEgress);
            !(attached.contains(&(*h, iface.clone()))
                || overlay_hook && !overlays_at.contains_key(iface))
        });
        let pending: Vec<(Hook, String)> = self.detached.keys().cloned().collect();
        for (hook, iface) in pending {
            match self.dp.attach_also(hook, &iface) {
                Ok(()) => {
                    self.attach_gaps += 1;
                    self.detached.remove(&(hook, iface.clone()));
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
                .map(|(h, _)| h.program().to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
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

/// With the default overlay set, an overlay once watched stays watched:
/// `flannel-v6.1` deleted later is then OVERLAY_DEVICE_MISSING, not an
/// overlay quietly left out.
fn remember_overlays(opts: &mut DiscoverOptions, node: &NodeState) {
    if !opts.overlays.is_empty() {
        return;
    }
    for o in node.overlays() {
        if o.overlay.is_some() && !opts.seen_overlays.contains(&o.overlay_name) {
            opts.seen_overlays.push(o.overlay_name.clone());
        }
    }
}

/// The devices whose link events are followed at once.
struct LinkWatch<'a> {
    /// Every watched overlay, by name.
    overlay_names: &'a [&'a str],
    overlay_ifindex: Option<u32>,
    /// (name, ifindex) the uplink programs are attached to.
    uplink: Option<(&'a str, u32)>,
    /// `--uplink NAME`, which may not exist yet.
    uplink_choice: Option<&'a str>,
}

/// What one notification says, as far as waking the agent goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkNote<'a> {
    /// A link appeared, changed or went: its ifindex and, when sent, name.
    Link { index: u32, name: Option<&'a str> },
    /// Another message type: nothing to do.
    Other,
    /// An overrun, an error or a message that does not parse: notifications
    /// may be lost, so look.
    Unknown,
}

/// The notifications in one datagram, read without parsing their
/// attributes beyond `IFLA_IFNAME`.
fn link_notes(buf: &[u8]) -> impl Iterator<Item = LinkNote<'_>> {
    use netlink_packet_core::NlasIterator;
    const RTM_NEWLINK: u16 = 16;
    const RTM_DELLINK: u16 = 17;
    const RTM_SETLINK: u16 = 19;
    const NLMSG_NOOP: u16 = 1;
    const NLMSG_DONE: u16 = 3;
    const LINK_HEADER_LEN: usize = 16;
    const IFLA_IFNAME: u16 = 3;
    crate::node::datagram_messages(buf).map(|m| {
        let Some((kind, payload, _)) = m else {
            return LinkNote::Unknown;
        };
        match kind {
            RTM_NEWLINK | RTM_DELLINK | RTM_SETLINK => match payload.get(..LINK_HEADER_LEN) {
                Some(h) => {
                    // ifinfomsg: family, pad, type (u16), index (i32).
                    let index = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
                    let name = NlasIterator::new(&payload[LINK_HEADER_LEN..])
                        .map_while(Result::ok)
                        .find(|a| a.kind() == IFLA_IFNAME)
                        .and_then(|a| {
                            // The attribute's bytes (4-byte header, then
                            // the NUL-terminated name) outlive the view.
                            let len = usize::from(a.length());
                            let v = a.into_inner().get(4..len)?;
                            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                            std::str::from_utf8(&v[..end]).ok()
                        });
                    LinkNote::Link { index, name }
                }
                None => LinkNote::Unknown,
            },
            NLMSG_NOOP | NLMSG_DONE => LinkNote::Other,
            t if t >= LINK_TYPES_END => LinkNote::Other,
            _ => LinkNote::Unknown,
        }
    })
}

/// Message types from here on are rtnetlink's own (addresses, routes, ...),
/// which a link subscription does not carry but would be harmless.
const LINK_TYPES_END: u16 = 20;

impl LinkWatch<'_> {
    fn concerns(&self, note: LinkNote<'_>) -> bool {
        let (index, name) = match note {
            LinkNote::Link { index, name } => (index, name),
            LinkNote::Other => return false,
            LinkNote::Unknown => return true,
        };
        if self.overlay_ifindex == Some(index) || self.uplink.is_some_and(|(_, i)| i == index) {
            return true;
        }
        // Without a known uplink any new device may be the one.
        if self.uplink.is_none() {
            return true;
        }
        name.is_some_and(|n| {
            self.overlay_names.contains(&n)
                || self.uplink.is_some_and(|(u, _)| u == n)
                || self.uplink_choice == Some(n)
        })
    }
}

/// The maps' kernel memory for `max_peers` on this machine; an error
/// (exit 2) when it is above `limit`, before anything is loaded.
fn check_map_memory(max_peers: u32, limit: u64) -> Result<MapMemory> {
    let m = map_memory(max_peers)?;
    if m.bytes > limit {
        bail!(
            "the eBPF maps would take {} ({} bytes) of kernel memory for --max-peers {max_peers} on {} possible CPUs, above --map-memory-limit {} ({limit} bytes): lower --max-peers or raise --map-memory-limit (and the pod's memory limit with it)",
            human(m.bytes),
            m.bytes,
            m.cpus,
            human(limit)
        );
    }
    Ok(m)
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
        use netlink_sys::AsyncSocket as _;
        let mut sock = netlink_sys::TokioSocket::new(netlink_sys::protocols::NETLINK_ROUTE)
            .context("opening a netlink socket failed")?;
        let addr = netlink_sys::SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK);
        sock.socket_mut()
            .bind(&addr)
            .context("subscribing to link changes failed")?;
        Ok(sock)
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

/// What the datapath matches: per family, the port, VNI, local VTEP and
/// MAC of the watched overlay of that family (`flannel.1` for IPv4,
/// `flannel-v6.1` for IPv6); a family with no watched overlay is not
/// counted.
fn node_matching(node: &NodeState) -> Matching {
    let mut m = Matching::default();
    for o in node.overlays() {
        let f = FamilyMatch {
            vxlan_port: o.vxlan_port,
            vni: o.vni,
            local_vtep: o.local_vtep,
            overlay_mac: o.overlay.as_ref().and_then(|d| d.mac),
        };
        // One overlay per family: the first named wins.
        let slot = match o.family {
            VtepFamily::Ipv4 => &mut m.v4,
            VtepFamily::Ipv6 => &mut m.v6,
        };
        slot.get_or_insert(f);
    }
    m
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::{
        RouteNetlinkMessage as R,
        link::{LinkAttribute, LinkMessage},
    };

    use super::{LinkNote, LinkWatch, link_notes};
    use crate::node::notification;

    fn link_msg(new: bool, index: u32, name: &str) -> Vec<u8> {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.attributes.push(LinkAttribute::Mtu(1450));
        l.attributes.push(LinkAttribute::IfName(name.into()));
        notification(if new { R::NewLink(l) } else { R::DelLink(l) })
    }

    /// Whether one notification wakes `w` (it reads as exactly one).
    fn wakes(w: &LinkWatch<'_>, buf: &[u8]) -> bool {
        let notes: Vec<LinkNote<'_>> = link_notes(buf).collect();
        assert_eq!(notes.len(), 1, "{notes:?}");
        w.concerns(notes[0])
    }

    #[test]
    fn notifications_are_read_from_the_raw_datagram() {
        // Two in one datagram (the kernel batches), then a cut one.
        let mut buf = link_msg(true, 7, "veth1a2b");
        buf.extend(link_msg(false, 5, "flannel.1"));
        let notes: Vec<LinkNote<'_>> = link_notes(&buf).collect();
        assert_eq!(
            notes,
            [
                LinkNote::Link {
                    index: 7,
                    name: Some("veth1a2b")
                },
                LinkNote::Link {
                    index: 5,
                    name: Some("flannel.1")
                },
            ]
        );
        let cut = &buf[..10];
        assert_eq!(link_notes(cut).collect::<Vec<_>>(), [LinkNote::Unknown]);
        let mut l = LinkMessage::default();
        l.header.index = 3;
        assert_eq!(
            link_notes(&notification(R::NewLink(l))).collect::<Vec<_>>(),
            [LinkNote::Link {
                index: 3,
                name: None
            }]
        );
        assert_eq!(link_notes(&[]).count(), 0);
    }

    #[test]
    fn only_the_overlay_and_the_uplink_wake_the_agent() {
        let w = LinkWatch {
            overlay_names: &["flannel.1", "flannel-v6.1"],
            overlay_ifindex: Some(5),
            uplink: Some(("eth0", 2)),
            uplink_choice: None,
        };
        // The overlay recreated (new ifindex, same name), or deleted.
        assert!(wakes(&w, &link_msg(true, 9, "flannel.1")));
        // Every watched overlay, the second one too.
        assert!(wakes(&w, &link_msg(false, 7, "flannel-v6.1")));
        assert!(wakes(&w, &link_msg(false, 5, "flannel.1")));
        // The uplink, by index (a rename) or name.
        assert!(wakes(&w, &link_msg(true, 2, "eth0-renamed")));
        assert!(wakes(&w, &link_msg(false, 2, "eth0")));
        // Pod veths and bridges come and go: the tick sees them.
        for (new, i, n) in [
            (true, 40, "veth1a2b"),
            (false, 40, "veth1a2b"),
            (true, 3, "cni0"),
        ] {
            assert!(!wakes(&w, &link_msg(new, i, n)), "{n}");
        }
        let named = LinkWatch {
            uplink_choice: Some("bond0"),
            ..w
        };
        assert!(
            wakes(&named, &link_msg(true, 12, "bond0")),
            "--uplink's device appearing"
        );
        let lost = LinkWatch { uplink: None, ..w };
        assert!(
            wakes(&lost, &link_msg(true, 41, "veth9")),
            "no uplink yet: any may be it"
        );
    }
}
