//! Map names, keys and values shared by the eBPF programs and the agent.
//!
//! Every type is `repr(C)` with explicit padding so both sides see the same
//! bytes; the agent reads the per-CPU values and sums them.

use crate::parse::Addr;

/// Packets arriving at this node.
pub const DIR_RX: u8 = 0;
/// Packets leaving this node.
pub const DIR_TX: u8 = 1;

/// Per remote VTEP: the per-packet counters of outer (encapsulated)
/// traffic on the uplink, both directions in one 64-byte [`PeerSlot`]. A
/// per-CPU array: each CPU appends the peers it meets, and
/// [`STAT_PEERS_USED`] says how far. The slot holds no key: the CPU's
/// `PEER_INDEX` entry says whose it is.
pub const MAP_PEERS: &str = "PEERS";
/// Per remote VTEP, only for peers that sent or caused an anomaly
/// (malformed VXLAN, another VNI or port, ICMP errors, a stale VTEP MAC):
/// those counters, a [`PeerValue`] of which only the anomaly fields are
/// used. A per-CPU pool of [`cold_slots`] entries, taken in order up to
/// [`STAT_COLD_USED`]; the `PEER_INDEX` entry points at it.
pub const MAP_PEER_COLD: &str = "PEER_COLD";
/// Per VTEP MAC: inner frames on the overlay device, both directions in one
/// [`MacSlot`]; laid out as `PEERS`, up to [`STAT_MACS_USED`].
pub const MAP_INNER: &str = "INNER";
/// Per-CPU open-addressed index of `PEERS`: key -> slot and cold slot
/// ([`PeerIndexSlot`]). The agent reads it for the key of each slot.
pub const MAP_PEER_INDEX: &str = "PEER_INDEX";
/// The same for `INNER` ([`IndexSlot`]).
pub const MAP_MAC_INDEX: &str = "MAC_INDEX";
/// One [`Config`] at index 0, written by the agent before it attaches.
pub const MAP_CONFIG: &str = "CONFIG";
/// Per-CPU `u64` counters indexed by the `STAT_*` constants.
pub const MAP_STATS: &str = "STATS";
/// Per drop reason, direction and peer: the kernel's drops of VXLAN traffic.
pub const MAP_DROPS: &str = "DROPS";
/// One [`DropConfig`] at index 0: what the drop tracer matches, and where
/// the fields it reads are in this kernel's structs.
pub const MAP_DROP_CONFIG: &str = "DROP_CONFIG";
/// The drop tracer's program (tp_btf on `kfree_skb`).
pub const PROG_DROPS: &str = "kfree_skb";

/// Default capacity of the per-peer and per-MAC maps; the agent may change it.
pub const DEFAULT_MAX_PEERS: u32 = 4096;

/// A new peer did not fit into `PEERS`.
pub const STAT_PEER_OVERFLOW: u32 = 0;
/// A new MAC did not fit into `INNER`.
pub const STAT_MAC_OVERFLOW: u32 = 1;
/// A new drop key did not fit into `DROPS`.
pub const STAT_DROP_OVERFLOW: u32 = 2;
/// Slots of `PEERS` this CPU has filled.
pub const STAT_PEERS_USED: u32 = 3;
/// Slots of `INNER` this CPU has filled.
pub const STAT_MACS_USED: u32 = 4;
/// Inbound VXLAN-shaped UDP to our port addressed to another address than
/// the local VTEP of its family (not counted for any peer).
pub const STAT_RX_NOT_LOCAL: u32 = 5;
/// Inbound ICMP port unreachable or fragmentation needed quoting UDP to our
/// port that we did not send (quoted source not the local VTEP): forged or
/// not ours.
pub const STAT_ICMP_NOT_OURS: u32 = 6;
/// Slots of `PEER_COLD` this CPU has taken.
pub const STAT_COLD_USED: u32 = 7;
/// Written by the agent, never by the programs: its heartbeat (CLOCK_BOOTTIME
/// milliseconds), read by other instances. At 8 since the first version
/// that had one, so instances of either version read each other's.
pub const STAT_BEAT: u32 = 8;
/// An anomaly of a peer without a cold slot found the pool full: its
/// anomaly counters were not kept.
pub const STAT_COLD_OVERFLOW: u32 = 9;
/// Number of slots in `STATS`, the heartbeat's included.
pub const NUM_STATS: u32 = 10;

