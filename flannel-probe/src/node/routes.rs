//! IPv4 and IPv6 routes of the main table (RTM_GETROUTE).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context;
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHopFlags,
};

use super::RouteEntry;

/// A route plus what is needed to choose among default routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ParsedRoute {
    pub(super) entry: RouteEntry,
    pub(super) priority: u32,
    /// `rtm_tos`: part of the route's identity.
    pub(super) tos: u8,
}

/// All IPv4 routes of the main table, in kernel order.
pub(super) async fn dump_main_ipv4(handle: &rtnetlink::Handle) -> anyhow::Result<Vec<ParsedRoute>> {
    dump_main(handle, AddressFamily::Inet).await
}

/// All IPv6 routes of the main table, in kernel order (for `flannel-v6.*`).
pub(super) async fn dump_main_ipv6(handle: &rtnetlink::Handle) -> anyhow::Result<Vec<ParsedRoute>> {
    dump_main(handle, AddressFamily::Inet6).await
}

async fn dump_main(
    handle: &rtnetlink::Handle,
    family: AddressFamily,
) -> anyhow::Result<Vec<ParsedRoute>> {
    let what = if family == AddressFamily::Inet {
        "IPv4"
    } else {
        "IPv6"
    };
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    // A filter under NETLINK_GET_STRICT_CHK, ignored otherwise (we filter
    // below as well). Protocol, scope and type stay 0 = "any".
    req.header.table = RouteHeader::RT_TABLE_MAIN;
    let mut stream = std::pin::pin!(handle.route().get(req).execute());
    let mut out = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .with_context(|| format!("netlink {what} route dump (RTM_GETROUTE) failed"))?
    {
        if let Some(r) = parse(&msg) {
            out.push(r);
        }
    }
    Ok(out)
}

/// A gateway or destination of the route's own family.
fn addr_of(family: AddressFamily, a: &RouteAddress) -> Option<IpAddr> {
    match (family, a) {
        (AddressFamily::Inet, RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        (AddressFamily::Inet6, RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// A main-table IPv4 or IPv6 route; `None` for other tables or families.
pub(super) fn parse(msg: &RouteMessage) -> Option<ParsedRoute> {
    let family = msg.header.address_family;
    let mut dst = match family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut table = u32::from(msg.header.table);
    let mut gateway = None;
    let mut oif = None;
    let mut priority = 0;
    let mut onlink = msg.header.flags.contains(RouteFlags::Onlink);
    let mut first_hop = None;
    for attr in &msg.attributes {
        match attr {
            // RTA_TABLE carries ids above 255, for which rtm_table says 252.
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => {
                if let Some(a) = addr_of(family, a) {
                    dst = a;
                }
            }
            RouteAttribute::Gateway(a) => gateway = addr_of(family, a).or(gateway),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::MultiPath(hops) => first_hop = hops.first(),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    if let Some(hop) = first_hop {
        if oif.is_none() && hop.interface_index != 0 {
            oif = Some(hop.interface_index);
        }
        if gateway.is_none() {
            gateway = hop.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => addr_of(family, g),
                _ => None,
            });
        }
        onlink |= hop.flags.contains(RouteNextHopFlags::Onlink);
    }
    Some(ParsedRoute {
        entry: RouteEntry {
            dst,
            prefix_len: msg.header.destination_prefix_length,
            gateway,
            oif,
            onlink,
        },
        priority,
        tos: msg.header.tos,
    })
}

/// The output interface of the preferred (lowest metric) default route
/// (of the family `routes` are).
pub(super) fn default_route_oif(routes: &[ParsedRoute]) -> Option<u32> {
    routes
        .iter()
        .filter(|r| r.entry.prefix_len == 0 && r.entry.oif.is_some())
        .min_by_key(|r| r.priority)
        .and_then(|r| r.entry.oif)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix_len: u8, oif: Option<u32>, priority: u32) -> ParsedRoute {
        ParsedRoute {
            entry: RouteEntry {
                dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix_len,
                gateway: None,
                oif,
                onlink: false,
            },
            priority,
            tos: 0,
        }
    }

    #[test]
    fn default_route_prefers_lowest_metric() {
        let routes = [
            route(24, Some(1), 0),
            route(0, Some(2), 600),
            route(0, None, 0),
            route(0, Some(3), 100),
        ];
        assert_eq!(default_route_oif(&routes), Some(3));
        assert_eq!(default_route_oif(&routes[..1]), None);
    }

    #[test]
    fn other_tables_are_dropped() {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = 255;
        assert!(parse(&msg).is_none());
        msg.header.table = 252;
        msg.attributes.push(RouteAttribute::Table(254));
        msg.header.flags = RouteFlags::Onlink;
        let r = parse(&msg).expect("main table via RTA_TABLE");
        assert!(r.entry.onlink);
        msg.attributes = vec![RouteAttribute::Table(1000)];
        assert!(parse(&msg).is_none());
    }

    /// `ip -6 route add 2001:cafe:42:1::/64 via 2001:cafe:42:1:: dev
    /// flannel-v6.1 onlink` as the kernel dumps it: RTA_DST, RTA_GATEWAY
    /// (16 bytes each), RTA_OIF, RTA_TABLE, RTNH_F_ONLINK in rtm_flags.
    #[test]
    fn ipv6_route_via_the_v6_overlay() {
        let net: Ipv6Addr = "2001:cafe:42:1::".parse().expect("addr");
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet6;
        msg.header.destination_prefix_length = 64;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.flags = RouteFlags::Onlink;
        msg.attributes = vec![
            RouteAttribute::Table(254),
            RouteAttribute::Destination(RouteAddress::Inet6(net)),
            RouteAttribute::Priority(1024),
            RouteAttribute::Gateway(RouteAddress::Inet6(net)),
            RouteAttribute::Oif(7),
        ];
        // Through the kernel's wire format and back.
        let back = super::super::wire_roundtrip(&msg);
        let r = parse(&back).expect("main-table IPv6 route");
        assert_eq!(
            r.entry,
            RouteEntry {
                dst: IpAddr::V6(net),
                prefix_len: 64,
                gateway: Some(IpAddr::V6(net)),
                oif: Some(7),
                onlink: true,
            }
        );
        assert_eq!(r.priority, 1024);
        // A default route of that family.
        let mut def = RouteMessage::default();
        def.header.address_family = AddressFamily::Inet6;
        def.header.table = RouteHeader::RT_TABLE_MAIN;
        def.attributes = vec![RouteAttribute::Oif(2)];
        let d = parse(&def).expect("default");
        assert_eq!(d.entry.dst, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(default_route_oif(&[d]), Some(2));
        // Another family's gateway is not taken for this one's.
        def.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(
            Ipv4Addr::LOCALHOST,
        ))];
        assert_eq!(parse(&def).and_then(|r| r.entry.gateway), None);
    }
}
