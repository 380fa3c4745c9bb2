//! Structured frames for the fuzzer (`fuzz/`) and the committed corpus: a
//! [`Case`] describes a valid Ethernet / 802.1Q / IPv4 (options, fragments)
//! or IPv6 (extension headers, fragments) / UDP / VXLAN / ICMP or ICMPv6 frame, then at most one byte changed and a cut.
//! [`Case::check`] runs the parser on it and asserts what the structure
//! implies: no panic, offsets in bounds, and, when the change and the cut
//! spare every byte the parser reads, exactly the verdict the structure
//! gives ([`Case::expected`]).
//!
//! A case is read from bytes one at a time ([`Case::decode`]; the fuzzer's
//! `Arbitrary` feeds it `u8::arbitrary`), and [`Case::encode`] writes the
//! bytes that decode to it, so the corpus generator can write fuzzer seeds.
use alloc::{format, string::String, vec, vec::Vec};
use core::ops::Range;

use crate::{
    frames::{ExtHeader, Ipv4Frame, Ipv6Frame, tcp, udp, vxlan_header},
    parse::{
        Addr, DEFAULT_VXLAN_PORT, ETH_HLEN, IANA_VXLAN_PORT, MAX_EXT_HEADERS, Malformed, Outer,
        VXLAN_HLEN, Vxlan, headers_len, macs, mapped, parse_outer,
    },
};

/// The VXLAN port the parser is asked about (Flannel's).
pub const PORT: u16 = DEFAULT_VXLAN_PORT;

/// A source of bytes; 0 once it runs dry.
pub trait Bytes {
    fn byte(&mut self) -> u8;
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn ip(&mut self) -> [u8; 4] {
        [self.byte(), self.byte(), self.byte(), self.byte()]
    }
    fn ip6(&mut self) -> [u8; 16] {
        let mut a = [0u8; 16];
        for b in &mut a {
            *b = self.byte();
        }
        a
    }
}

/// The IPv6 address an ICMP case's 4-byte quoted address stands for over
/// IPv6: `fd00::a.b.c.d`, so one field serves both families.
pub fn quoted6(a: [u8; 4]) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[0] = 0xfd;
    v[12..].copy_from_slice(&a);
    v
}

/// Protocol numbers the IPv6 parser treats as extension headers or ICMPv6:
/// an `L4::Proto`/quoted protocol of the IPv6 kinds avoids them.
fn v6_special(p: u8) -> bool {
    matches!(p, 0 | 43 | 44 | 60 | 58)
}

/// One IPv6 extension header of a case: what [`ExtHeader`] builds, plus
/// later fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop (0), routing (43) or destination options (60), 0..=3
    /// units beyond the first 8 bytes.
    Options { kind: u8, units: u8 },
    /// A first fragment.
    First { more: bool },
    /// A later fragment (offset 1..=8191): no upper-layer header follows.
    Later { offset: u16 },
}

impl Ext {
    fn decode(b: &mut impl Bytes) -> Self {
        match b.byte() % 5 {
            k @ 0..=2 => Ext::Options {
                kind: [0, 43, 60][usize::from(k)],
                units: b.byte() % 4,
            },
            3 => Ext::First {
                more: b.byte() & 1 != 0,
            },
            _ => Ext::Later {
                offset: (b.u16() & 0x1fff).max(1),
            },
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Ext::Options { kind, units } => {
                out.push(match kind {
                    0 => 0,
                    43 => 1,
                    _ => 2,
                });
                out.push(units);
            }
            Ext::First { more } => out.extend_from_slice(&[3, u8::from(more)]),
            Ext::Later { offset } => {
                out.push(4);
                out.extend_from_slice(&offset.to_be_bytes());
            }
        }
    }

    fn header(&self) -> ExtHeader {
        match *self {
            Ext::Options { kind, units } => ExtHeader::Options { kind, units },
            Ext::First { more } => ExtHeader::Fragment { offset: 0, more },
            Ext::Later { offset } => ExtHeader::Fragment {
                offset,
                more: false,
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Ext::Options { units, .. } => (usize::from(*units) + 1) * 8,
            _ => 8,
        }
    }
}

impl Bytes for core::slice::Iter<'_, u8> {
    fn byte(&mut self) -> u8 {
        self.next().copied().unwrap_or(0)
    }
}

/// VLAN tagging of the outer frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    None,
    Dot1q(u16),
    Dot1ad(u16),
    /// 802.1ad then 802.1Q: the parser reads one tag, so this is not IPv4.
    QinQ(u16),
}

