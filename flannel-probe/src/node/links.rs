//! Links (RTM_GETLINK) and IPv4 addresses (RTM_GETADDR).

use std::net::IpAddr;

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
    /// `IFLA_VXLAN_LOCAL` or `IFLA_VXLAN_LOCAL6`.
    pub(super) local: Option<IpAddr>,
    /// `IFLA_VXLAN_GROUP6` or `IFLA_VXLAN_LOCAL6` is present: an IPv6 VTEP.
    pub(super) ipv6: bool,
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
            ipv6: v.ipv6,
        }
    }

    /// The uplink view of this link, with its IPv4 addresses picked from
    /// `addrs` (ifindex, address) in order.
    pub(super) fn to_uplink(&self, addrs: &[(u32, IpAddr)]) -> Uplink {
        let mine = || {
            addrs
                .iter()
                .filter(|(i, _)| *i == self.index)
                .map(|(_, a)| *a)
        };
        Uplink {
            name: self.name.clone(),
            ifindex: self.index,
            up: self.admin_up && self.oper_up,
            mtu: self.mtu,
            mac: self.mac,
            addrs: mine()
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            addrs6: mine()
                .filter_map(|a| match a {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                })
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
            InfoVxlan::Local(ip) => v.local = Some(IpAddr::V4(*ip)),
            InfoVxlan::Local6(ip) => {
                v.local = Some(IpAddr::V6(*ip));
                v.ipv6 = true;
            }
            // The kernel sends the group of the device's family: `::` for
            // a v6 device without remote (flannel's), never both.
            InfoVxlan::Group6(_) => v.ipv6 = true,
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
/// Every IPv4 and IPv6 address as (ifindex, address), in kernel order.
pub(super) async fn dump_addrs(handle: &rtnetlink::Handle) -> anyhow::Result<Vec<(u32, IpAddr)>> {
    let mut out = Vec::new();
    for (family, what) in [
        (AddressFamily::Inet, "IPv4"),
        (AddressFamily::Inet6, "IPv6"),
    ] {
        let mut req = handle.address().get();
        req.message_mut().header.family = family;
        let mut stream = std::pin::pin!(req.execute());
        while let Some(msg) = stream
            .try_next()
            .await
            .with_context(|| format!("netlink {what} address dump (RTM_GETADDR) failed"))?
        {
            if let Some(a) = addr_of(&msg) {
                out.push((msg.header.index, a));
            }
        }
    }
    Ok(out)
}

/// The address of an IPv4 or IPv6 address message: `IFA_LOCAL`, else
/// `IFA_ADDRESS` (they differ on point-to-point links only). IPv6
/// addresses still in duplicate address detection (tentative) or failed it
/// cannot be a VXLAN source and are left out.
fn addr_of(msg: &AddressMessage) -> Option<IpAddr> {
    const IFA_F_DADFAILED: u32 = 0x08;
    const IFA_F_TENTATIVE: u32 = 0x40;
    let family = msg.header.family;
    if family != AddressFamily::Inet && family != AddressFamily::Inet6 {
        return None;
    }
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(msg.header.flags.bits());
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    if family == AddressFamily::Inet6 && flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) != 0 {
        return None;
    }
    local
        .or(address)
        .filter(|a| a.is_ipv4() == (family == AddressFamily::Inet))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

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
                local: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13))),
                link: None,
                learning: Some(false),
                ipv6: false,
            }
        );
    }

    /// flannel-v6.1 as the kernel reports it (`ip link add flannel-v6.1
    /// type vxlan id 1 local fd00:192:0:2::13 dev eth0 dstport 8472
    /// nolearning`): IFLA_VXLAN_GROUP6 `::` and IFLA_VXLAN_LOCAL6, through
    /// the kernel's wire format and back.
    #[test]
    fn ipv6_vxlan_attrs_from_a_kernel_message() {
        let local: Ipv6Addr = "fd00:192:0:2::13".parse().expect("addr");
        let mut msg = LinkMessage::default();
        msg.header.index = 9;
        msg.attributes = vec![
            LinkAttribute::IfName("flannel-v6.1".into()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(netlink_packet_route::link::InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(1),
                    InfoVxlan::Group6(Ipv6Addr::UNSPECIFIED),
                    InfoVxlan::Link(2),
                    InfoVxlan::Local6(local),
                    InfoVxlan::Learning(false),
                    InfoVxlan::Port(8472),
                ])),
            ]),
        ];
        let back = super::super::wire_roundtrip(&msg);
        let l = LinkSummary::from_message(&back).expect("named link");
        assert_eq!(l.kind, "vxlan");
        let o = l.to_overlay();
        assert_eq!(o.local, Some(IpAddr::V6(local)));
        assert_eq!((o.vni, o.port, o.link), (Some(1), Some(8472), Some(2)));
        assert!(o.ipv6);
    }

    /// RTM_NEWADDR messages as the kernel sends them for eth0 (IPv4, then
    /// a settled and a tentative IPv6 address).
    #[test]
    fn addresses_of_both_families() {
        use super::super::wire_roundtrip as roundtrip;
        use netlink_packet_route::address::AddressFlags;
        let mut v4 = AddressMessage::default();
        v4.header.family = AddressFamily::Inet;
        v4.attributes = vec![
            AddressAttribute::Address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13))),
            AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13))),
        ];
        assert_eq!(
            addr_of(&roundtrip(&v4)),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13)))
        );
        let a6: Ipv6Addr = "fd00:192:0:2::13".parse().expect("addr");
        let mut v6 = AddressMessage::default();
        v6.header.family = AddressFamily::Inet6;
        v6.attributes = vec![
            AddressAttribute::Address(IpAddr::V6(a6)),
            AddressAttribute::Flags(AddressFlags::Permanent | AddressFlags::Nodad),
        ];
        assert_eq!(addr_of(&roundtrip(&v6)), Some(IpAddr::V6(a6)));
        v6.attributes = vec![
            AddressAttribute::Address(IpAddr::V6(a6)),
            AddressAttribute::Flags(AddressFlags::Tentative),
        ];
        assert_eq!(addr_of(&roundtrip(&v6)), None);
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
