//! Node discovery: what the kernel of this node says about the Flannel VXLAN
//! overlays (`flannel.1` with IPv4 VTEPs, `flannel-v6.1` with IPv6 VTEPs on
//! dual-stack and IPv6-only clusters: each device, its underlay NIC, FDB,
//! neighbours, routes) and whether anything is bound to the VXLAN UDP port.
//!
//! Everything is read over netlink (rtnetlink for links, addresses, routes,
//! neighbours and the bridge FDB; `NETLINK_SOCK_DIAG` for UDP sockets) plus
//! one `/proc/sys` file. Both the netlink sockets and `/proc/sys/net` follow
//! the network namespace of the *calling thread*: call [`discover`] on the
//! thread whose namespace you want to inspect (do not move the sock_diag part
//! to `spawn_blocking`, whose threads may sit in another namespace).

mod fdb;
mod links;
mod routes;
mod snmp;
mod sockdiag;
mod tables;
mod uplink;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, anyhow};

pub use fdb::NUD_PERMANENT;
pub(crate) use fdb::{NUD_FAILED, NUD_INCOMPLETE};
pub(crate) use snmp::csum_counter;
pub(crate) use tables::Tables;
pub use uplink::{NoUplink, UplinkSource};

/// Flannel's VXLAN port, when the device names none.
pub(crate) use flannel_probe_common::parse::DEFAULT_VXLAN_PORT;

/// The state of the overlay device as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayState {
    /// Administratively up and operationally up (or "unknown", which is what
    /// a working VXLAN device reports).
    Up,
    /// Present but administratively or operationally down.
    Down,
    /// No device of that name.
    Missing,
}

impl OverlayState {
    /// `"up"`, `"down"` or `"missing"`, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayState::Up => "up",
            OverlayState::Down => "down",
            OverlayState::Missing => "missing",
        }
    }
}

impl std::fmt::Display for OverlayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VXLAN device (e.g. `flannel.1`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Overlay {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// Link kind (`IFLA_INFO_KIND`), `"vxlan"` expected. Empty when the kernel
    /// reports no kind (a physical NIC).
    pub kind: String,
    /// `IFF_UP`.
    pub admin_up: bool,
    /// `IFF_RUNNING`, or operstate up/unknown while admin up.
    pub oper_up: bool,
    /// Hardware address, if it is a 6-byte Ethernet address.
    pub mac: Option<[u8; 6]>,
    /// `IFLA_MTU`.
    pub mtu: Option<u32>,
    /// `IFLA_VXLAN_ID`.
    pub vni: Option<u32>,
    /// `IFLA_VXLAN_PORT`, in host byte order.
    pub port: Option<u16>,
    /// `IFLA_VXLAN_LOCAL` (IPv4) or `IFLA_VXLAN_LOCAL6` (IPv6).
    pub local: Option<IpAddr>,
    /// `IFLA_VXLAN_LINK`: the underlay ifindex (`dev eth0`); `None` if unset.
    pub link: Option<u32>,
    /// `IFLA_VXLAN_LEARNING`.
    pub learning: Option<bool>,
    /// An IPv6 VXLAN device (`IFLA_VXLAN_LOCAL6` or `IFLA_VXLAN_GROUP6`).
    pub ipv6: bool,
}

/// The address family of an overlay's VTEPs: `flannel.1` sends VXLAN over
/// IPv4, `flannel-v6.1` over IPv6.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum VtepFamily {
    #[default]
    Ipv4,
    Ipv6,
}

impl VtepFamily {
    /// The family of an overlay: the device's own (its `local` or group);
    /// for a missing device or one that says nothing, flannel's name
    /// (`flannel-v6.<VNI>`) tells.
    pub fn of(name: &str, overlay: Option<&Overlay>) -> Self {
        match overlay {
            Some(o) if o.ipv6 || o.local.is_some_and(|a| a.is_ipv6()) => VtepFamily::Ipv6,
            Some(o) if o.local.is_some_and(|a| a.is_ipv4()) => VtepFamily::Ipv4,
            _ if name.starts_with("flannel-v6.") => VtepFamily::Ipv6,
            _ => VtepFamily::Ipv4,
        }
    }

    /// `ipv4` or `ipv6`, as in sysctl paths and the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            VtepFamily::Ipv4 => "ipv4",
            VtepFamily::Ipv6 => "ipv6",
        }
    }

    /// Whether `a` is of this family.
    pub fn holds(self, a: IpAddr) -> bool {
        a.is_ipv6() == (self == VtepFamily::Ipv6)
    }
}

/// The underlay NIC that carries the VXLAN packets.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Uplink {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// Usable: administratively up (`IFF_UP`) and operationally up
    /// (`IFF_RUNNING`, i.e. carrier and operstate up or unknown).
    pub up: bool,
    /// `IFLA_MTU`.
    pub mtu: Option<u32>,
    /// Hardware address, if it is a 6-byte Ethernet address.
    pub mac: Option<[u8; 6]>,
    /// IPv4 addresses, in kernel order (primary first).
    pub addrs: Vec<Ipv4Addr>,
    /// IPv6 addresses (link-local included; tentative ones left out), in
    /// kernel order.
    pub addrs6: Vec<Ipv6Addr>,
}

impl Uplink {
    /// The first address of `family` that can be a VTEP (IPv6: not link-local).
    pub fn first_addr(&self, family: VtepFamily) -> Option<IpAddr> {
        match family {
            VtepFamily::Ipv4 => self.addrs.first().copied().map(IpAddr::V4),
            VtepFamily::Ipv6 => self
                .addrs6
                .iter()
                .find(|a| !a.is_unicast_link_local())
                .copied()
                .map(IpAddr::V6),
        }
    }
}

/// One VXLAN FDB entry (`bridge fdb show dev flannel.1`). The all-zero MAC
/// default entries are kept: callers filter.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FdbEntry {
    /// Inner destination MAC.
    pub mac: [u8; 6],
    /// Remote VTEP (`NDA_DST`, IPv4 or IPv6); `None` if absent.
    pub dst: Option<IpAddr>,
    /// `NUD_PERMANENT` is set.
    pub permanent: bool,
}

/// One neighbour entry on the overlay device (ARP for `flannel.1`, NDP
/// for `flannel-v6.1`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NeighEntry {
    /// Neighbour address.
    pub ip: IpAddr,
    /// Its link-layer address, if known.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` bits (see [`NUD_PERMANENT`] and friends).
    pub state: u16,
}

/// One route of the main table (all route types), of the overlay's family.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteEntry {
    /// Destination network (`0.0.0.0` or `::` for the default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Gateway of the route's family (first next hop for multipath routes).
    pub gateway: Option<IpAddr>,
    /// Output interface (first next hop for multipath routes).
    pub oif: Option<u32>,
    /// `RTNH_F_ONLINK`.
    pub onlink: bool,
}