/// ICMP `typ`/`code` quoting an IPv4 header (`qoption_words` of options,
/// fragment offset `qfrag`, protocol `qproto`) and `qlen` (0..=8) bytes of
/// a UDP header to `qdport`. Over IPv6 see [`L3::Ipv6`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub typ: u8,
    pub code: u8,
    pub qsrc: [u8; 4],
    pub qdst: [u8; 4],
    pub qproto: u8,
    pub qoption_words: u8,
    pub qfrag: u16,
    pub qdport: u16,
    pub qlen: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    /// UDP to `dport` with `header_len` (0..=8) bytes of a VXLAN header
    /// (flags, reserved bytes 1-3, VNI, byte 7) and, when whole, `inner_len`
    /// bytes after it.
    Vxlan {
        dport: u16,
        flags: u8,
        reserved: [u8; 3],
        vni: u32,
        last: u8,
        header_len: u8,
        inner_len: u8,
    },
    /// UDP to a port that is no VXLAN port.
    Udp {
        dport: u16,
        len: u8,
    },
    Tcp {
        dport: u16,
    },
    /// An ICMP error and its quote ([`Icmp`]).
    Icmp(Icmp),
    /// Another IP protocol (not UDP or ICMP).
    Proto {
        proto: u8,
        len: u8,
    },
}

/// IPv6 with up to one more extension header than the parser follows.
/// Over IPv6 an `L4::Icmp` is ICMPv6: its quote is an IPv6 header from
/// [`quoted6`]`(qsrc)` to [`quoted6`]`(qdst)` behind `qoption_words % 3`
/// destination-options headers (and a fragment header when `qfrag` is not
/// 0), cut `qlen` bytes into its UDP header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ip6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ext: Vec<Ext>,
    /// Replaces the version nibble (6 normally).
    pub version: u8,
    pub l4: L4,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L3 {
    Ipv4 {
        src: [u8; 4],
        dst: [u8; 4],
        option_words: u8,
        frag_offset: u16,
        more_fragments: bool,
        /// Replaces the version nibble (4 normally).
        version: u8,
        /// Replaces the IHL with one below 5 (an invalid header).
        short_ihl: Option<u8>,
        l4: L4,
    },
    /// IPv6 ([`Ip6`]).
    Ipv6(Ip6),
    /// Not IP (ARP, ...): `len` payload bytes.
    Other { ethertype: u16, len: u8 },
}

/// One structured frame and its mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub tag: Tag,
    pub l3: L3,
    /// XOR `.1` into the byte at `.0` modulo the length.
    pub flip: Option<(u16, u8)>,
    /// Cut the frame to `min(cut, len)` bytes.
    pub cut: Option<u16>,
}

fn not_vxlan_port(p: u16) -> u16 {
    if p == DEFAULT_VXLAN_PORT || p == IANA_VXLAN_PORT {
        53
    } else {
        p
    }
}

impl Icmp {
    /// The parser's verdict on this ICMP error (ICMPv6 when `v6`) from
    /// `from` with its header at `l4`; pushes the byte ranges it reads.
    fn expected(&self, v6: bool, from: Addr, l4: usize, reads: &mut Vec<Range<usize>>) -> Outer {
        reads.push(l4..l4 + 8);
        let q = l4 + 8;
        let (unreach, too_big) = if v6 {
            (self.typ == 1 && self.code == 4, self.typ == 2)
        } else {
            (
                self.typ == 3 && self.code == 3,
                self.typ == 3 && self.code == 4,
            )
        };
        if !unreach && !too_big {
            return Outer::Other;
        }
        let (hlen, addr): (usize, fn([u8; 4]) -> Addr) = if v6 {
            (40, |a| Addr::v6(quoted6(a)))
        } else {
            (20, mapped)
        };
        reads.push(q..q + hlen);
        let mut at = q + hlen;
        if v6 {
            for _ in 0..self.qoption_words % 3 {
                reads.push(at..at + 2);
                at += 8;
            }
            if self.qfrag != 0 {
                reads.push(at..at + 8);
            }
        } else {
            at += usize::from(self.qoption_words) * 4;
        }
        // A later fragment has no UDP header; a quote cut before the
        // ports cannot be attributed (the read of them fails).
        if self.qfrag != 0 || self.qlen < 4 {
            return Outer::Other;
        }
        reads.push(at..at + 4);
        // build6 quotes another protocol for what IPv6 reads as a header.
        let proto = if v6 && v6_special(self.qproto) {
            6
        } else {
            self.qproto
        };
        if proto != 17 || self.qdport != PORT {
            return Outer::Other;
        }
        let (vtep, quoted_src) = (addr(self.qdst), addr(self.qsrc));
        if too_big {
            // The frames carry an MTU of zeros.
            Outer::FragNeeded {
                from,
                vtep,
                quoted_src,
                mtu: 0,
            }
        } else {
            Outer::PortUnreachable {
                from,
                vtep,
                quoted_src,
            }
        }
    }

    /// The ICMP message (checksum zero) quoting `quoted` cut `qlen` bytes
    /// after its `head` bytes of IP headers.
    fn message(&self, mut quoted: Vec<u8>, head: usize) -> Vec<u8> {
        quoted.truncate(head + usize::from(self.qlen));
        let mut m = vec![self.typ, self.code, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&quoted);
        m
    }
}

