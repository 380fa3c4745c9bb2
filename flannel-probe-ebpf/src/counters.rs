//! Map updates shared by the hooks: find-or-insert in a per-CPU hash.
use aya_ebpf::{bindings::BPF_NOEXIST, maps::PerCpuHashMap};

use crate::programs::STATS;

/// Returns this CPU's value for `key`, inserting `V::default()` first when the
/// key is new. `None` when the map is full: counted in `STATS[overflow]`.
/// `is_new` is set when this call inserted the key.
#[inline(always)]
pub fn entry<K, V: Default>(
    map: &PerCpuHashMap<K, V>,
    key: &K,
    overflow: u32,
    is_new: &mut bool,
) -> Option<*mut V> {
    if let Some(v) = map.get_ptr_mut(key) {
        return Some(v);
    }
    // Another CPU may insert the same key at the same time: NOEXIST makes one
    // of us fail, and the lookup below then finds the winner's entry.
    if map
        .insert(key, &V::default(), u64::from(BPF_NOEXIST))
        .is_ok()
    {
        *is_new = true;
    }
    match map.get_ptr_mut(key) {
        Some(v) => Some(v),
        None => {
            bump(overflow);
            None
        }
    }
}

#[inline(always)]
pub fn bump(stat: u32) {
    if let Some(c) = STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot, no other writer on this CPU while we run.
        unsafe { *c += 1 };
    }
}

/// Segments of a GSO/GRO super-packet, 1 for an ordinary one.
#[inline(always)]
pub fn segments(ctx: &aya_ebpf::programs::TcContext) -> u32 {
    // SAFETY: ctx.skb.skb is the __sk_buff the kernel passed us.
    let segs = unsafe { (*ctx.skb.skb).gso_segs };
    if segs == 0 { 1 } else { segs }
}