/// How to pick the underlay NIC.
#[derive(Clone, Debug, Default)]
pub enum UplinkChoice {
    /// The VXLAN device's `dev`, else the interface of the default route
    /// of the overlay's family, else the one interface holding the node's
    /// underlay address of that family.
    #[default]
    Auto,
    /// This interface; an error if it does not exist.
    Name(String),
}

/// Which UDP port VXLAN uses.
#[derive(Clone, Debug, Default)]
pub enum PortChoice {
    /// The VXLAN device's `dstport`, else [`DEFAULT_VXLAN_PORT`].
    #[default]
    Auto,
    /// This port.
    Fixed(u16),
}

/// The overlays watched by default, each when it exists: flannel's IPv4
/// and IPv6 devices (VNI 1).
pub const DEFAULT_OVERLAYS: [&str; 2] = ["flannel.1", "flannel-v6.1"];

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct DiscoverOptions {
    /// The VXLAN devices to watch, in order (`--overlay`); the first is the
    /// report's single-overlay fields. Empty: `flannel.1`, and
    /// `flannel-v6.1` when it exists or was seen.
    pub overlays: Vec<String>,
    /// With the default set: overlays watched before, kept while they are
    /// gone (a deleted `flannel-v6.1` is a finding, not a smaller set).
    pub seen_overlays: Vec<String>,
    /// How to pick the underlay NIC.
    pub uplink: UplinkChoice,
    /// Which UDP port VXLAN uses.
    pub port: PortChoice,
}

impl DiscoverOptions {
    /// Options watching exactly `name` (tests, and the single-overlay faces).
    pub fn single(name: &str) -> Self {
        Self {
            overlays: vec![name.to_owned()],
            ..Self::default()
        }
    }

    /// The overlays to read, given the names of the links that exist.
    pub fn resolve(&self, exists: impl Fn(&str) -> bool) -> Vec<String> {
        if !self.overlays.is_empty() {
            let mut out: Vec<String> = Vec::with_capacity(self.overlays.len());
            for name in &self.overlays {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            return out;
        }
        // `flannel.1` always: its absence is the incident this tool exists
        // for, also on a dual-stack node whose `flannel-v6.1` came up
        // (diagnose tells an IPv6-only node by no IPv4 VXLAN arriving).
        // The others when they exist or were seen.
        let mut out = vec![DEFAULT_OVERLAYS[0].to_owned()];
        out.extend(
            DEFAULT_OVERLAYS[1..]
                .iter()
                .filter(|name| exists(name) || self.seen_overlays.iter().any(|s| s == *name))
                .map(|name| (*name).to_owned()),
        );
        out
    }
}

/// Everything discovered about the node, through one overlay: the first
/// watched one, with the others (each a full state of its own: uplink,
/// port, VNI, local VTEP, FDB, neighbours, routes, forwarding) in
/// [`NodeState::other_overlays`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeState {
    /// `gethostname(2)`.
    pub hostname: String,
    /// `uname(2)` release, e.g. `6.18.44`.
    pub kernel: String,
    /// The overlay name that was looked for.
    pub overlay_name: String,
    /// The overlay device; `None` if missing.
    pub overlay: Option<Overlay>,
    /// The underlay NIC; `None` if none could be chosen automatically.
    pub uplink: Option<Uplink>,
    /// How `uplink` was chosen.
    pub uplink_source: Option<UplinkSource>,
    /// Why `auto` chose none (with `uplink` `None`).
    pub no_uplink: Option<NoUplink>,
    /// [`PortChoice::Fixed`], else the device's port, else 8472.
    pub vxlan_port: u16,
    /// The device's VNI.
    pub vni: Option<u32>,
    /// IPv4 or IPv6 VTEPs.
    pub family: VtepFamily,
    /// The device's `local`, else the uplink's first address of `family`.
    pub local_vtep: Option<IpAddr>,
    /// Some UDP socket (IPv4 or IPv6, kernel sockets included) is bound to
    /// `vxlan_port`.
    pub port_bound: bool,
    /// FDB entries of the overlay device.
    pub fdb: Vec<FdbEntry>,
    /// Unicast neighbours of `family` on the overlay device (the NOARP
    /// entries of multicast groups it joined are left out).
    pub neighbours: Vec<NeighEntry>,
    /// Routes of `family` of the main table (all devices).
    pub routes: Vec<RouteEntry>,
    /// Forwarding of decapsulated traffic is on: IPv4
    /// `net.ipv4.conf.<overlay>.forwarding`, IPv6
    /// `net.ipv6.conf.all.forwarding` (see [`forwarding_sysctl`]); `None`
    /// if the file is missing or unreadable (or the overlay is missing).
    pub forwarding: Option<bool>,
    /// The kernel's UDP `InCsumErrors` of the overlay's family
    /// (`/proc/net/snmp`, IPv6 `/proc/net/snmp6`'s `Udp6InCsumErrors`;
    /// cumulative since the namespace was created); `None` if unreadable.
    pub udp_in_csum_errors: Option<u64>,
    /// The other watched overlays, in `--overlay` order (empty with one).
    pub other_overlays: Vec<NodeState>,
}

impl NodeState {
    /// `Missing` if there is no overlay device, `Up` if it is admin and
    /// operationally up, else `Down`.
    pub fn overlay_state(&self) -> OverlayState {
        match &self.overlay {
            None => OverlayState::Missing,
            Some(o) if o.admin_up && o.oper_up => OverlayState::Up,
            Some(_) => OverlayState::Down,
        }
    }

    /// This overlay's state, then the others'.
    pub fn overlays(&self) -> impl Iterator<Item = &NodeState> {
        std::iter::once(self).chain(self.other_overlays.iter())
    }
}

/// Reads the node's overlay state over `handle` (which must belong to the
/// network namespace to inspect, as must the calling thread: the sock_diag
/// socket and `/proc/sys` are opened from it).
///
/// A missing overlay device is not an error; a missing explicitly named
/// uplink is.
#[cfg(test)]
pub(crate) async fn discover(
    handle: &rtnetlink::Handle,
    opts: &DiscoverOptions,
) -> anyhow::Result<NodeState> {
    discover_after(handle, opts, None, &mut Tables::dumping()).await
}

