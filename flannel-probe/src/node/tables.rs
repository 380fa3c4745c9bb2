//! The overlays' FDB and neighbours and the main routing tables, kept
//! between refreshes from rtnetlink notifications (RTNLGRP_NEIGH,
//! RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE) instead of dumped every time.
//!
//! A node with 10 000 peers has 10 000 FDB entries, neighbours and routes;
//! dumping and decoding the three every second was half the agent's CPU.
//! Here a table is dumped when it is first needed and again only when the
//! notifications cannot be trusted to have said everything:
//! - the socket overran (ENOBUFS) or a message did not parse: all tables;
//! - a link that a cached route leaves through was deleted or set down, or
//!   the node's addresses changed: the routes, since IPv4 flushes routes
//!   through a downed device, and routes whose source a deleted address
//!   was, without RTM_DELROUTE (fib_sync_down_dev, fib_sync_down_addr);
//! - an overlay device is new (or recreated: a new ifindex): its FDB and
//!   neighbours;
//! - every [`RESYNC`] regardless, so that what no notification says (a
//!   VXLAN FDB entry with several remotes is deleted with one RTM_DELNEIGH
//!   naming the first) is right again within that time.
//!
//! The socket subscribes before the first dump, so a change made while a
//! table is dumped is also queued and applied after it: applying the queue
//! in order ends at the kernel's state whatever the dump caught.
//!
//! Without the socket (opening it failed, or a one-shot `report`), every
//! refresh dumps, as before.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;

use super::{FdbEntry, NeighEntry, fdb, links::LinkSummary, routes};

/// How long a table is trusted without a dump.
pub(crate) const RESYNC: Duration = Duration::from_secs(60);

/// Receive buffer asked for: a burst of changes (flannel programming
/// hundreds of peers at once) fits; an overrun only costs a dump.
const RCVBUF: usize = 4 << 20;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const NLMSG_NOOP: u16 = 1;
const NLMSG_DONE: u16 = 3;
const AF_INET: u8 = 2;
const AF_BRIDGE: u8 = 7;
const AF_INET6: u8 = 10;
const RT_TABLE_MAIN: u8 = 254;
/// A route cache entry (IPv6 exceptions, `ip route get` results): never in
/// a dump of the main table.
const RTM_F_CLONED: u32 = 0x200;

/// An FDB entry's identity: a MAC may have several remotes.
type FdbKey = ([u8; 6], Option<IpAddr>);

/// A route's identity in the kernel's FIB: destination, prefix, TOS and
/// metric (routes that differ only in next hop replace each other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RouteKey {
    dst: IpAddr,
    prefix_len: u8,
    tos: u8,
    priority: u32,
}

/// One table: its entries, and whether they can be used without a dump.
#[derive(Debug)]
struct Table<K, V> {
    entries: BTreeMap<K, V>,
    fresh: bool,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            fresh: false,
        }
    }
}

/// The neighbour tables of one overlay device (its FDB, and ARP or NDP).
#[derive(Debug, Default)]
struct Device {
    fdb: Table<FdbKey, FdbEntry>,
    neigh: Table<IpAddr, NeighEntry>,
}

/// The cached tables and the socket that keeps them.
pub(crate) struct Tables {
    sock: Option<netlink_sys::Socket>,
    buf: Vec<u8>,
    /// Overlay ifindex -> its tables.
    devices: BTreeMap<u32, Device>,
    routes4: Table<RouteKey, routes::ParsedRoute>,
    routes6: Table<RouteKey, routes::ParsedRoute>,
    /// What the last refresh saw: links that are up, and every address.
    links_up: BTreeSet<u32>,
    addrs: Vec<(u32, IpAddr)>,
    last_resync: Instant,
    /// Dumps made, per table kind (the tests' witness).
    pub(crate) dumps: Dumps,
}

/// How many times each kind of table was dumped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dumps {
    pub(crate) fdb: u64,
    pub(crate) neigh: u64,
    pub(crate) routes: u64,
}

/// What one notification is to the tables.
#[derive(Debug, PartialEq, Eq)]
enum Note {
    /// Nothing kept here (another device, table or message type).
    Ignore,
    /// Might have been lost or misread: trust no table.
    Lost,
    Fdb {
        ifindex: u32,
        new: bool,
        entry: FdbEntry,
    },
    Neigh {
        ifindex: u32,
        new: bool,
        entry: NeighEntry,
    },
    Route {
        new: bool,
        key: RouteKey,
        route: routes::ParsedRoute,
    },
}

