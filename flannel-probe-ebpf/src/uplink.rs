//! The uplink hooks: outer VXLAN (over IPv4 or IPv6) per remote VTEP (with
//! its size classes), ICMP/ICMPv6 port-unreachable that says a peer has no
//! VXLAN socket, and ICMP fragmentation-needed / ICMPv6 packet-too-big that
//! say the path to a peer is too narrow. Each family has its own port, VNI,
//! local VTEP and overlay MAC (`Config::v4`, `Config::v6`).
use aya_ebpf::programs::TcContext;
use aya_log_ebpf::info;
use flannel_probe_common::{
    abi::{
        CONFIG_VNI_KNOWN, DIR_RX, FamilyConfig, HotCounters, PeerCounters, PeerIndexSlot, PeerSlot,
        STAT_COLD_OVERFLOW, STAT_COLD_USED, STAT_ICMP_NOT_OURS, STAT_PEER_OVERFLOW,
        STAT_PEERS_USED, STAT_RX_NOT_LOCAL, mac_key, peer_key,
    },
    parse::{
        Addr, Load, Outer, Ports, Vxlan, headers_len, outer_sizes, parse_outer_ports, wire_bytes,
    },
};

use crate::{
    counters::{bump, segments, slot, take},
    programs::{CONFIG, PEER_COLD, PEER_INDEX, PEERS},
};

/// This CPU's entry of one peer: its index entry and its per-packet slot.
struct Peer {
    e: *mut PeerIndexSlot,
    s: *mut PeerSlot,
}

/// This CPU's entry of `addr`, created when new.
#[inline(always)]
fn peer(addr: Addr, mask: u32, is_new: &mut bool) -> Option<Peer> {
    let (e, s) = slot(
        &PEER_INDEX,
        &PEERS,
        peer_key(addr),
        mask,
        STAT_PEERS_USED,
        STAT_PEER_OVERFLOW,
        is_new,
    )?;
    Some(Peer { e, s })
}

impl Peer {
    /// The per-packet counters of direction `dir`, and its largest outer
    /// length.
    #[inline(always)]
    fn hot(&self, dir: u8) -> (*mut HotCounters, *mut u16) {
        // SAFETY: fields of a live slot; only the half for this direction
        // is used.
        unsafe {
            if dir == DIR_RX {
                (&raw mut (*self.s).rx, &raw mut (*self.s).rx_max_outer_len)
            } else {
                (&raw mut (*self.s).tx, &raw mut (*self.s).tx_max_outer_len)
            }
        }
    }

    /// The anomaly counters of direction `dir`, in the peer's cold slot,
    /// which the first anomaly takes from the pool. `None` when the pool is
    /// full (counted in `STATS[STAT_COLD_OVERFLOW]`).
    #[inline(always)]
    fn cold(&self, dir: u8) -> Option<*mut PeerCounters> {
        // SAFETY: this CPU's index entry and pool; nothing else of ours
        // runs on this CPU meanwhile (see `counters::slot`).
        unsafe {
            let c = (*self.e).cold;
            let v = if c != 0 {
                PEER_COLD.get_ptr_mut(c - 1)?
            } else {
                take(&PEER_COLD, STAT_COLD_USED, STAT_COLD_OVERFLOW, |next, _| {
                    (*self.e).cold = next.wrapping_add(1);
                })?
            };
            Some(if dir == DIR_RX {
                &raw mut (*v).rx
            } else {
                &raw mut (*v).tx
            })
        }
    }
}

/// VTEP_MAC_STALE: counts a decapsulatable frame whose inner destination
/// is a unicast MAC other than our overlay's (the sender uses an old VTEP
/// MAC of ours), and keeps that MAC. Broadcast and multicast are anyone's.
#[inline(always)]
fn stale_dst(ctx: &TcContext, p: &Peer, fam: &FamilyConfig, inner: usize, segs: u32) {
    // Compared as integers: a few instructions instead of a byte loop.
    let ours = mac_key(fam.overlay_mac);
    if ours == 0 {
        return;
    }
    let Some(dst) = Load::load_bytes::<6>(ctx, inner) else {
        return;
    };
    if dst[0] & 1 != 0 || mac_key(dst) == ours {
        return;
    }
    let Some(c) = p.cold(DIR_RX) else { return };
    // SAFETY: this CPU's slot of a live map entry.
    unsafe {
        (*c).stale_dst += u64::from(segs);
        (*c).last_stale_dst = dst;
    }
}