/// Slots of `PEER_COLD` for `max_peers`: anomalies are rare, so a pool of a
/// quarter of the peers (at least 64, at most 1024) rather than a slot
/// each; a fleet-wide anomaly beyond it is counted in
/// [`STAT_COLD_OVERFLOW`].
pub const fn cold_slots(max_peers: u32) -> u32 {
    let q = max_peers / 4;
    let q = if q < 64 { 64 } else { q };
    let q = if q > 1024 { 1024 } else { q };
    if q > max_peers && max_peers > 0 {
        max_peers
    } else {
        q
    }
}

/// Outer IPv4 total length above which an encapsulated packet is "large":
/// the smallest usual underlay path MTU. WireGuard, Tailscale and cloud
/// tunnels carry 1400 to 1450 bytes, so what is larger is the first to die
/// when the path shrinks, while ordinary small packets still pass.
pub const LARGE_OUTER_LEN: u32 = 1400;

/// Index slots probed for a key before giving up (counted as overflow).
pub const INDEX_PROBES: u32 = 8;

/// Index slots for `max_peers` keys: a power of two (the datapath masks
/// the hash), at least twice the keys so that probes are short.
pub const fn index_slots(max_peers: u32) -> u32 {
    let want = if max_peers < 1 << 30 {
        max_peers * 2
    } else {
        1 << 31
    };
    if want < 2 {
        2
    } else {
        want.next_power_of_two()
    }
}

/// A key of `PEER_INDEX` and `PEERS`: the peer's address
/// ([`Addr`]: IPv6, or IPv4 as `::ffff:a.b.c.d`) as its two words, so the
/// datapath compares and hashes it in two operations. `[0, 0]` is the
/// empty key.
pub type PeerKey = [u64; 2];

/// The [`PeerKey`] of a peer address. `::` and `0.0.0.0` are the empty
/// key and never counted, as 0.0.0.0 was before IPv6.
#[inline(always)]
pub const fn peer_key(addr: Addr) -> PeerKey {
    if addr.is_unspecified() {
        [0, 0]
    } else {
        [addr.hi, addr.lo]
    }
}

/// The address back from [`peer_key`].
pub const fn key_peer(key: PeerKey) -> Addr {
    Addr {
        hi: key[0],
        lo: key[1],
    }
}

/// Where a peer key's probes start: both words folded, then
/// [`index_start`]. An IPv4 key's first word is 0, so IPv4 pays one XOR
/// more than with the 4-byte key it had before IPv6.
#[inline(always)]
pub const fn peer_index_start(key: PeerKey, mask: u32) -> u32 {
    index_start(key[0] ^ key[1], mask)
}

/// An index key from a VTEP MAC (the all-zero MAC is the empty key).
pub const fn mac_key(mac: [u8; 6]) -> u64 {
    let [a, b, c, d, e, f] = mac;
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0])
}

/// The MAC back from [`mac_key`].
pub const fn key_mac(key: u64) -> [u8; 6] {
    let [a, b, c, d, e, f, _, _] = key.to_le_bytes();
    [a, b, c, d, e, f]
}

/// Where a key's probes start in an index of `mask + 1` slots: murmur3's
/// 64-bit finalizer, so that neighbouring addresses spread out.
#[inline(always)]
pub const fn index_start(key: u64, mask: u32) -> u32 {
    let mut x = key;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    (x as u32) & mask
}

/// `FamilyConfig::flags`: `vni` is known, so VXLAN for another VNI is
/// counted as such.
pub const CONFIG_VNI_KNOWN: u16 = 1;

/// What the datapath matches for one address family of the underlay (one
/// overlay device: `flannel.1` over IPv4, `flannel-v6.1` over IPv6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyConfig {
    /// VXLAN UDP destination port, host byte order. 0: this family is not
    /// watched (its frames match nothing).
    pub vxlan_port: u16,
    /// `CONFIG_*` bits.
    pub flags: u16,
    /// The VNI the overlay device serves.
    pub vni: u32,
    /// This node's VTEP address of this family (`parse::Addr`: IPv4 as
    /// `::ffff:a.b.c.d`): inbound VXLAN counts for a peer only when
    /// addressed to it, and ICMP only when it quotes a datagram from it.
    /// Zeros (unknown) accept any.
    pub local_vtep: [u8; 16],
    /// This family's overlay (VTEP) MAC: inbound VXLAN whose inner frame is
    /// addressed to another unicast MAC is counted as `stale_dst`. Zeros
    /// (unknown) count nothing.
    pub overlay_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Settings the agent gives the datapath: both families at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Slots of `PEER_INDEX` and `MAC_INDEX` minus one (a power of two
    /// minus one). 0 until the agent has configured the datapath.
    pub index_mask: u32,
    pub _pad: u32,
    /// IPv4 underlay.
    pub v4: FamilyConfig,
    /// IPv6 underlay.
    pub v6: FamilyConfig,
}

