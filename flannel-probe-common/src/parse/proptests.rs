//! Property tests: arbitrary bytes never panic the parser, and every frame
//! the builder can make parses back to what was built.
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::frames::{
    ExtHeader, Ipv4Frame, Ipv6Frame, udp, vxlan_frame, vxlan_header, vxlan6_frame,
};

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
                src: mapped(src), dst: mapped(dst), v6: false, vni, malformed: None,
                inner_offset: want_inner,
                ip_offset: ETH_HLEN + if vlan.is_some() { 4 } else { 0 },
            })
        );
    }

    #[test]
    fn built_ipv6_frames_parse_back(
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        vni in 0u32..(1 << 24),
        vlan in proptest::option::of(0u16..4096),
        ext in proptest::collection::vec(ext_header(), 0..=MAX_EXT_HEADERS),
        inner_len in 0usize..120,
        port in 1u16..,
    ) {
        let inner: Vec<u8> = (0..inner_len).map(|i| i as u8).collect();
        let mut f = vxlan6_frame(src, dst, port, vni, &inner);
        f.vlan = vlan;
        f.ext = ext.clone();
        let bytes = f.build();
        let ext_len: usize = ext.iter().map(|e| match e {
            ExtHeader::Options { units, .. } => (usize::from(*units) + 1) * 8,
            ExtHeader::Fragment { .. } => 8,
        }).sum();
        let tag = if vlan.is_some() { 4 } else { 0 };
        prop_assert_eq!(
            parse_outer(&bytes.as_slice(), port),
            Outer::Vxlan(Vxlan {
                src: Addr::v6(src), dst: Addr::v6(dst), v6: true, vni, malformed: None,
                inner_offset: VXLAN6_OVERHEAD + tag + ext_len,
                ip_offset: ETH_HLEN + tag,
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

/// An IPv6 extension header the parser steps over; fragments are first
/// fragments (a later one is never VXLAN).
fn ext_header() -> impl Strategy<Value = ExtHeader> {
    prop_oneof![
        (prop_oneof![Just(0u8), Just(43u8), Just(60u8)], 0u8..4)
            .prop_map(|(kind, units)| ExtHeader::Options { kind, units }),
        any::<bool>().prop_map(|more| ExtHeader::Fragment { offset: 0, more }),
    ]
}

/// VXLAN to our port (flags possibly wrong), and well-formed VXLAN to the
/// other well-known port or any port: (protocol, payload).
fn udp_shapes() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        (any::<u32>(), prop_oneof![Just(0x08u8), any::<u8>()]).prop_map(|(vni, flags)| {
            let mut p = vxlan_header(flags, vni & 0xff_ffff).to_vec();
            p.extend_from_slice(&[0u8; 40]);
            (17u8, udp(40000, 8472, &p))
        }),
        (prop_oneof![Just(4789u16), any::<u16>()]).prop_map(|port| {
            let mut p = vxlan_header(0x08, 1).to_vec();
            p.extend_from_slice(&[0u8; 20]);
            (17u8, udp(40000, port, &p))
        }),
    ]
}

/// TCP and other protocols: (protocol, payload).
fn other_shapes() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (any::<u8>(), 0usize..40).prop_map(|(proto, n)| (proto, alloc::vec![0u8; n]))
}

/// One byte set and the tail cut, at places drawn by the strategy.
type Mutation = (
    Option<(prop::sample::Index, u8)>,
    Option<prop::sample::Index>,
);

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        proptest::option::of(any::<prop::sample::Index>()),
    )
}

fn mutate(mut bytes: Vec<u8>, (flip, cut): Mutation) -> Vec<u8> {
    if let Some((at, v)) = flip {
        let i = at.index(bytes.len());
        bytes[i] = v;
    }
    if let Some(at) = cut {
        bytes.truncate(at.index(bytes.len() + 1));
    }
    bytes
}

/// A structured frame: a valid Ethernet/VLAN/IPv4 frame of one of the
/// shapes the uplink meets, then optionally one byte mutated and the tail
/// cut, so that generated frames reach every branch of the parser (random
/// bytes almost never get past the EtherType).
fn structured_frame() -> impl Strategy<Value = Vec<u8>> {
    let shape = prop_oneof![
        2 => udp_shapes(),
        // ICMP port unreachable quoting UDP to our port or another one.
        1 => (prop_oneof![Just(8472u16), any::<u16>()], any::<[u8; 4]>()).prop_map(|(port, qsrc)| {
            let quoted = Ipv4Frame::new(qsrc, [192, 0, 2, 11], 17, udp(1, port, &[0u8; 8]));
            let f = crate::frames::icmp_port_unreachable([192, 0, 2, 11], &quoted.ip_packet());
            (1u8, f.payload)
        }),
        // ICMP fragmentation needed, likewise, with any next-hop MTU.
        1 => (prop_oneof![Just(8472u16), any::<u16>()], any::<u16>()).prop_map(|(port, mtu)| {
            let quoted = Ipv4Frame::new(
                [192, 0, 2, 13],
                [192, 0, 2, 11],
                17,
                udp(1, port, &[0u8; 8]),
            );
            let f = crate::frames::icmp_frag_needed([192, 0, 2, 11], &quoted.ip_packet(), mtu);
            (1u8, f.payload)
        }),
        1 => other_shapes(),
    ];
    (
        shape,
        any::<[u8; 4]>(),
        proptest::option::of(0u16..4096),
        0usize..=3,
        mutation(),
    )
        .prop_map(|((proto, payload), src, vlan, option_words, m)| {
            let mut f = Ipv4Frame::new(src, [192, 0, 2, 13], proto, payload);
            f.vlan = vlan;
            f.options = alloc::vec![1; option_words * 4];
            mutate(f.build(), m)
        })
}

