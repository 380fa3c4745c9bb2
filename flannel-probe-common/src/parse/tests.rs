//! Host tests of the shared parser on crafted frames.
use alloc::vec::Vec;

use super::*;
use crate::frames::{
    EXT_CHAIN_LEN, ExtHeader, Ipv4Frame, Ipv6Frame, ext_chain, icmp_frag_needed,
    icmp_port_unreachable, icmp6_packet_too_big, icmp6_port_unreachable, inner_echo, inner_echo6,
    tcp, udp, vxlan_frame, vxlan_header, vxlan6_frame,
};

const A: [u8; 4] = [192, 0, 2, 11];
const B: [u8; 4] = [192, 0, 2, 13];
const MAC_A: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x0b];
/// fd00::1 and fd00::2: IPv6 VTEPs as in the lab.
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// The same as the parser reports them.
const VA6: Addr = Addr::v6(A6);
const VB6: Addr = Addr::v6(B6);

fn inner() -> Vec<u8> {
    inner_echo(MAC_A, MAC_B, [10, 42, 1, 54], [10, 42, 0, 54])
}

fn vx(frame: &[u8], port: u16) -> Vxlan {
    match parse_outer(&frame, port) {
        Outer::Vxlan(v) => v,
        other => panic!("expected VXLAN, got {other:?}"),
    }
}

#[test]
fn vxlan_to_the_configured_port() {
    let f = vxlan_frame(A, B, 8472, 1, &inner()).build();
    let v = vx(&f, 8472);
    assert_eq!(v.src, mapped(A));
    assert_eq!(v.dst, mapped(B));
    assert_eq!(v.vni, 1);
    assert_eq!(v.malformed, None);
    assert_eq!(v.inner_offset, VXLAN_OVERHEAD);
    assert_eq!(macs(&&f[v.inner_offset..]), Some((MAC_A, MAC_B)));
}

#[test]
fn vxlan_to_another_port_is_only_vxlan_with_that_port() {
    let f = vxlan_frame(A, B, 4789, 7, &inner()).build();
    assert_eq!(
        parse_outer(&f.as_slice(), 8472),
        Outer::ForeignPort {
            src: mapped(A),
            dst: mapped(B),
            port: 4789
        }
    );
    let v = vx(&f, 4789);
    assert_eq!(v.vni, 7);
    // Other ports, and a non-VXLAN payload on the other well-known port, are nothing.
    let odd = vxlan_frame(A, B, 4790, 7, &inner()).build();
    assert_eq!(parse_outer(&odd.as_slice(), 8472), Outer::Other);
    let dns_like = Ipv4Frame::new(A, B, 17, udp(1, 4789, b"\x00\x01 not vxlan")).build();
    assert_eq!(parse_outer(&dns_like.as_slice(), 8472), Outer::Other);
}

#[test]
fn large_vni_is_read_whole() {
    let f = vxlan_frame(A, B, 8472, 0x00ab_cdef, &inner()).build();
    assert_eq!(vx(&f, 8472).vni, 0x00ab_cdef);
}

#[test]
fn one_vlan_tag_is_skipped() {
    let mut f = vxlan_frame(A, B, 8472, 1, &inner());
    f.vlan = Some(100);
    let bytes = f.build();
    let v = vx(&bytes, 8472);
    assert_eq!(v.inner_offset, VXLAN_OVERHEAD + 4);
    assert_eq!(v.src, mapped(A));
}

#[test]
fn ipv4_options_move_the_udp_header() {
    let mut f = vxlan_frame(A, B, 8472, 1, &inner());
    f.options = alloc::vec![0x94, 0x04, 0, 0, 1, 1, 1, 0]; // router alert + NOPs, 8 bytes
    let bytes = f.build();
    let v = vx(&bytes, 8472);
    assert_eq!(v.inner_offset, VXLAN_OVERHEAD + 8);
    assert_eq!(v.vni, 1);
}

