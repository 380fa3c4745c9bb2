//! Packet parsing shared by the kernel and the host.
//!
//! Everything reads through [`Load`], so the same functions run on a
//! `TcContext` in the kernel and on a `&[u8]` in unit tests. No function
//! loops and every read is bounds-checked by its `Load`, which keeps the
//! verifier content.

/// Ethernet header length without VLAN tags.
pub const ETH_HLEN: usize = 14;
/// VXLAN header length.
pub const VXLAN_HLEN: usize = 8;
/// Outer Ethernet + IPv4 (no options) + UDP + VXLAN: what encapsulation adds.
pub const VXLAN_OVERHEAD: usize = 50;
/// The same over IPv6 (no extension headers): 20 bytes more.
pub const VXLAN6_OVERHEAD: usize = 70;
/// The kernel's default VXLAN port, also Flannel's.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// The IANA VXLAN port.
pub const IANA_VXLAN_PORT: u16 = 4789;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PORT_UNREACH: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;
// IPv6 extension headers we step over (RFC 8200 4.1 order); anything else
// (ESP, AH, No Next Header) ends the chain.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;
/// IPv6 extension headers stepped over at most before giving up: RFC 8200
/// recommends one of each (two destination options), so this covers a
/// well-formed chain, and the fixed bound keeps the verifier's work small.
pub const MAX_EXT_HEADERS: usize = 4;
/// Extension headers stepped over in an inner IPv6 frame (only to size a
/// GSO super-packet's repeated headers): none. Each bounded walk multiplies
/// the paths the verifier explores: walking the inner chain as well as the
/// outer one took `uplink_ingress` from 291 000 to 605 000 verified
/// instructions (0.65 s to 1.7 s of every start-up). An inner IPv6 frame
/// with extension headers, which pods almost never send, counts only its
/// Ethernet header per extra segment.
pub const INNER_EXT: usize = 0;
/// IPv6 fixed header length.
const IPV6_HLEN: usize = 40;
/// VXLAN flags byte with only the I (valid VNI) bit set.
const VXLAN_FLAGS_I: u8 = 0x08;

use crate::abi::LARGE_OUTER_LEN;

/// Reads packet bytes at an offset; `None` when they are not all there.
pub trait Load {
    fn load_bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

impl Load for &[u8] {
    #[inline(always)]
    fn load_bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        let bytes = self.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

/// Why a VXLAN header is not one the kernel would accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer than 8 bytes of UDP payload.
    Truncated,
    /// The I flag is not set: the kernel drops it (`VXLAN_INVALID_HDR`).
    NoVniFlag,
    /// Other flag or reserved bits set; Flannel uses no VXLAN extensions,
    /// so the kernel drops these too.
    ReservedBits,
}

/// An outer IP address of either family: IPv6 as it is, IPv4 as
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2), so that one type
/// and one map key serve both families and no IPv6 address can pass for an
/// IPv4 one.
///
/// Kept as the 16 bytes' two native-endian words, not as bytes: the
/// compiler holds words in registers, where a byte array lives on the
/// eBPF stack (512 bytes in all), and two words compare and hash in two
/// operations (the kernel has no `memcmp`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// Bytes 0..8 (zero for IPv4).
    pub hi: u64,
    /// Bytes 8..16 (`00 00 ff ff a b c d` for IPv4).
    pub lo: u64,
}

/// The low word of `::ffff:0.0.0.0`.
const MAPPED_LO: u64 = u64::from_ne_bytes([0, 0, 0xff, 0xff, 0, 0, 0, 0]);
/// The bytes of the low word that hold the IPv4 address.
const V4_MASK: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);

impl Addr {
    /// An IPv4 address, IPv4-mapped.
    #[inline(always)]
    pub const fn v4(a: [u8; 4]) -> Addr {
        Addr {
            hi: 0,
            lo: u64::from_ne_bytes([0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]),
        }
    }

    /// An IPv6 address (an IPv4-mapped one is the IPv4 address).
    #[inline(always)]
    pub const fn v6(a: [u8; 16]) -> Addr {
        let [
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
            b8,
            b9,
            b10,
            b11,
            b12,
            b13,
            b14,
            b15,
        ] = a;
        Addr {
            hi: u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
            lo: u64::from_ne_bytes([b8, b9, b10, b11, b12, b13, b14, b15]),
        }
    }

