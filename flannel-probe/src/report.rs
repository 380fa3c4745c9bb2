//! The fault report: what `report` prints, `serve` exposes and `mesh`
//! compares. Field names are the JSON contract (schema 1): add, never rename.
use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr},
    ops::{AddAssign, Sub},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    datapath::Overflow,
    node::{NodeState, OverlayState, UplinkSource, VtepFamily},
};

/// The JSON schema version of [`Report`].
pub(crate) const SCHEMA: u32 = 1;

/// Worst first: `Critical < Warning < Info`, so `min()` is the worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The list of codes: variant, name on the wire, default severity, and
/// whether anything raises it yet (the contract names a few to come).
macro_rules! finding_codes {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal, $severity:ident, $raised:literal;)*) => {
        /// What a finding is about, serialised as its SCREAMING_SNAKE name.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum FindingCode {
            $($(#[doc = $doc])* $variant,)*
            /// A code this build does not know, read from a newer agent's
            /// `GET /counters`: kept as it came, so `mesh` still shows it.
            Other(String),
        }

        impl FindingCode {
            /// Every code this build knows, node and mesh ones.
            pub const ALL: &[FindingCode] = &[$(FindingCode::$variant),*];

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $name,)*
                    Self::Other(s) => s,
                }
            }

            /// The severity it is raised with (`None` for an unknown code).
            pub fn severity(&self) -> Option<Severity> {
                match self {
                    $(Self::$variant => Some(Severity::$severity),)*
                    Self::Other(_) => None,
                }
            }

            /// Whether this build raises it (else the contract only reserves it).
            pub fn raised(&self) -> bool {
                match self {
                    $(Self::$variant => $raised,)*
                    Self::Other(_) => false,
                }
            }

            pub fn from_name(s: &str) -> Self {
                match s {
                    $($name => Self::$variant,)*
                    other => Self::Other(other.to_string()),
                }
            }
        }
    };
}

finding_codes! {
    VxlanNotDecapsulated => "VXLAN_NOT_DECAPSULATED", Critical, true;
    OverlayDeviceMissing => "OVERLAY_DEVICE_MISSING", Critical, true;
    OverlayDeviceDown => "OVERLAY_DEVICE_DOWN", Critical, true;
    VxlanPortNotBound => "VXLAN_PORT_NOT_BOUND", Critical, true;
    PeerPortUnreachable => "PEER_PORT_UNREACHABLE", Critical, true;
    PeerSilent => "PEER_SILENT", Warning, true;
    VniMismatch => "VNI_MISMATCH", Critical, true;
    VxlanPortMismatch => "VXLAN_PORT_MISMATCH", Critical, true;
    FdbEntryMissing => "FDB_ENTRY_MISSING", Warning, true;
    NeighEntryMissing => "NEIGH_ENTRY_MISSING", Warning, true;
    FdbEntryStale => "FDB_ENTRY_STALE", Warning, true;
    ForwardingDisabled => "FORWARDING_DISABLED", Critical, true;
    MtuMismatch => "MTU_MISMATCH", Warning, true;
    VxlanDrops => "VXLAN_DROPS", Warning, true;
    NoVxlanTraffic => "NO_VXLAN_TRAFFIC", Info, true;
    MapOverflow => "MAP_OVERFLOW", Info, true;
    DropReasonsUnavailable => "DROP_REASONS_UNAVAILABLE", Info, true;
    /// `mesh`: a link loses more than the threshold.
    UnderlayLoss => "UNDERLAY_LOSS", Warning, true;
    /// `mesh`: an agent did not answer.
    AgentUnreachable => "AGENT_UNREACHABLE", Warning, true;
    /// `mesh`: an agent restarted in the window.
    AgentRestarted => "AGENT_RESTARTED", Info, true;
    /// `mesh`: two agents claim one VTEP address.
    DuplicateVtep => "DUPLICATE_VTEP", Warning, true;
    UnknownVxlanSource => "UNKNOWN_VXLAN_SOURCE", Info, true;
    /// A minority of a peer's VXLAN is for another VNI or port while the
    /// rest decapsulates: evidence, not a broken peer (anyone behind the
    /// peer's address, a pod behind ip-masq, can send it).
    PeerOddVxlan => "PEER_ODD_VXLAN", Info, true;
    /// Not raised yet: reserved by the contract.
    DatapathDetached => "DATAPATH_DETACHED", Critical, false;
    /// Decapsulated VXLAN from a peer, then dropped in the forward path.
    DecapFiltered => "DECAP_FILTERED", Critical, true;
    /// Peers address an old VTEP MAC of this node (node and `mesh`).
    VtepMacStale => "VTEP_MAC_STALE", Critical, true;
    /// VXLAN dropped for bad UDP checksums (warning, critical when it is
    /// all of a peer's traffic).
    VxlanChecksumErrors => "VXLAN_CHECKSUM_ERRORS", Warning, true;
    /// Large encapsulated packets lost while small ones arrive (`mesh`), or
    /// ICMP fragmentation needed for our VXLAN (a node, on its sender side).
    UnderlayMtuBlackhole => "UNDERLAY_MTU_BLACKHOLE", Warning, true;
}