#[test]
fn truncated_at_every_byte() {
    // UDP destination port ends at 14 + 20 + 4 (IPv6: + 40); the VXLAN
    // header at 50 (70).
    for (full, ports_end, overhead, src) in [
        (
            vxlan_frame(A, B, 8472, 1, &inner()).build(),
            38,
            VXLAN_OVERHEAD,
            mapped(A),
        ),
        (
            vxlan6_frame(A6, B6, 8472, 1, &inner()).build(),
            58,
            VXLAN6_OVERHEAD,
            VA6,
        ),
    ] {
        for cut in 0..=full.len() {
            let f = &full[..cut];
            if cut < ports_end {
                assert_eq!(parse_outer(&f, 8472), Outer::Other, "cut at {cut}");
                continue;
            }
            let v = vx(f, 8472);
            assert_eq!(v.src, src, "cut at {cut}");
            if cut < overhead {
                assert_eq!(v.malformed, Some(Malformed::Truncated), "cut at {cut}");
            } else {
                assert_eq!((v.malformed, v.vni), (None, 1), "cut at {cut}");
            }
        }
    }
}

#[test]
fn non_vxlan_traffic_is_other() {
    let dns = Ipv4Frame::new(A, B, 17, udp(5353, 53, b"hello")).build();
    assert_eq!(parse_outer(&dns.as_slice(), 8472), Outer::Other);
    let web = Ipv4Frame::new(A, B, 6, tcp(40000, 8472, 5, 10)).build();
    assert_eq!(
        parse_outer(&web.as_slice(), 8472),
        Outer::Other,
        "TCP to 8472 is not VXLAN"
    );
    let mut v6 = vxlan_frame(A, B, 8472, 1, &inner()).build();
    v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_eq!(parse_outer(&v6.as_slice(), 8472), Outer::Other);
}

#[test]
fn bad_ip_headers_are_other() {
    let mut short_ihl = vxlan_frame(A, B, 8472, 1, &inner()).build();
    short_ihl[14] = 0x44;
    assert_eq!(parse_outer(&short_ihl.as_slice(), 8472), Outer::Other);
    let mut not_v4 = vxlan_frame(A, B, 8472, 1, &inner()).build();
    not_v4[14] = 0x65;
    assert_eq!(parse_outer(&not_v4.as_slice(), 8472), Outer::Other);
}

#[test]
fn fragments() {
    // A first fragment still carries the UDP and VXLAN headers.
    let mut first = vxlan_frame(A, B, 8472, 1, &inner());
    first.more_fragments = true;
    let bytes = first.build();
    assert_eq!(vx(&bytes, 8472).malformed, None);
    // A later fragment has no UDP header, whatever its bytes look like.
    let mut later = vxlan_frame(A, B, 8472, 1, &inner());
    later.frag_offset = 185;
    assert_eq!(parse_outer(&later.build().as_slice(), 8472), Outer::Other);
}

#[test]
fn malformed_vxlan_headers() {
    let mut payload = Vec::new();
    payload.extend_from_slice(&vxlan_header(0x00, 1));
    payload.extend_from_slice(&inner());
    let no_i = Ipv4Frame::new(A, B, 17, udp(1, 8472, &payload)).build();
    assert_eq!(vx(&no_i, 8472).malformed, Some(Malformed::NoVniFlag));

    let mut gbp = Vec::new();
    gbp.extend_from_slice(&vxlan_header(0x88, 1));
    let f = Ipv4Frame::new(A, B, 17, udp(1, 8472, &gbp)).build();
    assert_eq!(vx(&f, 8472).malformed, Some(Malformed::ReservedBits));

    let mut reserved = vxlan_header(0x08, 1);
    reserved[7] = 1;
    let f = Ipv4Frame::new(A, B, 17, udp(1, 8472, &reserved)).build();
    assert_eq!(vx(&f, 8472).malformed, Some(Malformed::ReservedBits));

    let f = Ipv4Frame::new(A, B, 17, udp(1, 8472, &[0x08, 0, 0])).build();
    assert_eq!(vx(&f, 8472).malformed, Some(Malformed::Truncated));
}

#[test]
fn icmp_port_unreachable_quoting_vxlan() {
    let sent = vxlan_frame(A, B, 8472, 1, &inner());
    let icmp = icmp_port_unreachable(B, &sent.ip_packet()).build();
    assert_eq!(
        parse_outer(&icmp.as_slice(), 8472),
        Outer::PortUnreachable {
            from: mapped(B),
            vtep: mapped(B),
            quoted_src: mapped(A)
        }
    );
    // Quoting a datagram to another port, or another ICMP code: not ours.
    let dns = Ipv4Frame::new(A, B, 17, udp(1, 53, b"q"));
    let icmp = icmp_port_unreachable(B, &dns.ip_packet()).build();
    assert_eq!(parse_outer(&icmp.as_slice(), 8472), Outer::Other);
    let mut host_unreach = icmp_port_unreachable(B, &sent.ip_packet());
    host_unreach.payload[1] = 1;
    assert_eq!(
        parse_outer(&host_unreach.build().as_slice(), 8472),
        Outer::Other
    );
    // A quote cut before the UDP port cannot be attributed.
    let full = icmp_port_unreachable(B, &sent.ip_packet()).build();
    let cut = &full[..14 + 20 + 8 + 20 + 2];
    assert_eq!(parse_outer(&cut, 8472), Outer::Other);
}