impl Tables {
    /// Tables dumped on every refresh (no notifications).
    pub(crate) fn dumping() -> Self {
        Self {
            sock: None,
            buf: Vec::new(),
            devices: BTreeMap::new(),
            routes4: Table::default(),
            routes6: Table::default(),
            links_up: BTreeSet::new(),
            addrs: Vec::new(),
            last_resync: Instant::now(),
            dumps: Dumps::default(),
        }
    }

    /// Tables kept from notifications, subscribed on the calling thread's
    /// network namespace; dumping ones when the subscription fails (logged).
    pub(crate) fn subscribed() -> Self {
        let mut t = Self::dumping();
        match subscribe() {
            Ok(sock) => {
                t.sock = Some(sock);
                t.buf = vec![0; 64 << 10];
            }
            Err(e) => tracing::warn!(
                "{e:#}: neighbours, FDB and routes are dumped at every refresh instead"
            ),
        }
        t
    }

    /// Applies the queued notifications, then marks stale what they cannot
    /// vouch for, given this refresh's links and addresses and the overlay
    /// devices it reads (`overlays`: their ifindexes).
    pub(super) fn begin(
        &mut self,
        links: &[LinkSummary],
        addrs: &[(u32, IpAddr)],
        overlays: &[u32],
    ) {
        self.devices.retain(|i, _| overlays.contains(i));
        for i in overlays {
            self.devices.entry(*i).or_default();
        }
        // Every RESYNC, trust no table (without the socket none is ever
        // fresh: each is dumped at every refresh anyway).
        if self.last_resync.elapsed() >= RESYNC {
            self.stale_all();
        }
        self.drain();
        let up: BTreeSet<u32> = links
            .iter()
            .filter(|l| l.admin_up)
            .map(|l| l.index)
            .collect();
        let lost: BTreeSet<u32> = self.links_up.difference(&up).copied().collect();
        let routes_via_lost = !lost.is_empty()
            && [&self.routes4, &self.routes6].iter().any(|t| {
                t.entries
                    .values()
                    .any(|r| r.entry.oif.is_some_and(|o| lost.contains(&o)))
            });
        // An address added only adds routes (notified); one removed can
        // take routes with it unnotified. IPv6 link-local addresses come
        // and go with every pod's veth and are no route's source.
        let now: BTreeSet<&(u32, IpAddr)> = addrs.iter().collect();
        let removed = self.addrs.iter().any(|a| {
            !now.contains(a) && !matches!(a.1, IpAddr::V6(v6) if v6.is_unicast_link_local())
        });
        if routes_via_lost || removed {
            self.routes4.fresh = false;
            self.routes6.fresh = false;
        }
        self.links_up = up;
        self.addrs = addrs.to_vec();
    }

    fn stale_all(&mut self) {
        for d in self.devices.values_mut() {
            d.fdb.fresh = false;
            d.neigh.fresh = false;
        }
        self.routes4.fresh = false;
        self.routes6.fresh = false;
        self.last_resync = Instant::now();
    }