// By name, as the codes were sorted when they were strings.
impl Ord for FindingCode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for FindingCode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for FindingCode {
    fn from(s: &str) -> Self {
        Self::from_name(s)
    }
}

impl PartialEq<str> for FindingCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FindingCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for FindingCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FindingCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Self::from_name(&name))
    }
}

/// One diagnosis: what is wrong, the numbers behind it, what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    /// The remote VTEP this is about; `None` for the whole node.
    #[serde(default)]
    pub peer: Option<String>,
    pub summary: String,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub remediation: String,
    /// Beyond the contract: for a finding about the whole node, the peers
    /// whose traffic shows it (the incident: every peer whose VXLAN arrives
    /// and is not decapsulated). Left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected_peers: Vec<String>,
    /// Beyond the contract: the overlay the finding is about, when the
    /// probe watches several (`flannel.1` and `flannel-v6.1`); left out of
    /// the JSON with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
}

impl Finding {
    /// Whether this finding is about `peer` (named by `peer` or among
    /// `affected_peers`).
    pub fn concerns(&self, peer: &str) -> bool {
        self.peer.as_deref() == Some(peer) || self.affected_peers.iter().any(|p| p == peer)
    }
}

/// Fields beyond the contract's default when an agent (`report --from`)
/// does not send them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub hostname: String,
    pub overlay: String,
    pub overlay_state: OverlayState,
    pub uplink: Option<String>,
    /// How the uplink was chosen (`flag`, `vxlan_dev`, `default_route`,
    /// `underlay_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_source: Option<UplinkSource>,
    pub local_vtep: Option<String>,
    pub vxlan_port: u16,
    pub vni: Option<u32>,
    pub port_bound: bool,
    pub kernel: String,
    /// How the datapath is attached (`tcx` or `clsact`) per device.
    #[serde(default)]
    pub attached: BTreeMap<String, String>,
    /// (`serve`, `watch`) attachments that vanished and were restored since
    /// the probe started: each is a gap in the counts.
    #[serde(default)]
    pub attach_gaps: u64,
    /// Programs whose attachment vanished and is not restored yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached: Vec<String>,
    /// The overlay device's own (VTEP) MAC, what peers must address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_mac: Option<String>,
    /// Every watched overlay (the first is the one of the fields above).
    #[serde(default)]
    pub overlays: Vec<OverlayReport>,
}

/// One watched overlay in `node.overlays[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayReport {
    pub name: String,
    /// `ipv4` or `ipv6`: the family of its VTEPs.
    pub family: VtepFamily,
    pub state: OverlayState,
    pub vni: Option<u32>,
    pub vxlan_port: u16,
    pub port_bound: bool,
    /// The device's `local`, else the uplink's first address of `family`.
    pub local_vtep: Option<String>,
    pub uplink: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_source: Option<UplinkSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_mac: Option<String>,
    pub mtu: Option<u32>,
    /// `net.<family>.conf.<name>.forwarding`; `None` when unreadable.
    pub forwarding: Option<bool>,
    /// FDB entries with a remote VTEP (the all-zero MAC default entries
    /// left out).
    pub fdb_entries: usize,
    /// Unicast neighbour entries on the device (the kernel's NOARP entries
    /// for IPv6 multicast groups left out).
    pub neighbours: usize,
    /// Routes via a gateway on the device (flannel's, one per remote pod
    /// subnet; the kernel's connected and link-local routes left out).
    pub routes: usize,
}

