//! Map names, keys and values shared by the eBPF programs and the agent.
//!
//! Every type is `repr(C)` with explicit padding so both sides see the same
//! bytes; the agent reads the per-CPU values and sums them.

/// Packets arriving at this node.
pub const DIR_RX: u8 = 0;
/// Packets leaving this node.
pub const DIR_TX: u8 = 1;

/// Per remote VTEP: outer (encapsulated) traffic on the uplink, both
/// directions in one entry.
pub const MAP_PEERS: &str = "PEERS";
/// Per VTEP MAC: inner frames on the overlay device, both directions in one
/// entry.
pub const MAP_INNER: &str = "INNER";
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
/// Number of slots in `STATS`.
pub const NUM_STATS: u32 = 4;

/// `Config::flags`: `vni` is known, so VXLAN for another VNI is counted as such.
pub const CONFIG_VNI_KNOWN: u16 = 1;

/// Settings the agent gives the datapath.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// VXLAN UDP destination port, host byte order. 0 matches nothing.
    pub vxlan_port: u16,
    /// `CONFIG_*` bits.
    pub flags: u16,
    /// The VNI the overlay device serves.
    pub vni: u32,
}

/// Key of `PEERS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    /// The remote VTEP's underlay IPv4 address, network byte order.
    pub addr: [u8; 4],
}

/// Value of `PEERS`: one CPU's share of both directions.
///
/// One entry per peer rather than per peer and direction halves what the
/// agent reads: per-CPU hash entries cost the kernel most of a microsecond
/// each to hand over. The ingress and egress hooks write disjoint halves,
/// so sharing the entry loses no update.
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
}

/// Key of `INNER`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacKey {
    /// Source MAC of decapsulated frames (rx), destination MAC of frames to
    /// encapsulate (tx): the remote VTEP's MAC in Flannel's setup.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Value of `INNER`: one CPU's share of both directions (one entry per
/// MAC, as for [`PeerValue`]).
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
    /// The peer named by the outer header, or zeros.
    pub peer: [u8; 4],
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
    /// The overlay device; 0 when it is missing.
    pub overlay_ifindex: u32,
    /// This node's VTEP address (zeros when unknown).
    pub local_vtep: [u8; 4],
    pub overlay_mac: [u8; 6],
    /// VXLAN UDP port, host byte order.
    pub vxlan_port: u16,
    /// 0 until the agent has filled everything in.
    pub enabled: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), Copy, with explicit padding and no pointers.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::PeerValue {}
    unsafe impl aya::Pod for super::MacKey {}
    unsafe impl aya::Pod for super::InnerValue {}
    unsafe impl aya::Pod for super::DropKey {}
    unsafe impl aya::Pod for super::DropConfig {}
}