/// [`discover`] for a probe that runs on: `previous` is the uplink it
/// chose before, kept by `auto` when several interfaces qualify and
/// nothing else tells them apart (the overlay, whose `dev` named it, may
/// be gone: the incident). Neighbours, FDB and routes come from `tables`,
/// which dumps only what its notifications cannot vouch for.
pub(crate) async fn discover_after(
    handle: &rtnetlink::Handle,
    opts: &DiscoverOptions,
    previous: Option<&str>,
    tables: &mut Tables,
) -> anyhow::Result<NodeState> {
    let hostname = hostname().context("gethostname(2) failed")?;
    let kernel = kernel_release().context("uname(2) failed")?;

    let all_links = links::dump_links(handle).await?;
    let names = opts.resolve(|name| all_links.iter().any(|l| l.name == name));
    let addrs = links::dump_addrs(handle).await?;
    let overlay_ifindexes: Vec<u32> = all_links
        .iter()
        .filter(|l| names.contains(&l.name))
        .map(|l| l.index)
        .collect();
    tables.begin(&all_links, &addrs, &overlay_ifindexes);
    let routes4 = tables.routes(handle, false).await?;
    let families: Vec<VtepFamily> = names
        .iter()
        .map(|name| {
            let o = all_links.iter().find(|l| &l.name == name);
            VtepFamily::of(name, o.map(links::LinkSummary::to_overlay).as_ref())
        })
        .collect();
    // IPv6 routes only when an IPv6 overlay is watched: an IPv4-only node
    // is read exactly as before.
    let routes6 = if families.contains(&VtepFamily::Ipv6) {
        tables.routes(handle, true).await?
    } else {
        Vec::new()
    };
    // The kernel's IPv6 VXLAN sockets are IPV6_V6ONLY (vxlan_create_sock),
    // so with an IPv6 VXLAN device on the node an IPv6 socket on the port
    // says nothing about IPv4.
    let v6_vxlan_present = all_links
        .iter()
        .any(|l| l.vxlan.as_ref().is_some_and(|v| v.ipv6));
    let facts = NodeFacts {
        links: &all_links,
        addrs: &addrs,
        routes4: &routes4,
        routes6: &routes6,
        v6_vxlan_present,
    };
    let mut states = Vec::with_capacity(names.len());
    for (name, family) in names.iter().zip(families) {
        let mut st = discover_overlay(handle, opts, previous, &facts, tables, name, family).await?;
        st.hostname.clone_from(&hostname);
        st.kernel.clone_from(&kernel);
        states.push(st);
    }
    let mut first = states.remove(0);
    first.other_overlays = states;
    Ok(first)
}

/// What one dump of the node says, shared by every overlay's discovery.
struct NodeFacts<'a> {
    links: &'a [links::LinkSummary],
    addrs: &'a [(u32, IpAddr)],
    routes4: &'a [routes::ParsedRoute],
    routes6: &'a [routes::ParsedRoute],
    v6_vxlan_present: bool,
}

/// The node as seen through the overlay `name` of `family`.
async fn discover_overlay(
    handle: &rtnetlink::Handle,
    opts: &DiscoverOptions,
    previous: Option<&str>,
    facts: &NodeFacts<'_>,
    tables: &mut Tables,
    name: &str,
    family: VtepFamily,
) -> anyhow::Result<NodeState> {
    let all_links = facts.links;
    let overlay = all_links
        .iter()
        .find(|l| l.name == name)
        .map(links::LinkSummary::to_overlay);
    match &overlay {
        None => tracing::debug!(overlay = %name, "overlay device missing"),
        Some(o) if o.kind != "vxlan" => tracing::warn!(
            overlay = %o.name,
            kind = %o.kind,
            "overlay device exists but is not a vxlan device"
        ),
        Some(o) => tracing::debug!(?o, "overlay device found"),
    }
    let ipv6 = family == VtepFamily::Ipv6;
    // The overlay's family only: its routes, its underlay addresses.
    let parsed_routes = if ipv6 { facts.routes6 } else { facts.routes4 };
    let fam_addrs: Vec<(u32, IpAddr)> = facts
        .addrs
        .iter()
        .filter(|(_, a)| family.holds(*a))
        .copied()
        .collect();

    let (fdb, neighbours) = match &overlay {
        Some(o) => (
            tables.fdb(handle, o.ifindex).await?,
            tables.neighbours(handle, o.ifindex, ipv6).await?,
        ),
        None => (Vec::new(), Vec::new()),
    };

    let (uplink_link, uplink_source, no_uplink) = match &opts.uplink {
        UplinkChoice::Name(uplink) => {
            let link = all_links.iter().find(|l| &l.name == uplink).ok_or_else(|| {
                anyhow!(
                    "uplink interface {uplink} does not exist: pass an existing NIC with --uplink \
                     (or leave it out to use the VXLAN device's dev, the default route or the \
                     interface holding the node's address)"
                )
            })?;
            (Some(link), Some(UplinkSource::Flag), None)
        }
        UplinkChoice::Auto => {
            let facts = uplink::UplinkFacts {
                links: all_links,
                addrs: &fam_addrs,
                routes: parsed_routes,
                overlay: overlay.as_ref(),
                fdb: &fdb,
                previous,
            };
            match uplink::choose_auto(&facts) {
                Ok((idx, source)) => (
                    all_links.iter().find(|l| l.index == idx),
                    Some(source),
                    None,
                ),
                Err(why) => (None, None, Some(why)),
            }
        }
    };
    let uplink = uplink_link.map(|l| l.to_uplink(facts.addrs));
    if let (Some(u), Some(source)) = (&uplink, uplink_source) {
        tracing::debug!(uplink = %u.name, overlay = %name, ?source, "uplink chosen");
    }

    let vxlan_port = match opts.port {
        PortChoice::Fixed(p) => p,
        PortChoice::Auto => overlay
            .as_ref()
            .and_then(|o| o.port)
            .unwrap_or(DEFAULT_VXLAN_PORT),
    };
    let bound = sockdiag::udp_local_addrs_on_port(vxlan_port).with_context(|| {
        format!(
            "sock_diag dump of UDP sockets failed while checking port {vxlan_port}: \
             the kernel needs CONFIG_INET_UDP_DIAG (modprobe udp_diag) and the probe needs root"
        )
    })?;
    let port_bound = bound.iter().any(|a| match family {
        VtepFamily::Ipv6 => a.is_ipv6(),
        VtepFamily::Ipv4 => a.is_ipv4() || !facts.v6_vxlan_present,
    });

    let vni = overlay.as_ref().and_then(|o| o.vni);
    let local_vtep = overlay
        .as_ref()
        .and_then(|o| o.local)
        .or_else(|| uplink.as_ref().and_then(|u| u.first_addr(family)));
    let forwarding = overlay
        .as_ref()
        .and_then(|o| forwarding_sysctl(family, &o.name));

    Ok(NodeState {
        hostname: String::new(),
        kernel: String::new(),
        overlay_name: name.to_owned(),
        overlay,
        uplink,
        uplink_source,
        no_uplink,
        vxlan_port,
        vni,
        family,
        local_vtep,
        port_bound,
        fdb,
        neighbours,
        routes: parsed_routes.iter().map(|r| r.entry.clone()).collect(),
        forwarding,
        udp_in_csum_errors: snmp::udp_in_csum_errors(family),
        other_overlays: Vec::new(),
    })
}

/// Whether the kernel forwards what the overlay `ifname` decapsulates, for
/// the calling thread's network namespace: IPv4 reads
/// `net.ipv4.conf.<ifname>.forwarding`; IPv6 reads
/// `net.ipv6.conf.all.forwarding`, the one switch `ip6_forward` consults
/// (the per-device IPv6 value only sets host/router behaviour: with
/// `net.ipv6.conf.flannel-v6.1.forwarding=0` the lab's pods still ping over
/// IPv6; Documentation/networking/ip-sysctl.rst says the same).
pub(crate) fn forwarding_sysctl(family: VtepFamily, ifname: &str) -> Option<bool> {
    match family {
        VtepFamily::Ipv4 => ipv4_forwarding(ifname),
        // The name is checked as for IPv4, though `all` is read.
        VtepFamily::Ipv6 => conf_forwarding("ipv6", ifname).and(conf_forwarding("ipv6", "all")),
    }
}

