//! Crafted frames for tests: real byte layouts with valid checksums, so the
//! same frames serve the host parser tests, `BPF_PROG_TEST_RUN` and raw
//! sockets in the lab.
use alloc::vec::Vec;

/// An IPv4 packet inside an Ethernet frame.
#[derive(Clone, Debug)]
pub struct Ipv4Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// One 802.1Q tag with this VLAN id.
    pub vlan: Option<u16>,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// IPv4 option bytes (padded to a multiple of 4 with zeros).
    pub options: Vec<u8>,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    pub more_fragments: bool,
    pub proto: u8,
    pub payload: Vec<u8>,
}

impl Ipv4Frame {
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8, payload: Vec<u8>) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlan: None,
            src,
            dst,
            options: Vec::new(),
            frag_offset: 0,
            more_fragments: false,
            proto,
            payload,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        ethernet(
            self.dst_mac,
            self.src_mac,
            self.vlan,
            0x0800,
            &self.ip_packet(),
        )
    }

    /// The IPv4 packet alone (what an ICMP error quotes).
    pub fn ip_packet(&self) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let ihl = 20 + opts.len();
        let total = ihl + self.payload.len();
        let mut h = Vec::with_capacity(total);
        h.push(0x40 | (ihl / 4) as u8);
        h.push(0);
        h.extend_from_slice(&(total as u16).to_be_bytes());
        h.extend_from_slice(&0x1234u16.to_be_bytes());
        let mut frag = self.frag_offset & 0x1fff;
        if self.more_fragments {
            frag |= 0x2000;
        }
        h.extend_from_slice(&frag.to_be_bytes());
        h.push(64);
        h.push(self.proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&opts);
        let csum = checksum(&h[..ihl]);
        h[10..12].copy_from_slice(&csum.to_be_bytes());
        h.extend_from_slice(&self.payload);
        h
    }
}