/// skb->pkt_type for frames addressed to this host's MAC.
const PACKET_HOST: u32 = 0;

/// Whether inbound traffic to `dst` is for this node's VTEP of its family
/// (any address while the agent does not know it). What arrives for
/// another address (a secondary IP, a pod's host port) was not sent to our
/// VTEP by a peer.
#[inline(always)]
fn to_local(fam: &FamilyConfig, dst: Addr) -> bool {
    let local = Addr::v6(fam.local_vtep);
    local.is_unset() || local == dst
}

/// The configuration of `addr`'s family.
#[inline(always)]
fn family<'a>(v4: &'a FamilyConfig, v6: &'a FamilyConfig, addr: Addr) -> &'a FamilyConfig {
    if addr.is_v6() { v6 } else { v4 }
}

/// Size classes of one VXLAN packet to or from a peer (UNDERLAY_MTU_BLACKHOLE):
/// its wire segments above `LARGE_OUTER_LEN`, and the largest segment's
/// outer IP length. `headers` is `headers_len` from the frame's start
/// (0 for a packet that is not a super-packet).
#[inline(always)]
fn count_sizes(
    ctx: &TcContext,
    (c, max_len): (*mut HotCounters, *mut u16),
    vx: &Vxlan,
    segs: u32,
    headers: usize,
) {
    let ip_len = (ctx.len() as usize).saturating_sub(vx.ip_offset) as u32;
    // SAFETY: the kernel's __sk_buff.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    let (large, max) = outer_sizes(
        ip_len,
        segs,
        gso_size,
        headers.saturating_sub(vx.ip_offset) as u32,
    );
    let max = if max > 0xffff { 0xffff } else { max as u16 };
    // SAFETY: this CPU's slot of a live map entry.
    unsafe {
        (*c).large += u64::from(large);
        if max > *max_len {
            *max_len = max;
        }
    }
}

/// ICMP "fragmentation needed" / ICMPv6 "packet too big" for our VXLAN to
/// `vtep`: counted for that peer with the next-hop MTU, when it quotes a
/// datagram we sent (as for port unreachable, anyone can forge the rest).
#[inline(always)]
fn count_frag_needed(fam: &FamilyConfig, vtep: Addr, quoted_src: Addr, mtu: u16, mask: u32) {
    if !to_local(fam, quoted_src) {
        bump(STAT_ICMP_NOT_OURS);
        return;
    }
    let mut is_new = false;
    if let Some(c) = peer(vtep, mask, &mut is_new).and_then(|p| p.cold(DIR_RX)) {
        // SAFETY: this CPU's slot of a live map entry.
        unsafe {
            (*c).frag_needed += 1;
            if mtu != 0 {
                (*c).last_frag_mtu = mtu;
            }
        }
    }
}

