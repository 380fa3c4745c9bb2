//! The committed corpus of crafted frames (`tests/corpus/*.frame`): each file
//! holds the parser's expected verdict on its first line and the frame in
//! hex on the second. A regression in the parser changes a verdict here.
//! `FLANNEL_PROBE_BLESS=1 cargo test -p flannel-probe-common --test corpus`
//! rewrites the files from the builders below and the structured cases of
//! `fuzzcase::seeds` (which it also writes as the fuzzer's seeds).
// An integration test links all of the package's dependencies (aya with
// `user`, proptest); this one needs only the parser.
#![allow(unused_crate_dependencies)]

use std::{fs, net::Ipv6Addr, path::PathBuf};

use flannel_probe_common::{
    frames::{
        ExtHeader, Ipv4Frame, Ipv6Frame, ext_chain, icmp_port_unreachable, icmp6_packet_too_big,
        icmp6_port_unreachable, inner_echo, inner_echo6, tcp, udp, vxlan_frame, vxlan_header,
        vxlan6_frame,
    },
    fuzzcase::{Case, seeds},
    parse::{Addr, Outer, parse_outer},
};

const A: [u8; 4] = [192, 0, 2, 11];
const B: [u8; 4] = [192, 0, 2, 13];
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x13];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// An address as the corpus writes it: IPv4 as its four bytes (the format
/// the IPv4-only parser's verdicts were committed in), IPv6 in RFC 5952 form.
fn addr(a: &Addr) -> String {
    match a.to_v4() {
        Some(v4) => format!("{v4:?}"),
        None => Ipv6Addr::from(a.octets()).to_string(),
    }
}

fn verdict(frame: &[u8]) -> String {
    match parse_outer(&frame, 8472) {
        Outer::Vxlan(v) => format!(
            "vxlan src={} dst={} vni={} malformed={:?} inner_offset={}",
            addr(&v.src),
            addr(&v.dst),
            v.vni,
            v.malformed,
            v.inner_offset
        ),
        Outer::PortUnreachable {
            from,
            vtep,
            quoted_src,
        } => format!(
            "PortUnreachable {{ from: {}, vtep: {}, quoted_src: {} }}",
            addr(&from),
            addr(&vtep),
            addr(&quoted_src)
        ),
        Outer::FragNeeded {
            from,
            vtep,
            quoted_src,
            mtu,
        } => format!(
            "FragNeeded {{ from: {}, vtep: {}, quoted_src: {}, mtu: {mtu} }}",
            addr(&from),
            addr(&vtep),
            addr(&quoted_src)
        ),
        Outer::ForeignPort { src, dst, port } => format!(
            "ForeignPort {{ src: {}, dst: {}, port: {port} }}",
            addr(&src),
            addr(&dst)
        ),
        Outer::Other => "Other".to_string(),
    }
}

