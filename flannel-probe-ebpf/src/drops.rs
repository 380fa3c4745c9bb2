//! The kernel's drops of VXLAN traffic: `kfree_skb` fires for every packet
//! freed as dropped, in every namespace. Count only this node's (network
//! namespace match), and only outer UDP to or from the VXLAN port or IPv4
//! packets on the overlay device. Struct offsets come from DROP_CONFIG,
//! filled from this kernel's BTF by the agent.
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::BtfTracePointContext};
use flannel_probe_common::abi::{DIR_RX, DIR_TX, DropConfig, DropKey, STAT_DROP_OVERFLOW};

use crate::{
    counters::entry,
    programs::{DROP_CONFIG, DROPS},
};

/// `skb->mac_header`/`transport_header` when unset.
const UNSET: u16 = 0xffff;

#[inline(always)]
fn rd<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one fails.
    unsafe { bpf_probe_read_kernel(addr as *const T).ok() }
}

#[inline(always)]
pub fn observe(ctx: &BtfTracePointContext) {
    let _ = try_observe(ctx);
}

#[inline(always)]
fn try_observe(ctx: &BtfTracePointContext) -> Option<()> {
    let cfg: &DropConfig = DROP_CONFIG.get(0)?;
    if cfg.enabled == 0 {
        return None;
    }
    let skb: u64 = ctx.arg(0);
    let reason: u64 = ctx.arg(2);
    let dev: u64 = rd(skb + u64::from(cfg.skb_dev))?;
    let (net, ifindex) = if dev != 0 {
        let net: u64 = rd(dev + u64::from(cfg.dev_nd_net))?;
        let ifindex: u32 = rd(dev + u64::from(cfg.dev_ifindex))?;
        (net, ifindex)
    } else {
        // Dropped at a socket with no device left: the socket's namespace.
        let sk: u64 = rd(skb + u64::from(cfg.skb_sk))?;
        if sk == 0 {
            return None;
        }
        (rd(sk + u64::from(cfg.sk_net))?, 0)
    };
    if net == 0 || rd::<u32>(net + u64::from(cfg.net_inum))? != cfg.netns_inum {
        return None;
    }
    // Only IPv4 (skb->protocol is big-endian ETH_P_IP).
    if rd::<[u8; 2]>(skb + u64::from(cfg.skb_protocol))? != [0x08, 0x00] {
        return None;
    }
    let head: u64 = rd(skb + u64::from(cfg.skb_head))?;
    if cfg.overlay_ifindex != 0 && ifindex == cfg.overlay_ifindex {
        // An inner packet. It came out of decapsulation if it arrived on the
        // device (skb_iif); otherwise it was on its way to a remote VTEP.
        let iif: u32 = rd(skb + u64::from(cfg.skb_iif))?;
        let mh: u16 = rd(skb + u64::from(cfg.skb_mac_header))?;
        let eth: Option<[u8; 12]> = if mh != UNSET {
            rd(head + u64::from(mh))
        } else {
            None
        };
        let mut key = DropKey {
            reason: reason as u32,
            dir: if iif == ifindex { DIR_RX } else { DIR_TX },
            ..DropKey::default()
        };
        if let Some(e) = eth {
            let dst = [e[0], e[1], e[2], e[3], e[4], e[5]];
            let src = [e[6], e[7], e[8], e[9], e[10], e[11]];
            if key.dir == DIR_RX {
                key.mac = src;
            } else if src == cfg.overlay_mac {
                // A forwarded packet's MAC header is still the one it came
                // in with: only ours names the remote VTEP.
                key.mac = dst;
            }
        }
        return count(&key);
    }
    let nh: u16 = rd(skb + u64::from(cfg.skb_network_header))?;
    let ip: [u8; 20] = rd(head + u64::from(nh))?;
    if ip[0] >> 4 != 4 || ip[9] != 17 || (u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff) != 0 {
        return None;
    }
    let ihl = u64::from(ip[0] & 0x0f) * 4;
    let th: u16 = rd(skb + u64::from(cfg.skb_transport_header))?;
    // Before IP has parsed it, the transport header is unset or equals the
    // network header.
    let udp = if th != UNSET && th > nh {
        head + u64::from(th)
    } else {
        head + u64::from(nh) + ihl
    };
    let ports: [u8; 4] = rd(udp)?;
    let (sport, dport) = (
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    );
    if dport != cfg.vxlan_port && sport != cfg.vxlan_port {
        return None;
    }
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    let (dir, peer) = if src == cfg.local_vtep && cfg.local_vtep != [0; 4] {
        (DIR_TX, dst)
    } else {
        (DIR_RX, src)
    };
    count(&DropKey {
        reason: reason as u32,
        peer,
        dir,
        ..DropKey::default()
    })
}

#[inline(always)]
fn count(key: &DropKey) -> Option<()> {
    let mut is_new = false;
    let c = entry(&DROPS, key, STAT_DROP_OVERFLOW, &mut is_new)?;
    // SAFETY: this CPU's slot of a live map entry.
    unsafe { *c += 1 };
    Some(())
}