    /// The 16 bytes (IPv4 as `::ffff:a.b.c.d`).
    #[inline(always)]
    pub const fn octets(self) -> [u8; 16] {
        let [b0, b1, b2, b3, b4, b5, b6, b7] = self.hi.to_ne_bytes();
        let [b8, b9, b10, b11, b12, b13, b14, b15] = self.lo.to_ne_bytes();
        [
            b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15,
        ]
    }

    /// Whether this is an IPv6 address rather than an IPv4-mapped one.
    #[inline(always)]
    pub const fn is_v6(self) -> bool {
        self.hi != 0 || self.lo & !V4_MASK != MAPPED_LO
    }

    /// The IPv4 address; `None` for IPv6.
    #[inline(always)]
    pub const fn to_v4(self) -> Option<[u8; 4]> {
        if self.is_v6() {
            return None;
        }
        let [_, _, _, _, a, b, c, d] = self.lo.to_ne_bytes();
        Some([a, b, c, d])
    }

    /// All zeros: an address the agent does not know.
    #[inline(always)]
    pub const fn is_unset(self) -> bool {
        self.hi | self.lo == 0
    }

    /// `0.0.0.0` or `::`: no address (never counted for a peer).
    #[inline(always)]
    pub const fn is_unspecified(self) -> bool {
        self.hi == 0 && (self.lo == 0 || self.lo == MAPPED_LO)
    }
}

impl core::fmt::Debug for Addr {
    /// IPv4 dotted, IPv6 in RFC 5952 form (core's `Display`).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.to_v4() {
            Some(a) => write!(f, "{}", core::net::Ipv4Addr::from(a)),
            None => write!(f, "{}", core::net::Ipv6Addr::from(self.octets())),
        }
    }
}

/// `a` as an IPv4-mapped [`Addr`] ([`Addr::v4`]).
#[inline(always)]
pub const fn mapped(a: [u8; 4]) -> Addr {
    Addr::v4(a)
}

/// Reads a 16-byte address at `off` as its two words.
#[inline(always)]
fn addr_at<L: Load>(pkt: &L, off: usize) -> Option<Addr> {
    let hi = pkt.load_bytes::<8>(off)?;
    let lo = pkt.load_bytes::<8>(off + 8)?;
    Some(Addr {
        hi: u64::from_ne_bytes(hi),
        lo: u64::from_ne_bytes(lo),
    })
}

/// An outer VXLAN packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vxlan {
    /// Outer source and destination ([`Addr`]: IPv4 is IPv4-mapped).
    pub src: Addr,
    pub dst: Addr,
    /// The outer header is IPv6.
    pub v6: bool,
    /// The VNI (0 when the header is truncated).
    pub vni: u32,
    /// `None` for a header the kernel would accept.
    pub malformed: Option<Malformed>,
    /// Offset of the inner Ethernet header.
    pub inner_offset: usize,
    /// Offset of the outer IP header (after any VLAN tag): what follows
    /// it is the outer size a path MTU limits.
    pub ip_offset: usize,
}

/// What the uplink programs care about in one frame. Addresses are
/// [`Addr`]s: IPv4 ones IPv4-mapped, so [`Addr::is_v6`] tells the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outer {
    /// UDP to the VXLAN port (a first fragment counts; later ones cannot be told).
    Vxlan(Vxlan),
    /// ICMP destination/port unreachable (ICMPv6 destination unreachable,
    /// code 4) quoting UDP to the VXLAN port: the VTEP `vtep` has no VXLAN
    /// socket. `from` sent the ICMP; `quoted_src` is the quoted datagram's
    /// source, which must be the local VTEP for the quote to be of our VXLAN.
    PortUnreachable {
        from: Addr,
        vtep: Addr,
        quoted_src: Addr,
    },
    /// ICMP destination unreachable / fragmentation needed, or ICMPv6
    /// packet too big, quoting UDP to the VXLAN port: a router on the way
    /// to `vtep` could not forward our VXLAN whole. `mtu` is the next-hop
    /// MTU it names (0 when it did not; an ICMPv6 MTU above 65535 is
    /// 65535); `from` and `quoted_src` as for [`Outer::PortUnreachable`].
    FragNeeded {
        from: Addr,
        vtep: Addr,
        quoted_src: Addr,
        mtu: u16,
    },
    /// A well-formed VXLAN header sent to the other well-known VXLAN port
    /// (8472 or 4789) than ours: a peer configured with another port.
    ForeignPort { src: Addr, dst: Addr, port: u16 },
    /// Anything else.
    Other,
}