/// An Ethernet frame (one 802.1Q tag with VLAN id `vlan` if given).
fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Internet checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP datagram (checksum 0, which IPv4 allows and VXLAN senders use).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A VXLAN header with the given flags byte and VNI.
pub fn vxlan_header(flags: u8, vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [flags, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// An ICMP echo request of `data_len` payload bytes.
pub fn icmp_echo(id: u16, seq: u16, data_len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + data_len);
    m.extend_from_slice(&[8, 0, 0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend((0..data_len).map(|i| i as u8));
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A TCP header (no options beyond `doff_words`) followed by `data_len` bytes.
pub fn tcp(sport: u16, dport: u16, doff_words: u8, data_len: usize) -> Vec<u8> {
    let hlen = usize::from(doff_words) * 4;
    let mut t = alloc::vec![0u8; hlen + data_len];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = doff_words << 4;
    t[13] = 0x10;
    t
}

/// A pod-to-pod ICMP echo as Flannel puts it on the overlay: inner Ethernet
/// from one VTEP MAC to another.
pub fn inner_echo(src_vtep: [u8; 6], dst_vtep: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = Ipv4Frame::new(src, dst, 1, icmp_echo(7, 1, 56));
    f.src_mac = src_vtep;
    f.dst_mac = dst_vtep;
    f.build()
}

/// An outer VXLAN frame from `src` to `dst` carrying `inner`.
pub fn vxlan_frame(src: [u8; 4], dst: [u8; 4], port: u16, vni: u32, inner: &[u8]) -> Ipv4Frame {
    let mut payload = Vec::with_capacity(8 + inner.len());
    payload.extend_from_slice(&vxlan_header(0x08, vni));
    payload.extend_from_slice(inner);
    Ipv4Frame::new(src, dst, 17, udp(40000, port, &payload))
}

/// The ICMP "fragmentation needed" (type 3 code 4) a router `from` sends
/// to the sender of `original`, naming the next-hop `mtu`.
pub fn icmp_frag_needed(from: [u8; 4], original: &[u8], mtu: u16) -> Ipv4Frame {
    let mut f = icmp_port_unreachable(from, original);
    f.payload[1] = 4;
    f.payload[2..4].fill(0);
    f.payload[6..8].copy_from_slice(&mtu.to_be_bytes());
    let c = checksum(&f.payload);
    f.payload[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

/// The ICMP port unreachable that `from` sends to the sender of `original`
/// (an IPv4 packet), quoting its header and first 8 payload bytes.
pub fn icmp_port_unreachable(from: [u8; 4], original: &[u8]) -> Ipv4Frame {
    let ihl = usize::from(original[0] & 0x0f) * 4;
    let quoted = &original[..(ihl + 8).min(original.len())];
    let mut m = Vec::with_capacity(8 + quoted.len());
    m.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(quoted);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let to = [original[12], original[13], original[14], original[15]];
    Ipv4Frame::new(from, to, 1, m)
}

/// An IPv6 extension header of [`Ipv6Frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    /// Hop-by-hop (0), routing (43) or destination options (60): `kind`,
    /// and `units` 8-byte units beyond the first (padding options only).
    Options { kind: u8, units: u8 },
    /// Fragment header (44): offset in 8-byte units, more-fragments flag.
    Fragment { offset: u16, more: bool },
}

impl ExtHeader {
    fn kind(&self) -> u8 {
        match self {
            ExtHeader::Options { kind, .. } => *kind,
            ExtHeader::Fragment { .. } => 44,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        match self {
            ExtHeader::Options { units, .. } => {
                let len = (usize::from(*units) + 1) * 8;
                let mut h = alloc::vec![0u8; len];
                h[0] = next;
                h[1] = *units;
                // PadN over the rest (RFC 8200 4.2): a valid option area.
                h[2] = 1;
                h[3] = (len - 4) as u8;
                h
            }
            ExtHeader::Fragment { offset, more } => {
                let mut h = alloc::vec![0u8; 8];
                h[0] = next;
                let word = (offset << 3) | u16::from(*more);
                h[2..4].copy_from_slice(&word.to_be_bytes());
                h[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
                h
            }
        }
    }
}

/// The longest extension-header chain the parser follows (4 headers,
/// RFC 8200's order): hop-by-hop (8 bytes), destination options (16),
/// routing (24), a first fragment (8): 56 bytes.
pub fn ext_chain() -> Vec<ExtHeader> {
    alloc::vec![
        ExtHeader::Options { kind: 0, units: 0 },
        ExtHeader::Options { kind: 60, units: 1 },
        ExtHeader::Options { kind: 43, units: 2 },
        ExtHeader::Fragment {
            offset: 0,
            more: true,
        },
    ]
}

/// Bytes of [`ext_chain`].
pub const EXT_CHAIN_LEN: usize = 56;

/// An IPv6 packet inside an Ethernet frame.
#[derive(Clone, Debug)]
pub struct Ipv6Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// One 802.1Q tag with this VLAN id.
    pub vlan: Option<u16>,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Extension headers in order, before the upper-layer header.
    pub ext: Vec<ExtHeader>,
    /// The upper-layer protocol.
    pub proto: u8,
    pub payload: Vec<u8>,
}

impl Ipv6Frame {
    pub fn new(src: [u8; 16], dst: [u8; 16], proto: u8, payload: Vec<u8>) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlan: None,
            src,
            dst,
            ext: Vec::new(),
            proto,
            payload,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        ethernet(
            self.dst_mac,
            self.src_mac,
            self.vlan,
            0x86dd,
            &self.ip_packet(),
        )
    }

    /// The IPv6 packet alone (what an ICMPv6 error quotes). UDP and ICMPv6
    /// payloads get their checksum (mandatory over IPv6).
    pub fn ip_packet(&self) -> Vec<u8> {
        let mut payload = self.payload.clone();
        let sum_at = match self.proto {
            17 => Some(6),
            58 => Some(2),
            _ => None,
        };
        if let Some(at) = sum_at
            && payload.len() >= at + 2
        {
            payload[at..at + 2].fill(0);
            let mut c = checksum6(&self.src, &self.dst, self.proto, &payload);
            if c == 0 && self.proto == 17 {
                c = 0xffff;
            }
            payload[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        let mut ext = Vec::new();
        for (i, e) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(self.proto, ExtHeader::kind);
            ext.extend_from_slice(&e.bytes(next));
        }
        let first = self.ext.first().map_or(self.proto, ExtHeader::kind);
        let mut h = Vec::with_capacity(40 + ext.len() + payload.len());
        h.extend_from_slice(&[0x60, 0, 0, 0]);
        h.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
        h.push(first);
        h.push(64);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&ext);
        h.extend_from_slice(&payload);
        h
    }
}

/// The checksum of an upper-layer payload over IPv6 (RFC 8200 8.1).
pub fn checksum6(src: &[u8; 16], dst: &[u8; 16], proto: u8, payload: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(40 + payload.len());
    data.extend_from_slice(src);
    data.extend_from_slice(dst);
    data.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, proto]);
    data.extend_from_slice(payload);
    checksum(&data)
}

/// An ICMPv6 echo request of `data_len` payload bytes (checksum filled in
/// by [`Ipv6Frame`]).
pub fn icmp6_echo(id: u16, seq: u16, data_len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + data_len);
    m.extend_from_slice(&[128, 0, 0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend((0..data_len).map(|i| i as u8));
    m
}

/// A pod-to-pod ICMPv6 echo on a dual-stack overlay: inner Ethernet from
/// one VTEP MAC to another.
pub fn inner_echo6(src_vtep: [u8; 6], dst_vtep: [u8; 6], src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut f = Ipv6Frame::new(src, dst, 58, icmp6_echo(7, 1, 56));
    f.src_mac = src_vtep;
    f.dst_mac = dst_vtep;
    f.build()
}

/// An outer VXLAN-over-IPv6 frame from `src` to `dst` carrying `inner`.
pub fn vxlan6_frame(src: [u8; 16], dst: [u8; 16], port: u16, vni: u32, inner: &[u8]) -> Ipv6Frame {
    let mut payload = Vec::with_capacity(8 + inner.len());
    payload.extend_from_slice(&vxlan_header(0x08, vni));
    payload.extend_from_slice(inner);
    Ipv6Frame::new(src, dst, 17, udp(40000, port, &payload))
}

/// The ICMPv6 error `from` sends to the sender of `original` (an IPv6
/// packet), quoting as much of it as fits the minimum MTU (RFC 4443 2.4).
fn icmp6_error(from: [u8; 16], original: &[u8], kind: u8, code: u8, word: u32) -> Ipv6Frame {
    let quoted = &original[..original.len().min(1280 - 48)];
    let mut m = Vec::with_capacity(8 + quoted.len());
    m.extend_from_slice(&[kind, code, 0, 0]);
    m.extend_from_slice(&word.to_be_bytes());
    m.extend_from_slice(quoted);
    let mut to = [0u8; 16];
    to.copy_from_slice(&original[8..24]);
    Ipv6Frame::new(from, to, 58, m)
}

/// The ICMPv6 destination unreachable / port unreachable (type 1 code 4)
/// that `from` sends to the sender of `original`.
pub fn icmp6_port_unreachable(from: [u8; 16], original: &[u8]) -> Ipv6Frame {
    icmp6_error(from, original, 1, 4, 0)
}

/// The ICMPv6 packet too big (type 2) a router `from` sends to the sender
/// of `original`, naming the next-hop `mtu`.
pub fn icmp6_packet_too_big(from: [u8; 16], original: &[u8], mtu: u32) -> Ipv6Frame {
    icmp6_error(from, original, 2, 0, mtu)
}