/// Entry of `MAC_INDEX`: which slot holds `key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexSlot {
    /// [`mac_key`]; 0 = free.
    pub key: u64,
    pub slot: u32,
    pub _pad: u32,
}

/// Entry of `PEER_INDEX`: which slots hold `key`'s counters on this CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerIndexSlot {
    /// [`peer_key`]; `[0, 0]` = free.
    pub key: PeerKey,
    /// Its `PEERS` slot.
    pub slot: u32,
    /// Its `PEER_COLD` slot plus one; 0 = none yet.
    pub cold: u32,
}

/// The per-packet counters of one direction in a [`PeerSlot`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotCounters {
    /// [`PeerCounters::packets`].
    pub packets: u64,
    /// [`PeerCounters::bytes`].
    pub bytes: u64,
    /// [`PeerCounters::large`].
    pub large: u64,
}

/// Entry of `PEERS`: one CPU's per-packet counters of one peer, 64 bytes
/// (one cache line when the allocator aligns it so). What only anomalies
/// touch lives in `PEER_COLD`; the key lives in the index entry, which
/// the packet reads anyway.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSlot {
    pub rx: HotCounters,
    pub tx: HotCounters,
    /// [`PeerCounters::max_outer_len`] of each direction, saturated at
    /// 65 535 (an IP packet's limit; it is compared with MTUs).
    pub rx_max_outer_len: u16,
    pub tx_max_outer_len: u16,
    /// [`PeerCounters::last_inner_src`] (rx only).
    pub last_inner_src: [u8; 6],
    pub _pad: [u8; 6],
}

const _: () = assert!(size_of::<PeerSlot>() == 64);

impl PeerSlot {
    /// The slot as a [`PeerValue`] (its anomaly fields zero).
    pub fn value(&self) -> PeerValue {
        let dir = |h: &HotCounters, max: u16, inner: [u8; 6]| PeerCounters {
            packets: h.packets,
            bytes: h.bytes,
            large: h.large,
            max_outer_len: u32::from(max),
            last_inner_src: inner,
            ..PeerCounters::default()
        };
        PeerValue {
            rx: dir(&self.rx, self.rx_max_outer_len, self.last_inner_src),
            tx: dir(&self.tx, self.tx_max_outer_len, [0; 6]),
        }
    }
}

/// Entry of `INNER`: one CPU's counters of one VTEP MAC.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacSlot {
    /// [`mac_key`] of the MAC; 0 = not used on this CPU.
    pub key: u64,
    pub v: InnerValue,
}

/// Counters of one peer, both directions: what the agent sums from a
/// [`PeerSlot`] and its `PEER_COLD` entry (the datapath writes only the
/// anomaly fields of the latter).
///
/// One entry per peer rather than per peer and direction halves what the
/// agent reads. The ingress and egress hooks write disjoint halves, so
/// sharing the entry loses no update.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerValue {
    pub rx: PeerCounters,
    pub tx: PeerCounters,
}

/// One direction of a [`PeerValue`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Wire packets: a GSO/GRO super-packet counts as its segments.
    pub packets: u64,
    /// Wire bytes including the outer Ethernet header.
    pub bytes: u64,
    /// VXLAN headers that are truncated, lack the I flag or set reserved bits.
    pub malformed: u64,
    /// Well-formed VXLAN for a VNI other than the configured one.
    pub other_vni: u64,
    /// ICMP port-unreachable quoting our VXLAN to this peer (rx only).
    pub icmp_port_unreachable: u64,
    /// Well-formed VXLAN from this peer to another well-known VXLAN port
    /// (8472 or 4789) than ours (rx only).
    pub other_port: u64,
    /// The last VNI seen that was not the configured one.
    pub last_other_vni: u32,
    /// The port of the last such VXLAN.
    pub last_other_port: u16,
    pub _pad: u16,
    /// Inner source MAC of the last VXLAN received from this peer: the MAC
    /// of the VTEP that really sits at this address (rx only).
    pub last_inner_src: [u8; 6],
    pub _pad2: [u8; 2],
    // VTEP_MAC_STALE (rx only), kept together at the end.
    /// Well-formed VXLAN for our VNI whose inner frame is addressed to a
    /// unicast MAC other than this node's overlay MAC: the sender still
    /// uses an old VTEP MAC of ours.
    pub stale_dst: u64,
    /// The inner destination MAC of the last such frame.
    pub last_stale_dst: [u8; 6],
    pub _pad3: [u8; 2],

    // --- Path MTU (UNDERLAY_MTU_BLACKHOLE): size classes and ICMP
    // "fragmentation needed". Appended so older fields keep their offsets.
    /// Of `packets`, the wire segments whose outer IPv4 total length is
    /// above [`LARGE_OUTER_LEN`] (the rest are small).
    pub large: u64,
    /// ICMP "fragmentation needed" quoting our VXLAN to this peer (rx only).
    pub frag_needed: u64,
    /// The largest outer IPv4 total length of one wire segment seen (a
    /// running maximum, not a sum).
    pub max_outer_len: u32,
    /// The next-hop MTU of the last "fragmentation needed" (0 when the
    /// router did not say).
    pub last_frag_mtu: u16,
    pub _pad4: u16,
}

