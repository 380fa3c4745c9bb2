//! Property tests: arbitrary bytes never panic the parser, and every frame
//! the builder can make parses back to what was built.
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::frames::{Ipv4Frame, udp, vxlan_frame, vxlan_header};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160), port in any::<u16>()) {
        let pkt = bytes.as_slice();
        let _ = parse_outer(&pkt, port);
        let _ = headers_len(&pkt, 0);
        let _ = macs(&pkt);
        if let Outer::Vxlan(v) = parse_outer(&pkt, port) {
            // A VXLAN verdict always rests on a UDP header that is there.
            prop_assert!(v.inner_offset <= pkt.len() + VXLAN_HLEN);
        }
    }

    #[test]
    fn built_frames_parse_back(
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        vni in 0u32..(1 << 24),
        vlan in proptest::option::of(0u16..4096),
        option_words in 0usize..=10,
        inner_len in 0usize..120,
        port in 1u16..,
    ) {
        let inner: Vec<u8> = (0..inner_len).map(|i| i as u8).collect();
        let mut f = vxlan_frame(src, dst, port, vni, &inner);
        f.vlan = vlan;
        f.options = alloc::vec![1; option_words * 4];
        let bytes = f.build();
        let want_inner = VXLAN_OVERHEAD + if vlan.is_some() { 4 } else { 0 } + option_words * 4;
        prop_assert_eq!(
            parse_outer(&bytes.as_slice(), port),
            Outer::Vxlan(Vxlan { src, dst, vni, malformed: None, inner_offset: want_inner })
        );
    }

    #[test]
    fn any_flags_but_the_i_flag_alone_are_malformed(flags in any::<u8>(), reserved in any::<[u8; 3]>()) {
        let mut h = vxlan_header(flags, 1).to_vec();
        h[1..4].copy_from_slice(&reserved);
        let bytes = Ipv4Frame::new([10, 0, 0, 1], [10, 0, 0, 2], 17, udp(1, 8472, &h)).build();
        let Outer::Vxlan(v) = parse_outer(&bytes.as_slice(), 8472) else {
            return Err(TestCaseError::fail("not VXLAN"));
        };
        let ok = flags == 0x08 && reserved == [0; 3];
        prop_assert_eq!(v.malformed.is_none(), ok);
        if flags & 0x08 == 0 {
            prop_assert_eq!(v.malformed, Some(Malformed::NoVniFlag));
        }
    }

    #[test]
    fn truncation_never_invents_a_header(cut in 0usize..200) {
        let full = vxlan_frame([192, 0, 2, 1], [192, 0, 2, 2], 8472, 5, &[0u8; 98]).build();
        let pkt = &full[..cut.min(full.len())];
        match parse_outer(&pkt, 8472) {
            Outer::Other => prop_assert!(pkt.len() < 38),
            Outer::Vxlan(v) => {
                prop_assert_eq!(v.malformed.is_none(), pkt.len() >= VXLAN_OVERHEAD);
                prop_assert!(v.malformed.is_some() || v.vni == 5);
            }
            other => return Err(TestCaseError::fail(alloc::format!("unexpected {other:?}"))),
        }
    }
}