impl L4 {
    fn decode(b: &mut impl Bytes) -> Self {
        match b.byte() % 5 {
            0 => {
                // Mostly a VXLAN port, so that the header is looked at.
                let dport = match b.byte() % 4 {
                    0 | 1 => PORT,
                    2 => IANA_VXLAN_PORT,
                    _ => b.u16(),
                };
                let flags = b.byte();
                let reserved = [b.byte(), b.byte(), b.byte()];
                let vni = u32::from_be_bytes([0, b.byte(), b.byte(), b.byte()]);
                let last = b.byte();
                let header_len = b.byte();
                L4::Vxlan {
                    dport,
                    flags,
                    reserved,
                    vni,
                    last,
                    header_len: if header_len > 8 { 8 } else { header_len },
                    inner_len: b.byte(),
                }
            }
            1 => L4::Udp {
                dport: not_vxlan_port(b.u16()),
                len: b.byte(),
            },
            2 => L4::Tcp { dport: b.u16() },
            3 => L4::Icmp(Icmp {
                typ: b.byte(),
                code: b.byte(),
                qsrc: b.ip(),
                qdst: b.ip(),
                qproto: b.byte(),
                qoption_words: b.byte() % 11,
                qfrag: b.u16() & 0x1fff,
                qdport: b.u16(),
                qlen: b.byte() % 9,
            }),
            _ => {
                let proto = b.byte();
                L4::Proto {
                    proto: if proto == 1 || proto == 17 { 47 } else { proto },
                    len: b.byte(),
                }
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            L4::Vxlan {
                dport,
                flags,
                reserved,
                vni,
                last,
                header_len,
                inner_len,
            } => {
                out.push(0);
                match *dport {
                    PORT => out.push(0),
                    IANA_VXLAN_PORT => out.push(2),
                    p => {
                        out.push(3);
                        out.extend_from_slice(&p.to_be_bytes());
                    }
                }
                out.push(*flags);
                out.extend_from_slice(reserved);
                out.extend_from_slice(&vni.to_be_bytes()[1..]);
                out.extend_from_slice(&[*last, *header_len, *inner_len]);
            }
            L4::Udp { dport, len } => {
                out.push(1);
                out.extend_from_slice(&dport.to_be_bytes());
                out.push(*len);
            }
            L4::Tcp { dport } => {
                out.push(2);
                out.extend_from_slice(&dport.to_be_bytes());
            }
            L4::Icmp(q) => {
                out.extend_from_slice(&[3, q.typ, q.code]);
                out.extend_from_slice(&q.qsrc);
                out.extend_from_slice(&q.qdst);
                out.extend_from_slice(&[q.qproto, q.qoption_words]);
                out.extend_from_slice(&q.qfrag.to_be_bytes());
                out.extend_from_slice(&q.qdport.to_be_bytes());
                out.push(q.qlen);
            }
            L4::Proto { proto, len } => out.extend_from_slice(&[4, *proto, *len]),
        }
    }

    /// (protocol, payload) over IPv6: ICMP is ICMPv6.
    fn build6(&self) -> (u8, Vec<u8>) {
        match self {
            L4::Icmp(i) => {
                let proto = if v6_special(i.qproto) { 6 } else { i.qproto };
                let mut q = Ipv6Frame::new(
                    quoted6(i.qsrc),
                    quoted6(i.qdst),
                    proto,
                    udp(40000, i.qdport, &[0; 8]),
                );
                q.ext = vec![
                    ExtHeader::Options { kind: 60, units: 0 };
                    usize::from(i.qoption_words % 3)
                ];
                if i.qfrag != 0 {
                    q.ext.push(ExtHeader::Fragment {
                        offset: i.qfrag,
                        more: false,
                    });
                }
                let head = 40 + q.ext.len() * 8;
                // The outer Ipv6Frame fills in the ICMPv6 checksum.
                (58, i.message(q.ip_packet(), head))
            }
            L4::Proto { proto, len } if v6_special(*proto) => (47, vec![0x5a; usize::from(*len)]),
            other => other.build(),
        }
    }

    /// (protocol, payload).
    fn build(&self) -> (u8, Vec<u8>) {
        match self {
            L4::Vxlan {
                dport,
                flags,
                reserved,
                vni,
                last,
                header_len,
                inner_len,
            } => {
                let mut h = vxlan_header(*flags, *vni);
                h[1..4].copy_from_slice(reserved);
                h[7] = *last;
                let mut p = h[..usize::from(*header_len)].to_vec();
                if *header_len == 8 {
                    p.extend((0..*inner_len).map(|i| i.wrapping_mul(7)));
                }
                (17, udp(40000, *dport, &p))
            }
            L4::Udp { dport, len } => (17, udp(5353, *dport, &vec![0xab; usize::from(*len)])),
            L4::Tcp { dport } => (6, tcp(40000, *dport, 5, 12)),
            L4::Icmp(i) => {
                let mut q = Ipv4Frame::new(i.qsrc, i.qdst, i.qproto, udp(40000, i.qdport, &[0; 8]));
                q.options = vec![1; usize::from(i.qoption_words) * 4];
                q.frag_offset = i.qfrag;
                let head = 20 + usize::from(i.qoption_words) * 4;
                let mut m = i.message(q.ip_packet(), head);
                let c = crate::frames::checksum(&m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                (1, m)
            }
            L4::Proto { proto, len } => (*proto, vec![0x5a; usize::from(*len)]),
        }
    }
}

impl Case {
    /// The case these bytes describe (every byte string is one).
    pub fn decode(b: &mut impl Bytes) -> Self {
        let tag = match b.byte() % 5 {
            0 | 1 => Tag::None,
            2 => Tag::Dot1q(b.u16() & 0x0fff),
            3 => Tag::Dot1ad(b.u16() & 0x0fff),
            _ => Tag::QinQ(b.u16() & 0x0fff),
        };
        let kind = b.byte() % 8;
        let l3 = if kind == 6 {
            let src = b.ip6();
            let dst = b.ip6();
            let n = usize::from(b.byte()) % (MAX_EXT_HEADERS + 2);
            let ext = (0..n).map(|_| Ext::decode(b)).collect();
            let q = b.byte();
            let version = if q % 16 == 15 { b.byte() >> 4 } else { 6 };
            L3::Ipv6(Ip6 {
                src,
                dst,
                ext,
                version,
                l4: L4::decode(b),
            })
        } else if kind == 7 {
            let e = b.u16();
            L3::Other {
                // Not IPv4 and not a tag, which would be parsed as such
                // (0x86dd over these bytes is version 1: not IPv6 either).
                ethertype: if matches!(e, 0x0800 | 0x8100 | 0x88a8) {
                    0x86dd
                } else {
                    e
                },
                len: b.byte(),
            }
        } else {
            let src = b.ip();
            let dst = b.ip();
            let option_words = b.byte() % 11;
            // Mostly first fragments, sometimes a later one.
            let fr = b.byte();
            let frag_offset = if fr % 8 == 7 { b.u16() & 0x1fff } else { 0 };
            let more_fragments = fr & 0x10 != 0;
            let q = b.byte();
            let version = if q % 16 == 15 { b.byte() >> 4 } else { 4 };
            let short_ihl = (q % 16 == 14).then(|| b.byte() % 5);
            L3::Ipv4 {
                src,
                dst,
                option_words,
                frag_offset,
                more_fragments,
                version,
                short_ihl,
                l4: L4::decode(b),
            }
        };
        let flip = (b.byte() % 4 == 3).then(|| (b.u16(), b.byte()));
        let cut = (b.byte() % 4 == 3).then(|| b.u16());
        Case { tag, l3, flip, cut }
    }

    /// Bytes that [`Case::decode`] reads back as this case.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.tag {
            Tag::None => out.push(0),
            Tag::Dot1q(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Tag::Dot1ad(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Tag::QinQ(v) => {
                out.push(4);
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        match &self.l3 {
            L3::Other { ethertype, len } => {
                out.push(7);
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.push(*len);
            }
            L3::Ipv6(c) => {
                out.push(6);
                out.extend_from_slice(&c.src);
                out.extend_from_slice(&c.dst);
                out.push(c.ext.len() as u8);
                for e in &c.ext {
                    e.encode(&mut out);
                }
                match c.version {
                    6 => out.push(0),
                    v => out.extend_from_slice(&[15, v << 4]),
                }
                c.l4.encode(&mut out);
            }
            L3::Ipv4 {
                src,
                dst,
                option_words,
                frag_offset,
                more_fragments,
                version,
                short_ihl,
                l4,
            } => {
                out.push(0);
                out.extend_from_slice(src);
                out.extend_from_slice(dst);
                out.push(*option_words);
                let mf = if *more_fragments { 0x10 } else { 0 };
                if *frag_offset != 0 {
                    out.push(7 | mf);
                    out.extend_from_slice(&frag_offset.to_be_bytes());
                } else {
                    out.push(mf);
                }
                match (*version, short_ihl) {
                    (_, Some(ihl)) => out.extend_from_slice(&[14, *ihl]),
                    (4, None) => out.push(0),
                    (v, None) => out.extend_from_slice(&[15, v << 4]),
                }
                l4.encode(&mut out);
            }
        }
        match self.flip {
            Some((at, x)) => {
                out.push(3);
                out.extend_from_slice(&at.to_be_bytes());
                out.push(x);
            }
            None => out.push(0),
        }
        match self.cut {
            Some(c) => {
                out.push(3);
                out.extend_from_slice(&c.to_be_bytes());
            }
            None => out.push(0),
        }
        out
    }

    /// The frame before the change and the cut.
    pub fn frame(&self) -> Vec<u8> {
        let (ethertype, payload) = match &self.l3 {
            L3::Other { ethertype, len } => (*ethertype, vec![0x11; usize::from(*len)]),
            L3::Ipv6(c) => {
                let (proto, p) = c.l4.build6();
                let mut f = Ipv6Frame::new(c.src, c.dst, proto, p);
                f.ext = c.ext.iter().map(Ext::header).collect();
                let mut ip = f.ip_packet();
                ip[0] = (c.version << 4) | (ip[0] & 0x0f);
                (0x86dd, ip)
            }
            L3::Ipv4 {
                src,
                dst,
                option_words,
                frag_offset,
                more_fragments,
                version,
                short_ihl,
                l4,
            } => {
                let (proto, p) = l4.build();
                let mut f = Ipv4Frame::new(*src, *dst, proto, p);
                f.options = vec![1; usize::from(*option_words) * 4];
                f.frag_offset = *frag_offset;
                f.more_fragments = *more_fragments;
                let mut ip = f.ip_packet();
                ip[0] = (version << 4) | short_ihl.unwrap_or(ip[0] & 0x0f);
                (0x0800, ip)
            }
        };
        let mut out = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
        match self.tag {
            Tag::None => {}
            Tag::Dot1q(v) => out.extend_from_slice(&[0x81, 0, (v >> 8) as u8, v as u8]),
            Tag::Dot1ad(v) => out.extend_from_slice(&[0x88, 0xa8, (v >> 8) as u8, v as u8]),
            Tag::QinQ(v) => {
                out.extend_from_slice(&[0x88, 0xa8, (v >> 8) as u8, v as u8]);
                out.extend_from_slice(&[0x81, 0, 0, 1]);
            }
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// The frame as the parser gets it: changed and cut.
    pub fn mutated(&self) -> Vec<u8> {
        let mut f = self.frame();
        if let Some((at, x)) = self.flip
            && !f.is_empty()
        {
            let i = usize::from(at) % f.len();
            f[i] ^= x;
        }
        if let Some(c) = self.cut {
            f.truncate(usize::from(c));
        }
        f
    }

    /// The verdict on [`Case::frame`] as the structure gives it, and the
    /// byte ranges the parser reads to reach it.
    pub fn expected(&self) -> (Outer, Vec<Range<usize>>) {
        let mut reads = Vec::with_capacity(6);
        reads.push(0..ETH_HLEN);
        let l3 = match self.tag {
            Tag::None => ETH_HLEN,
            Tag::Dot1q(_) | Tag::Dot1ad(_) => {
                reads.push(ETH_HLEN..ETH_HLEN + 4);
                ETH_HLEN + 4
            }
            Tag::QinQ(_) => {
                reads.push(ETH_HLEN..ETH_HLEN + 4);
                return (Outer::Other, reads);
            }
        };
        let (src, dst, l4_off, l4, v6) = match &self.l3 {
            L3::Other { .. } => return (Outer::Other, reads),
            L3::Ipv4 {
                src,
                dst,
                option_words,
                frag_offset,
                version,
                short_ihl,
                l4,
                ..
            } => {
                reads.push(l3..l3 + 20);
                if *version != 4 || short_ihl.is_some() || *frag_offset != 0 {
                    return (Outer::Other, reads);
                }
                let l4_off = l3 + 20 + usize::from(*option_words) * 4;
                (mapped(*src), mapped(*dst), l4_off, l4, false)
            }
            L3::Ipv6(c) => {
                reads.push(l3..l3 + 40);
                if c.version != 6 || c.ext.len() > MAX_EXT_HEADERS {
                    return (Outer::Other, reads);
                }
                let mut at = l3 + 40;
                for e in &c.ext {
                    match e {
                        Ext::Options { .. } => reads.push(at..at + 2),
                        Ext::First { .. } => reads.push(at..at + 8),
                        Ext::Later { .. } => {
                            reads.push(at..at + 8);
                            return (Outer::Other, reads);
                        }
                    }
                    at += e.len();
                }
                (Addr::v6(c.src), Addr::v6(c.dst), at, &c.l4, true)
            }
        };
        let verdict = match l4 {
            L4::Vxlan {
                dport,
                flags,
                reserved,
                vni,
                last,
                header_len,
                ..
            } => {
                reads.push(l4_off..l4_off + 4);
                let whole = *header_len == 8;
                let vx = l4_off + 8;
                if *dport == PORT {
                    let (vni, malformed) = if !whole {
                        (0, Some(Malformed::Truncated))
                    } else if flags & 0x08 == 0 {
                        (*vni, Some(Malformed::NoVniFlag))
                    } else if *flags != 0x08 || *reserved != [0; 3] || *last != 0 {
                        (*vni, Some(Malformed::ReservedBits))
                    } else {
                        (*vni, None)
                    };
                    if whole {
                        reads.push(vx..vx + VXLAN_HLEN);
                    }
                    Outer::Vxlan(Vxlan {
                        src,
                        dst,
                        v6,
                        vni,
                        malformed,
                        inner_offset: vx + VXLAN_HLEN,
                        ip_offset: l3,
                    })
                } else if *dport == DEFAULT_VXLAN_PORT || *dport == IANA_VXLAN_PORT {
                    if whole {
                        reads.push(vx..vx + VXLAN_HLEN);
                    }
                    if whole && *flags == 0x08 && *reserved == [0; 3] && *last == 0 {
                        Outer::ForeignPort {
                            src,
                            dst,
                            port: *dport,
                        }
                    } else {
                        Outer::Other
                    }
                } else {
                    Outer::Other
                }
            }
            L4::Udp { .. } => {
                reads.push(l4_off..l4_off + 4);
                Outer::Other
            }
            L4::Tcp { .. } | L4::Proto { .. } => Outer::Other,
            L4::Icmp(i) => i.expected(v6, src, l4_off, &mut reads),
        };
        (verdict, reads)
    }

    /// Runs the parser on the mutated frame and checks it against the
    /// structure; the first broken invariant, if any.
    pub fn check(&self) -> Result<Outer, String> {
        let frame = self.frame();
        let pkt = self.mutated();
        let p = pkt.as_slice();
        let got = parse_outer(&p, PORT);
        let _ = macs(&p);
        let hl = headers_len(&p, 0);
        if hl < ETH_HLEN {
            return Err(format!("headers_len {hl} below the Ethernet header"));
        }
        match got {
            Outer::Vxlan(v) if v.malformed.is_none() && v.inner_offset > p.len() => {
                return Err(format!("inner offset {} past {}", v.inner_offset, p.len()));
            }
            Outer::Vxlan(v) if v.inner_offset > p.len() + VXLAN_HLEN + 4 => {
                return Err(format!(
                    "truncated VXLAN at {} past {}",
                    v.inner_offset,
                    p.len()
                ));
            }
            Outer::Vxlan(v) if v.inner_offset < ETH_HLEN + 20 + 8 + VXLAN_HLEN => {
                return Err(format!(
                    "inner offset {} inside the headers",
                    v.inner_offset
                ));
            }
            Outer::PortUnreachable { .. } | Outer::FragNeeded { .. }
                if p.len() < ETH_HLEN + 20 + 8 + 20 + 4 =>
            {
                return Err(format!("port unreachable from a {}-byte frame", p.len()));
            }
            Outer::ForeignPort { port, .. }
                if port != IANA_VXLAN_PORT && port != DEFAULT_VXLAN_PORT =>
            {
                return Err(format!("foreign port {port}"));
            }
            _ => {}
        }
        let (want, reads) = self.expected();
        // The unchanged frame gets exactly the structure's verdict.
        let plain = parse_outer(&frame.as_slice(), PORT);
        if plain != want {
            return Err(format!(
                "built frame: parser says {plain:?}, structure {want:?}"
            ));
        }
        // So does the changed one, when no byte the parser reads changed
        // and none of them was cut off.
        let need = reads
            .iter()
            .filter(|r| r.end <= frame.len())
            .map(|r| r.end)
            .max()
            .unwrap_or(0);
        let flipped = self.flip.and_then(|(at, x)| {
            (x != 0 && !frame.is_empty()).then_some(usize::from(at) % frame.len())
        });
        let spared = flipped.is_none_or(|i| !reads.iter().any(|r| r.contains(&i)));
        if spared && pkt.len() >= need && got != want {
            return Err(format!(
                "mutated frame: parser says {got:?}, structure {want:?}"
            ));
        }
        Ok(got)
    }
}

/// The committed corpus: one named case for every branch of the parser
/// (written by `FLANNEL_PROBE_BLESS=1 cargo test -p flannel-probe-common
/// --test corpus` as `tests/corpus/case_*.frame` and as the fuzzer's seeds
/// in `fuzz/corpus/parse_outer/`).
pub fn seeds() -> Vec<(&'static str, Case)> {
    const A: [u8; 4] = [192, 0, 2, 11];
    const B: [u8; 4] = [192, 0, 2, 13];
    let vx = |dport, flags, vni, header_len| L4::Vxlan {
        dport,
        flags,
        reserved: [0; 3],
        vni,
        last: 0,
        header_len,
        inner_len: 98,
    };
    let ip = |l4: L4| L3::Ipv4 {
        src: A,
        dst: B,
        option_words: 0,
        frag_offset: 0,
        more_fragments: false,
        version: 4,
        short_ihl: None,
        l4,
    };
    let icmp = |typ, qsrc, qproto, qdport, qlen, qfrag, qoption_words| {
        ip(L4::Icmp(Icmp {
            typ,
            code: 3,
            qsrc,
            qdst: A,
            qproto,
            qoption_words,
            qfrag,
            qdport,
            qlen,
        }))
    };
    let case = |l3| Case {
        tag: Tag::None,
        l3,
        flip: None,
        cut: None,
    };
    let with = |tag, l3| Case {
        tag,
        l3,
        flip: None,
        cut: None,
    };
    let mut options = ip(vx(PORT, 0x08, 1, 8));
    if let L3::Ipv4 { option_words, .. } = &mut options {
        *option_words = 10;
    }
    let mut first = ip(vx(PORT, 0x08, 1, 8));
    if let L3::Ipv4 { more_fragments, .. } = &mut first {
        *more_fragments = true;
    }
    let mut later = ip(vx(PORT, 0x08, 1, 8));
    if let L3::Ipv4 { frag_offset, .. } = &mut later {
        *frag_offset = 185;
    }
    let mut v6 = ip(vx(PORT, 0x08, 1, 8));
    if let L3::Ipv4 { version, .. } = &mut v6 {
        *version = 6;
    }
    let mut short = ip(vx(PORT, 0x08, 1, 8));
    if let L3::Ipv4 { short_ihl, .. } = &mut short {
        *short_ihl = Some(4);
    }
    let reserved = ip(L4::Vxlan {
        dport: PORT,
        flags: 0x08,
        reserved: [0, 1, 0],
        vni: 1,
        last: 0,
        header_len: 8,
        inner_len: 20,
    });
    let last_byte = ip(L4::Vxlan {
        dport: PORT,
        flags: 0x08,
        reserved: [0; 3],
        vni: 1,
        last: 0xff,
        header_len: 8,
        inner_len: 20,
    });
    let mut inner_flip = case(ip(vx(PORT, 0x08, 1, 8)));
    inner_flip.flip = Some((120, 0xff));
    let mut eth_flip = case(ip(vx(PORT, 0x08, 1, 8)));
    eth_flip.flip = Some((12, 0x01));
    let mut cut_header = case(ip(vx(PORT, 0x08, 1, 8)));
    cut_header.cut = Some(46);
    let mut cut_inner = case(ip(vx(PORT, 0x08, 1, 8)));
    cut_inner.cut = Some(60);
    // IPv6 underlay: fd00::b to fd00::d.
    const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b];
    const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0d];
    let ip6 = |ext: Vec<Ext>, l4: L4| {
        L3::Ipv6(Ip6 {
            src: A6,
            dst: B6,
            ext,
            version: 6,
            l4,
        })
    };
    let icmp6 = |typ, code, qproto, qdport, qlen, qfrag, qoption_words| {
        ip6(
            vec![],
            L4::Icmp(Icmp {
                typ,
                code,
                qsrc: [0, 0, 0, 0x0d],
                qdst: [0, 0, 0, 0x0b],
                qproto,
                qoption_words,
                qfrag,
                qdport,
                qlen,
            }),
        )
    };
    let hop = Ext::Options { kind: 0, units: 0 };
    let dest = Ext::Options { kind: 60, units: 3 };
    let routing = Ext::Options { kind: 43, units: 1 };
    let first6 = Ext::First { more: true };
    let chain = vec![hop, dest, routing, first6];
    let mut too_long = chain.clone();
    too_long.push(dest);
    let mut v4_nibble = ip6(vec![], vx(PORT, 0x08, 1, 8));
    if let L3::Ipv6(c) = &mut v4_nibble {
        c.version = 4;
    }
    let mut cut6 = case(ip6(vec![], vx(PORT, 0x08, 1, 8)));
    cut6.cut = Some(66);
    let mut ext_flip = case(ip6(vec![hop], vx(PORT, 0x08, 1, 8)));
    // The hop-by-hop header's next-header byte.
    ext_flip.flip = Some((54, 0x01));
    vec![
        ("vxlan", case(ip(vx(PORT, 0x08, 1, 8)))),
        (
            "vxlan_dot1q",
            with(Tag::Dot1q(42), ip(vx(PORT, 0x08, 1, 8))),
        ),
        (
            "vxlan_dot1ad",
            with(Tag::Dot1ad(7), ip(vx(PORT, 0x08, 1, 8))),
        ),
        ("vxlan_qinq", with(Tag::QinQ(7), ip(vx(PORT, 0x08, 1, 8)))),
        ("vxlan_options", case(options)),
        ("vxlan_first_fragment", case(first)),
        ("vxlan_later_fragment", case(later)),
        ("ip_version_6_nibble", case(v6)),
        ("ip_short_ihl", case(short)),
        ("vxlan_other_vni", case(ip(vx(PORT, 0x08, 77, 8)))),
        ("vxlan_no_i_flag", case(ip(vx(PORT, 0x00, 1, 8)))),
        ("vxlan_gbp", case(ip(vx(PORT, 0x88, 1, 8)))),
        ("vxlan_reserved", case(reserved)),
        ("vxlan_last_byte", case(last_byte)),
        ("vxlan_header_3", case(ip(vx(PORT, 0x08, 1, 3)))),
        ("vxlan_header_0", case(ip(vx(PORT, 0x08, 1, 0)))),
        ("foreign_4789", case(ip(vx(IANA_VXLAN_PORT, 0x08, 1, 8)))),
        (
            "foreign_4789_no_i_flag",
            case(ip(vx(IANA_VXLAN_PORT, 0x00, 1, 8))),
        ),
        (
            "foreign_4789_truncated",
            case(ip(vx(IANA_VXLAN_PORT, 0x08, 1, 5))),
        ),
        ("vxlan_header_other_port", case(ip(vx(9999, 0x08, 1, 8)))),
        ("udp_dns", case(ip(L4::Udp { dport: 53, len: 30 }))),
        ("tcp_8472", case(ip(L4::Tcp { dport: PORT }))),
        ("gre", case(ip(L4::Proto { proto: 47, len: 40 }))),
        ("icmp_ours", case(icmp(3, B, 17, PORT, 8, 0, 0))),
        (
            "icmp_forged_src",
            case(icmp(3, [10, 42, 1, 5], 17, PORT, 8, 0, 0)),
        ),
        ("icmp_quote_options", case(icmp(3, B, 17, PORT, 8, 0, 3))),
        (
            "icmp_frag_needed",
            case(ip(L4::Icmp(Icmp {
                typ: 3,
                code: 4,
                qsrc: B,
                qdst: A,
                qproto: 17,
                qoption_words: 0,
                qfrag: 0,
                qdport: PORT,
                qlen: 8,
            }))),
        ),
        ("icmp_quote_4_bytes", case(icmp(3, B, 17, PORT, 4, 0, 0))),
        ("icmp_quote_3_bytes", case(icmp(3, B, 17, PORT, 3, 0, 0))),
        ("icmp_quote_other_port", case(icmp(3, B, 17, 53, 8, 0, 0))),
        ("icmp_quote_tcp", case(icmp(3, B, 6, PORT, 8, 0, 0))),
        ("icmp_quote_fragment", case(icmp(3, B, 17, PORT, 8, 100, 0))),
        ("icmp_echo", case(icmp(8, B, 17, PORT, 8, 0, 0))),
        (
            "arp",
            case(L3::Other {
                ethertype: 0x0806,
                len: 28,
            }),
        ),
        (
            "ipv6",
            case(L3::Other {
                ethertype: 0x86dd,
                len: 60,
            }),
        ),
        ("vxlan_inner_byte_changed", inner_flip),
        ("vxlan_ethertype_changed", eth_flip),
        ("vxlan_cut_in_header", cut_header),
        ("vxlan_cut_in_inner", cut_inner),
        ("vxlan6", case(ip6(vec![], vx(PORT, 0x08, 1, 8)))),
        (
            "vxlan6_dot1q",
            with(Tag::Dot1q(42), ip6(vec![], vx(PORT, 0x08, 1, 8))),
        ),
        ("vxlan6_ext_chain", case(ip6(chain, vx(PORT, 0x08, 1, 8)))),
        (
            "vxlan6_ext_too_long",
            case(ip6(too_long, vx(PORT, 0x08, 1, 8))),
        ),
        (
            "vxlan6_later_fragment",
            case(ip6(vec![Ext::Later { offset: 185 }], vx(PORT, 0x08, 1, 8))),
        ),
        ("vxlan6_other_vni", case(ip6(vec![], vx(PORT, 0x08, 77, 8)))),
        ("vxlan6_no_i_flag", case(ip6(vec![], vx(PORT, 0x00, 1, 8)))),
        ("vxlan6_header_3", case(ip6(vec![], vx(PORT, 0x08, 1, 3)))),
        (
            "foreign6_4789",
            case(ip6(vec![], vx(IANA_VXLAN_PORT, 0x08, 1, 8))),
        ),
        ("ip6_version_4_nibble", case(v4_nibble)),
        ("tcp6_8472", case(ip6(vec![], L4::Tcp { dport: PORT }))),
        ("vxlan6_cut_in_header", cut6),
        ("vxlan6_ext_next_header_changed", ext_flip),
        ("icmp6_ours", case(icmp6(1, 4, 17, PORT, 8, 0, 0))),
        ("icmp6_packet_too_big", case(icmp6(2, 0, 17, PORT, 8, 0, 0))),
        (
            "icmp6_admin_prohibited",
            case(icmp6(1, 1, 17, PORT, 8, 0, 0)),
        ),
        ("icmp6_quote_ext", case(icmp6(1, 4, 17, PORT, 8, 0, 2))),
        (
            "icmp6_quote_fragment",
            case(icmp6(1, 4, 17, PORT, 8, 100, 0)),
        ),
        ("icmp6_quote_other_port", case(icmp6(1, 4, 17, 53, 8, 0, 0))),
        ("icmp6_quote_3_bytes", case(icmp6(1, 4, 17, PORT, 3, 0, 0))),
        ("icmp6_echo", case(icmp6(128, 0, 17, PORT, 8, 0, 0))),
        (
            "icmp_numbers_in_icmp6",
            case(icmp6(3, 3, 17, PORT, 8, 0, 0)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_back_and_pass_their_checks() {
        for (name, case) in seeds() {
            let bytes = case.encode();
            assert_eq!(Case::decode(&mut bytes.iter()), case, "{name}");
            case.check().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn seeds_reach_every_verdict() {
        let (mut ok, mut bad, mut unreach, mut foreign, mut other) = (0, 0, 0, 0, 0);
        let mut frag = 0;
        for (name, case) in seeds() {
            match case.check().unwrap_or_else(|e| panic!("{name}: {e}")) {
                Outer::Vxlan(v) if v.malformed.is_none() => ok += 1,
                Outer::Vxlan(_) => bad += 1,
                Outer::PortUnreachable { .. } => unreach += 1,
                Outer::FragNeeded { .. } => frag += 1,
                Outer::ForeignPort { .. } => foreign += 1,
                Outer::Other => other += 1,
            }
        }
        assert!(ok >= 5 && bad >= 5 && unreach >= 2 && foreign >= 1 && other >= 10);
        assert!(frag >= 1);
    }

    #[test]
    fn arbitrary_bytes_decode_to_cases_that_pass() {
        // A deterministic sweep of byte strings (the fuzzer does this at scale).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let bytes: Vec<u8> = (0..48)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let case = Case::decode(&mut bytes.iter());
            case.check().unwrap_or_else(|e| panic!("{case:?}: {e}"));
        }
    }
}
