//! The kernel's drops of VXLAN traffic: `kfree_skb` fires for every packet
//! freed as dropped, in every namespace. Count only this node's (network
//! namespace match), and only outer UDP (over IPv4 or IPv6) to or from
//! its family's VXLAN port, or IPv4 / unicast IPv6 packets on an overlay
//! device. Struct offsets come from DROP_CONFIG,
//! filled from this kernel's BTF by the agent.
//!
//! Headers go through the parser the classifiers share (over [`Load`] on
//! kernel memory); the verifier takes it (704 instructions verified, 834
//! for the hand parser it replaced, which also read the transport header)
//! at the same cost per run (about 0.55-0.63 us under a NO_SOCKET drop
//! flood either way, with the kernel's BPF statistics on).
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::BtfTracePointContext};
use flannel_probe_common::{
    abi::{DIR_RX, DIR_TX, DropConfig, DropKey, MAX_OVERLAYS, STAT_DROP_OVERFLOW, mac_key},
    parse::{self, Addr, Load},
};

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

/// Kernel memory from an address on (an skb's linear data at one of its
/// headers): the shared parser's [`Load`] for the tracer, which has no
/// packet context, only the skb pointer. Every read goes through
/// bpf_probe_read_kernel, which fails cleanly on a bad address.
struct KernelBytes(u64);

impl Load for KernelBytes {
    #[inline(always)]
    fn load_bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        rd(self.0 + offset as u64)
    }
}

#[inline(always)]
pub(crate) fn observe(ctx: &BtfTracePointContext) {
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
    // Only IP (skb->protocol is big-endian ETH_P_IP or ETH_P_IPV6).
    let v6 = match u16::from_be_bytes(rd::<[u8; 2]>(skb + u64::from(cfg.skb_protocol))?) {
        0x0800 => false,
        0x86dd => true,
        _ => return None,
    };
    let head: u64 = rd(skb + u64::from(cfg.skb_head))?;
    // Which overlay device, if any (a fixed bound: unrolled).
    let mut overlay = None;
    for i in 0..MAX_OVERLAYS {
        if ifindex != 0 && cfg.overlay_ifindex[i] == ifindex {
            overlay = Some(i);
        }
    }
    if let Some(i) = overlay {
        // An inner packet. It came out of decapsulation if it arrived on the
        // device (skb_iif); otherwise it was on its way to a remote VTEP.
        let iif: u32 = rd(skb + u64::from(cfg.skb_iif))?;
        let mh: u16 = rd(skb + u64::from(cfg.skb_mac_header))?;
        let macs = if mh != UNSET {
            parse::macs(&KernelBytes(head + u64::from(mh)))
        } else {
            None
        };
        // IPv6 only unicast: an overlay device with a link-local address
        // sends router solicitations and MLD reports to multicast MACs,
        // which no FDB entry names, and the kernel drops them
        // (NO_TX_TARGET) on every node; they are no peer's traffic. IPv4
        // is counted as before.
        if v6 && macs.is_none_or(|(_, dst)| dst[0] & 1 != 0) {
            return None;
        }
        let mut key = DropKey {
            reason: reason as u32,
            dir: if iif == ifindex { DIR_RX } else { DIR_TX },
            ..DropKey::default()
        };
        if let Some((src, dst)) = macs {
            if key.dir == DIR_RX {
                key.mac = src;
            } else if mac_key(src) == mac_key(cfg.overlay_mac[i & (MAX_OVERLAYS - 1)]) {
                // A forwarded packet's MAC header is still the one it came
                // in with: only ours names the remote VTEP.
                key.mac = dst;
            }
        }
        return count(&key);
    }
    // The outer headers, through the parser the classifiers share. The IP
    // header is where skb->network_header says; UDP follows it (the
    // transport header is unset, or equal to the network header, before IP
    // has parsed the packet, and the IP header's length says the same after).
    let nh: u16 = rd(skb + u64::from(cfg.skb_network_header))?;
    let fam = usize::from(v6);
    let port = cfg.vxlan_port[fam & 1];
    if port == 0 {
        return None;
    }
    let udp = parse::udp_at(&KernelBytes(head + u64::from(nh)), 0, v6)?;
    if udp.dport != port && udp.sport != port {
        return None;
    }
    let local = Addr::v6(cfg.local_vtep[fam & 1]);
    let (dir, peer) = if !local.is_unset() && udp.src == local {
        (DIR_TX, udp.dst)
    } else {
        (DIR_RX, udp.src)
    };
    count(&DropKey {
        reason: reason as u32,
        peer: peer.octets(),
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
