//! The overlay hooks: inner frames per VTEP MAC. Ingress frames came out of
//! decapsulation (source MAC = the sending VTEP's), egress frames are about
//! to be encapsulated (destination MAC = the receiving VTEP's).
use aya_ebpf::programs::TcContext;
use flannel_probe_common::{
    abi::{DIR_RX, STAT_MAC_OVERFLOW, STAT_MACS_USED, mac_key},
    parse::{headers_len, macs, wire_bytes},
};

use crate::{
    counters::{segments, slot},
    programs::{CONFIG, INNER, MAC_INDEX},
};

#[inline(always)]
pub(crate) fn observe(ctx: &TcContext, dir: u8) {
    let Some(cfg) = CONFIG.get(0) else { return };
    let Some((src, dst)) = macs(ctx) else { return };
    let key = mac_key(if dir == DIR_RX { src } else { dst });
    let mut is_new = false;
    let Some((_, s)) = slot(
        &MAC_INDEX,
        &INNER,
        key,
        cfg.index_mask,
        STAT_MACS_USED,
        STAT_MAC_OVERFLOW,
        &mut is_new,
    ) else {
        return;
    };
    // SAFETY: a live slot; ingress and egress write disjoint halves.
    let c = unsafe {
        if dir == DIR_RX {
            &raw mut (*s).v.rx
        } else {
            &raw mut (*s).v.tx
        }
    };
    let segs = segments(ctx);
    let bytes = if segs > 1 {
        wire_bytes(ctx.len() as usize, segs, headers_len(ctx, 0))
    } else {
        u64::from(ctx.len())
    };
    // SAFETY: this CPU's slot of a live map entry.
    unsafe {
        (*c).packets += u64::from(segs);
        (*c).bytes += bytes;
    }
}
