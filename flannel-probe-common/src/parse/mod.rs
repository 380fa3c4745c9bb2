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
/// The kernel's default VXLAN port, also Flannel's.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// The IANA VXLAN port.
pub const IANA_VXLAN_PORT: u16 = 4789;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
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

/// An outer VXLAN packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vxlan {
    /// Outer IPv4 source and destination, network byte order.
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// The VNI (0 when the header is truncated).
    pub vni: u32,
    /// `None` for a header the kernel would accept.
    pub malformed: Option<Malformed>,
    /// Offset of the inner Ethernet header.
    pub inner_offset: usize,
    /// Offset of the outer IPv4 header (after any VLAN tag): what follows
    /// it is the outer size a path MTU limits.
    pub ip_offset: usize,
}

/// What the uplink programs care about in one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outer {
    /// UDP to the VXLAN port (a first fragment counts; later ones cannot be told).
    Vxlan(Vxlan),
    /// ICMP destination/port unreachable quoting UDP to the VXLAN port: the
    /// VTEP `vtep` has no VXLAN socket. `from` sent the ICMP; `quoted_src`
    /// is the quoted datagram's source, which must be the local VTEP for
    /// the quote to be of our VXLAN.
    PortUnreachable {
        from: [u8; 4],
        vtep: [u8; 4],
        quoted_src: [u8; 4],
    },
    /// ICMP destination unreachable / fragmentation needed quoting UDP to
    /// the VXLAN port: a router on the way to `vtep` could not forward our
    /// VXLAN whole. `mtu` is the next-hop MTU it names (0 when it did not);
    /// `from` and `quoted_src` as for [`Outer::PortUnreachable`].
    FragNeeded {
        from: [u8; 4],
        vtep: [u8; 4],
        quoted_src: [u8; 4],
        mtu: u16,
    },
    /// A well-formed VXLAN header sent to the other well-known VXLAN port
    /// (8472 or 4789) than ours: a peer configured with another port.
    ForeignPort {
        src: [u8; 4],
        dst: [u8; 4],
        port: u16,
    },
    /// Anything else.
    Other,
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

/// A UDP datagram over IPv4: addresses in network byte order, ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

/// The UDP datagram whose IPv4 header starts at `off`; `None` for anything
/// else, bad header lengths and non-first fragments. For callers that know
/// where the IP header is but not the Ethernet header (the drop tracer).
#[inline(always)]
pub fn udp4<L: Load>(pkt: &L, off: usize) -> Option<Udp4> {
    let (l4, proto, src, dst) = ipv4(pkt, off)?;
    if proto != IPPROTO_UDP {
        return None;
    }
    let ports = pkt.load_bytes::<4>(l4)?;
    Some(Udp4 {
        src,
        dst,
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// Classifies an outer frame seen on the uplink; `port` is the VXLAN port.
#[inline(always)]
pub fn parse_outer<L: Load>(pkt: &L, port: u16) -> Outer {
    parse_outer_inner(pkt, port).unwrap_or(Outer::Other)
}

#[inline(always)]
fn parse_outer_inner<L: Load>(pkt: &L, port: u16) -> Option<Outer> {
    let (l3_off, ethertype) = l3(pkt, 0)?;
    if ethertype != ETH_P_IP {
        return None;
    }
    let (l4, proto, src, dst) = ipv4(pkt, l3_off)?;
    match proto {
        IPPROTO_UDP => {
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
            Some(Outer::Vxlan(Vxlan {
                src,
                dst,
                vni,
                malformed,
                inner_offset: vx + VXLAN_HLEN,
                ip_offset: l3_off,
            }))
        }
        IPPROTO_ICMP => {
            let icmp = pkt.load_bytes::<8>(l4)?;
            if icmp[0] != ICMP_DEST_UNREACH
                || (icmp[1] != ICMP_PORT_UNREACH && icmp[1] != ICMP_FRAG_NEEDED)
            {
                return None;
            }
            // The quoted datagram: its IPv4 header, then at least 8 bytes of UDP.
            let (ql4, qproto, qsrc, qdst) = ipv4(pkt, l4 + 8)?;
            let qports = pkt.load_bytes::<4>(ql4)?;
            if qproto != IPPROTO_UDP || u16::from_be_bytes([qports[2], qports[3]]) != port {
                return None;
            }
            if icmp[1] == ICMP_FRAG_NEEDED {
                // RFC 1191: the next-hop MTU in the low half of the
                // ICMP header's second word.
                return Some(Outer::FragNeeded {
                    from: src,
                    vtep: qdst,
                    quoted_src: qsrc,
                    mtu: u16::from_be_bytes([icmp[6], icmp[7]]),
                });
            }
            Some(Outer::PortUnreachable {
                from: src,
                vtep: qdst,
                quoted_src: qsrc,
            })
        }
        _ => None,
    }
}

/// Offset of the first payload byte after the Ethernet, IPv4 and TCP/UDP
/// headers of a frame starting at `eth_offset`: the bytes every segment of a
/// GSO/GRO super-packet repeats on the wire. Falls back to the end of the
/// Ethernet header for anything it does not know.
#[inline(always)]
pub fn headers_len<L: Load>(pkt: &L, eth_offset: usize) -> usize {
    let fallback = eth_offset + ETH_HLEN;
    let Some((l3_off, ethertype)) = l3(pkt, eth_offset) else {
        return fallback;
    };
    if ethertype != ETH_P_IP {
        return l3_off;
    }
    let Some((l4, proto, _, _)) = ipv4(pkt, l3_off) else {
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
/// IPv4 total length above [`LARGE_OUTER_LEN`], and the largest one's.
///
/// `ip_len` is the packet's outer IPv4 bytes (the whole super-packet's for
/// GSO/GRO), `headers` the bytes from the outer IPv4 header to the first
/// payload byte every segment repeats (outer IPv4, UDP, VXLAN, inner
/// Ethernet, IPv4 and TCP/UDP). A super-packet of `segs` segments is
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