#[test]
fn icmp_frag_needed_quoting_vxlan_names_the_mtu() {
    let sent = vxlan_frame(A, B, 8472, 1, &inner());
    let router = [198, 51, 100, 1];
    let icmp = icmp_frag_needed(router, &sent.ip_packet(), 1400).build();
    assert_eq!(
        parse_outer(&icmp.as_slice(), 8472),
        Outer::FragNeeded {
            from: mapped(router),
            vtep: mapped(B),
            quoted_src: mapped(A),
            mtu: 1400
        }
    );
    // Quoting a datagram to another port: not ours.
    let dns = Ipv4Frame::new(A, B, 17, udp(1, 53, b"q"));
    let icmp = icmp_frag_needed(router, &dns.ip_packet(), 1400).build();
    assert_eq!(parse_outer(&icmp.as_slice(), 8472), Outer::Other);
}

#[test]
fn outer_sizes_class_every_segment() {
    // One packet: its own length.
    assert_eq!(outer_sizes(1400, 1, 0, 0), (0, 1400));
    assert_eq!(outer_sizes(1401, 1, 0, 0), (1, 1401));
    assert_eq!(outer_sizes(1401, 0, 0, 0), (1, 1401));
    // 4 segments of 1448 payload behind 102 bytes of headers, the last
    // with 100: three large (1550), one small (202).
    let hdr = 20 + 8 + 8 + 14 + 20 + 32;
    assert_eq!(
        outer_sizes(hdr + 3 * 1448 + 100, 4, 1448, hdr),
        (3, hdr + 1448)
    );
    // A full last segment is large too.
    assert_eq!(outer_sizes(hdr + 4 * 1448, 4, 1448, hdr), (4, hdr + 1448));
    // Small segments (MSS 1200): none large.
    assert_eq!(outer_sizes(hdr + 5 * 1200, 5, 1200, hdr), (0, hdr + 1200));
    // A length that disagrees with the segments never counts more than there are.
    assert_eq!(outer_sizes(0, 3, 1448, hdr), (2, hdr + 1448));
    assert_eq!(outer_sizes(u32::MAX, 3, 1448, hdr), (3, hdr + 1448));
}

#[test]
fn vxlan_names_the_outer_ip_header() {
    let f = vxlan_frame(A, B, 8472, 1, &inner()).build();
    assert_eq!(vx(&f, 8472).ip_offset, ETH_HLEN);
    let mut t = vxlan_frame(A, B, 8472, 1, &inner());
    t.vlan = Some(5);
    assert_eq!(vx(&t.build(), 8472).ip_offset, ETH_HLEN + 4);
}

#[test]
fn headers_len_of_inner_frames() {
    let echo = inner();
    assert_eq!(headers_len(&echo.as_slice(), 0), 14 + 20);
    let t = Ipv4Frame::new(A, B, 6, tcp(1, 2, 8, 100)).build();
    assert_eq!(headers_len(&t.as_slice(), 0), 14 + 20 + 32);
    let u = Ipv4Frame::new(A, B, 17, udp(1, 2, &[0; 10])).build();
    assert_eq!(headers_len(&u.as_slice(), 0), 14 + 20 + 8);
    // Inside VXLAN: counted from the outer frame's start.
    let outer = vxlan_frame(A, B, 8472, 1, &t).build();
    assert_eq!(
        headers_len(&outer.as_slice(), VXLAN_OVERHEAD),
        VXLAN_OVERHEAD + 14 + 20 + 32
    );
    let arp: &[u8] = &[0xff; 14];
    assert_eq!(headers_len(&arp, 0), 14);
}

#[test]
fn wire_bytes_counts_repeated_headers() {
    assert_eq!(wire_bytes(1500, 0, 116), 1500);
    assert_eq!(wire_bytes(1500, 1, 116), 1500);
    assert_eq!(wire_bytes(64_000, 44, 116), 64_000 + 43 * 116);
}