fn crafted() -> Vec<(String, Vec<u8>)> {
    let inner = inner_echo(
        [0x0e, 0, 0, 0, 0, 0x11],
        [0x0e, 0, 0, 0, 0, 0x13],
        [10, 42, 1, 54],
        [10, 42, 0, 54],
    );
    let vx = |flags: u8, vni: u32| {
        let mut p = vxlan_header(flags, vni).to_vec();
        p.extend_from_slice(&inner);
        Ipv4Frame::new(A, B, 17, udp(40000, 8472, &p)).build()
    };
    let mut tagged = vxlan_frame(A, B, 8472, 1, &inner);
    tagged.vlan = Some(42);
    let mut options = vxlan_frame(A, B, 8472, 1, &inner);
    options.options = vec![0x94, 0x04, 0, 0];
    let mut first_frag = vxlan_frame(A, B, 8472, 1, &inner);
    first_frag.more_fragments = true;
    let mut later_frag = vxlan_frame(A, B, 8472, 1, &inner);
    later_frag.frag_offset = 185;
    let good = vxlan_frame(A, B, 8472, 1, &inner).build();
    let inner6 = inner_echo6([0x0e, 0, 0, 0, 0, 0x11], [0x0e, 0, 0, 0, 0, 0x13], A6, B6);
    let good6 = vxlan6_frame(A6, B6, 8472, 1, &inner).build();
    let mut ext6 = vxlan6_frame(A6, B6, 8472, 1, &inner);
    ext6.ext = ext_chain();
    let mut later6 = vxlan6_frame(A6, B6, 8472, 1, &inner);
    later6.ext = vec![ExtHeader::Fragment {
        offset: 185,
        more: false,
    }];
    vec![
        ("vxlan_8472", good.clone()),
        ("vxlan_4789", vxlan_frame(A, B, 4789, 1, &inner).build()),
        ("vxlan_vlan", tagged.build()),
        ("vxlan_ip_options", options.build()),
        ("vxlan_first_fragment", first_frag.build()),
        ("vxlan_later_fragment", later_frag.build()),
        ("vxlan_no_i_flag", vx(0x00, 1)),
        ("vxlan_gbp_flag", vx(0x88, 1)),
        ("vxlan_vni_77", vx(0x08, 77)),
        ("vxlan_truncated_header", good[..46].to_vec()),
        ("truncated_udp_ports", good[..37].to_vec()),
        (
            "udp_dns",
            Ipv4Frame::new(A, B, 17, udp(5353, 53, b"query")).build(),
        ),
        (
            "tcp_to_8472",
            Ipv4Frame::new(A, B, 6, tcp(1, 8472, 5, 0)).build(),
        ),
        (
            "icmp_port_unreachable_vxlan",
            icmp_port_unreachable(B, &vxlan_frame(A, B, 8472, 1, &inner).ip_packet()).build(),
        ),
        (
            "icmp_port_unreachable_dns",
            icmp_port_unreachable(B, &Ipv4Frame::new(A, B, 17, udp(1, 53, b"q")).ip_packet())
                .build(),
        ),
        ("empty", Vec::new()),
        ("vxlan6_8472", good6.clone()),
        (
            "vxlan6_inner_ipv6",
            vxlan6_frame(A6, B6, 8472, 1, &inner6).build(),
        ),
        ("vxlan6_extension_headers", ext6.build()),
        ("vxlan6_later_fragment", later6.build()),
        ("vxlan6_truncated_header", good6[..66].to_vec()),
        (
            "icmp6_port_unreachable_vxlan",
            icmp6_port_unreachable(B6, &vxlan6_frame(A6, B6, 8472, 1, &inner).ip_packet()).build(),
        ),
        (
            "icmp6_packet_too_big_vxlan",
            icmp6_packet_too_big(
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                &vxlan6_frame(A6, B6, 8472, 1, &inner).ip_packet(),
                1400,
            )
            .build(),
        ),
        (
            "icmp6_port_unreachable_dns",
            icmp6_port_unreachable(
                B6,
                &Ipv6Frame::new(A6, B6, 17, udp(1, 53, b"q")).ip_packet(),
            )
            .build(),
        ),
    ]
    .into_iter()
    .map(|(n, f)| (n.to_string(), f))
    // The structured cases (`fuzzcase::seeds`): one per parser branch, also
    // the fuzzer's seeds.
    .chain(
        seeds()
            .into_iter()
            .map(|(n, c)| (format!("case_{n}"), c.mutated())),
    )
    .collect()
}

/// The fuzzer's seed directory (`fuzz/corpus/parse_outer`).
fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/parse_outer")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn corpus_verdicts_are_stable() {
    if std::env::var("FLANNEL_PROBE_BLESS").is_ok_and(|v| v == "1") {
        fs::create_dir_all(dir()).expect("corpus dir");
        for (name, frame) in crafted() {
            let text = format!("{}\n{}\n", verdict(&frame), hex(&frame));
            fs::write(dir().join(format!("{name}.frame")), text).expect("write corpus");
        }
        fs::create_dir_all(fuzz_dir()).expect("fuzz corpus dir");
        for (name, case) in seeds() {
            fs::write(fuzz_dir().join(name), case.encode()).expect("write a fuzz seed");
        }
    }
    // Every seed is committed as the bytes that decode to it.
    for (name, case) in seeds() {
        let path = fuzz_dir().join(name);
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(Case::decode(&mut bytes.iter()), case, "{}", path.display());
    }
    let mut n = 0;
    for entry in fs::read_dir(dir()).expect("tests/corpus exists") {
        let path = entry.expect("entry").path();
        let text = fs::read_to_string(&path).expect("read");
        let mut lines = text.lines();
        let want = lines.next().expect("verdict line");
        let frame = unhex(lines.next().unwrap_or(""));
        assert_eq!(verdict(&frame), want, "{}", path.display());
        n += 1;
    }
    assert_eq!(n, crafted().len(), "every crafted frame is in the corpus");
}
