//! The kernel half of [`crate::parse::Load`].
use aya_ebpf::programs::TcContext;

use crate::parse::Load;

/// Offsets past this go through the helper only: a bound the verifier can
/// see on every direct packet read. Every header we parse ends before it.
const DIRECT_MAX: usize = 256;
const _: () = assert!(DIRECT_MAX == 256, "the asm mask below is DIRECT_MAX - 1");

impl Load for TcContext {
    #[inline(always)]
    fn load_bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // Direct packet access: a bounds check and a load, no helper call.
        // Headers beyond the linear part (rare for the headers we read) fall
        // back to bpf_skb_load_bytes, which also reads paged data.
        if offset < DIRECT_MAX {
            // The same offset, masked where the verifier sees it: the
            // compiler turns `offset < 256` into `r1 = 256; if r1 > off`, a
            // compare 6.1's verifier cannot predict from the offset's range.
            // For an offset that is always past 256 (after IPv6 extension
            // headers) it then walks this impossible branch with
            // umin > umax, takes `data + off` for a scalar and rejects the
            // program (seen in `cargo xtask vm-test` on Debian's 6.1). The
            // AND gives it a consistent [0, 255] on every path; the
            // compiler cannot drop it as redundant inside asm.
            let mut offset = offset;
            // SAFETY: one ALU instruction on a register, no memory access.
            unsafe { core::arch::asm!("{0} &= 255", inout(reg) offset) };
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