#[test]
fn udp_from_the_ip_header() {
    let mut f = vxlan_frame(A, B, 8472, 1, &inner());
    f.options = alloc::vec![1, 1, 1, 1];
    let ip = f.ip_packet();
    assert_eq!(
        udp_at(&ip.as_slice(), 0, false),
        Some(Udp {
            src: mapped(A),
            dst: mapped(B),
            sport: 40000,
            dport: 8472,
        })
    );
    // The same through a frame: the header after Ethernet.
    let frame = f.build();
    assert_eq!(
        udp_at(&frame.as_slice(), ETH_HLEN, false),
        udp_at(&ip.as_slice(), 0, false)
    );
}

#[test]
fn udp_is_only_first_fragments_of_udp() {
    let mut later = vxlan_frame(A, B, 8472, 1, &inner());
    later.frag_offset = 10;
    assert_eq!(udp_at(&later.ip_packet().as_slice(), 0, false), None);
    let mut first = vxlan_frame(A, B, 8472, 1, &inner());
    first.more_fragments = true;
    assert!(udp_at(&first.ip_packet().as_slice(), 0, false).is_some());
    let tcp = Ipv4Frame::new(A, B, 6, tcp(1, 2, 5, 0)).ip_packet();
    assert_eq!(udp_at(&tcp.as_slice(), 0, false), None);
    // Truncated before the ports.
    let ip = vxlan_frame(A, B, 8472, 1, &inner()).ip_packet();
    assert_eq!(udp_at(&&ip[..22], 0, false), None);
    assert!(udp_at(&&ip[..24], 0, false).is_some());
}

// --- IPv6 underlay.

fn vx6(frame: &[u8], port: u16) -> Vxlan {
    let v = vx(frame, port);
    assert!(v.v6, "an IPv6 outer header");
    v
}

#[test]
fn addresses_are_ipv4_mapped_or_ipv6() {
    assert_eq!(mapped(A).to_v4(), Some(A));
    assert!(!mapped(A).is_v6());
    assert!(!mapped([0; 4]).is_v6());
    assert!(VA6.is_v6());
    assert_eq!(VA6.to_v4(), None);
    assert_eq!(VA6.octets(), A6);
    // ::1 and the IPv4-compatible ::a.b.c.d are IPv6, not mapped.
    let mut compat = [0u8; 16];
    compat[12..].copy_from_slice(&A);
    assert!(Addr::v6(compat).is_v6());
    // The bytes are the standard IPv4-mapped form.
    assert_eq!(
        core::net::Ipv6Addr::from(mapped(A).octets()).to_ipv4_mapped(),
        Some(core::net::Ipv4Addr::from(A))
    );
    assert_eq!(Addr::v6(mapped(A).octets()), mapped(A));
    // Unspecified in either family; unset only when all zeros.
    assert!(mapped([0; 4]).is_unspecified() && Addr::default().is_unspecified());
    assert!(!mapped([0; 4]).is_unset() && Addr::default().is_unset());
    assert!(!VA6.is_unspecified() && !mapped(A).is_unspecified());
    assert_eq!(
        alloc::format!("{:?} {:?}", mapped(A), VA6),
        "192.0.2.11 fd00::1"
    );
}

#[test]
fn vxlan_over_ipv6_to_the_configured_port() {
    let f = vxlan6_frame(A6, B6, 8472, 1, &inner()).build();
    let v = vx6(&f, 8472);
    assert_eq!((v.src, v.dst, v.vni, v.malformed), (VA6, VB6, 1, None));
    assert_eq!(v.inner_offset, VXLAN6_OVERHEAD);
    assert_eq!(v.ip_offset, ETH_HLEN);
    assert_eq!(macs(&&f[v.inner_offset..]), Some((MAC_A, MAC_B)));
    // Inner IPv6 frames are carried the same way.
    let i6 = inner_echo6(MAC_A, MAC_B, A6, B6);
    let f = vxlan6_frame(A6, B6, 8472, 1, &i6).build();
    assert_eq!(
        macs(&&f[vx6(&f, 8472).inner_offset..]),
        Some((MAC_A, MAC_B))
    );
    // IPv4 VXLAN is flagged as such.
    assert!(!vx(&vxlan_frame(A, B, 8472, 1, &inner()).build(), 8472).v6);
}