#[cfg(test)]
impl OverlayReport {
    /// An overlay on `eth0`, VNI 1, port 8472, with its MAC when up.
    pub(crate) fn fixture(
        name: &str,
        family: VtepFamily,
        state: OverlayState,
        vtep: &str,
        port_bound: bool,
    ) -> Self {
        Self {
            name: name.into(),
            family,
            state,
            vni: Some(1),
            vxlan_port: 8472,
            port_bound,
            local_vtep: Some(vtep.into()),
            uplink: Some("eth0".into()),
            uplink_source: None,
            overlay_mac: (state == OverlayState::Up).then(|| "0e:00:00:00:06:11".into()),
            mtu: Some(1450),
            forwarding: Some(true),
            fdb_entries: 2,
            neighbours: 2,
            routes: 2,
        }
    }
}

impl From<&NodeState> for OverlayReport {
    fn from(n: &NodeState) -> Self {
        let ifindex = n.overlay.as_ref().map(|o| o.ifindex);
        Self {
            name: n.overlay_name.clone(),
            family: n.family,
            state: n.overlay_state(),
            vni: n.vni,
            vxlan_port: n.vxlan_port,
            port_bound: n.port_bound,
            local_vtep: n.local_vtep.map(|a| a.to_string()),
            uplink: n.uplink.as_ref().map(|u| u.name.clone()),
            uplink_source: n.uplink_source,
            overlay_mac: n
                .overlay
                .as_ref()
                .and_then(|o| o.mac)
                .as_ref()
                .map(mac_string),
            mtu: n.overlay.as_ref().and_then(|o| o.mtu),
            forwarding: n.forwarding,
            fdb_entries: n
                .fdb
                .iter()
                .filter(|e| e.mac != [0; 6] && e.dst.is_some())
                .count(),
            neighbours: n.neighbours.iter().filter(|e| !e.ip.is_multicast()).count(),
            routes: n
                .routes
                .iter()
                .filter(|r| ifindex.is_some() && r.oif == ifindex && r.gateway.is_some())
                .count(),
        }
    }
}

/// The node of the unit tests' hand-built reports and counters.
#[cfg(test)]
impl NodeInfo {
    pub(crate) fn gladius() -> Self {
        Self {
            hostname: "gladius".into(),
            overlay: "flannel.1".into(),
            overlay_state: OverlayState::Up,
            uplink: Some("eth0".into()),
            uplink_source: Some(UplinkSource::VxlanDev),
            local_vtep: Some("192.0.2.11".into()),
            vxlan_port: 8472,
            vni: Some(1),
            port_bound: true,
            kernel: "6.18.0".into(),
            attached: BTreeMap::new(),
            attach_gaps: 0,
            detached: Vec::new(),
            overlay_mac: None,
            overlays: Vec::new(),
        }
    }
}

/// A peer's traffic, over a window or since the agent started: the one
/// type that windows, cumulative totals and the mesh add (`+=`) and take
/// apart (`-`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Traffic {
    /// VXLAN sent to the peer (outer, on the uplink).
    pub tx_encap_packets: u64,
    pub tx_encap_bytes: u64,
    /// VXLAN received from the peer (outer, on the uplink).
    pub rx_encap_packets: u64,
    pub rx_encap_bytes: u64,
    /// Of that, what came out of the overlay device (inner).
    pub rx_decap_packets: u64,
    pub rx_decap_bytes: u64,
    /// Inner traffic the overlay device sent towards the peer.
    pub tx_inner_packets: u64,
    pub tx_inner_bytes: u64,
    /// ICMP port unreachable the peer sent back for our VXLAN.
    pub icmp_port_unreachable: u64,
    // Path MTU (UNDERLAY_MTU_BLACKHOLE): of the encapsulated packets, those
    // above `abi::LARGE_OUTER_LEN` (outer IPv4 total length), the largest
    // seen since the probe attached, and ICMP "fragmentation needed" for
    // our VXLAN to the peer.
    pub tx_encap_large: u64,
    pub rx_encap_large: u64,
    pub tx_encap_max_len: u64,
    pub rx_encap_max_len: u64,
    pub icmp_frag_needed: u64,
}