/// The IPv6 counterpart of [`structured_frame`]: VXLAN, ICMPv6 errors and
/// other protocols behind up to one more extension header than the
/// parser follows (including later fragments), then mutated and cut.
fn structured_frame6() -> impl Strategy<Value = Vec<u8>> {
    const LOCAL: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0d];
    const PEER: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b];
    let shape = prop_oneof![
        2 => udp_shapes(),
        // ICMPv6 port unreachable or packet too big quoting UDP to our
        // port or another one.
        2 => (prop_oneof![Just(8472u16), any::<u16>()], any::<bool>()).prop_map(|(port, too_big)| {
            let quoted = Ipv6Frame::new(LOCAL, PEER, 17, udp(1, port, &[0u8; 8]));
            let f = if too_big {
                crate::frames::icmp6_packet_too_big(PEER, &quoted.ip_packet(), 1400)
            } else {
                crate::frames::icmp6_port_unreachable(PEER, &quoted.ip_packet())
            };
            (58u8, f.payload)
        }),
        1 => other_shapes(),
    ];
    let ext = prop_oneof![
        3 => ext_header(),
        1 => (1u16..8192).prop_map(|offset| ExtHeader::Fragment { offset, more: false }),
    ];
    (
        shape,
        proptest::option::of(0u16..4096),
        // No extension header half the time: the rest of the frame's
        // shapes are reached as often as over IPv4.
        prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(ext, 1..=MAX_EXT_HEADERS + 1),
        ],
        mutation(),
    )
        .prop_map(|((proto, payload), vlan, ext, m)| {
            let mut f = Ipv6Frame::new(PEER, LOCAL, proto, payload);
            f.vlan = vlan;
            f.ext = ext;
            mutate(f.build(), m)
        })
}

/// What every verdict on a structured frame keeps to; `ip` is the IP
/// header's length (20 or 40), outer and quoted.
fn stays_in_bounds(pkt: &[u8], ip: usize) -> Result<(), TestCaseError> {
    match parse_outer(&pkt, 8472) {
        // A header the kernel would accept is all there; a truncated
        // one rests at least on the UDP ports (the rest of the UDP
        // header may be cut: hence 8 + 4, not 8).
        Outer::Vxlan(v) if v.malformed.is_none() => prop_assert!(v.inner_offset <= pkt.len()),
        Outer::Vxlan(v) => prop_assert!(v.inner_offset <= pkt.len() + VXLAN_HLEN + 4),
        Outer::PortUnreachable { .. } | Outer::FragNeeded { .. } => {
            prop_assert!(pkt.len() >= ETH_HLEN + ip + 8 + ip + 4);
        }
        Outer::ForeignPort { port, .. } => {
            prop_assert!(port == IANA_VXLAN_PORT || port == DEFAULT_VXLAN_PORT);
        }
        Outer::Other => {}
    }
    prop_assert!(headers_len(&pkt, 0) >= ETH_HLEN);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn structured_frames_never_panic_and_stay_in_bounds(bytes in structured_frame()) {
        stays_in_bounds(&bytes, 20)?;
    }

    #[test]
    fn structured_ipv6_frames_never_panic_and_stay_in_bounds(bytes in structured_frame6()) {
        stays_in_bounds(&bytes, 40)?;
    }
}

/// How many of `n` frames of a fixed, seeded draw from `strategy` get each
/// verdict, by name; every VXLAN verdict's family is `v6`.
fn verdicts(
    strategy: impl Strategy<Value = Vec<u8>>,
    n: usize,
    v6: bool,
) -> [(&'static str, usize); 6] {
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
    let mut counts = [
        ("vxlan", 0),
        ("malformed vxlan", 0),
        ("port unreachable", 0),
        ("fragmentation needed / packet too big", 0),
        ("foreign port", 0),
        ("other", 0),
    ];
    for _ in 0..n {
        let bytes = strategy.new_tree(&mut runner).expect("a frame").current();
        let i = match parse_outer(&bytes.as_slice(), 8472) {
            Outer::Vxlan(v) => {
                assert_eq!(v.v6, v6);
                usize::from(v.malformed.is_some())
            }
            Outer::PortUnreachable { .. } => 2,
            Outer::FragNeeded { .. } => 3,
            Outer::ForeignPort { .. } => 4,
            Outer::Other => 5,
        };
        counts[i].1 += 1;
    }
    counts
}

/// The structured generators reach every verdict of the parser: each by
/// at least 2% of the frames (reaching IP, UDP and ICMP is their point).
#[test]
fn structured_frames_reach_every_branch() {
    let n = 4000;
    for (strategy, v6) in [
        (structured_frame().boxed(), false),
        (structured_frame6().boxed(), true),
    ] {
        for (name, count) in verdicts(strategy, n, v6) {
            assert!(count * 50 >= n, "{name} (IPv6 {v6}): {count} of {n} frames");
        }
    }
}