/// Counters of one VTEP MAC in a [`MacSlot`]: both directions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InnerValue {
    pub rx: InnerCounters,
    pub tx: InnerCounters,
}

/// One direction of an [`InnerValue`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InnerCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Key of `DROPS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    /// The kernel's `enum skb_drop_reason` value.
    pub reason: u32,
    /// The peer named by the outer header (`parse::Addr`: IPv4 as
    /// `::ffff:a.b.c.d`), or zeros.
    pub peer: [u8; 16],
    /// For inner packets dropped on the overlay device: the remote VTEP's
    /// MAC (source on rx, destination on tx), or zeros.
    pub mac: [u8; 6],
    /// [`DIR_RX`] or [`DIR_TX`].
    pub dir: u8,
    pub _pad: u8,
}

/// What the drop tracer needs: byte offsets of kernel struct fields, read
/// from the running kernel's BTF when loading (never fixed for one
/// kernel), and what to match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropConfig {
    pub skb_dev: u32,
    pub skb_sk: u32,
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_mac_header: u32,
    pub skb_protocol: u32,
    pub skb_iif: u32,
    pub dev_nd_net: u32,
    pub dev_ifindex: u32,
    pub sk_net: u32,
    pub net_inum: u32,
    /// Inode number of the probe's network namespace: only drops there count.
    pub netns_inum: u32,
    /// 0 until the agent has filled everything in.
    pub enabled: u32,
    /// The overlay devices (`flannel.1`, `flannel-v6.1`); 0 = unused.
    pub overlay_ifindex: [u32; MAX_OVERLAYS],
    /// Each overlay device's MAC, as `overlay_ifindex`.
    pub overlay_mac: [[u8; 6]; MAX_OVERLAYS],
    /// This node's VTEP address per family (`[v4, v6]`, `parse::Addr`
    /// form; zeros when unknown).
    pub local_vtep: [[u8; 16]; 2],
    /// VXLAN UDP port per family (`[v4, v6]`), host byte order; 0: that
    /// family's outer packets are not matched.
    pub vxlan_port: [u16; 2],
}

/// Overlay devices the drop tracer tells apart: one per family, with room
/// for a second VNI each.
pub const MAX_OVERLAYS: usize = 4;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), Copy, with explicit padding and no pointers.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::PeerValue {}
    unsafe impl aya::Pod for super::PeerSlot {}
    unsafe impl aya::Pod for super::MacSlot {}
    unsafe impl aya::Pod for super::IndexSlot {}
    unsafe impl aya::Pod for super::PeerIndexSlot {}
    unsafe impl aya::Pod for super::InnerValue {}
    unsafe impl aya::Pod for super::DropKey {}
    unsafe impl aya::Pod for super::DropConfig {}
}

// Summing over CPUs (`+=`) and the window between two readings (`-`,
// saturating: counters never go back, the guard is for the impossible).
// The `last_*` fields are the newest non-zero value, not sums.

impl core::ops::AddAssign for PeerCounters {
    fn add_assign(&mut self, b: Self) {
        self.packets += b.packets;
        self.bytes += b.bytes;
        self.malformed += b.malformed;
        self.other_vni += b.other_vni;
        self.icmp_port_unreachable += b.icmp_port_unreachable;
        self.other_port += b.other_port;
        if b.last_other_port != 0 {
            self.last_other_port = b.last_other_port;
        }
        if b.last_other_vni != 0 {
            self.last_other_vni = b.last_other_vni;
        }
        if b.last_inner_src != [0; 6] {
            self.last_inner_src = b.last_inner_src;
        }
        self.stale_dst += b.stale_dst;
        if b.last_stale_dst != [0; 6] {
            self.last_stale_dst = b.last_stale_dst;
        }
        self.large += b.large;
        self.frag_needed += b.frag_needed;
        self.max_outer_len = self.max_outer_len.max(b.max_outer_len);
        if b.last_frag_mtu != 0 {
            self.last_frag_mtu = b.last_frag_mtu;
        }
    }
}