/// Applies `op` to every counter, `max_op` to the running maxima.
macro_rules! each_counter {
    ($a:expr, $b:expr, $op:ident, $max_op:expr) => {
        Traffic {
            tx_encap_large: $a.tx_encap_large.$op($b.tx_encap_large),
            rx_encap_large: $a.rx_encap_large.$op($b.rx_encap_large),
            icmp_frag_needed: $a.icmp_frag_needed.$op($b.icmp_frag_needed),
            tx_encap_max_len: $max_op($a.tx_encap_max_len, $b.tx_encap_max_len),
            rx_encap_max_len: $max_op($a.rx_encap_max_len, $b.rx_encap_max_len),
            tx_encap_packets: $a.tx_encap_packets.$op($b.tx_encap_packets),
            tx_encap_bytes: $a.tx_encap_bytes.$op($b.tx_encap_bytes),
            rx_encap_packets: $a.rx_encap_packets.$op($b.rx_encap_packets),
            rx_encap_bytes: $a.rx_encap_bytes.$op($b.rx_encap_bytes),
            rx_decap_packets: $a.rx_decap_packets.$op($b.rx_decap_packets),
            rx_decap_bytes: $a.rx_decap_bytes.$op($b.rx_decap_bytes),
            tx_inner_packets: $a.tx_inner_packets.$op($b.tx_inner_packets),
            tx_inner_bytes: $a.tx_inner_bytes.$op($b.tx_inner_bytes),
            icmp_port_unreachable: $a.icmp_port_unreachable.$op($b.icmp_port_unreachable),
        }
    };
}

impl Traffic {
    /// Whether nothing was counted: the running maxima (`*_encap_max_len`)
    /// say what was seen since the probe attached, not in this window, so
    /// they do not make a silent peer active.
    pub fn is_quiet(&self) -> bool {
        Traffic {
            tx_encap_max_len: 0,
            rx_encap_max_len: 0,
            ..*self
        } == Traffic::default()
    }
}

/// Adds a later window's traffic.
impl AddAssign for Traffic {
    fn add_assign(&mut self, later: Traffic) {
        *self = each_counter!(self, later, saturating_add, u64::max);
    }
}

/// The traffic between two readings (a counter that went back reads 0).
impl Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        // A maximum is not a sum: the later reading's stands (a window's
        // own maximum cannot be told from two running maxima).
        each_counter!(self, earlier, saturating_sub, |later: u64, _| later)
    }
}

/// Per remote VTEP, over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerReport {
    pub peer: String,
    pub vtep_mac: Option<String>,
    /// The peer's traffic over the window (its fields sit at this level
    /// of the JSON).
    #[serde(flatten)]
    pub traffic: Traffic,
    pub drops: BTreeMap<String, u64>,
    /// Inbound VXLAN headers the kernel would reject.
    pub rx_malformed: u64,
    /// Inbound VXLAN for another VNI than ours, and the last such VNI.
    pub rx_other_vni: u64,
    pub rx_last_other_vni: Option<u32>,
    /// Inbound VXLAN to the other well-known VXLAN port, and that port.
    pub rx_other_port: u64,
    pub rx_last_other_port: Option<u16>,
    /// The peer has an FDB entry on the overlay device.
    pub in_fdb: bool,
    /// Inner source MAC of the VXLAN this address sends: the VTEP that
    /// really sits there (compare with `vtep_mac`, from the FDB).
    pub rx_vtep_mac: Option<String>,
    /// The next-hop MTU of the last ICMP "fragmentation needed" for our
    /// VXLAN to this peer in the window (when the router named one).
    pub icmp_frag_needed_mtu: Option<u16>,
    /// `peer` and `rx_vtep_mac` as the diagnosis found them, so that rules
    /// compare addresses rather than parse text (not part of the JSON).
    #[serde(skip)]
    pub addr: Option<IpAddr>,
    #[serde(skip)]
    pub rx_vtep: Option<[u8; 6]>,
    /// Inbound VXLAN for our VNI whose inner frame is addressed to a
    /// unicast MAC this node's overlay does not have, and the last such
    /// MAC (`VTEP_MAC_STALE`).
    pub rx_stale_dst: u64,
    pub rx_last_stale_dst_mac: Option<String>,
}

impl PeerReport {
    /// The peer's address (parsed from `peer` in hand-built reports).
    pub fn ip(&self) -> Option<IpAddr> {
        self.addr.or_else(|| self.peer.parse().ok())
    }

    /// The inner source MAC its VXLAN carries (parsed from `rx_vtep_mac`
    /// in hand-built reports).
    pub fn rx_vtep(&self) -> Option<[u8; 6]> {
        self.rx_vtep
            .or_else(|| self.rx_vtep_mac.as_deref().and_then(parse_mac))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropReport {
    pub reason: String,
    pub direction: &'static str,
    pub packets: u64,
}

/// One change of the overlay device as the probe saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlayChange {
    /// RFC 3339, UTC.
    pub at: String,
    pub state: OverlayState,
    pub ifindex: Option<u32>,
    pub mac: Option<String>,
}

/// Inner traffic of a MAC no FDB entry names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnattributedInner {
    pub mac: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// One sender of VXLAN-shaped UDP to our port that is not a VTEP peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnknownSource {
    pub source: String,
    /// `pod network`, `not in the FDB` or `no well-formed VXLAN`.
    pub why: &'static str,
    /// Inbound packets to our port (or the other VXLAN port), ICMP included.
    pub rx_packets: u64,
    pub rx_other_vni: u64,
    pub rx_malformed: u64,
    pub icmp_port_unreachable: u64,
    pub tx_packets: u64,
}

