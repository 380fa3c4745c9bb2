//! Links (RTM_GETLINK) and IPv4 addresses (RTM_GETADDR).

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};

use super::{Overlay, Uplink, mac6};

/// VXLAN attributes of a link, as the kernel reported them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct VxlanAttrs {
    pub(super) vni: Option<u32>,
    pub(super) port: Option<u16>,
    pub(super) local: Option<Ipv4Addr>,
    pub(super) link: Option<u32>,
    pub(super) learning: Option<bool>,
}

/// The parts of an RTM_NEWLINK message this module uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LinkSummary {
    pub(super) index: u32,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) admin_up: bool,
    pub(super) oper_up: bool,
    pub(super) mtu: Option<u32>,
    pub(super) mac: Option<[u8; 6]>,
    pub(super) vxlan: Option<VxlanAttrs>,
    /// `IFLA_MASTER`: the bridge (or bond) this link is a port of.
    pub(super) master: Option<u32>,
    /// `IFF_LOOPBACK`.
    pub(super) loopback: bool,
}

impl LinkSummary {
    /// Summarises a link message; `None` if it carries no name.
    pub(super) fn from_message(msg: &LinkMessage) -> Option<Self> {
        let mut name = None;
        let mut kind = String::new();
        let mut mtu = None;
        let mut mac = None;
        let mut operstate = None;
        let mut vxlan = None;
        let mut master = None;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Mtu(m) => mtu = Some(*m),
                LinkAttribute::Address(a) => mac = mac6(a),
                LinkAttribute::OperState(s) => operstate = Some(*s),
                LinkAttribute::Controller(m) if *m != 0 => master = Some(*m),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => kind = k.to_string(),
                            LinkInfo::Data(InfoData::Vxlan(v)) => vxlan = Some(vxlan_attrs(v)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let flags = msg.header.flags;
        let admin_up = flags.contains(LinkFlags::Up);
        // The kernel sets IFF_RUNNING exactly when the device is up and its
        // operstate is UP or UNKNOWN; the operstate check covers readers that
        // get flags without it.
        let oper_up = flags.contains(LinkFlags::Running)
            || (admin_up && matches!(operstate, Some(State::Up | State::Unknown)));
        Some(LinkSummary {
            index: msg.header.index,
            name: name?,
            kind,
            admin_up,
            oper_up,
            mtu,
            mac,
            vxlan,
            master,
            loopback: flags.contains(LinkFlags::Loopback),
        })
    }

    pub(super) fn to_overlay(&self) -> Overlay {
        let v = self.vxlan.clone().unwrap_or_default();
        Overlay {
            name: self.name.clone(),
            ifindex: self.index,
            kind: self.kind.clone(),
            admin_up: self.admin_up,
            oper_up: self.oper_up,
            mac: self.mac,
            mtu: self.mtu,
            vni: v.vni,
            port: v.port,
            local: v.local,
            link: v.link,
            learning: v.learning,
        }
    }

    /// The uplink view of this link, with its IPv4 addresses picked from
    /// `addrs` (ifindex, address) in order.
    pub(super) fn to_uplink(&self, addrs: &[(u32, Ipv4Addr)]) -> Uplink {
        Uplink {
            name: self.name.clone(),
            ifindex: self.index,
            up: self.admin_up && self.oper_up,
            mtu: self.mtu,
            mac: self.mac,
            addrs: addrs
                .iter()
                .filter(|(i, _)| *i == self.index)
                .map(|(_, a)| *a)
                .collect(),
        }
    }
}

fn vxlan_attrs(attrs: &[InfoVxlan]) -> VxlanAttrs {
    let mut v = VxlanAttrs::default();
    for a in attrs {
        match a {
            InfoVxlan::Id(id) => v.vni = Some(*id),
            // netlink-packet-route already converts IFLA_VXLAN_PORT from
            // network byte order.
            InfoVxlan::Port(p) => v.port = Some(*p),
            InfoVxlan::Local(ip) => v.local = Some(*ip),
            // 0 means "no dev"; newer kernels omit the attribute instead.
            InfoVxlan::Link(idx) if *idx != 0 => v.link = Some(*idx),
            InfoVxlan::Learning(l) => v.learning = Some(*l),
            _ => {}
        }
    }
    v
}

/// All links of the namespace.
pub(super) async fn dump_links(handle: &rtnetlink::Handle) -> anyhow::Result<Vec<LinkSummary>> {
    let mut stream = std::pin::pin!(handle.link().get().execute());
    let mut out = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .context("netlink link dump (RTM_GETLINK) failed")?
    {
        match LinkSummary::from_message(&msg) {
            Some(l) => out.push(l),
            None => tracing::debug!(ifindex = msg.header.index, "link without a name skipped"),
        }
    }
    Ok(out)
}

/// All IPv4 addresses of the namespace as (ifindex, address), in kernel order.
pub(super) async fn dump_ipv4_addrs(
    handle: &rtnetlink::Handle,
) -> anyhow::Result<Vec<(u32, Ipv4Addr)>> {
    let mut req = handle.address().get();
    req.message_mut().header.family = AddressFamily::Inet;
    let mut stream = std::pin::pin!(req.execute());
    let mut out = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .context("netlink address dump (RTM_GETADDR) failed")?
    {
        if let Some(a) = ipv4_of(&msg) {
            out.push((msg.header.index, a));
        }
    }
    Ok(out)
}

/// IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on
/// point-to-point links); fall back to IFA_ADDRESS when there is no IFA_LOCAL.
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(a)) => local = Some(*a),
            AddressAttribute::Address(IpAddr::V4(a)) => address = Some(*a),
            _ => {}
        }
    }
    local.or(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_attrs_are_collected() {
        let v = vxlan_attrs(&[
            InfoVxlan::Id(1),
            InfoVxlan::Port(8472),
            InfoVxlan::Local(Ipv4Addr::new(192, 0, 2, 13)),
            InfoVxlan::Link(0),
            InfoVxlan::Learning(false),
        ]);
        assert_eq!(
            v,
            VxlanAttrs {
                vni: Some(1),
                port: Some(8472),
                local: Some(Ipv4Addr::new(192, 0, 2, 13)),
                link: None,
                learning: Some(false),
            }
        );
    }

    #[test]
    fn link_without_name_is_skipped_and_flags_decoded() {
        let mut msg = LinkMessage::default();
        msg.header.index = 4;
        msg.header.flags = LinkFlags::Up;
        assert!(LinkSummary::from_message(&msg).is_none());
        msg.attributes
            .push(LinkAttribute::IfName("flannel.1".into()));
        msg.attributes
            .push(LinkAttribute::OperState(State::Unknown));
        let l = LinkSummary::from_message(&msg).expect("named link");
        assert!(l.admin_up && l.oper_up);
        assert_eq!(l.kind, "");
        msg.header.flags = LinkFlags::empty();
        msg.attributes.push(LinkAttribute::OperState(State::Down));
        let l = LinkSummary::from_message(&msg).expect("named link");
        assert!(!l.admin_up && !l.oper_up);
    }
}
