//! The kernel half of [`crate::parse::Load`].
use aya_ebpf::programs::TcContext;

use crate::parse::Load;

impl Load for TcContext {
    #[inline(always)]
    fn load_bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // bpf_skb_load_bytes: reads non-linear data too, bounds-checked by the kernel.
        self.load::<[u8; N]>(offset).ok()
    }

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.len() as usize
    }
}