/// VXLAN-shaped traffic attributed to no peer, bounded: the top few
/// sources by packets, the rest summed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnknownSources {
    pub sources: Vec<UnknownSource>,
    /// Sources beyond the listed ones, and their packets.
    pub other_sources: u64,
    pub other_packets: u64,
    /// Inbound VXLAN-shaped UDP to our port addressed to another local
    /// address than the VTEP.
    pub rx_not_local: u64,
    /// ICMP port unreachable quoting a datagram the local VTEP did not send.
    pub icmp_not_ours: u64,
    /// Kernel drops of these sources' packets (not in `drops`).
    pub rx_dropped: u64,
}

impl UnknownSources {
    /// Packets of every kind counted here.
    pub fn packets(&self) -> u64 {
        self.sources
            .iter()
            .map(|u| u.rx_packets + u.tx_packets)
            .sum::<u64>()
            + self.other_packets
            + self.rx_not_local
            + self.icmp_not_ours
    }
}

/// Deserialised from an agent's `GET /report` by `report --from`: the
/// contract's keys are required, the others default when absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: u32,
    pub node: NodeInfo,
    pub window_secs: f64,
    pub peers: Vec<PeerReport>,
    pub drops: Vec<DropReport>,
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub unattributed_inner: Vec<UnattributedInner>,
    /// New keys that did not fit the maps in the window.
    #[serde(default)]
    pub overflow: Overflow,
    /// Changes of the overlay device seen while the probe ran (a device
    /// deleted and recreated by a CNI restart shows here).
    #[serde(default)]
    pub overlay_history: Vec<OverlayChange>,
    /// VXLAN-shaped traffic from senders that are not peers (CONTRACT.md,
    /// "Identity").
    #[serde(default)]
    pub unknown_sources: UnknownSources,
}

/// The same fields with owned text, as read back (`report --from`).
#[derive(Deserialize)]
struct DropReportWire {
    reason: String,
    direction: String,
    packets: u64,
}

impl<'de> Deserialize<'de> for DropReport {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = DropReportWire::deserialize(d)?;
        let direction = match w.direction.as_str() {
            "rx" => "rx",
            "tx" => "tx",
            other => {
                return Err(serde::de::Error::custom(format!(
                    "drop direction {other:?} is neither rx nor tx"
                )));
            }
        };
        Ok(DropReport {
            reason: w.reason,
            direction,
            packets: w.packets,
        })
    }
}

/// See [`DropReportWire`].
#[derive(Deserialize)]
struct UnknownSourceWire {
    source: String,
    why: String,
    #[serde(default)]
    rx_packets: u64,
    #[serde(default)]
    rx_other_vni: u64,
    #[serde(default)]
    rx_malformed: u64,
    #[serde(default)]
    icmp_port_unreachable: u64,
    #[serde(default)]
    tx_packets: u64,
}

impl<'de> Deserialize<'de> for UnknownSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = UnknownSourceWire::deserialize(d)?;
        // A reason this build does not know reads as `other`.
        let why = match w.why.as_str() {
            "pod network" => "pod network",
            "not in the FDB" => "not in the FDB",
            "no well-formed VXLAN" => "no well-formed VXLAN",
            _ => "other",
        };
        Ok(UnknownSource {
            source: w.source,
            why,
            rx_packets: w.rx_packets,
            rx_other_vni: w.rx_other_vni,
            rx_malformed: w.rx_malformed,
            icmp_port_unreachable: w.icmp_port_unreachable,
            tx_packets: w.tx_packets,
        })
    }
}

impl Report {
    /// node-problem-detector's convention: 1 when anything needs attention.
    pub fn exit_code(&self) -> i32 {
        if self
            .findings
            .iter()
            .any(|f| f.severity <= Severity::Warning)
        {
            1
        } else {
            0
        }
    }

    /// The worst severity present, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).min()
    }

    /// The worst severity of the findings about `peer`, if any.
    pub fn peer_severity(&self, peer: &str) -> Option<Severity> {
        self.findings
            .iter()
            .filter(|f| f.concerns(peer))
            .map(|f| f.severity)
            .min()
    }
}

