//! The drop tracer, seen from userspace: where `struct sk_buff` and friends
//! keep the fields it reads (from this kernel's BTF), what drop reason
//! numbers mean here, and what it should match.
use std::{collections::HashMap, os::unix::fs::MetadataExt as _};

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, programs::BtfTracePoint};
use flannel_probe_common::abi::{DropConfig, MAX_OVERLAYS, PROG_DROPS};

use super::{FamilyMatch, btf::Btf};

/// An overlay device whose inner packets' drops count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlayDev {
    pub ifindex: u32,
    pub mac: Option<[u8; 6]>,
}

/// What the drop tracer matches on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropMatch {
    pub netns_inum: u32,
    /// Up to [`MAX_OVERLAYS`] overlay devices (more are not told apart).
    pub overlays: [Option<OverlayDev>; MAX_OVERLAYS],
    /// Outer UDP per family: its port and local VTEP (`None`: not matched).
    pub v4: Option<FamilyMatch>,
    pub v6: Option<FamilyMatch>,
}

/// `enum skb_drop_reason` of the running kernel: numbers differ between
/// versions, so names are read, never assumed.
#[derive(Clone, Debug, Default)]
pub(crate) struct DropReasons {
    names: HashMap<u32, String>,
}

impl DropReasons {
    pub(crate) fn from_btf(btf: &Btf) -> Result<Self> {
        let names = btf
            .enum_values("skb_drop_reason")?
            .into_iter()
            .filter_map(|(name, v)| {
                let n = u32::try_from(v).ok()?;
                let short = name
                    .strip_prefix("SKB_DROP_REASON_")
                    .unwrap_or(&name)
                    .to_string();
                Some((n, short))
            })
            .collect();
        Ok(Self { names })
    }

    /// The reason's name without the `SKB_DROP_REASON_` prefix.
    pub(crate) fn name(&self, n: u32) -> String {
        self.names
            .get(&n)
            .cloned()
            .unwrap_or_else(|| format!("REASON_{n}"))
    }

    /// The number of a reason, by name.
    #[cfg(test)]
    pub(crate) fn number(&self, name: &str) -> Option<u32> {
        self.names.iter().find(|(_, v)| *v == name).map(|(k, _)| *k)
    }
}