/// The VXLAN port of each family; 0 = that family is not watched (its
/// frames are [`Outer::Other`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub v4: u16,
    pub v6: u16,
}

/// Offset and EtherType of the L3 header, after at most one VLAN tag.
///
/// Headers are read whole (one bounds check each, and no one-byte reads,
/// which the compiler turns into comparisons the verifier cannot follow).
#[inline(always)]
pub fn l3<L: Load>(pkt: &L, eth_offset: usize) -> Option<(usize, u16)> {
    let eth = pkt.load_bytes::<ETH_HLEN>(eth_offset)?;
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tag = pkt.load_bytes::<4>(eth_offset + ETH_HLEN)?;
        Some((
            eth_offset + ETH_HLEN + 4,
            u16::from_be_bytes([tag[2], tag[3]]),
        ))
    } else {
        Some((eth_offset + ETH_HLEN, ethertype))
    }
}

/// An IPv4 header: (offset of L4, protocol, source, destination). `None` for
/// non-IPv4, bad header lengths and non-first fragments.
#[inline(always)]
fn ipv4<L: Load>(pkt: &L, off: usize) -> Option<(usize, u8, [u8; 4], [u8; 4])> {
    let h = pkt.load_bytes::<20>(off)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return None;
    }
    // Fragment offset != 0: no L4 header here.
    if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return None;
    }
    let src = [h[12], h[13], h[14], h[15]];
    let dst = [h[16], h[17], h[18], h[19]];
    Some((off + ihl, h[9], src, dst))
}

/// An IPv6 header and its extension headers: (offset of the upper-layer
/// header, its protocol, source, destination). Hop-by-hop, routing,
/// destination options and fragment headers are stepped over, at most
/// [`MAX_EXT_HEADERS`] of them; `None` for non-IPv6, a longer chain, and a
/// non-first fragment (no upper-layer header in it).
#[inline(always)]
fn ipv6<L: Load, const EXT: usize>(pkt: &L, off: usize) -> Option<(usize, u8, Addr, Addr)> {
    // Version and next header; the addresses as words (see [`Addr`]).
    let h = pkt.load_bytes::<8>(off)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let src = addr_at(pkt, off + 8)?;
    let dst = addr_at(pkt, off + 24)?;
    let mut next = h[6];
    let mut at = off + IPV6_HLEN;
    // A fixed bound the verifier walks once per iteration; the compiler
    // unrolls it.
    for _ in 0..EXT {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                // Next header, length in 8-byte units not counting the first.
                let e = pkt.load_bytes::<2>(at)?;
                next = e[0];
                at += (e[1] as usize + 1) * 8;
            }
            NEXTHDR_FRAGMENT => {
                let e = pkt.load_bytes::<8>(at)?;
                // Fragment offset (13 bits, 8-byte units) != 0: a later
                // fragment, whose payload is no header of ours.
                if u16::from_be_bytes([e[2], e[3]]) & 0xfff8 != 0 {
                    return None;
                }
                next = e[0];
                at += 8;
            }
            _ => return Some((at, next, src, dst)),
        }
    }
    match next {
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_FRAGMENT => None,
        _ => Some((at, next, src, dst)),
    }
}

/// An IP header of either family at `off`, its version given by `v6`:
/// (offset of L4, protocol, source, destination as [`Addr`]s).
#[inline(always)]
fn ip<L: Load, const EXT: usize>(pkt: &L, off: usize, v6: bool) -> Option<(usize, u8, Addr, Addr)> {
    if v6 {
        ipv6::<L, EXT>(pkt, off)
    } else {
        let (l4, proto, src, dst) = ipv4(pkt, off)?;
        Some((l4, proto, mapped(src), mapped(dst)))
    }
}

/// A UDP datagram over IPv4 or IPv6: addresses as [`Addr`]s, ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
}