/// The inverse of [`mac_string`].
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A peer address as the JSON `peer` field has it: IPv4 dotted (without
/// the formatter: one per peer in every report), IPv6 in RFC 5952 form
/// (`Ipv6Addr`'s `Display`).
pub(crate) fn addr_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => ip_string(v4),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// Dotted quad, as `Ipv4Addr`'s `Display` prints it, without the
/// formatter (one per peer in every report).
pub(crate) fn ip_string(ip: Ipv4Addr) -> String {
    let mut s = String::with_capacity(15);
    for (i, b) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if b >= 100 {
            s.push(char::from(b'0' + b / 100));
        }
        if b >= 10 {
            s.push(char::from(b'0' + b / 10 % 10));
        }
        s.push(char::from(b'0' + b % 10));
    }
    s
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn mac_string(mac: &[u8; 6]) -> String {
    // By hand rather than format!: the report prints two per peer, and at
    // 10 000 peers the formatter's cost showed in the diagnosis time.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The keys of a JSON object, sorted.
    pub(crate) fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    }

    /// A peer's traffic sits flat in its JSON object: the names of
    /// CONTRACT.md's `peers[]` example plus the fields added since, no more.
    #[test]
    fn peer_report_json_keys_are_the_contracts() {
        let v = serde_json::to_value(PeerReport::default()).expect("encode");
        let mut want = vec![
            // CONTRACT.md
            "peer",
            "vtep_mac",
            "tx_encap_packets",
            "tx_encap_bytes",
            "rx_encap_packets",
            "rx_encap_bytes",
            "rx_decap_packets",
            "tx_inner_packets",
            "icmp_port_unreachable",
            "drops",
            // Added since
            "rx_decap_bytes",
            "tx_inner_bytes",
            "rx_malformed",
            "rx_other_vni",
            "rx_last_other_vni",
            "rx_other_port",
            "rx_last_other_port",
            "in_fdb",
            "rx_vtep_mac",
            "rx_stale_dst",
            "rx_last_stale_dst_mac",
            "tx_encap_large",
            "rx_encap_large",
            "tx_encap_max_len",
            "rx_encap_max_len",
            "icmp_frag_needed",
            "icmp_frag_needed_mtu",
        ];
        want.sort_unstable();
        assert_eq!(keys(&v), want);
    }

    #[test]
    fn traffic_adds_up_and_takes_apart_without_going_below_zero() {
        let a = Traffic {
            tx_encap_packets: 5,
            rx_decap_bytes: 7,
            ..Traffic::default()
        };
        let mut sum = a;
        sum += Traffic {
            tx_encap_packets: 2,
            icmp_port_unreachable: 1,
            ..Traffic::default()
        };
        assert_eq!(sum.tx_encap_packets, 7);
        assert_eq!(sum.rx_decap_bytes, 7);
        assert_eq!(sum.icmp_port_unreachable, 1);
        assert_eq!((sum - a).tx_encap_packets, 2);
        assert_eq!((a - sum).tx_encap_packets, 0, "a counter that went back");
    }

    #[test]
    fn mac_text_is_lowercase_colon_hex_and_parses_back() {
        let mac = [0x02, 0xbe, 0xff, 0x00, 0x0a, 0xf1];
        assert_eq!(mac_string(&mac), "02:be:ff:00:0a:f1");
        assert_eq!(parse_mac(&mac_string(&mac)), Some(mac));
        assert_eq!(mac_string(&[0; 6]), "00:00:00:00:00:00");
        assert_eq!(parse_mac("02:be:ff:00:0a"), None);
        assert_eq!(parse_mac("02:be:ff:00:0a:f1:00"), None);
    }

    #[test]
    fn ip_text_is_what_display_prints() {
        for ip in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(192, 0, 2, 11),
            Ipv4Addr::new(10, 42, 100, 9),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(1, 20, 199, 200),
        ] {
            assert_eq!(ip_string(ip), ip.to_string());
        }
        for b in 0..=255u8 {
            let ip = Ipv4Addr::new(b, b, 0, b);
            assert_eq!(ip_string(ip), ip.to_string());
        }
        // IPv6 in RFC 5952 form: lower case, the longest zero run as ::.
        for (ip, text) in [
            ("fd00::1", "fd00::1"),
            ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:cafe:42:1::", "2001:cafe:42:1::"),
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(addr_string(ip), text);
        }
        assert_eq!(
            addr_string(Ipv4Addr::new(192, 0, 2, 11).into()),
            "192.0.2.11"
        );
    }
}