/// The offsets the tracer needs, from BTF; `enabled` stays 0.
pub(super) fn offsets(btf: &Btf) -> Result<DropConfig> {
    let o = |s: &str, path: &[&str]| btf.offset(s, path);
    Ok(DropConfig {
        skb_dev: o("sk_buff", &["dev"])?,
        skb_sk: o("sk_buff", &["sk"])?,
        skb_head: o("sk_buff", &["head"])?,
        skb_network_header: o("sk_buff", &["network_header"])?,
        skb_transport_header: o("sk_buff", &["transport_header"])?,
        skb_mac_header: o("sk_buff", &["mac_header"])?,
        skb_protocol: o("sk_buff", &["protocol"])?,
        skb_iif: o("sk_buff", &["skb_iif"])?,
        dev_nd_net: o("net_device", &["nd_net", "net"])?,
        dev_ifindex: o("net_device", &["ifindex"])?,
        sk_net: o("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: o("net", &["ns", "inum"])?,
        ..DropConfig::default()
    })
}

/// The inode number of this process's network namespace, as the kernel
/// stores it in `net->ns.inum`.
pub(crate) fn netns_inum() -> Result<u32> {
    let md = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net failed")?;
    u32::try_from(md.ino())
        .map_err(|_| anyhow!("network namespace inode {} does not fit 32 bits", md.ino()))
}

/// Loads and attaches the tracer; returns its offsets template and the
/// reason names.
pub(super) fn start(ebpf: &mut Ebpf) -> Result<(DropConfig, DropReasons)> {
    // One parse of the kernel's BTF (several MB) alive at a time: the
    // agent's peak RSS is start-up's.
    let (template, reasons) = {
        let btf = Btf::from_sys_fs()?;
        let template = offsets(&btf).context("this kernel's sk_buff layout is not understood")?;
        (template, DropReasons::from_btf(&btf)?)
    };
    let aya_btf = aya::Btf::from_sys_fs().context("loading the kernel's BTF for tp_btf failed")?;
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(PROG_DROPS)
        .ok_or_else(|| anyhow!("the eBPF object has no {PROG_DROPS} program"))?
        .try_into()?;
    prog.load("kfree_skb", &aya_btf)
        .context("loading the kfree_skb tracer failed")?;
    prog.attach()
        .context("attaching to the kfree_skb tracepoint failed")?;
    Ok((template, reasons))
}

pub(super) fn config(template: &DropConfig, m: &DropMatch) -> DropConfig {
    let family = |f: Option<FamilyMatch>, v6: bool| {
        let Some(f) = f else { return (0, [0; 16]) };
        let local = f.local_vtep.filter(|a| a.is_ipv6() == v6);
        (
            f.vxlan_port,
            local.map_or([0; 16], |a| super::to_addr(a).octets()),
        )
    };
    let (p4, l4) = family(m.v4, false);
    let (p6, l6) = family(m.v6, true);
    DropConfig {
        netns_inum: m.netns_inum,
        overlay_ifindex: m.overlays.map(|o| o.map_or(0, |o| o.ifindex)),
        overlay_mac: m.overlays.map(|o| o.and_then(|o| o.mac).unwrap_or([0; 6])),
        local_vtep: [l4, l6],
        vxlan_port: [p4, p6],
        enabled: 1,
        ..*template
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_come_from_this_kernel() {
        let btf = Btf::from_sys_fs().expect("BTF");
        let r = DropReasons::from_btf(&btf).expect("enum skb_drop_reason");
        let n = r.number("NO_SOCKET").expect("NO_SOCKET exists");
        assert_eq!(r.name(n), "NO_SOCKET");
        assert_eq!(r.name(u32::MAX), format!("REASON_{}", u32::MAX));
    }

    #[test]
    fn offsets_are_found_and_distinct() {
        let btf = Btf::from_sys_fs().expect("BTF");
        let c = offsets(&btf).expect("offsets");
        let mut skb = [
            c.skb_dev,
            c.skb_sk,
            c.skb_head,
            c.skb_network_header,
            c.skb_transport_header,
            c.skb_mac_header,
            c.skb_protocol,
        ];
        skb.sort_unstable();
        assert!(skb.windows(2).all(|w| w[0] != w[1]), "{skb:?}");
        assert_eq!(c.enabled, 0, "the template is never enabled by itself");
        let fam = |local: &str| FamilyMatch {
            vxlan_port: 8472,
            vni: Some(1),
            local_vtep: Some(local.parse().expect("an address")),
            overlay_mac: None,
        };
        let m = DropMatch {
            netns_inum: 42,
            overlays: [
                Some(OverlayDev {
                    ifindex: 7,
                    mac: Some([1; 6]),
                }),
                Some(OverlayDev {
                    ifindex: 9,
                    mac: None,
                }),
                None,
                None,
            ],
            v4: Some(fam("192.0.2.13")),
            // An IPv4 address given for IPv6 is not IPv6's local VTEP.
            v6: Some(fam("192.0.2.14")),
        };
        let full = config(&c, &m);
        assert_eq!(
            (full.netns_inum, full.overlay_ifindex, full.enabled),
            (42, [7, 9, 0, 0], 1)
        );
        assert_eq!(full.overlay_mac[0], [1; 6]);
        assert_eq!(full.overlay_mac[1], [0; 6]);
        let mut v4 = [0u8; 16];
        v4[10..].copy_from_slice(&[0xff, 0xff, 192, 0, 2, 13]);
        assert_eq!(full.local_vtep, [v4, [0; 16]]);
        assert_eq!(full.vxlan_port, [8472, 8472]);
        assert_eq!(full.skb_head, c.skb_head);
    }

    #[test]
    fn netns_inode_is_readable() {
        assert!(netns_inum().expect("netns") > 0);
    }
}
