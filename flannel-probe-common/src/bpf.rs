//! The kernel half of [`crate::parse::Load`].
use aya_ebpf::programs::TcContext;

use crate::parse::Load;

/// Offsets past this go through the helper only: a bound the verifier can
/// see on every direct packet read. Every header we parse ends before it.
const DIRECT_MAX: usize = 256;

impl Load for TcContext {
    #[inline(always)]
    fn load_bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // Direct packet access: a bounds check and a load, no helper call.
        // Headers beyond the linear part (rare for the headers we read) fall
        // back to bpf_skb_load_bytes, which also reads paged data.
        if offset < DIRECT_MAX {
            let start = self.data();
            let end = self.data_end();
            if start + offset + N <= end {
                // SAFETY: [start + offset, start + offset + N) lies inside
                // the packet's linear data, as checked against data_end.
                return Some(unsafe {
                    core::ptr::read_unaligned((start + offset) as *const [u8; N])
                });
            }
        }
        self.load::<[u8; N]>(offset).ok()
    }
}