    /// Reads every queued notification without blocking.
    fn drain(&mut self) {
        let Some(sock) = &self.sock else { return };
        let mut stale = false;
        let mut broken = false;
        loop {
            let mut buf = &mut self.buf[..];
            match sock.recv(&mut buf, libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
                // Truncated: what it said is lost.
                Ok(n) if n > self.buf.len() => stale = true,
                Ok(n) => {
                    let devices = &self.devices;
                    let got: Vec<Note> =
                        notes(&self.buf[..n], |i| devices.contains_key(&i)).collect();
                    for note in got {
                        stale |= !apply(
                            note,
                            &mut self.devices,
                            &mut self.routes4,
                            &mut self.routes6,
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => stale = true,
                Err(e) => {
                    tracing::warn!(
                        "reading neighbour and route changes failed: {e}: they are dumped at \
                         every refresh from now on"
                    );
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            self.sock = None;
        }
        if stale || broken {
            self.stale_all();
        }
    }

    /// The FDB of overlay `ifindex`.
    pub(super) async fn fdb(
        &mut self,
        handle: &rtnetlink::Handle,
        ifindex: u32,
    ) -> anyhow::Result<Vec<FdbEntry>> {
        let dev = self.devices.entry(ifindex).or_default();
        if !dev.fdb.fresh {
            let dumped = fdb::dump_fdb(handle, ifindex).await?;
            self.dumps.fdb += 1;
            dev.fdb.entries = dumped.into_iter().map(|e| ((e.mac, e.dst), e)).collect();
            dev.fdb.fresh = self.sock.is_some();
        }
        Ok(dev.fdb.entries.values().cloned().collect())
    }

    /// The unicast neighbours (ARP, or NDP with `ipv6`) of overlay
    /// `ifindex`.
    pub(super) async fn neighbours(
        &mut self,
        handle: &rtnetlink::Handle,
        ifindex: u32,
        ipv6: bool,
    ) -> anyhow::Result<Vec<NeighEntry>> {
        let dev = self.devices.entry(ifindex).or_default();
        if !dev.neigh.fresh {
            let dumped = fdb::dump_neighbours(handle, ifindex, ipv6).await?;
            self.dumps.neigh += 1;
            dev.neigh.entries = dumped
                .into_iter()
                .filter(|e| kept_neighbour(e.ip))
                .map(|e| (e.ip, e))
                .collect();
            dev.neigh.fresh = self.sock.is_some();
        }
        Ok(dev
            .neigh
            .entries
            .values()
            .filter(|e| e.ip.is_ipv6() == ipv6)
            .cloned()
            .collect())
    }

    /// The main table's routes of one family.
    pub(super) async fn routes(
        &mut self,
        handle: &rtnetlink::Handle,
        ipv6: bool,
    ) -> anyhow::Result<Vec<routes::ParsedRoute>> {
        let table = if ipv6 {
            &mut self.routes6
        } else {
            &mut self.routes4
        };
        if !table.fresh {
            let dumped = if ipv6 {
                routes::dump_main_ipv6(handle).await?
            } else {
                routes::dump_main_ipv4(handle).await?
            };
            self.dumps.routes += 1;
            table.entries = dumped.into_iter().map(|r| (route_key(&r), r)).collect();
            table.fresh = self.sock.is_some();
        }
        Ok(table.entries.values().cloned().collect())
    }
}

/// Whether a neighbour is kept: multicast groups' NOARP entries are
/// created as the device joins them, without a notification, so no view
/// of them can be kept (dumped or notified, they are left out).
fn kept_neighbour(ip: IpAddr) -> bool {
    !ip.is_multicast()
}

/// A socket subscribed to neighbour and route changes, with a large
/// receive buffer (forced while the process still has CAP_NET_ADMIN).
fn subscribe() -> anyhow::Result<netlink_sys::Socket> {
    use anyhow::Context as _;
    use rtnetlink::constants::{RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_NEIGH};
    let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)
        .context("opening a netlink socket failed")?;
    let addr =
        netlink_sys::SocketAddr::new(0, RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE);
    sock.bind(&addr)
        .context("subscribing to neighbour and route changes failed")?;
    let size = libc::c_int::try_from(RCVBUF).unwrap_or(libc::c_int::MAX);
    // SAFETY: the fd is the socket's own; the option value is a c_int that
    // outlives the call, and its size is passed.
    let forced = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        // Capped by net.core.rmem_max: overruns then cost a dump each.
        let _ = sock.set_rx_buf_sz(size);
    }
    Ok(sock)
}

fn route_key(r: &routes::ParsedRoute) -> RouteKey {
    RouteKey {
        dst: r.entry.dst,
        prefix_len: r.entry.prefix_len,
        tos: r.tos,
        priority: r.priority,
    }
}

/// Applies one notification; `false` when the tables can no longer be
/// trusted.
fn apply(
    note: Note,
    devices: &mut BTreeMap<u32, Device>,
    routes4: &mut Table<RouteKey, routes::ParsedRoute>,
    routes6: &mut Table<RouteKey, routes::ParsedRoute>,
) -> bool {
    match note {
        Note::Ignore => {}
        Note::Lost => return false,
        Note::Fdb {
            ifindex,
            new,
            entry,
        } => {
            if let Some(d) = devices.get_mut(&ifindex) {
                let key = (entry.mac, entry.dst);
                if !new {
                    d.fdb.entries.remove(&key);
                } else if d.fdb.entries.contains_key(&key)
                    || d.fdb
                        .entries
                        .range((entry.mac, None)..)
                        .next()
                        .is_none_or(|((mac, _), _)| *mac != entry.mac)
                {
                    d.fdb.entries.insert(key, entry);
                } else {
                    // A known MAC with another remote: `bridge fdb append`
                    // (one more remote) and `replace` (this remote instead)
                    // send the same message, so only a dump tells.
                    d.fdb.fresh = false;
                }
            }
        }
        Note::Neigh {
            ifindex,
            new,
            entry,
        } => {
            if !kept_neighbour(entry.ip) {
                return true;
            }
            if let Some(d) = devices.get_mut(&ifindex) {
                if new {
                    d.neigh.entries.insert(entry.ip, entry);
                } else {
                    d.neigh.entries.remove(&entry.ip);
                }
            }
        }
        Note::Route { new, key, route } => {
            let t = if key.dst.is_ipv6() { routes6 } else { routes4 };
            if new {
                t.entries.insert(key, route);
            } else {
                t.entries.remove(&key);
            }
        }
    }
    true
}

/// The notifications in one datagram. Headers are looked at first, so the
/// neighbour churn of other devices (a bridge learning pod MACs) and other
/// tables' routes are dropped without decoding their attributes.
fn notes<'a>(buf: &'a [u8], tracked: impl Fn(u32) -> bool + 'a) -> impl Iterator<Item = Note> + 'a {
    super::datagram_messages(buf).map(move |m| match m {
        Some((kind, payload, whole)) => note(kind, payload, whole, &tracked),
        None => Note::Lost,
    })
}

fn note(kind: u16, payload: &[u8], whole: &[u8], tracked: &impl Fn(u32) -> bool) -> Note {
    let wanted = match kind {
        RTM_NEWNEIGH | RTM_DELNEIGH => match payload.get(..12) {
            // ndmsg: family, 3 pad, ifindex (i32), state, flags, type.
            Some(h) => {
                matches!(h[0], AF_BRIDGE | AF_INET | AF_INET6)
                    && tracked(u32::from_ne_bytes([h[4], h[5], h[6], h[7]]))
            }
            None => return Note::Lost,
        },
        RTM_NEWROUTE | RTM_DELROUTE => match payload.get(..12) {
            // rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
            // type, flags (u32). Main-table routes say 254 here.
            Some(h) => {
                let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                matches!(h[0], AF_INET | AF_INET6)
                    && h[4] == RT_TABLE_MAIN
                    && flags & RTM_F_CLONED == 0
            }
            None => return Note::Lost,
        },
        NLMSG_NOOP | NLMSG_DONE => false,
        // An error or overrun report, or a type we did not subscribe to.
        _ => return Note::Lost,
    };
    if !wanted {
        return Note::Ignore;
    }
    let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(whole) else {
        return Note::Lost;
    };
    let NetlinkPayload::InnerMessage(inner) = msg.payload else {
        return Note::Lost;
    };
    match inner {
        RouteNetlinkMessage::NewNeighbour(m) | RouteNetlinkMessage::DelNeighbour(m) => {
            let new = kind == RTM_NEWNEIGH;
            let ifindex = m.header.ifindex;
            let entry = if m.header.family == netlink_packet_route::AddressFamily::Bridge {
                fdb::fdb_entry(&m).map(|entry| Note::Fdb {
                    ifindex,
                    new,
                    entry,
                })
            } else {
                fdb::neigh_entry(&m).map(|entry| Note::Neigh {
                    ifindex,
                    new,
                    entry,
                })
            };
            entry.unwrap_or(Note::Ignore)
        }
        RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m) => {
            match routes::parse(&m) {
                Some(route) => Note::Route {
                    new: kind == RTM_NEWROUTE,
                    key: route_key(&route),
                    route,
                },
                None => Note::Ignore,
            }
        }
        _ => Note::Lost,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use netlink_packet_route::{
        AddressFamily,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage},
    };

    use super::*;
    use crate::node::notification;

    fn fdb_msg(ifindex: u32, mac: [u8; 6], dst: [u8; 4]) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = ifindex;
        m.header.state = NeighbourState::Permanent;
        m.attributes = vec![
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
            NeighbourAttribute::Destination(NeighbourAddress::Other(dst.to_vec())),
        ];
        m
    }

    fn route_msg(table: u8, flags: RouteFlags) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = 24;
        m.header.table = table;
        m.header.flags = flags;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 42, 7, 0))),
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 42, 7, 0))),
            RouteAttribute::Oif(4),
        ];
        m
    }

    const MAC: [u8; 6] = [0x0e, 0, 0, 0, 0, 7];

    #[test]
    fn only_tracked_devices_and_the_main_table_are_decoded() {
        let tracked = |i: u32| i == 4;
        let mut dgram = notification(RouteNetlinkMessage::NewNeighbour(fdb_msg(
            4,
            MAC,
            [192, 0, 2, 7],
        )));
        // A bridge learning a pod's MAC on another device.
        dgram.extend(notification(RouteNetlinkMessage::NewNeighbour(fdb_msg(
            9, MAC, [0; 4],
        ))));
        dgram.extend(notification(RouteNetlinkMessage::DelNeighbour(fdb_msg(
            4,
            MAC,
            [192, 0, 2, 7],
        ))));
        dgram.extend(notification(RouteNetlinkMessage::NewRoute(route_msg(
            254,
            RouteFlags::Onlink,
        ))));
        dgram.extend(notification(RouteNetlinkMessage::NewRoute(route_msg(
            255,
            RouteFlags::empty(),
        ))));
        dgram.extend(notification(RouteNetlinkMessage::NewRoute(route_msg(
            254,
            RouteFlags::Cloned,
        ))));
        dgram.extend(notification(RouteNetlinkMessage::DelRoute(route_msg(
            254,
            RouteFlags::Onlink,
        ))));
        let got: Vec<Note> = notes(&dgram, tracked).collect();
        let entry = FdbEntry {
            mac: MAC,
            dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            permanent: true,
        };
        assert_eq!(got.len(), 7);
        assert_eq!(
            got[0],
            Note::Fdb {
                ifindex: 4,
                new: true,
                entry: entry.clone()
            }
        );
        assert_eq!(got[1], Note::Ignore);
        assert_eq!(
            got[2],
            Note::Fdb {
                ifindex: 4,
                new: false,
                entry
            }
        );
        let Note::Route {
            new: true,
            key,
            route,
        } = &got[3]
        else {
            panic!("{:?}", got[3]);
        };
        assert_eq!(key.dst, IpAddr::V4(Ipv4Addr::new(10, 42, 7, 0)));
        assert_eq!(
            (key.prefix_len, route.entry.oif, route.entry.onlink),
            (24, Some(4), true)
        );
        assert_eq!((&got[4], &got[5]), (&Note::Ignore, &Note::Ignore));
        assert!(matches!(got[6], Note::Route { new: false, .. }));
    }

    #[test]
    fn what_cannot_be_read_distrusts_the_tables() {
        let whole = notification(RouteNetlinkMessage::NewNeighbour(fdb_msg(
            4,
            MAC,
            [192, 0, 2, 7],
        )));
        let cut = &whole[..whole.len() - 6];
        assert_eq!(notes(cut, |_| true).collect::<Vec<_>>(), vec![Note::Lost]);
        // NLMSG_ERROR, and a header too short for an ndmsg.
        let mut err = whole.clone();
        err[4] = 2;
        assert_eq!(notes(&err, |_| true).next(), Some(Note::Lost));
        let mut short = vec![0u8; 20];
        short[..4].copy_from_slice(&20u32.to_ne_bytes());
        short[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        assert_eq!(notes(&short, |_| true).next(), Some(Note::Lost));
        assert!(!apply(
            Note::Lost,
            &mut BTreeMap::new(),
            &mut Table::default(),
            &mut Table::default()
        ));
    }

    #[test]
    fn a_second_remote_for_a_known_mac_needs_a_dump() {
        let mut devices: BTreeMap<u32, Device> = BTreeMap::new();
        devices.entry(4).or_default().fdb.fresh = true;
        let (mut r4, mut r6) = (Table::default(), Table::default());
        let note = |dst: [u8; 4], new: bool| Note::Fdb {
            ifindex: 4,
            new,
            entry: FdbEntry {
                mac: MAC,
                dst: Some(IpAddr::V4(Ipv4Addr::from(dst))),
                permanent: true,
            },
        };
        assert!(apply(
            note([192, 0, 2, 7], true),
            &mut devices,
            &mut r4,
            &mut r6
        ));
        // The same remote again (a state change): still exact.
        assert!(apply(
            note([192, 0, 2, 7], true),
            &mut devices,
            &mut r4,
            &mut r6
        ));
        assert!(devices[&4].fdb.fresh);
        assert_eq!(devices[&4].fdb.entries.len(), 1);
        // append or replace: the message does not say which.
        assert!(apply(
            note([192, 0, 2, 8], true),
            &mut devices,
            &mut r4,
            &mut r6
        ));
        assert!(!devices[&4].fdb.fresh);
        assert!(apply(
            note([192, 0, 2, 7], false),
            &mut devices,
            &mut r4,
            &mut r6
        ));
        assert!(devices[&4].fdb.entries.is_empty());
    }
}
