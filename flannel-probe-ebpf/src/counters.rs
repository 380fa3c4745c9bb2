//! Map updates shared by the hooks: find-or-insert in a per-CPU hash (rare
//! drops) and in the per-CPU slot tables (every packet).
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    maps::{PerCpuArray, PerCpuHashMap},
};
use flannel_probe_common::abi::{
    INDEX_PROBES, IndexSlot, MacSlot, PeerIndexSlot, PeerKey, PeerSlot, index_start,
    peer_index_start,
};

use crate::programs::STATS;

/// A table key: a MAC's `u64`, or a peer address's two words.
pub(crate) trait Key: Copy {
    fn is_empty(self) -> bool;
    /// Compared word by word: no `memcmp` in the kernel.
    fn same(self, other: Self) -> bool;
    fn start(self, mask: u32) -> u32;
}

impl Key for u64 {
    #[inline(always)]
    fn is_empty(self) -> bool {
        self == 0
    }
    #[inline(always)]
    fn same(self, other: Self) -> bool {
        self == other
    }
    #[inline(always)]
    fn start(self, mask: u32) -> u32 {
        index_start(self, mask)
    }
}

impl Key for PeerKey {
    #[inline(always)]
    fn is_empty(self) -> bool {
        self[0] | self[1] == 0
    }
    #[inline(always)]
    fn same(self, other: Self) -> bool {
        self[0] == other[0] && self[1] == other[1]
    }
    #[inline(always)]
    fn start(self, mask: u32) -> u32 {
        peer_index_start(self, mask)
    }
}

/// A slot of a table, with its key or without one (then only the index
/// entry says whose it is).
pub(crate) trait Keyed {
    type K: Key;
    /// Marks the slot at `p` as `key`'s, where the slot has a key field.
    fn set_key(p: *mut Self, key: Self::K);
}

/// An entry of an index: a key and the slot that holds it.
pub(crate) trait Indexed {
    type K: Key;
    fn key(p: *mut Self) -> *mut Self::K;
    fn slot(p: *mut Self) -> *mut u32;
}

/// `Indexed` for an index entry type (fields `key` and `slot`) with key
/// type `$k`.
macro_rules! tables {
    ($($index:ty => $k:ty;)*) => {$(
        impl Indexed for $index {
            type K = $k;
            fn key(p: *mut Self) -> *mut $k {
                // SAFETY: a field of a live entry.
                unsafe { &raw mut (*p).key }
            }
            fn slot(p: *mut Self) -> *mut u32 {
                // SAFETY: as above.
                unsafe { &raw mut (*p).slot }
            }
        }
    )*};
}

tables! {
    PeerIndexSlot => PeerKey;
    IndexSlot => u64;
}

impl Keyed for MacSlot {
    type K = u64;
    #[inline(always)]
    fn set_key(p: *mut Self, key: u64) {
        // SAFETY: a field of a live slot.
        unsafe { (*p).key = key };
    }
}

impl Keyed for PeerSlot {
    type K = PeerKey;
    /// 64 bytes of counters and no key: the key is in `PEER_INDEX`.
    #[inline(always)]
    fn set_key(_: *mut Self, _: PeerKey) {}
}

