//! flannel-probe's kernel half: declares the programs and maps; each hook
//! lives in its own file.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Host builds compile nothing but an empty main.
#![cfg_attr(not(target_arch = "bpf"), allow(unused_crate_dependencies))]

// Cargo links the package's (empty) library into every binary.
#[cfg(target_arch = "bpf")]
use flannel_probe_ebpf as _;

#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod drops;
#[cfg(target_arch = "bpf")]
mod overlay;
#[cfg(target_arch = "bpf")]
mod uplink;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::tcx_action_base::TCX_NEXT,
        macros::{btf_tracepoint, classifier, map},
        maps::{Array, PerCpuArray, PerCpuHashMap},
        programs::{BtfTracePointContext, TcContext},
    };
    use flannel_probe_common::abi::{
        Config, DEFAULT_MAX_PEERS, DIR_RX, DIR_TX, DropConfig, DropKey, IndexSlot, MacSlot,
        NUM_STATS, PeerIndexSlot, PeerSlot, PeerValue, cold_slots, index_slots,
    };

    // Sizes are the defaults; the agent sets them at load (--max-peers).
    #[map(name = "PEERS")]
    pub(crate) static PEERS: PerCpuArray<PeerSlot> =
        PerCpuArray::with_max_entries(DEFAULT_MAX_PEERS, 0);

    #[map(name = "PEER_INDEX")]
    pub(crate) static PEER_INDEX: PerCpuArray<PeerIndexSlot> =
        PerCpuArray::with_max_entries(index_slots(DEFAULT_MAX_PEERS), 0);

    #[map(name = "PEER_COLD")]
    pub(crate) static PEER_COLD: PerCpuArray<PeerValue> =
        PerCpuArray::with_max_entries(cold_slots(DEFAULT_MAX_PEERS), 0);

    #[map(name = "INNER")]
    pub(crate) static INNER: PerCpuArray<MacSlot> =
        PerCpuArray::with_max_entries(DEFAULT_MAX_PEERS, 0);

    #[map(name = "MAC_INDEX")]
    pub(crate) static MAC_INDEX: PerCpuArray<IndexSlot> =
        PerCpuArray::with_max_entries(index_slots(DEFAULT_MAX_PEERS), 0);

    #[map(name = "CONFIG")]
    pub(crate) static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    #[map(name = "STATS")]
    pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_STATS, 0);

    #[map(name = "DROPS")]
    pub(crate) static DROPS: PerCpuHashMap<DropKey, u64> = PerCpuHashMap::with_max_entries(1024, 0);

    #[map(name = "DROP_CONFIG")]
    pub(crate) static DROP_CONFIG: Array<DropConfig> = Array::with_max_entries(1, 0);

    // Observers only: every program returns TCX_NEXT (-1, TC_ACT_UNSPEC) and
    // never touches the packet. tcx runs the next program in its chain only
    // on TCX_NEXT: any other code, tc's "pipe" action (3) included, ends the chain
    // (seen in the lab: a program attached after ours never ran). cls_bpf
    // goes on to the next filter on TC_ACT_UNSPEC. So -1 is "carry on" for
    // both, and the packet's fate stays with the programs around us.

    #[classifier]
    pub(crate) fn uplink_ingress(ctx: TcContext) -> i32 {
        crate::uplink::observe(&ctx, DIR_RX);
        TCX_NEXT
    }

    #[classifier]
    pub(crate) fn uplink_egress(ctx: TcContext) -> i32 {
        crate::uplink::observe(&ctx, DIR_TX);
        TCX_NEXT
    }

    #[classifier]
    pub(crate) fn overlay_ingress(ctx: TcContext) -> i32 {
        crate::overlay::observe(&ctx, DIR_RX);
        TCX_NEXT
    }

    #[classifier]
    pub(crate) fn overlay_egress(ctx: TcContext) -> i32 {
        crate::overlay::observe(&ctx, DIR_TX);
        TCX_NEXT
    }

    /// Does nothing and is never attached by the agent: the benchmark's
    /// reference. Its cost under the kernel's run-time statistics is what
    /// they and the hook dispatch add to any program, so it is subtracted
    /// from ours side by side.
    #[classifier]
    pub(crate) fn reference_pass(_ctx: TcContext) -> i32 {
        TCX_NEXT
    }

    /// Every packet the kernel frees as dropped, with its reason.
    #[btf_tracepoint(function = "kfree_skb")]
    pub(crate) fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
        crate::drops::observe(&ctx);
        0
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves there is no panic path; this is never reached.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

// Host builds (cargo check of the whole workspace) get an empty binary.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