/// The UDP datagram whose IP header (of the family `v6` says) starts at
/// `off`; `None` for anything else, bad header lengths and non-first
/// fragments. For callers that know where the IP header is but not the
/// Ethernet header (the drop tracer).
#[inline(always)]
pub fn udp_at<L: Load>(pkt: &L, off: usize, v6: bool) -> Option<Udp> {
    let (l4, proto, src, dst) = ip::<L, MAX_EXT_HEADERS>(pkt, off, v6)?;
    if proto != IPPROTO_UDP {
        return None;
    }
    let ports = pkt.load_bytes::<4>(l4)?;
    Some(Udp {
        src,
        dst,
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// Classifies an outer frame seen on the uplink; `port` is the VXLAN port
/// of both families.
#[inline(always)]
pub fn parse_outer<L: Load>(pkt: &L, port: u16) -> Outer {
    parse_outer_ports(pkt, Ports { v4: port, v6: port })
}

/// Classifies an outer frame seen on the uplink with a VXLAN port per
/// family (0: the family is not watched).
#[inline(always)]
pub fn parse_outer_ports<L: Load>(pkt: &L, ports: Ports) -> Outer {
    parse_outer_inner(pkt, ports).unwrap_or(Outer::Other)
}

#[inline(always)]
fn parse_outer_inner<L: Load>(pkt: &L, ports: Ports) -> Option<Outer> {
    let (l3_off, ethertype) = l3(pkt, 0)?;
    let (v6, port) = if ethertype == ETH_P_IP {
        (false, ports.v4)
    } else if ethertype == ETH_P_IPV6 {
        (true, ports.v6)
    } else {
        return None;
    };
    if port == 0 {
        return None;
    }
    let (l4, proto, src, dst) = ip::<L, MAX_EXT_HEADERS>(pkt, l3_off, v6)?;
    if proto == IPPROTO_UDP {
        let ports = pkt.load_bytes::<4>(l4)?;
        let dport = u16::from_be_bytes([ports[2], ports[3]]);
        if dport != port {
            if dport != DEFAULT_VXLAN_PORT && dport != IANA_VXLAN_PORT {
                return None;
            }
            // Only a header the kernel would accept: other traffic may
            // use these ports too.
            let h = pkt.load_bytes::<VXLAN_HLEN>(l4 + 8)?;
            if h[0] != VXLAN_FLAGS_I || h[1] | h[2] | h[3] | h[7] != 0 {
                return None;
            }
            return Some(Outer::ForeignPort {
                src,
                dst,
                port: dport,
            });
        }
        let vx = l4 + 8;
        let (vni, malformed) = match pkt.load_bytes::<VXLAN_HLEN>(vx) {
            None => (0, Some(Malformed::Truncated)),
            Some(h) => {
                let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
                let malformed = if h[0] & VXLAN_FLAGS_I == 0 {
                    Some(Malformed::NoVniFlag)
                } else if h[0] != VXLAN_FLAGS_I || h[1] | h[2] | h[3] | h[7] != 0 {
                    Some(Malformed::ReservedBits)
                } else {
                    None
                };
                (vni, malformed)
            }
        };
        return Some(Outer::Vxlan(Vxlan {
            src,
            dst,
            v6,
            vni,
            malformed,
            inner_offset: vx + VXLAN_HLEN,
            ip_offset: l3_off,
        }));
    }
    let icmp = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    if proto != icmp {
        return None;
    }
    let h = pkt.load_bytes::<8>(l4)?;
    // (port unreachable, fragmentation needed / packet too big) in this
    // family's numbering.
    let (unreach, too_big) = if v6 {
        (
            h[0] == ICMPV6_DEST_UNREACH && h[1] == ICMPV6_PORT_UNREACH,
            h[0] == ICMPV6_PKT_TOOBIG,
        )
    } else {
        (
            h[0] == ICMP_DEST_UNREACH && h[1] == ICMP_PORT_UNREACH,
            h[0] == ICMP_DEST_UNREACH && h[1] == ICMP_FRAG_NEEDED,
        )
    };
    if !unreach && !too_big {
        return None;
    }
    // The quoted datagram: its IP header (same family), then at least 8
    // bytes of UDP.
    let (ql4, qproto, qsrc, qdst) = ip::<L, MAX_EXT_HEADERS>(pkt, l4 + 8, v6)?;
    let qports = pkt.load_bytes::<4>(ql4)?;
    if qproto != IPPROTO_UDP || u16::from_be_bytes([qports[2], qports[3]]) != port {
        return None;
    }
    if too_big {
        // RFC 1191: the next-hop MTU in the low half of the ICMP header's
        // second word; RFC 4443 3.2: ICMPv6's MTU is that whole word.
        let mtu = if v6 {
            u32::from_be_bytes([h[4], h[5], h[6], h[7]]).min(u32::from(u16::MAX)) as u16
        } else {
            u16::from_be_bytes([h[6], h[7]])
        };
        return Some(Outer::FragNeeded {
            from: src,
            vtep: qdst,
            quoted_src: qsrc,
            mtu,
        });
    }
    Some(Outer::PortUnreachable {
        from: src,
        vtep: qdst,
        quoted_src: qsrc,
    })
}

/// Offset of the first payload byte after the Ethernet, IPv4 or IPv6 and
/// TCP/UDP headers of a frame starting at `eth_offset`: the bytes every
/// segment of a GSO/GRO super-packet repeats on the wire. Falls back to the
/// end of the Ethernet header for anything it does not know, an IPv6
/// extension header included ([`INNER_EXT`]).
#[inline(always)]
pub fn headers_len<L: Load>(pkt: &L, eth_offset: usize) -> usize {
    let fallback = eth_offset + ETH_HLEN;
    let Some((l3_off, ethertype)) = l3(pkt, eth_offset) else {
        return fallback;
    };
    let v6 = match ethertype {
        ETH_P_IP => false,
        ETH_P_IPV6 => true,
        _ => return l3_off,
    };
    let Some((l4, proto, _, _)) = ip::<L, INNER_EXT>(pkt, l3_off, v6) else {
        return l3_off;
    };
    match proto {
        IPPROTO_TCP => match pkt.load_bytes::<14>(l4) {
            Some(tcp) => l4 + ((tcp[12] >> 4) as usize) * 4,
            None => l4,
        },
        IPPROTO_UDP => l4 + 8,
        _ => l4,
    }
}

/// Wire bytes of a (possibly GSO/GRO) packet: each segment beyond the
/// first repeats `headers` bytes of headers.
#[inline(always)]
pub fn wire_bytes(len: usize, segs: u32, headers: usize) -> u64 {
    let extra = u64::from(segs.saturating_sub(1));
    len as u64 + extra * headers as u64
}

/// Size classes of an outer packet's wire segments: how many have an outer
/// IP total length (IPv4 total length, IPv6 header plus payload) above
/// [`LARGE_OUTER_LEN`], and the largest one's.
///
/// `ip_len` is the packet's outer IP bytes (the whole super-packet's for
/// GSO/GRO), `headers` the bytes from the outer IP header to the first
/// payload byte every segment repeats (outer IP, UDP, VXLAN, inner
/// Ethernet, IP and TCP/UDP). A super-packet of `segs` segments is
/// `segs - 1` segments of `headers + gso_size` and a last one with the
/// rest, which is how the kernel cuts it; each is classed on its own.
#[inline(always)]
pub fn outer_sizes(ip_len: u32, segs: u32, gso_size: u32, headers: u32) -> (u32, u32) {
    if segs <= 1 || gso_size == 0 {
        return (u32::from(ip_len > LARGE_OUTER_LEN), ip_len);
    }
    let full = headers.saturating_add(gso_size);
    let before_last = (segs - 1).saturating_mul(gso_size);
    // The last segment's payload; a header that disagrees with the length
    // is clamped so that no segment is larger than a full one.
    let rest = ip_len
        .saturating_sub(headers)
        .saturating_sub(before_last)
        .min(gso_size);
    let last = headers + rest;
    let mut large = 0;
    if full > LARGE_OUTER_LEN {
        large = segs - 1;
    }
    if last > LARGE_OUTER_LEN {
        large += 1;
    }
    (large, full)
}

/// Source and destination MAC of an Ethernet frame at offset 0.
#[inline(always)]
pub fn macs<L: Load>(pkt: &L) -> Option<([u8; 6], [u8; 6])> {
    let h = pkt.load_bytes::<12>(0)?;
    let dst = [h[0], h[1], h[2], h[3], h[4], h[5]];
    let src = [h[6], h[7], h[8], h[9], h[10], h[11]];
    Some((src, dst))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