#[test]
fn each_family_has_its_own_port_and_zero_watches_nothing() {
    let v4 = vxlan_frame(A, B, 8472, 1, &inner()).build();
    let v6 = vxlan6_frame(A6, B6, 4789, 1, &inner()).build();
    let both = Ports { v4: 8472, v6: 4789 };
    assert!(matches!(parse_outer_ports(&v4.as_slice(), both), Outer::Vxlan(v) if !v.v6));
    assert!(matches!(parse_outer_ports(&v6.as_slice(), both), Outer::Vxlan(v) if v.v6));
    let only4 = Ports { v4: 8472, v6: 0 };
    assert_eq!(parse_outer_ports(&v6.as_slice(), only4), Outer::Other);
    let only6 = Ports { v4: 0, v6: 4789 };
    assert_eq!(parse_outer_ports(&v4.as_slice(), only6), Outer::Other);
    // The other well-known port over IPv6 is a foreign port, as over IPv4.
    assert_eq!(
        parse_outer_ports(&v6.as_slice(), Ports { v4: 0, v6: 8472 }),
        Outer::ForeignPort {
            src: VA6,
            dst: VB6,
            port: 4789
        }
    );
}

#[test]
fn ipv6_extension_headers_are_stepped_over() {
    let mut f = vxlan6_frame(A6, B6, 8472, 9, &inner());
    f.ext = ext_chain();
    let bytes = f.build();
    let v = vx6(&bytes, 8472);
    assert_eq!(v.vni, 9);
    assert_eq!(v.inner_offset, VXLAN6_OVERHEAD + EXT_CHAIN_LEN);
    let dest = ExtHeader::Options { kind: 60, units: 0 };
    // One more than the bound: not followed, so not VXLAN.
    let mut long = f.clone();
    long.ext.push(dest);
    assert_eq!(parse_outer(&long.build().as_slice(), 8472), Outer::Other);
    // Headers we do not step over (ESP 50) end the chain: not UDP.
    let esp = Ipv6Frame::new(A6, B6, 50, alloc::vec![0; 40]).build();
    assert_eq!(parse_outer(&esp.as_slice(), 8472), Outer::Other);
}

#[test]
fn ipv6_fragments() {
    let mut first = vxlan6_frame(A6, B6, 8472, 1, &inner());
    first.ext = alloc::vec![ExtHeader::Fragment {
        offset: 0,
        more: true
    }];
    assert_eq!(vx6(&first.build(), 8472).malformed, None);
    // A later fragment has no UDP header, whatever follows.
    let mut later = vxlan6_frame(A6, B6, 8472, 1, &inner());
    later.ext = alloc::vec![ExtHeader::Fragment {
        offset: 185,
        more: false
    }];
    assert_eq!(parse_outer(&later.build().as_slice(), 8472), Outer::Other);
}

#[test]
fn ipv6_malformed_vxlan_and_bad_versions() {
    let f = Ipv6Frame::new(A6, B6, 17, udp(1, 8472, &vxlan_header(0x00, 1))).build();
    assert_eq!(vx6(&f, 8472).malformed, Some(Malformed::NoVniFlag));
    let f = Ipv6Frame::new(A6, B6, 17, udp(1, 8472, &vxlan_header(0x88, 1))).build();
    assert_eq!(vx6(&f, 8472).malformed, Some(Malformed::ReservedBits));
    let mut not_v6 = vxlan6_frame(A6, B6, 8472, 1, &inner()).build();
    not_v6[14] = 0x45;
    assert_eq!(parse_outer(&not_v6.as_slice(), 8472), Outer::Other);
    let tcp6 = Ipv6Frame::new(A6, B6, 6, tcp(1, 8472, 5, 10)).build();
    assert_eq!(parse_outer(&tcp6.as_slice(), 8472), Outer::Other);
}

