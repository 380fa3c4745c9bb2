//! IPv4 routes of the main table (RTM_GETROUTE).

use std::net::Ipv4Addr;

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
}

/// All IPv4 routes of the main table, in kernel order.
pub(super) async fn dump_main_ipv4(handle: &rtnetlink::Handle) -> anyhow::Result<Vec<ParsedRoute>> {
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    // A filter under NETLINK_GET_STRICT_CHK, ignored otherwise (we filter
    // below as well). Protocol, scope and type stay 0 = "any".
    req.header.table = RouteHeader::RT_TABLE_MAIN;
    let mut stream = std::pin::pin!(handle.route().get(req).execute());
    let mut out = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .context("netlink IPv4 route dump (RTM_GETROUTE) failed")?
    {
        if let Some(r) = parse(&msg) {
            out.push(r);
        }
    }
    Ok(out)
}

/// A main-table IPv4 route; `None` for other tables or families.
pub(super) fn parse(msg: &RouteMessage) -> Option<ParsedRoute> {
    if msg.header.address_family != AddressFamily::Inet {
        return None;
    }
    let mut table = u32::from(msg.header.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut priority = 0;
    let mut onlink = msg.header.flags.contains(RouteFlags::Onlink);
    let mut first_hop = None;
    for attr in &msg.attributes {
        match attr {
            // RTA_TABLE carries ids above 255, for which rtm_table says 252.
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
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
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
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
    })
}

/// The output interface of the preferred (lowest metric) IPv4 default route.
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
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len,
                gateway: None,
                oif,
                onlink: false,
            },
            priority,
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
}