/// `/proc/sys/net/ipv4/conf/<ifname>/forwarding` == `1`, for the calling
/// thread's network namespace. `None` if the file is missing or unreadable
/// (or the name could not be an interface name).
pub(crate) fn ipv4_forwarding(ifname: &str) -> Option<bool> {
    conf_forwarding("ipv4", ifname)
}

fn conf_forwarding(proto: &str, ifname: &str) -> Option<bool> {
    if ifname.is_empty() || ifname == "." || ifname == ".." || ifname.contains('/') {
        return None;
    }
    let path = format!("/proc/sys/net/{proto}/conf/{ifname}/forwarding");
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s.trim() == "1"),
        Err(e) => {
            tracing::debug!(%path, error = %e, "cannot read forwarding sysctl");
            None
        }
    }
}

/// The host name, from `gethostname(2)`.
pub(crate) fn hostname() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The kernel release, from `uname(2)` (e.g. `6.18.44`).
pub(crate) fn kernel_release() -> std::io::Result<String> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The messages of one netlink datagram: each as (type, payload, the whole
/// message), or `None` for one whose header does not parse (the rest of the
/// datagram is then skipped).
pub(crate) fn datagram_messages(buf: &[u8]) -> impl Iterator<Item = Option<(u16, &[u8], &[u8])>> {
    use netlink_packet_core::NetlinkBuffer;
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Ok(msg) = NetlinkBuffer::new_checked(rest) else {
            rest = &[];
            return Some(None);
        };
        let len = usize::try_from(msg.length()).unwrap_or(usize::MAX);
        let (kind, here) = (msg.message_type(), rest);
        let whole = here.get(..len).unwrap_or(here);
        // After the 16-byte nlmsghdr.
        let payload = whole.get(16..).unwrap_or(&[]);
        // Messages are 4-byte aligned in the datagram.
        rest = here.get(len.saturating_add(3) & !3..).unwrap_or(&[]);
        Some(Some((kind, payload, whole)))
    })
}