#[test]
fn icmp6_port_unreachable_quoting_vxlan() {
    let sent = vxlan6_frame(A6, B6, 8472, 1, &inner());
    let icmp = icmp6_port_unreachable(B6, &sent.ip_packet()).build();
    assert_eq!(
        parse_outer(&icmp.as_slice(), 8472),
        Outer::PortUnreachable {
            from: VB6,
            vtep: VB6,
            quoted_src: VA6
        }
    );
    // Another code (1: administratively prohibited), a quote of another
    // port, ICMPv4 numbering inside ICMPv6: not ours.
    let mut prohibited = icmp6_port_unreachable(B6, &sent.ip_packet());
    prohibited.payload[1] = 1;
    assert_eq!(
        parse_outer(&prohibited.build().as_slice(), 8472),
        Outer::Other
    );
    let dns = Ipv6Frame::new(A6, B6, 17, udp(1, 53, b"q"));
    let icmp = icmp6_port_unreachable(B6, &dns.ip_packet()).build();
    assert_eq!(parse_outer(&icmp.as_slice(), 8472), Outer::Other);
    let mut v4_numbers = icmp6_port_unreachable(B6, &sent.ip_packet());
    v4_numbers.payload[0] = 3;
    v4_numbers.payload[1] = 3;
    assert_eq!(
        parse_outer(&v4_numbers.build().as_slice(), 8472),
        Outer::Other
    );
    // Cut before the quoted UDP port: cannot be attributed.
    let full = icmp6_port_unreachable(B6, &sent.ip_packet()).build();
    assert_eq!(
        parse_outer(&&full[..14 + 40 + 8 + 40 + 3], 8472),
        Outer::Other
    );
    assert!(matches!(
        parse_outer(&&full[..14 + 40 + 8 + 40 + 4], 8472),
        Outer::PortUnreachable { .. }
    ));
    // The quoted datagram's extension headers are stepped over too.
    let mut hop = sent.clone();
    hop.ext = alloc::vec![ExtHeader::Options { kind: 0, units: 0 }];
    let icmp = icmp6_port_unreachable(B6, &hop.ip_packet()).build();
    assert!(matches!(
        parse_outer(&icmp.as_slice(), 8472),
        Outer::PortUnreachable { vtep, .. } if vtep == VB6
    ));
}

#[test]
fn icmp6_packet_too_big_quoting_vxlan_names_the_mtu() {
    let sent = vxlan6_frame(A6, B6, 8472, 1, &inner());
    let mut router = [0u8; 16];
    router[0] = 0x20;
    router[1] = 0x01;
    router[15] = 0xfe;
    let icmp = icmp6_packet_too_big(router, &sent.ip_packet(), 1400).build();
    assert_eq!(
        parse_outer(&icmp.as_slice(), 8472),
        Outer::FragNeeded {
            from: Addr::v6(router),
            vtep: VB6,
            quoted_src: VA6,
            mtu: 1400
        }
    );
    // A jumbo MTU is clamped, not wrapped.
    let jumbo = icmp6_packet_too_big(router, &sent.ip_packet(), 70_000).build();
    assert!(matches!(
        parse_outer(&jumbo.as_slice(), 8472),
        Outer::FragNeeded { mtu: u16::MAX, .. }
    ));
    let dns = Ipv6Frame::new(A6, B6, 17, udp(1, 53, b"q"));
    let icmp = icmp6_packet_too_big(router, &dns.ip_packet(), 1400).build();
    assert_eq!(parse_outer(&icmp.as_slice(), 8472), Outer::Other);
}

#[test]
fn headers_len_of_inner_ipv6_frames() {
    let t = Ipv6Frame::new(A6, B6, 6, tcp(1, 2, 8, 100)).build();
    assert_eq!(headers_len(&t.as_slice(), 0), 14 + 40 + 32);
    let mut u = Ipv6Frame::new(A6, B6, 17, udp(1, 2, &[0; 10]));
    assert_eq!(headers_len(&u.build().as_slice(), 0), 14 + 40 + 8);
    // Extension headers are not walked here (INNER_EXT): the Ethernet
    // header is all that is known to repeat.
    u.ext = alloc::vec![ExtHeader::Options { kind: 60, units: 0 }];
    assert_eq!(headers_len(&u.build().as_slice(), 0), 14);
    let outer = vxlan6_frame(A6, B6, 8472, 1, &t).build();
    assert_eq!(
        headers_len(&outer.as_slice(), VXLAN6_OVERHEAD),
        VXLAN6_OVERHEAD + 14 + 40 + 32
    );
}

#[test]
fn udp_from_an_ipv6_header() {
    let ip = vxlan6_frame(A6, B6, 8472, 1, &inner()).ip_packet();
    assert_eq!(
        udp_at(&ip.as_slice(), 0, true),
        Some(Udp {
            src: VA6,
            dst: VB6,
            sport: 40000,
            dport: 8472,
        })
    );
    assert_eq!(udp_at(&ip.as_slice(), 0, false), None);
    assert_eq!(udp_at(&&ip[..43], 0, true), None);
    assert!(udp_at(&&ip[..44], 0, true).is_some());
}