#[inline(always)]
pub(crate) fn observe(ctx: &TcContext, dir: u8) {
    let Some(cfg) = CONFIG.get(0) else { return };
    let ports = Ports {
        v4: cfg.v4.vxlan_port,
        v6: cfg.v6.vxlan_port,
    };
    if ports.v4 == 0 && ports.v6 == 0 {
        return;
    }
    // On ingress only what the switch delivered to us counts: a flooded
    // frame for another host is not VXLAN for this node.
    // SAFETY: the kernel's __sk_buff.
    if dir == DIR_RX && unsafe { (*ctx.skb.skb).pkt_type } != PACKET_HOST {
        return;
    }
    match parse_outer_ports(ctx, ports) {
        Outer::Vxlan(vx) => {
            let fam = if vx.v6 { &cfg.v6 } else { &cfg.v4 };
            if dir == DIR_RX && !to_local(fam, vx.dst) {
                bump(STAT_RX_NOT_LOCAL);
                return;
            }
            let addr = if dir == DIR_RX { vx.src } else { vx.dst };
            let mut is_new = false;
            let Some(p) = peer(addr, cfg.index_mask, &mut is_new) else {
                return;
            };
            let hot = p.hot(dir);
            // Who really sits at this address: FDB_ENTRY_STALE/MISSING
            // compare it with the FDB.
            let inner_src = if dir == DIR_RX && vx.malformed.is_none() {
                Load::load_bytes::<6>(ctx, vx.inner_offset + 6)
            } else {
                None
            };
            let segs = segments(ctx);
            // Headers every segment repeats; only a super-packet needs them.
            let headers = if segs > 1 {
                headers_len(ctx, vx.inner_offset)
            } else {
                0
            };
            let bytes = if segs > 1 {
                wire_bytes(ctx.len() as usize, segs, headers)
            } else {
                u64::from(ctx.len())
            };
            count_sizes(ctx, hot, &vx, segs, headers);
            let vni_known = fam.flags & CONFIG_VNI_KNOWN != 0;
            // SAFETY: this CPU's slot of a live map entry.
            unsafe {
                (*hot.0).packets += u64::from(segs);
                (*hot.0).bytes += bytes;
            }
            if vx.malformed.is_some() {
                if let Some(c) = p.cold(dir) {
                    // SAFETY: as above.
                    unsafe { (*c).malformed += u64::from(segs) };
                }
            } else if vni_known && vx.vni != fam.vni {
                if let Some(c) = p.cold(dir) {
                    // SAFETY: as above.
                    unsafe {
                        (*c).other_vni += u64::from(segs);
                        (*c).last_other_vni = vx.vni;
                    }
                }
            }
            if let Some(mac) = inner_src {
                // SAFETY: as above.
                unsafe { (*p.s).last_inner_src = mac };
                if !vni_known || vx.vni == fam.vni {
                    stale_dst(ctx, &p, fam, vx.inner_offset, segs);
                }
            }
            if is_new {
                // IPv4 peers logged as before IPv6, not as ::ffff:a.b.c.d.
                match addr.to_v4() {
                    Some(a) => info!(ctx, "new VXLAN peer {:i} (dir {}, vni {})", a, dir, vx.vni),
                    None => info!(
                        ctx,
                        "new VXLAN peer {:i} (dir {}, vni {})",
                        addr.octets(),
                        dir,
                        vx.vni
                    ),
                }
            }
        }
        Outer::ForeignPort { src, dst, port } if dir == DIR_RX => {
            if !to_local(family(&cfg.v4, &cfg.v6, dst), dst) {
                return;
            }
            let mut is_new = false;
            if let Some(c) = peer(src, cfg.index_mask, &mut is_new).and_then(|p| p.cold(DIR_RX)) {
                // SAFETY: this CPU's slot of a live map entry.
                unsafe {
                    (*c).other_port += u64::from(segments(ctx));
                    (*c).last_other_port = port;
                }
            }
        }
        Outer::FragNeeded {
            vtep,
            quoted_src,
            mtu,
            ..
        } if dir == DIR_RX => count_frag_needed(
            family(&cfg.v4, &cfg.v6, vtep),
            vtep,
            quoted_src,
            mtu,
            cfg.index_mask,
        ),
        Outer::PortUnreachable {
            vtep, quoted_src, ..
        } if dir == DIR_RX => {
            // Only a quote of our own VXLAN says the peer has no socket:
            // anyone can send ICMP quoting a datagram we never sent.
            if !to_local(family(&cfg.v4, &cfg.v6, vtep), quoted_src) {
                bump(STAT_ICMP_NOT_OURS);
                return;
            }
            let mut is_new = false;
            if let Some(c) = peer(vtep, cfg.index_mask, &mut is_new).and_then(|p| p.cold(DIR_RX)) {
                // SAFETY: as above.
                unsafe { (*c).icmp_port_unreachable += 1 };
            }
        }
        _ => {}
    }
}
