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
            Outer::Vxlan(Vxlan {
                src, dst, vni, malformed: None, inner_offset: want_inner,
                ip_offset: ETH_HLEN + if vlan.is_some() { 4 } else { 0 },
            })
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

/// A structured frame: a valid Ethernet/VLAN/IPv4 frame of one of the
/// shapes the uplink meets, then optionally one byte mutated and the tail
/// cut, so that generated frames reach every branch of the parser (random
/// bytes almost never get past the EtherType).
fn structured_frame() -> impl Strategy<Value = Vec<u8>> {
    let shape = prop_oneof![
        // VXLAN to our port, flags possibly wrong.
        (any::<u32>(), prop_oneof![Just(0x08u8), any::<u8>()]).prop_map(|(vni, flags)| {
            let mut p = vxlan_header(flags, vni & 0xff_ffff).to_vec();
            p.extend_from_slice(&[0u8; 40]);
            (17u8, udp(40000, 8472, &p))
        }),
        // Well-formed VXLAN to the other well-known port, or any port.
        (prop_oneof![Just(4789u16), any::<u16>()]).prop_map(|port| {
            let mut p = vxlan_header(0x08, 1).to_vec();
            p.extend_from_slice(&[0u8; 20]);
            (17u8, udp(40000, port, &p))
        }),
        // ICMP port unreachable quoting UDP to our port or another one.
        (prop_oneof![Just(8472u16), any::<u16>()], any::<[u8; 4]>()).prop_map(|(port, qsrc)| {
            let quoted = Ipv4Frame::new(qsrc, [192, 0, 2, 11], 17, udp(1, port, &[0u8; 8]));
            let f = crate::frames::icmp_port_unreachable([192, 0, 2, 11], &quoted.ip_packet());
            (1u8, f.payload)
        }),
        // ICMP fragmentation needed, likewise, with any next-hop MTU.
        (prop_oneof![Just(8472u16), any::<u16>()], any::<u16>()).prop_map(|(port, mtu)| {
            let quoted = Ipv4Frame::new(
                [192, 0, 2, 13],
                [192, 0, 2, 11],
                17,
                udp(1, port, &[0u8; 8]),
            );
            let f = crate::frames::icmp_frag_needed([192, 0, 2, 11], &quoted.ip_packet(), mtu);
            (1u8, f.payload)
        }),
        // TCP and other protocols.
        (any::<u8>(), 0usize..40).prop_map(|(proto, n)| (proto, alloc::vec![0u8; n])),
    ];
    (
        shape,
        any::<[u8; 4]>(),
        proptest::option::of(0u16..4096),
        0usize..=3,
        proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        proptest::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|((proto, payload), src, vlan, option_words, flip, cut)| {
            let mut f = Ipv4Frame::new(src, [192, 0, 2, 13], proto, payload);
            f.vlan = vlan;
            f.options = alloc::vec![1; option_words * 4];
            let mut bytes = f.build();
            if let Some((at, v)) = flip {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if let Some(at) = cut {
                bytes.truncate(at.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn structured_frames_never_panic_and_stay_in_bounds(bytes in structured_frame()) {
        let pkt = bytes.as_slice();
        match parse_outer(&pkt, 8472) {
            // A header the kernel would accept is all there; a truncated
            // one rests at least on the UDP ports (the rest of the UDP
            // header may be cut: hence 8 + 4, not 8).
            Outer::Vxlan(v) if v.malformed.is_none() => prop_assert!(v.inner_offset <= pkt.len()),
            Outer::Vxlan(v) => prop_assert!(v.inner_offset <= pkt.len() + VXLAN_HLEN + 4),
            Outer::PortUnreachable { .. } | Outer::FragNeeded { .. } => {
                prop_assert!(pkt.len() >= ETH_HLEN + 20 + 8 + 20 + 4);
            }
            Outer::ForeignPort { port, .. } => {
                prop_assert!(port == IANA_VXLAN_PORT || port == DEFAULT_VXLAN_PORT);
            }
            Outer::Other => {}
        }
        prop_assert!(headers_len(&pkt, 0) >= ETH_HLEN);
    }
}

/// The structured generator reaches every verdict of the parser: counted
/// over a fixed, seeded draw of frames.
#[test]
fn structured_frames_reach_every_branch() {
    use proptest::{
        strategy::ValueTree,
        test_runner::{Config, TestRunner},
    };
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let strategy = structured_frame();
    let (mut vxlan, mut malformed, mut unreachable, mut foreign, mut other) = (0, 0, 0, 0, 0);
    let mut frag_needed = 0;
    let n = 4000;
    for _ in 0..n {
        let bytes = strategy.new_tree(&mut runner).expect("a frame").current();
        match parse_outer(&bytes.as_slice(), 8472) {
            Outer::Vxlan(v) if v.malformed.is_some() => malformed += 1,
            Outer::Vxlan(_) => vxlan += 1,
            Outer::PortUnreachable { .. } => unreachable += 1,
            Outer::FragNeeded { .. } => frag_needed += 1,
            Outer::ForeignPort { .. } => foreign += 1,
            Outer::Other => other += 1,
        }
    }
    // Each branch by at least 2% of the frames: reaching IPv4, UDP and
    // ICMP is the generator's point.
    for (name, count) in [
        ("vxlan", vxlan),
        ("malformed vxlan", malformed),
        ("port unreachable", unreachable),
        ("fragmentation needed", frag_needed),
        ("foreign port", foreign),
        ("other", other),
    ] {
        assert!(count * 50 >= n, "{name}: {count} of {n} frames");
    }
}