/// This CPU's index entry and slot for `key` in `slots`, found through
/// `index`; a new key takes the next free slot (`STATS[used]`) and sets
/// `is_new`. `None` when `key` is 0, or the table or its probes are full
/// (counted in `STATS[overflow]`).
///
/// Per-CPU array lookups are inlined by the verifier, where a per-CPU
/// hash lookup is a helper call: measured under `BPF_PROG_TEST_RUN`, the
/// hash lookup was most of a VXLAN packet's cost. Each CPU keeps its own
/// index and slots, so nothing here races; the agent sums slots by key.
///
/// Why one CPU's tc programs never interleave, also on PREEMPT_RT: they run
/// with migration disabled inside BH-disabled sections (ingress in the
/// softirq, egress under `rcu_read_lock_bh`). Without RT that means no
/// preemption; with RT, softirq work is preemptible (it runs in the task
/// that enables BH, or in ksoftirqd), but a preemptible
/// `local_bh_disable()` takes the CPU's softirq local lock
/// (`softirq_ctrl.lock`, kernel/softirq.c), so a higher-priority task that
/// preempts one of our programs and sends or receives on that CPU blocks
/// there (boosting ours) until our section ends. The drop tracer never
/// touches these slots (only `DROPS` and its own `STATS` entry), and runs
/// from a tracepoint with preemption disabled and the kernel's per-program
/// recursion guard. `cargo xtask vm-test` checks this on Debian's 6.1
/// PREEMPT_RT kernel: eight ping flows over two peers, both directions,
/// half of them SCHED_FIFO so that they preempt the others on the same
/// vCPU, counted exactly
/// (`kernels::concurrent_flows_in_both_directions_count_exactly`).
#[inline(always)]
pub(crate) fn slot<K: Key, I: Indexed<K = K>, S: Keyed<K = K>>(
    index: &PerCpuArray<I>,
    slots: &PerCpuArray<S>,
    key: K,
    mask: u32,
    used: u32,
    overflow: u32,
    is_new: &mut bool,
) -> Option<(*mut I, *mut S)> {
    if key.is_empty() {
        return None;
    }
    let start = key.start(mask);
    let mut i = 0;
    while i < INDEX_PROBES {
        let e = index.get_ptr_mut(start.wrapping_add(i) & mask)?;
        // SAFETY: this CPU's entries; no other program of ours runs on
        // this CPU while we do (see above: BH disabled, on RT the softirq
        // local lock).
        unsafe {
            let k = *I::key(e);
            if k.same(key) {
                return Some((e, slots.get_ptr_mut(*I::slot(e))?));
            }
            if k.is_empty() {
                let s = take(slots, used, overflow, |next, s| {
                    S::set_key(s, key);
                    *I::slot(e) = next;
                    *I::key(e) = key;
                })?;
                *is_new = true;
                return Some((e, s));
            }
        }
        i += 1;
    }
    bump(overflow);
    None
}

/// Takes this CPU's next free slot of `pool`, which `STATS[used]` counts:
/// `claim` gets its number and place (to enter it in an index) before the
/// count grows, so that the agent, which reads the count first, finds the
/// entry of every counted slot. `None` when the pool is full (counted in
/// `STATS[overflow]`).
#[inline(always)]
pub(crate) fn take<S>(
    pool: &PerCpuArray<S>,
    used: u32,
    overflow: u32,
    claim: impl FnOnce(u32, *mut S),
) -> Option<*mut S> {
    let n = STATS.get_ptr_mut(used)?;
    // SAFETY: this CPU's counter; nothing else of ours runs on this CPU
    // meanwhile (see `slot`).
    let next = unsafe { *n } as u32;
    let Some(s) = pool.get_ptr_mut(next) else {
        bump(overflow);
        return None;
    };
    claim(next, s);
    // SAFETY: as above.
    unsafe { *n += 1 };
    Some(s)
}

/// Returns this CPU's value for `key`, inserting `V::default()` first when the
/// key is new. `None` when the map is full: counted in `STATS[overflow]`.
/// `is_new` is set when this call inserted the key.
#[inline(always)]
pub(crate) fn entry<K, V: Default>(
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
pub(crate) fn bump(stat: u32) {
    if let Some(c) = STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot, no other writer on this CPU while we run.
        unsafe { *c += 1 };
    }
}

/// Segments of a GSO/GRO super-packet, 1 for an ordinary one.
#[inline(always)]
pub(crate) fn segments(ctx: &aya_ebpf::programs::TcContext) -> u32 {
    // SAFETY: ctx.skb.skb is the __sk_buff the kernel passed us.
    let segs = unsafe { (*ctx.skb.skb).gso_segs };
    if segs == 0 { 1 } else { segs }
}