impl core::ops::Sub for PeerCounters {
    type Output = Self;

    fn sub(self, then: Self) -> Self {
        Self {
            packets: self.packets.saturating_sub(then.packets),
            bytes: self.bytes.saturating_sub(then.bytes),
            malformed: self.malformed.saturating_sub(then.malformed),
            other_vni: self.other_vni.saturating_sub(then.other_vni),
            icmp_port_unreachable: self
                .icmp_port_unreachable
                .saturating_sub(then.icmp_port_unreachable),
            other_port: self.other_port.saturating_sub(then.other_port),
            stale_dst: self.stale_dst.saturating_sub(then.stale_dst),
            _pad: 0,
            _pad2: [0; 2],
            _pad3: [0; 2],
            large: self.large.saturating_sub(then.large),
            frag_needed: self.frag_needed.saturating_sub(then.frag_needed),
            _pad4: 0,
            // max_outer_len stays the running maximum: a window's own
            // maximum cannot be told from two maxima.
            ..self
        }
    }
}

impl core::ops::AddAssign for InnerCounters {
    fn add_assign(&mut self, b: Self) {
        self.packets += b.packets;
        self.bytes += b.bytes;
    }
}

impl core::ops::Sub for InnerCounters {
    type Output = Self;

    fn sub(self, then: Self) -> Self {
        Self {
            packets: self.packets.saturating_sub(then.packets),
            bytes: self.bytes.saturating_sub(then.bytes),
        }
    }
}

impl core::ops::AddAssign for PeerValue {
    fn add_assign(&mut self, b: Self) {
        self.rx += b.rx;
        self.tx += b.tx;
    }
}

impl core::ops::Sub for PeerValue {
    type Output = Self;

    fn sub(self, then: Self) -> Self {
        Self {
            rx: self.rx - then.rx,
            tx: self.tx - then.tx,
        }
    }
}

impl core::ops::AddAssign for InnerValue {
    fn add_assign(&mut self, b: Self) {
        self.rx += b.rx;
        self.tx += b.tx;
    }
}

impl core::ops::Sub for InnerValue {
    type Output = Self;

    fn sub(self, then: Self) -> Self {
        Self {
            rx: self.rx - then.rx,
            tx: self.tx - then.tx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_never_zero_for_real_addresses() {
        let addr = Addr::v4([192, 0, 2, 11]);
        assert_eq!(key_peer(peer_key(addr)), addr);
        assert_ne!(peer_key(addr), [0, 0]);
        let v6 = Addr::v6([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(key_peer(peer_key(v6)), v6);
        assert_ne!(peer_key(v6), peer_key(addr));
        // 0.0.0.0 and :: are both the empty key; ::1 is not.
        assert_eq!(peer_key(Addr::v4([0; 4])), [0, 0]);
        assert_eq!(peer_key(Addr::default()), [0, 0]);
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_ne!(peer_key(Addr::v6(one)), [0, 0]);
        let mac = [0x02, 0xbe, 0xff, 0, 0, 0x11];
        assert_eq!(key_mac(mac_key(mac)), mac);
        assert_ne!(mac_key(mac), 0);
        assert_eq!(mac_key([0; 6]), 0);
    }

    #[test]
    fn index_is_a_power_of_two_with_room() {
        for (peers, slots) in [(0, 2), (1, 2), (3, 8), (4096, 8192), (10_000, 32_768)] {
            assert_eq!(index_slots(peers), slots, "{peers} peers");
        }
        assert!(index_slots(u32::MAX).is_power_of_two());
    }

    #[test]
    fn consecutive_addresses_spread_over_the_index() {
        // 1 000 neighbouring VTEPs in 2 048 slots: few share a start.
        let mask = 2047;
        let mut used = [false; 2048];
        let mut clashes = 0;
        for i in 0..1000u32 {
            let a = Addr::v4((0x0a00_0000 + i).to_be_bytes());
            let start = peer_index_start(peer_key(a), mask) as usize;
            clashes += usize::from(used[start]);
            used[start] = true;
        }
        // A uniform hash gives about 1000 - 2048 * (1 - e^(-1000/2048)) = 200.
        assert!(clashes < 260, "{clashes} clashes");
        // The same for IPv6 VTEPs in one /64 (only the low word differs).
        let (mut used, mut clashes) = ([false; 2048], 0);
        for i in 0..1000u16 {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[14..].copy_from_slice(&i.to_be_bytes());
            let start = peer_index_start(peer_key(Addr::v6(a)), mask) as usize;
            clashes += usize::from(used[start]);
            used[start] = true;
        }
        assert!(clashes < 260, "{clashes} IPv6 clashes");
    }
}
