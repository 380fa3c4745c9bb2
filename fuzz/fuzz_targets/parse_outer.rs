//! Structure-aware fuzzing of the uplink parser: libFuzzer's bytes become a
//! `fuzzcase::Case` (a valid Ethernet / VLAN / IPv4 / UDP / VXLAN / ICMP
//! frame, then one byte changed and a cut), and `Case::check` asserts the
//! parser's invariants and, where the mutation spares what it reads, the
//! exact verdict the structure implies. Seeds: `corpus/parse_outer/`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use flannel_probe_common::fuzzcase::{Bytes, Case};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct Input(Case);

/// One byte at a time, as `Case::decode` reads (and `Case::encode` writes)
/// them: the committed seeds decode to the cases they were written from.
struct Fields<'a, 'b>(&'a mut Unstructured<'b>);

impl Bytes for Fields<'_, '_> {
    fn byte(&mut self) -> u8 {
        u8::arbitrary(self.0).unwrap_or(0)
    }
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Input(Case::decode(&mut Fields(u))))
    }
}

fuzz_target!(|input: Input| {
    if let Err(e) = input.0.check() {
        panic!("{:?}\nframe {:02x?}\n{e}", input.0, input.0.mutated());
    }
});