/// One rtnetlink notification as the kernel sends it (header and all): the
/// unit tests' datagrams for the link watch and the kept tables.
#[cfg(test)]
pub(crate) fn notification(m: netlink_packet_route::RouteNetlinkMessage) -> Vec<u8> {
    let mut m = netlink_packet_core::NetlinkMessage::from(m);
    m.finalize();
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

/// A netlink message through the kernel's wire format and back: the unit
/// tests' stand-in for what the kernel sends.
#[cfg(test)]
pub(super) fn wire_roundtrip<M>(m: &M) -> M
where
    M: netlink_packet_core::Emitable + netlink_packet_core::Parseable<[u8]>,
{
    let mut wire = vec![0u8; m.buffer_len()];
    m.emit(&mut wire);
    match M::parse(&wire[..]) {
        Ok(back) => back,
        Err(e) => panic!("a message we emitted does not parse: {e}"),
    }
}

/// Converts a link-layer address to an Ethernet MAC if it has 6 bytes.
fn mac6(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use flannel_probe_tests::lab::netns::Netns;

    use super::*;

    /// Runs `f` inside `ns` with a fresh rtnetlink connection (with
    /// `NETLINK_GET_STRICT_CHK` if `strict`) on a current-thread runtime.
    fn with_handle<T, F, Fut>(ns: &Netns, strict: bool, f: F) -> anyhow::Result<T>
    where
        T: Send,
        F: FnOnce(rtnetlink::Handle) -> Fut + Send,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        ns.run_in(move || {
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

    /// Runs [`discover`] inside `ns`.
    fn discover_in(ns: &Netns, opts: DiscoverOptions) -> anyhow::Result<NodeState> {
        with_handle(ns, false, |h| async move { discover(&h, &opts).await })
    }

    /// Runs [`discover`] inside `ns` over a strict-checking connection.
    fn discover_in_strict(ns: &Netns, opts: DiscoverOptions) -> anyhow::Result<NodeState> {
        with_handle(ns, true, |h| async move { discover(&h, &opts).await })
    }

    fn opts() -> DiscoverOptions {
        DiscoverOptions::default()
    }

    /// eth0 with 192.0.2.13/24 and a default route via 192.0.2.1.
    fn underlay(ns: &Netns) {
        ns.add_nic("eth0");
        ns.ip("addr add 192.0.2.13/24 dev eth0");
        ns.ip("route add default via 192.0.2.1 dev eth0");
    }

    /// flannel.1 as Flannel sets it up, with one remote node (10.42.1.0/24
    /// behind VTEP 192.0.2.11).
    fn flannel(ns: &Netns, dstport: u16) {
        ns.ip(&format!(
            "link add flannel.1 type vxlan id 1 local 192.0.2.13 dev eth0 dstport {dstport} nolearning"
        ));
        ns.ip("link set flannel.1 mtu 1450");
        ns.ip("link set flannel.1 up");
        ns.ip("addr add 10.42.0.0/32 dev flannel.1");
        ns.ip("route add 10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink");
        ns.ip("neigh add 10.42.1.0 lladdr 0e:00:00:00:00:01 dev flannel.1 nud permanent");
        ns.bridge("fdb append 0e:00:00:00:00:01 dev flannel.1 dst 192.0.2.11 self permanent");
    }

    const REMOTE_MAC: [u8; 6] = [0x0e, 0, 0, 0, 0, 1];

    #[test]
    fn full_flannel_node() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        flannel(&ns, 8472);
        ns.write_sysctl("net/ipv4/conf/flannel.1/forwarding", "1");
        let eth0 = ns.ifindex("eth0");
        let fl = ns.ifindex("flannel.1");

        let st = discover_in(&ns, opts()).expect("discover");
        assert_eq!(st.overlay_state(), OverlayState::Up);
        assert_eq!(st.overlay_name, "flannel.1");
        assert!(!st.hostname.is_empty());
        assert!(
            st.kernel.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{}",
            st.kernel
        );

        let o = st.overlay.as_ref().expect("overlay");
        assert_eq!(o.name, "flannel.1");
        assert_eq!(o.ifindex, fl);
        assert_eq!(o.kind, "vxlan");
        assert!(o.admin_up && o.oper_up);
        assert!(o.mac.is_some_and(|m| m != [0; 6]));
        assert_eq!(o.mtu, Some(1450));
        assert_eq!(o.vni, Some(1));
        assert_eq!(o.port, Some(8472));
        assert_eq!(o.local, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13))));
        assert!(!o.ipv6);
        assert_eq!(o.link, Some(eth0));
        assert_eq!(o.learning, Some(false));

        let u = st.uplink.as_ref().expect("uplink");
        assert_eq!(u.name, "eth0");
        assert_eq!(u.ifindex, eth0);
        assert!(u.up);
        assert_eq!(u.mtu, Some(1500));
        assert!(u.mac.is_some());
        assert_eq!(u.addrs, vec![Ipv4Addr::new(192, 0, 2, 13)]);

        assert_eq!(st.vxlan_port, 8472);
        assert_eq!(st.vni, Some(1));
        assert_eq!(
            st.local_vtep,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13)))
        );
        assert!(st.port_bound, "kernel VXLAN socket on 8472 not seen");
        assert_eq!(st.forwarding, Some(true));

        let remote = FdbEntry {
            mac: REMOTE_MAC,
            dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))),
            permanent: true,
        };
        assert!(st.fdb.contains(&remote), "{:?}", st.fdb);
        assert_eq!(
            st.neighbours,
            vec![NeighEntry {
                ip: IpAddr::V4(Ipv4Addr::new(10, 42, 1, 0)),
                mac: Some(REMOTE_MAC),
                state: NUD_PERMANENT,
            }]
        );
        let r = RouteEntry {
            dst: IpAddr::V4(Ipv4Addr::new(10, 42, 1, 0)),
            prefix_len: 24,
            gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 42, 1, 0))),
            oif: Some(fl),
            onlink: true,
        };
        assert!(st.routes.contains(&r), "{:?}", st.routes);
        let default = RouteEntry {
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
            gateway: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            oif: Some(eth0),
            onlink: false,
        };
        assert!(st.routes.contains(&default), "{:?}", st.routes);
        // The connected route of eth0 is there too; local-table routes are not.
        assert!(
            st.routes
                .iter()
                .any(|r| r.dst == IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0))
                    && r.prefix_len == 24
                    && r.gateway.is_none()
                    && r.oif == Some(eth0))
        );
        assert!(!st.routes.iter().any(|r| r.prefix_len == 32));

        // The same through a NETLINK_GET_STRICT_CHK connection, whose kernel
        // side rejects dump requests with unexpected header fields.
        let strict = discover_in_strict(&ns, opts()).expect("discover (strict)");
        assert_eq!(strict.fdb, st.fdb);
        assert_eq!(strict.neighbours, st.neighbours);
        assert_eq!(strict.routes, st.routes);
        assert_eq!(
            strict.uplink.map(|u| u.addrs),
            Some(vec![Ipv4Addr::new(192, 0, 2, 13)])
        );
        assert_eq!(strict.overlay.and_then(|o| o.vni), Some(1));
    }

    #[test]
    fn overlay_deleted_is_missing_not_an_error() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        flannel(&ns, 8472);
        ns.ip("link del flannel.1");
        let eth0 = ns.ifindex("eth0");

        let st = discover_in(&ns, opts()).expect("discover");
        assert!(st.overlay.is_none());
        assert_eq!(st.overlay_state(), OverlayState::Missing);
        let u = st.uplink.as_ref().expect("uplink from default route");
        assert_eq!((u.name.as_str(), u.ifindex), ("eth0", eth0));
        assert_eq!(st.vxlan_port, DEFAULT_VXLAN_PORT);
        assert!(!st.port_bound);
        assert_eq!(st.vni, None);
        assert_eq!(
            st.local_vtep,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13)))
        );
        assert!(st.fdb.is_empty() && st.neighbours.is_empty());
        assert_eq!(st.forwarding, None);
        assert!(
            !st.routes
                .iter()
                .any(|r| r.dst == IpAddr::V4(Ipv4Addr::new(10, 42, 1, 0)))
        );
    }

    #[test]
    fn overlay_down() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        flannel(&ns, 8472);
        ns.ip("link set flannel.1 down");

        let st = discover_in(&ns, opts()).expect("discover");
        assert_eq!(st.overlay_state(), OverlayState::Down);
        let o = st.overlay.as_ref().expect("overlay");
        assert!(!o.admin_up && !o.oper_up);
        assert_eq!(st.vxlan_port, 8472);
        assert!(!st.port_bound, "a down VXLAN device has no socket");
        // The FDB survives a down/up; the neighbour and route go with the link.
        assert!(st.fdb.iter().any(|f| f.mac == REMOTE_MAC));
    }

    #[test]
    fn iana_port_4789() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        flannel(&ns, 4789);

        let st = discover_in(&ns, opts()).expect("discover");
        assert_eq!(st.overlay_state(), OverlayState::Up);
        assert_eq!(st.overlay.as_ref().and_then(|o| o.port), Some(4789));
        assert_eq!(st.vxlan_port, 4789);
        assert!(st.port_bound);

        // A fixed port overrides the device's, and nobody is on 8472 here.
        let fixed = DiscoverOptions {
            port: PortChoice::Fixed(8472),
            ..opts()
        };
        let st = discover_in(&ns, fixed).expect("discover");
        assert_eq!(st.vxlan_port, 8472);
        assert!(!st.port_bound);
    }

    #[test]
    fn explicit_unknown_uplink_is_an_error() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        flannel(&ns, 8472);
        let o = DiscoverOptions {
            uplink: UplinkChoice::Name("eth9".to_owned()),
            ..opts()
        };
        let err = discover_in(&ns, o).expect_err("eth9 does not exist");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("uplink interface eth9 does not exist"),
            "{msg}"
        );
        assert!(msg.contains("--uplink"), "{msg}");
    }

    /// A NIC that `auto` may pick (a veth with its peer up, as the lab's
    /// and k3d's eth0; `add_nic` may make a dummy, which never qualifies).
    fn veth_nic(ns: &Netns, name: &str) {
        ns.ip(&format!("link add {name} type veth peer name {name}p"));
        ns.ip(&format!("link set {name}p up"));
        ns.ip(&format!("link set {name} up"));
    }

    #[test]
    fn explicit_uplink_and_no_default_route() {
        let Some(ns) = Netns::for_test() else { return };
        veth_nic(&ns, "eth0");
        veth_nic(&ns, "eth1");
        ns.ip("addr add 198.51.100.9/24 dev eth0");
        ns.ip("addr add 198.51.100.7/24 dev eth1");
        ns.ip("addr add 198.51.100.8/24 dev eth1");
        // VXLAN without `dev`, `local` or FDB, no default route and two
        // NICs on one subnet: nothing to pick from.
        ns.ip("link add flannel.1 type vxlan id 7 dstport 8472");
        ns.ip("link set flannel.1 up");
        ns.write_sysctl("net/ipv4/conf/flannel.1/forwarding", "0");

        let st = discover_in(&ns, opts()).expect("discover");
        let o = st.overlay.as_ref().expect("overlay");
        assert_eq!((o.link, o.local, o.learning), (None, None, Some(true)));
        assert!(
            st.uplink.is_none(),
            "no dev, no default route: {:?}",
            st.uplink
        );
        assert_eq!(
            st.no_uplink,
            Some(NoUplink::Several(vec!["eth0".into(), "eth1".into()]))
        );
        assert_eq!(st.uplink_source, None);
        assert_eq!(st.local_vtep, None);
        assert!(st.port_bound);
        assert_eq!(st.forwarding, Some(false));

        let o = DiscoverOptions {
            uplink: UplinkChoice::Name("eth1".to_owned()),
            ..opts()
        };
        let st = discover_in(&ns, o).expect("discover");
        let u = st.uplink.as_ref().expect("uplink");
        assert_eq!(u.name, "eth1");
        assert_eq!(st.uplink_source, Some(UplinkSource::Flag));
        assert_eq!(
            u.addrs,
            vec![
                Ipv4Addr::new(198, 51, 100, 7),
                Ipv4Addr::new(198, 51, 100, 8)
            ]
        );
        assert_eq!(
            st.local_vtep,
            Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)))
        );
        assert_eq!(st.vni, Some(7));
    }

    #[test]
    fn no_default_route_after_the_incident_takes_the_underlay_address() {
        let Some(ns) = Netns::for_test() else { return };
        veth_nic(&ns, "eth0");
        ns.ip("addr add 192.0.2.13/24 dev eth0");
        // Flannel's bridge with a pod's veth, holding the pod gateway.
        ns.ip("link add cni0 type bridge");
        ns.ip("addr add 10.42.0.1/24 dev cni0");
        ns.ip("link add vethpod type veth peer name vethpodp");
        ns.ip("link set vethpod master cni0");
        ns.ip("link set vethpodp up");
        ns.ip("link set vethpod up");
        ns.ip("link set cni0 up");
        flannel(&ns, 8472);
        let eth0 = ns.ifindex("eth0");

        let st = discover_in(&ns, opts()).expect("discover");
        assert_eq!(st.uplink_source, Some(UplinkSource::VxlanDev));
        assert_eq!(st.uplink.as_ref().map(|u| u.ifindex), Some(eth0));

        // The incident: flannel.1 (and its dev) gone, no default route.
        ns.ip("link del flannel.1");
        let st = discover_in(&ns, opts()).expect("discover");
        let u = st.uplink.as_ref().expect("uplink by the underlay address");
        assert_eq!((u.name.as_str(), u.ifindex), ("eth0", eth0));
        assert_eq!(st.uplink_source, Some(UplinkSource::UnderlayAddress));
        assert_eq!(st.no_uplink, None);
        assert_eq!(
            st.local_vtep,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13)))
        );

        // A second NIC: several, unless the previous choice tells.
        veth_nic(&ns, "eth1");
        ns.ip("addr add 198.51.100.7/24 dev eth1");
        let st = discover_in(&ns, opts()).expect("discover");
        assert!(st.uplink.is_none(), "{:?}", st.uplink);
        assert_eq!(
            st.no_uplink,
            Some(NoUplink::Several(vec!["eth0".into(), "eth1".into()]))
        );
        let st = with_handle(&ns, false, |h| async move {
            discover_after(&h, &opts(), Some("eth0"), &mut Tables::dumping()).await
        })
        .expect("discover");
        assert_eq!(st.uplink.map(|u| u.ifindex), Some(eth0));
    }

    #[test]
    fn overlay_that_is_not_vxlan() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        ns.ip("link add flannel.1 type veth peer name flannel.1p");
        ns.ip("link set flannel.1 up");

        let st = discover_in(&ns, opts()).expect("discover");
        let o = st.overlay.as_ref().expect("overlay");
        assert_eq!(o.kind, "veth");
        assert_eq!((o.vni, o.port, o.local, o.link), (None, None, None, None));
        // Its peer is down: admin up but no carrier.
        assert!(o.admin_up && !o.oper_up);
        assert_eq!(st.overlay_state(), OverlayState::Down);
        assert_eq!(st.uplink.as_ref().map(|u| u.name.as_str()), Some("eth0"));
        assert_eq!(st.vxlan_port, DEFAULT_VXLAN_PORT);
    }

    /// flannel-v6.1 as flannel programs it next to flannel.1 (dual-stack):
    /// eth0 with an IPv6 underlay address, the device with `local` that
    /// address, one remote node's IPv6 pod subnet routed `onlink` via its
    /// network address, a permanent neighbour and an FDB entry to the
    /// remote's public IPv6.
    fn flannel6(ns: &Netns) {
        ns.ip("-6 addr add fd00:192:0:2::13/64 dev eth0 nodad");
        ns.ip("-6 route add default via fd00:192:0:2::1 dev eth0");
        ns.ip(
            "link add flannel-v6.1 type vxlan id 1 local fd00:192:0:2::13 dev eth0 dstport 8472 nolearning",
        );
        ns.ip("link set flannel-v6.1 up");
        ns.ip("-6 addr add 2001:cafe:42::/128 dev flannel-v6.1 nodad");
        ns.ip("-6 route add 2001:cafe:42:1::/64 via 2001:cafe:42:1:: dev flannel-v6.1 onlink");
        ns.ip(
            "-6 neigh add 2001:cafe:42:1:: lladdr 0e:00:00:00:00:02 dev flannel-v6.1 nud permanent",
        );
        ns.bridge(
            "fdb append 0e:00:00:00:00:02 dev flannel-v6.1 dst fd00:192:0:2::11 self permanent",
        );
    }

    const REMOTE_MAC6: [u8; 6] = [0x0e, 0, 0, 0, 0, 2];

    fn v6(a: &str) -> IpAddr {
        IpAddr::V6(a.parse().expect("IPv6 address"))
    }

    #[test]
    fn dual_stack_node_watches_both_overlays_by_default() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        flannel(&ns, 8472);
        flannel6(&ns);
        ns.write_sysctl("net/ipv4/conf/flannel.1/forwarding", "1");
        // The device's IPv6 value does not gate forwarding; `all` does.
        ns.write_sysctl("net/ipv6/conf/all/forwarding", "1");
        ns.write_sysctl("net/ipv6/conf/flannel-v6.1/forwarding", "0");
        let eth0 = ns.ifindex("eth0");
        let fl6 = ns.ifindex("flannel-v6.1");

        let st = discover_in(&ns, opts()).expect("discover");
        // The first overlay is flannel.1, read exactly as on an IPv4 node.
        assert_eq!(st.overlay_name, "flannel.1");
        assert_eq!(st.family, VtepFamily::Ipv4);
        assert_eq!(
            st.local_vtep,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13)))
        );
        assert!(st.routes.iter().all(|r| r.dst.is_ipv4()));
        assert!(st.neighbours.iter().all(|n| n.ip.is_ipv4()));
        assert!(st.port_bound);
        assert_eq!(st.forwarding, Some(true));
        let names: Vec<&str> = st.overlays().map(|o| o.overlay_name.as_str()).collect();
        assert_eq!(names, ["flannel.1", "flannel-v6.1"]);

        let s6 = &st.other_overlays[0];
        assert_eq!(s6.hostname, st.hostname);
        assert_eq!(s6.overlay_state(), OverlayState::Up);
        assert_eq!(s6.family, VtepFamily::Ipv6);
        let o = s6.overlay.as_ref().expect("flannel-v6.1");
        assert!(o.ipv6);
        assert_eq!(o.local, Some(v6("fd00:192:0:2::13")));
        assert_eq!((o.vni, o.port, o.link), (Some(1), Some(8472), Some(eth0)));
        assert_eq!(s6.local_vtep, Some(v6("fd00:192:0:2::13")));
        assert_eq!(s6.uplink_source, Some(UplinkSource::VxlanDev));
        let u = s6.uplink.as_ref().expect("uplink");
        assert_eq!(u.name, "eth0");
        assert!(
            u.addrs6
                .contains(&"fd00:192:0:2::13".parse().expect("addr"))
        );
        assert_eq!(u.addrs, vec![Ipv4Addr::new(192, 0, 2, 13)]);
        assert_eq!(s6.vxlan_port, 8472);
        assert!(s6.port_bound, "the IPv6 VXLAN socket on 8472");
        assert_eq!(s6.forwarding, Some(true));
        assert!(
            s6.fdb.contains(&FdbEntry {
                mac: REMOTE_MAC6,
                dst: Some(v6("fd00:192:0:2::11")),
                permanent: true,
            }),
            "{:?}",
            s6.fdb
        );
        assert!(
            s6.neighbours.contains(&NeighEntry {
                ip: v6("2001:cafe:42:1::"),
                mac: Some(REMOTE_MAC6),
                state: NUD_PERMANENT,
            }),
            "{:?}",
            s6.neighbours
        );
        assert!(s6.routes.contains(&RouteEntry {
            dst: v6("2001:cafe:42:1::"),
            prefix_len: 64,
            gateway: Some(v6("2001:cafe:42:1::")),
            oif: Some(fl6),
            onlink: true,
        }));
        assert!(s6.routes.iter().all(|r| r.dst.is_ipv6()));

        // The same over a strict-checking connection.
        let strict = discover_in_strict(&ns, opts()).expect("discover (strict)");
        assert_eq!(strict.other_overlays[0].fdb, s6.fdb);
        assert_eq!(strict.other_overlays[0].routes, s6.routes);
        // The kernel adds NOARP entries for the multicast groups the new
        // device joins as it goes: compare the unicast ones.
        let unicast = |n: &[NeighEntry]| -> Vec<NeighEntry> {
            n.iter().filter(|e| !e.ip.is_multicast()).cloned().collect()
        };
        assert_eq!(
            unicast(&strict.other_overlays[0].neighbours),
            unicast(&s6.neighbours)
        );

        // flannel.1 deleted: the IPv6 socket still holds 8472, which says
        // nothing for IPv4 (the kernel's IPv6 VXLAN socket is v6-only).
        ns.ip("link del flannel.1");
        let both = DiscoverOptions {
            overlays: vec!["flannel.1".into(), "flannel-v6.1".into()],
            ..opts()
        };
        let st = discover_in(&ns, both).expect("discover");
        assert_eq!(st.overlay_state(), OverlayState::Missing);
        assert!(!st.port_bound);
        assert_eq!(
            st.local_vtep,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13)))
        );
        assert!(st.other_overlays[0].port_bound);
        assert_eq!(st.other_overlays[0].overlay_state(), OverlayState::Up);
        // By default flannel.1 is looked for even when only flannel-v6.1
        // exists: its absence is the incident (diagnose tells an IPv6-only
        // node by no IPv4 VXLAN arriving).
        ns.write_sysctl("net/ipv6/conf/all/forwarding", "0");
        let st = discover_in(&ns, opts()).expect("discover");
        assert_eq!(st.overlay_name, "flannel.1");
        assert_eq!(st.overlay_state(), OverlayState::Missing);
        assert_eq!(st.other_overlays.len(), 1);
        assert_eq!(st.other_overlays[0].overlay_name, "flannel-v6.1");
        assert_eq!(st.other_overlays[0].forwarding, Some(false));
    }

    #[test]
    fn ipv6_only_node_after_the_incident() {
        let Some(ns) = Netns::for_test() else { return };
        veth_nic(&ns, "eth0");
        flannel6(&ns);
        ns.ip("-6 route del default");
        ns.ip("link del flannel-v6.1");
        let eth0 = ns.ifindex("eth0");
        let st = discover_in(&ns, DiscoverOptions::single("flannel-v6.1")).expect("discover");
        assert_eq!(st.overlay_state(), OverlayState::Missing);
        assert_eq!(st.family, VtepFamily::Ipv6);
        // No dev, no IPv6 default route: eth0 by its IPv6 underlay address
        // (every interface's link-local address does not count).
        let u = st.uplink.as_ref().expect("uplink");
        assert_eq!(u.ifindex, eth0);
        assert_eq!(st.uplink_source, Some(UplinkSource::UnderlayAddress));
        assert_eq!(st.local_vtep, Some(v6("fd00:192:0:2::13")));
        assert!(!st.port_bound);
        assert!(st.fdb.is_empty() && st.neighbours.is_empty());
    }

    /// The tables as the refresh sees them: each overlay's FDB,
    /// neighbours and routes.
    type Seen = Vec<(String, Vec<FdbEntry>, Vec<NeighEntry>, Vec<RouteEntry>)>;

    fn seen(st: &NodeState) -> Seen {
        st.overlays()
            .map(|o| {
                (
                    o.overlay_name.clone(),
                    o.fdb.clone(),
                    o.neighbours.clone(),
                    o.routes.clone(),
                )
            })
            .collect()
    }

    /// A dual-stack node read by a probe that keeps its tables from
    /// notifications: after every kind of change, what it sees is what a
    /// fresh dump says, and it dumps only where the kernel does not notify
    /// (IPv4 routes flushed with a downed device or a deleted address, a
    /// recreated overlay).
    #[test]
    fn kept_tables_follow_the_kernel_and_dump_only_when_they_must() {
        let Some(ns) = Netns::for_test() else { return };
        underlay(&ns);
        flannel(&ns, 8472);
        flannel6(&ns);
        let ns = &ns;
        let out = with_handle(ns, false, |h| async move {
            let mut tables = Tables::subscribed();
            // The dumps before and after one refresh.
            let mut step = async |what: &str| -> anyhow::Result<(tables::Dumps, tables::Dumps)> {
                let before = tables.dumps;
                let kept = discover_after(&h, &opts(), None, &mut tables).await?;
                let fresh = discover(&h, &opts()).await?;
                assert_eq!(seen(&kept), seen(&fresh), "after {what}");
                Ok((before, tables.dumps))
            };
            let (_, first) = step("the first read").await?;
            // Two overlays: FDB and neighbours of each, routes of each family.
            assert_eq!(
                first,
                tables::Dumps {
                    fdb: 2,
                    neigh: 2,
                    routes: 2
                }
            );

            // Peers come, change and go: all notified, nothing dumped.
            for i in 2..40 {
                ns.ip(&format!(
                    "route add 10.42.{i}.0/24 via 10.42.{i}.0 dev flannel.1 onlink"
                ));
                ns.ip(&format!(
                    "neigh add 10.42.{i}.0 lladdr 0e:00:00:00:01:{i:02x} dev flannel.1 nud permanent"
                ));
                ns.bridge(&format!(
                    "fdb append 0e:00:00:00:01:{i:02x} dev flannel.1 dst 192.0.2.{i} self permanent"
                ));
            }
            ns.ip("-6 route add 2001:cafe:42:2::/64 via 2001:cafe:42:2:: dev flannel-v6.1 onlink");
            ns.ip("route replace 10.42.2.0/24 via 10.42.3.0 dev flannel.1 onlink");
            ns.ip("neigh del 10.42.4.0 dev flannel.1");
            ns.ip("route del 10.42.5.0/24");
            ns.bridge("fdb del 0e:00:00:00:01:06 dev flannel.1 dst 192.0.2.6 self");
            ns.ip("-6 neigh del 2001:cafe:42:1:: dev flannel-v6.1");
            // Neighbours of other devices, and a pod's veth coming and going.
            ns.ip("neigh add 192.0.2.77 lladdr 02:00:00:00:00:77 dev eth0");
            ns.ip("link add vethpod type veth peer name vethpodp");
            ns.ip("link set vethpod up");
            ns.ip("link del vethpod");
            assert_eq!(step("peers changing").await?.1, first, "nothing dumped");

            // A MAC moved to another remote: `append` and `replace` are the
            // same notification, so the FDB (only) is dumped.
            ns.bridge("fdb replace 0e:00:00:00:01:03 dev flannel.1 dst 192.0.2.200 self permanent");
            let (before, after) = step("a remote replaced").await?;
            assert_eq!(after.fdb, before.fdb + 1);
            assert_eq!((after.neigh, after.routes), (before.neigh, before.routes));
            ns.bridge("fdb append 0e:00:00:00:01:03 dev flannel.1 dst 192.0.2.201 self permanent");
            step("a remote appended").await?;

            // A device with routes goes down: IPv4 flushes them unnotified.
            ns.add_nic("dummy9");
            ns.ip("route add 10.99.0.0/24 dev dummy9");
            step("a route via dummy9").await?;
            ns.ip("link set dummy9 down");
            let (before, after) = step("dummy9 down").await?;
            assert_eq!(after.routes, before.routes + 2, "routes dumped again");
            assert_eq!((after.fdb, after.neigh), (before.fdb, before.neigh));

            // An address deleted takes the routes it was the source of.
            ns.ip("addr add 192.0.2.99/24 dev eth0");
            ns.ip("route add 10.98.0.0/24 via 192.0.2.1 dev eth0 src 192.0.2.99");
            step("a route from 192.0.2.99").await?;
            ns.ip("addr del 192.0.2.99/24 dev eth0");
            let (before, after) = step("192.0.2.99 deleted").await?;
            assert_eq!(after.routes, before.routes + 2);

            // flannel.1 recreated: its tables are read anew.
            ns.ip("link del flannel.1");
            flannel(ns, 8472);
            let (before, after) = step("flannel.1 recreated").await?;
            assert_eq!(after.fdb, before.fdb + 1);
            assert_eq!(after.neigh, before.neigh + 1);
            Ok(after)
        });
        assert!(out.expect("kept tables").fdb >= 3);
    }

    #[test]
    fn overlay_sets() {
        let none = |_: &str| false;
        let all = |_: &str| true;
        let v6 = |n: &str| n == "flannel-v6.1";
        let d = DiscoverOptions::default();
        assert_eq!(d.resolve(none), ["flannel.1"]);
        assert_eq!(d.resolve(all), ["flannel.1", "flannel-v6.1"]);
        // flannel.1 is always looked for: missing next to flannel-v6.1 is
        // the incident on a dual-stack node (or an IPv6-only node: diagnose).
        assert_eq!(d.resolve(v6), ["flannel.1", "flannel-v6.1"]);
        let seen = DiscoverOptions {
            seen_overlays: vec!["flannel-v6.1".into()],
            ..DiscoverOptions::default()
        };
        assert_eq!(seen.resolve(none), ["flannel.1", "flannel-v6.1"]);
        let named = DiscoverOptions {
            overlays: vec![
                "flannel-v6.1".into(),
                "vxlan0".into(),
                "flannel-v6.1".into(),
            ],
            ..DiscoverOptions::default()
        };
        assert_eq!(named.resolve(none), ["flannel-v6.1", "vxlan0"]);
        assert_eq!(VtepFamily::of("flannel-v6.1", None), VtepFamily::Ipv6);
        assert_eq!(VtepFamily::of("vxlan0", None), VtepFamily::Ipv4);
        assert_eq!(forwarding_sysctl(VtepFamily::Ipv6, "../x"), None);
    }

    /// `discover` must be usable from `tokio::spawn`ed tasks.
    #[allow(dead_code)]
    fn discover_future_is_send(h: &rtnetlink::Handle, o: &DiscoverOptions) {
        fn is_send<T: Send>(_: &T) {}
        is_send(&discover(h, o));
    }

    #[test]
    fn overlay_state_rules() {
        let mut st = NodeState {
            hostname: String::new(),
            kernel: String::new(),
            overlay_name: "flannel.1".into(),
            overlay: None,
            uplink: None,
            uplink_source: None,
            no_uplink: None,
            vxlan_port: 8472,
            vni: None,
            family: VtepFamily::Ipv4,
            local_vtep: None,
            port_bound: false,
            fdb: vec![],
            neighbours: vec![],
            routes: vec![],
            forwarding: None,
            udp_in_csum_errors: None,
            other_overlays: vec![],
        };
        assert_eq!(st.overlay_state(), OverlayState::Missing);
        let o = Overlay {
            name: "flannel.1".into(),
            ifindex: 3,
            kind: "vxlan".into(),
            admin_up: true,
            oper_up: false,
            mac: None,
            mtu: None,
            vni: None,
            port: None,
            local: None,
            link: None,
            learning: None,
            ipv6: false,
        };
        st.overlay = Some(o.clone());
        assert_eq!(st.overlay_state(), OverlayState::Down);
        st.overlay = Some(Overlay { oper_up: true, ..o });
        assert_eq!(st.overlay_state(), OverlayState::Up);
        assert_eq!(
            [OverlayState::Up, OverlayState::Down, OverlayState::Missing].map(OverlayState::as_str),
            ["up", "down", "missing"]
        );
        assert_eq!(OverlayState::Missing.to_string(), "missing");
    }

    #[test]
    fn host_facts_and_forwarding_path() {
        assert!(!hostname().expect("hostname").is_empty());
        assert!(!kernel_release().expect("uname").is_empty());
        assert_eq!(ipv4_forwarding("../../../../etc"), None);
        assert_eq!(ipv4_forwarding("no-such-if-xyz"), None);
        assert_eq!(mac6(&[1, 2, 3, 4, 5, 6]), Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(mac6(&[1, 2, 3]), None);
    }
}
