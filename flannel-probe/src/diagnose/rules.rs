//! One function per finding code. Each reads the per-peer figures already in
//! the report and the node state, and says nothing unless its condition holds.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use super::{Inputs, decap, vtep_mac_stale};
use crate::{
    node::{NUD_FAILED, NUD_INCOMPLETE, NodeState, OverlayState, VtepFamily},
    report::{Finding, FindingCode, PeerReport, Report, Severity, mac_string},
};
use flannel_probe_common::abi::MAP_PEER_COLD;

/// Outer Ethernet + IPv4 + UDP + VXLAN (the parser's constant, as an MTU).
const VXLAN_OVERHEAD: u32 = flannel_probe_common::parse::VXLAN_OVERHEAD as u32;

/// The same over IPv6 (a 40-byte outer header: the kernel's VXLAN6_HEADROOM).
const VXLAN6_OVERHEAD: u32 = VXLAN_OVERHEAD + 20;

const RESTART_CNI: &str = "restart the CNI agent on this node (k3s: systemctl restart k3s; \
     kube-flannel: delete this node's kube-flannel pod) and check its log for the VXLAN backend";

/// Every rule, in no particular order (the caller sorts).
pub(super) fn all(r: &Report, inp: &Inputs<'_>, ix: &Index) -> Vec<Finding> {
    let node = inp.node;
    let mut out = Vec::new();
    out.extend(overlay_device_missing(r));
    out.extend(overlay_device_down(r));
    out.extend(vxlan_port_not_bound(r));
    let explained = decap::Explained::new(r, inp, ix);
    out.extend(decap::decap_filtered(r, &explained));
    out.extend(decap::vxlan_checksum_errors(
        r,
        &explained,
        node.udp_in_csum_errors,
        node.family,
    ));
    out.extend(vxlan_not_decapsulated(r, &explained));
    let port_mismatch = vxlan_port_mismatch(r);
    // When every peer uses another port, their port-unreachables only
    // repeat that this node is the odd one out.
    if !port_mismatch.iter().any(|f| f.peer.is_none()) {
        out.extend(peer_port_unreachable(r));
    }
    out.extend(port_mismatch);
    out.extend(peer_silent(r));
    out.extend(vni_mismatch(r));
    let routes = overlay_routes(node, ix);
    out.extend(fdb_entry_missing(r, &routes, ix));
    out.extend(neigh_entry_missing(r, node, &routes));
    out.extend(fdb_entry_stale(r, ix));
    out.extend(forwarding_disabled(r, node));
    out.extend(mtu_mismatch(r, node));
    out.extend(vtep_mac_stale::vtep_mac_stale(r, &ix.fdb));
    out.extend(vxlan_drops(
        r,
        &explained,
        vtep_mac_stale::explained_drops(r, &ix.fdb),
    ));
    out.extend(no_vxlan_traffic(r));
    out.extend(map_overflow(r));
    out.extend(drops_unavailable(inp.drops_unavailable));
    out.extend(datapath_detached(r));
    out.extend(unknown_vxlan_source(r));
    out.extend(peer_odd_vxlan(r));
    out.extend(super::pmtu::frag_needed(r));
    out
}

/// Self-health: an attachment of ours vanished and re-attaching failed so
/// far; whatever passes meanwhile is not counted.
fn datapath_detached(r: &Report) -> Option<Finding> {
    if r.node.detached.is_empty() {
        return None;
    }
    let mut f = finding(FindingCode::DatapathDetached, None);
    f.summary = format!(
        "the probe's {} {} not attached any more and could not be restored: the counts have a gap",
        r.node.detached.join(", "),
        if r.node.detached.len() == 1 {
            "program is"
        } else {
            "programs are"
        },
    );
    f.evidence = vec![format!(
        "{} attachment(s) restored since the start",
        r.node.attach_gaps
    )];
    f.remediation = "check what removes tc filters or qdiscs on this node (a CNI reinstall, \
        `tc qdisc del`) and the agent's log for why re-attaching fails"
        .into();
    Some(f)
}

/// The peer's own VXLAN decapsulates: odd packets from its address (another
/// VNI or port, port unreachable) are then not evidence against it, since a
/// pod or process behind that address could have sent them.
fn decapsulates(p: &PeerReport) -> bool {
    rx_acceptable(p) > 0 && p.traffic.rx_decap_packets > 0
}

/// VXLAN-shaped traffic from senders that are not peers.
fn unknown_vxlan_source(r: &Report) -> Option<Finding> {
    let u = &r.unknown_sources;
    let n = u.packets();
    if n == 0 {
        return None;
    }
    let mut f = finding(FindingCode::UnknownVxlanSource, None);
    let senders = u.sources.len() as u64 + u.other_sources;
    f.summary = format!(
        "{n} VXLAN-shaped packet{} to UDP {} not from a VTEP peer ({senders} source{})",
        if n == 1 { "" } else { "s" },
        r.node.vxlan_port,
        if senders == 1 { "" } else { "s" }
    );
    for s in &u.sources {
        let mut line = format!("from {} ({}): {} packets", s.source, s.why, s.rx_packets);
        if s.rx_other_vni > 0 {
            line.push_str(&format!(", {} for another VNI", s.rx_other_vni));
        }
        if s.icmp_port_unreachable > 0 {
            line.push_str(&format!(
                ", {} ICMP port unreachable",
                s.icmp_port_unreachable
            ));
        }
        if s.tx_packets > 0 {
            line.push_str(&format!(", {} sent to it", s.tx_packets));
        }
        f.evidence.push(line);
    }
    if u.other_sources > 0 {
        f.evidence.push(format!(
            "{} more sources: {} packets",
            u.other_sources, u.other_packets
        ));
    }
    if u.rx_not_local > 0 {
        f.evidence.push(format!(
            "{} to another local address than the VTEP {}",
            u.rx_not_local,
            r.node.local_vtep.as_deref().unwrap_or("?")
        ));
    }
    if u.icmp_not_ours > 0 {
        f.evidence.push(format!(
            "{} ICMP port unreachable quoting a datagram this VTEP did not send",
            u.icmp_not_ours
        ));
    }
    f.remediation = "not a fault of this node or its peers: something other than a VTEP (a pod, a                      host process) sends VXLAN-shaped UDP here; find it if that is unexpected"
        .into();
    Some(f)
}

/// A peer whose VXLAN decapsulates, with a minority of packets for another
/// VNI or port, or port unreachables: evidence only.
fn peer_odd_vxlan(r: &Report) -> Vec<Finding> {
    r.peers
        .iter()
        .filter(|p| decapsulates(p))
        .filter(|p| p.rx_other_vni + p.rx_other_port + p.traffic.icmp_port_unreachable > 0)
        .map(|p| {
            let mut f = finding(FindingCode::PeerOddVxlan, Some(&p.peer));
            f.summary = format!(
                "{} sends some odd VXLAN while the rest of its traffic decapsulates",
                p.peer
            );
            if p.rx_other_vni > 0 {
                f.evidence.push(format!(
                    "rx_other_vni={} of rx_encap_packets={} (last VNI {})",
                    p.rx_other_vni,
                    p.traffic.rx_encap_packets,
                    p.rx_last_other_vni.map_or("?".into(), |v| v.to_string())
                ));
            }
            if p.rx_other_port > 0 {
                f.evidence.push(format!(
                    "rx_other_port={} (UDP {})",
                    p.rx_other_port,
                    p.rx_last_other_port.map_or("?".into(), |v| v.to_string())
                ));
            }
            if p.traffic.icmp_port_unreachable > 0 {
                f.evidence
                    .push(format!("icmp_port_unreachable={}", p.traffic.icmp_port_unreachable));
            }
            f.evidence
                .push(format!("rx_decap_packets={}", p.traffic.rx_decap_packets));
            f.remediation = format!(
                "the peer's VTEP works; something else behind {} (a pod through ip-masq, a host                  process) sends these",
                p.peer
            );
            f
        })
        .collect()
}

/// A finding of `code`, with the severity the code is raised with.
pub(super) fn finding(code: FindingCode, peer: Option<&str>) -> Finding {
    Finding {
        severity: code.severity().unwrap_or(Severity::Warning),
        code,
        peer: peer.map(str::to_string),
        summary: String::new(),
        evidence: Vec::new(),
        remediation: String::new(),
        affected_peers: Vec::new(),
        overlay: None,
    }
}

fn sum(r: &Report, f: impl Fn(&PeerReport) -> u64) -> u64 {
    r.peers.iter().map(f).sum()
}

/// Inbound VXLAN this node's device should take: well-formed, for our VNI
/// (or any VNI when we do not know ours).
pub(super) fn rx_acceptable(p: &PeerReport) -> u64 {
    p.traffic
        .rx_encap_packets
        .saturating_sub(p.rx_malformed)
        .saturating_sub(p.rx_other_vni)
}

fn overlay_device_missing(r: &Report) -> Option<Finding> {
    (r.node.overlay_state == OverlayState::Missing).then(|| {
        let rx = sum(r, |p| p.traffic.rx_encap_packets);
        let mut f = finding(FindingCode::OverlayDeviceMissing, None);
        f.summary = format!("the overlay device {} does not exist", r.node.overlay);
        f.evidence = vec![
            format!("netlink: no link named {}", r.node.overlay),
            format!("rx_encap_packets={rx} in {:.1}s", r.window_secs),
        ];
        f.remediation = format!("{} is missing: {RESTART_CNI}", r.node.overlay);
        f
    })
}

fn overlay_device_down(r: &Report) -> Option<Finding> {
    (r.node.overlay_state == OverlayState::Down).then(|| {
        let mut f = finding(FindingCode::OverlayDeviceDown, None);
        f.summary = format!("the overlay device {} exists but is not up", r.node.overlay);
        f.evidence = vec![format!("netlink: {} is down", r.node.overlay)];
        f.remediation = format!(
            "bring it up (ip link set {} up) or {RESTART_CNI}",
            r.node.overlay
        );
        f
    })
}

fn vxlan_port_not_bound(r: &Report) -> Option<Finding> {
    (!r.node.port_bound).then(|| {
        let port = r.node.vxlan_port;
        let mut f = finding(FindingCode::VxlanPortNotBound, None);
        f.summary =
            format!("nothing on this node listens on UDP {port}: inbound VXLAN has no socket");
        f.evidence = vec![format!("sock_diag: no UDP socket bound to port {port}")];
        f.evidence.push(format!(
            "{} is {}",
            r.node.overlay,
            r.node.overlay_state.as_str()
        ));
        f.remediation = format!(
            "the kernel opens UDP {port} when {} is up: bring it up or {RESTART_CNI}",
            r.node.overlay
        );
        f
    })
}

/// The incident's signature: VXLAN arrives, nothing comes out of the device.
/// VXLAN the kernel dropped for a bad checksum never reached the device
/// (`VXLAN_CHECKSUM_ERRORS` names it).
fn vxlan_not_decapsulated(r: &Report, ex: &decap::Explained) -> Option<Finding> {
    let good = |p: &PeerReport| rx_acceptable(p).saturating_sub(ex.csum_of(p));
    let arriving: Vec<&PeerReport> = r.peers.iter().filter(|p| good(p) > 0).collect();
    let rx: u64 = arriving.iter().map(|p| good(p)).sum();
    let decap = sum(r, |p| p.traffic.rx_decap_packets)
        + r.unattributed_inner
            .iter()
            .map(|u| u.rx_packets)
            .sum::<u64>();
    if rx == 0 || decap > 0 {
        return None;
    }
    let mut f = finding(FindingCode::VxlanNotDecapsulated, None);
    f.affected_peers = arriving.iter().map(|p| p.peer.clone()).collect();
    let n = arriving.len();
    f.summary = format!(
        "inbound VXLAN from {n} peer{}, none decapsulated",
        if n == 1 { "" } else { "s" }
    );
    f.evidence = vec![format!("rx_encap_packets={rx} rx_decap_packets=0")];
    for p in &arriving {
        f.evidence
            .push(format!("from {}: {} packets", p.peer, good(p)));
    }
    let state = r.node.overlay_state;
    f.remediation = match state {
        OverlayState::Up if r.node.port_bound => format!(
            "{} is up and UDP {} is bound, yet nothing is decapsulated: check the VNI ({}) and the drops below",
            r.node.overlay,
            r.node.vxlan_port,
            r.node.vni.map_or("unknown".to_string(), |v| v.to_string())
        ),
        _ => {
            f.evidence
                .push(format!("{} {}", r.node.overlay, state.as_str()));
            format!("{} is not up on this node: {RESTART_CNI}", r.node.overlay)
        }
    };
    if !r.node.port_bound {
        f.evidence
            .push(format!("UDP {} not bound", r.node.vxlan_port));
    }
    Some(f)
}

/// The sender's side of the incident: a peer answers with port unreachable.
fn peer_port_unreachable(r: &Report) -> Vec<Finding> {
    r.peers
        .iter()
        .filter(|p| p.traffic.icmp_port_unreachable > 0 && !decapsulates(p))
        .map(|p| {
            let mut f = finding(FindingCode::PeerPortUnreachable, Some(&p.peer));
            f.summary = format!(
                "{} answers our VXLAN with ICMP port unreachable: it cannot decapsulate",
                p.peer
            );
            f.evidence = vec![format!(
                "icmp_port_unreachable={} tx_encap_packets={} rx_encap_packets={}",
                p.traffic.icmp_port_unreachable, p.traffic.tx_encap_packets, p.traffic.rx_encap_packets
            )];
            f.remediation = format!(
                "the node with VTEP {} has no VXLAN socket on UDP {} (overlay device missing or down): \
                 run flannel-probe report there and restart its CNI agent",
                p.peer, r.node.vxlan_port
            );
            f
        })
        .collect()
}

fn no_vxlan_traffic(r: &Report) -> Option<Finding> {
    let total = sum(r, |p| {
        p.traffic.rx_encap_packets + p.traffic.tx_encap_packets
    });
    (total == 0).then(|| {
        let mut f = finding(FindingCode::NoVxlanTraffic, None);
        f.summary = format!("no VXLAN on UDP {} in the window", r.node.vxlan_port);
        f.evidence = vec![format!(
            "window {:.1}s, {} known peers",
            r.window_secs,
            r.peers.len()
        )];
        f.remediation =
            "nothing to judge: run it while pods on this node talk to pods on other nodes".into();
        f
    })
}

fn map_overflow(r: &Report) -> Option<Finding> {
    let o = r.overflow;
    (o.peers + o.macs + o.drops + o.anomalies > 0).then(|| {
        let mut f = finding(FindingCode::MapOverflow, None);
        if o.peers + o.macs + o.drops > 0 {
            f.summary = "more peers than the datapath's map slots: some were not counted".into();
            f.evidence = vec![format!(
                "new keys not stored: peers={} macs={} drops={}",
                o.peers, o.macs, o.drops
            )];
            f.remediation = "raise --max-peers".into();
        } else {
            f.summary =
                "more peers with anomalies than the datapath keeps apart: some anomalies were not counted"
                    .into();
            f.remediation =
                "fix the anomalies already named (they are the same fault on more peers); below 4096 peers, raising --max-peers also grows the pool"
                    .into();
        }
        if o.anomalies > 0 {
            f.evidence.push(format!(
                "anomalies of peers without a slot in {MAP_PEER_COLD}: {}",
                o.anomalies
            ));
        }
        f
    })
}

/// We send to a peer and hear nothing back, while other peers answer: the
/// path to it, or the peer itself, swallows VXLAN without a word.
fn peer_silent(r: &Report) -> Vec<Finding> {
    let answering = r
        .peers
        .iter()
        .filter(|p| p.traffic.rx_encap_packets > 0)
        .count();
    r.peers
        .iter()
        .filter(|p| p.traffic.tx_encap_packets > 0 && p.traffic.rx_encap_packets == 0 && p.traffic.icmp_port_unreachable == 0)
        .filter(|_| answering > 0)
        .map(|p| {
            let mut f = finding(FindingCode::PeerSilent, Some(&p.peer));
            f.summary = format!(
                "{} receives our VXLAN but sends none back, while {answering} other peer{} do",
                p.peer,
                if answering == 1 { "" } else { "s" }
            );
            f.evidence = vec![format!(
                "tx_encap_packets={} rx_encap_packets=0 icmp_port_unreachable=0",
                p.traffic.tx_encap_packets
            )];
            f.remediation = format!(
                "something between here and {} drops UDP {} silently (a firewall or security group on \
                 that node or the underlay), or its CNI is stuck: run flannel-probe report on that node",
                p.peer, r.node.vxlan_port
            );
            f
        })
        .collect()
}

/// VXLAN for a VNI this node does not serve. When every sending peer
/// disagrees with us, the odd one out is this node, not them.
fn vni_mismatch(r: &Report) -> Vec<Finding> {
    let Some(ours) = r.node.vni else {
        return Vec::new();
    };
    let senders: Vec<&PeerReport> = r
        .peers
        .iter()
        .filter(|p| p.traffic.rx_encap_packets > p.rx_malformed)
        .collect();
    let foreign: Vec<&PeerReport> = senders
        .iter()
        .copied()
        .filter(|p| p.rx_other_vni > 0 && !decapsulates(p))
        .collect();
    if foreign.is_empty() {
        return Vec::new();
    }
    let theirs = |p: &PeerReport| p.rx_last_other_vni.map_or("?".into(), |v| v.to_string());
    if foreign.len() == senders.len() && senders.len() > 1 {
        let vnis: BTreeSet<String> = foreign.iter().map(|p| theirs(p)).collect();
        let n: u64 = foreign.iter().map(|p| p.rx_other_vni).sum();
        let mut f = finding(FindingCode::VniMismatch, None);
        f.summary = format!(
            "every peer sends VNI {}, but {} on this node serves VNI {ours}",
            vnis.into_iter().collect::<Vec<_>>().join("/"),
            r.node.overlay
        );
        f.evidence = foreign
            .iter()
            .map(|p| {
                format!(
                    "from {}: {} packets for VNI {}",
                    p.peer,
                    p.rx_other_vni,
                    theirs(p)
                )
            })
            .collect();
        f.evidence
            .push(format!("rx_other_vni={n} local VNI={ours}"));
        f.remediation = format!(
            "{} was created with the wrong VNI: delete it and restart the CNI agent so it is recreated \
             with the cluster's VNI",
            r.node.overlay
        );
        return vec![f];
    }
    foreign
        .into_iter()
        .map(|p| {
            let mut f = finding(FindingCode::VniMismatch, Some(&p.peer));
            f.summary = format!("{} sends VNI {}, this node serves VNI {ours}", p.peer, theirs(p));
            f.evidence = vec![format!(
                "rx_other_vni={} of rx_encap_packets={} last VNI {}",
                p.rx_other_vni,
                p.traffic.rx_encap_packets,
                theirs(p)
            )];
            f.remediation = format!(
                "the overlay device on {} uses another VNI: recreate it there (restart its CNI agent)",
                p.peer
            );
            f
        })
        .collect()
}

/// A route via the overlay device: destination, prefix, gateway (of the
/// overlay's family).
type Route = (IpAddr, u8, IpAddr);

/// The routes via the overlay device, each with its gateway's usable
/// neighbour MAC: looked up once here for both rules that need it (one
/// route per node: at 100 000 peers a second lookup each was 5 ms).
fn overlay_routes(node: &NodeState, ix: &Index) -> Vec<(Route, Option<[u8; 6]>)> {
    let Some(o) = &node.overlay else {
        return Vec::new();
    };
    node.routes
        .iter()
        .filter(|rt| rt.oif == Some(o.ifindex))
        .filter_map(|rt| rt.gateway.map(|g| (rt.dst, rt.prefix_len, g)))
        .map(|route| (route, ix.neigh.get(&route.2).copied()))
        .collect()
}

/// A hash map with a fast hasher: the keys are addresses from the node's
/// own tables, and at 10 000 peers SipHash showed in the diagnosis time.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Lookups the report and the FDB and neighbour rules share, built once
/// per diagnosis.
pub(super) struct Index {
    /// FDB: VTEP MAC -> underlay address (entries with a MAC and a dst),
    /// joined with the Snapshot's peers.
    pub fdb: FastMap<[u8; 6], IpAddr>,
    /// Usable neighbour entries: gateway -> MAC.
    neigh: FastMap<IpAddr, [u8; 6]>,
}

impl Index {
    pub(super) fn new(node: &NodeState) -> Self {
        Self {
            fdb: node
                .fdb
                .iter()
                .filter(|e| e.mac != [0; 6])
                .filter_map(|e| e.dst.map(|d| (e.mac, d)))
                .collect(),
            neigh: node
                .neighbours
                .iter()
                .filter(|n| n.state & (NUD_INCOMPLETE | NUD_FAILED) == 0)
                .filter_map(|n| n.mac.map(|m| (n.ip, m)))
                .collect(),
        }
    }
}

fn fdb_entry_missing(r: &Report, routes: &[(Route, Option<[u8; 6]>)], ix: &Index) -> Vec<Finding> {
    // VTEP MAC -> the address its VXLAN arrives from; only built when an
    // entry is missing.
    let mut seen: Option<FastMap<[u8; 6], IpAddr>> = None;
    routes
        .iter()
        .filter_map(|&((dst, len, gw), mac)| {
            let mac = mac?;
            if ix.fdb.contains_key(&mac) {
                return None;
            }
            let m = mac_string(&mac);
            let peer = seen
                .get_or_insert_with(|| {
                    r.peers
                        .iter()
                        .filter_map(|p| Some((p.rx_vtep()?, p.ip()?)))
                        .collect()
                })
                .get(&mac)
                .map(IpAddr::to_string);
            let mut f = finding(FindingCode::FdbEntryMissing, peer.as_deref());
            f.summary = format!(
                "{dst}/{len} is routed to VTEP {m}, but the FDB has no entry for it: \
                 traffic there cannot be encapsulated"
            );
            f.evidence = vec![
                format!("route {dst}/{len} via {gw} dev {}", r.node.overlay),
                format!("neighbour {gw} lladdr {m}"),
                format!("bridge fdb: no entry for {m}"),
            ];
            if let Some(p) = &peer {
                f.evidence.push(format!("VXLAN from {m} arrives from {p}"));
            }
            f.remediation = format!(
                "the CNI agent did not program this peer: restart it, or add the entry by hand \
                 (bridge fdb append {m} dev {} dst <peer node IP> self permanent)",
                r.node.overlay
            );
            Some(f)
        })
        .collect()
}

fn neigh_entry_missing(
    r: &Report,
    node: &NodeState,
    routes: &[(Route, Option<[u8; 6]>)],
) -> Vec<Finding> {
    let missing: Vec<Route> = routes
        .iter()
        .filter(|(_, mac)| mac.is_none())
        .map(|(route, _)| *route)
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    // FDB entries no neighbour points at belong to the peers whose
    // neighbour is gone; with one such entry, that is the peer.
    let used: BTreeSet<[u8; 6]> = node.neighbours.iter().filter_map(|n| n.mac).collect();
    let orphans: Vec<IpAddr> = node
        .fdb
        .iter()
        .filter(|e| e.mac != [0; 6] && !used.contains(&e.mac))
        .filter_map(|e| e.dst)
        .collect();
    missing
        .into_iter()
        .map(|(dst, len, gw)| {
            let peer = (orphans.len() == 1).then(|| orphans[0].to_string());
            let mut f = finding(FindingCode::NeighEntryMissing, peer.as_deref());
            f.summary = format!(
                "{dst}/{len} is routed via {gw}, which has no neighbour entry: the kernel cannot \
                 address the remote VTEP"
            );
            f.evidence = vec![
                format!("route {dst}/{len} via {gw} dev {}", r.node.overlay),
                format!("ip neigh: no usable entry for {gw} on {}", r.node.overlay),
            ];
            if let Some(p) = &peer {
                f.evidence.push(format!("the FDB names VTEP {p}, which no neighbour entry points at"));
            }
            f.remediation = format!(
                "restart the CNI agent, or add it by hand: ip neigh replace {gw} lladdr <peer VTEP MAC> \
                 dev {} nud permanent",
                r.node.overlay
            );
            f
        })
        .collect()
}

fn fdb_entry_stale(r: &Report, ix: &Index) -> Vec<Finding> {
    r.peers
        .iter()
        .filter(|p| p.traffic.rx_encap_packets > 0)
        .filter_map(|p| {
            let mac = p.rx_vtep()?;
            let fdb_ip = *ix.fdb.get(&mac)?;
            if Some(fdb_ip) == p.ip() {
                return None;
            }
            let seen = mac_string(&mac);
            let mut f = finding(FindingCode::FdbEntryStale, Some(&p.peer));
            f.summary = format!(
                "the FDB sends VTEP {seen} to {fdb_ip}, but that VTEP's VXLAN arrives from {}",
                p.peer
            );
            f.evidence = vec![
                format!("bridge fdb: {seen} dst {fdb_ip}"),
                format!("rx from {}: inner source MAC {seen}", p.peer),
            ];
            f.remediation = format!(
                "a node changed address or the entry is left over: restart the CNI agent here, or fix it \
                 (bridge fdb replace {seen} dev {} dst {} self permanent)",
                r.node.overlay, p.peer
            );
            Some(f)
        })
        .collect()
}

fn forwarding_disabled(r: &Report, node: &NodeState) -> Option<Finding> {
    (node.overlay.is_some() && node.forwarding == Some(false)).then(|| {
        let mut f = finding(FindingCode::ForwardingDisabled, None);
        // IPv6 forwards by `all` only (node::forwarding_sysctl).
        let (fam, key, also) = match node.family {
            VtepFamily::Ipv4 => (
                "IPv4",
                format!("net.ipv4.conf.{}.forwarding", r.node.overlay),
                " (and net.ipv4.ip_forward=1)",
            ),
            VtepFamily::Ipv6 => ("IPv6", "net.ipv6.conf.all.forwarding".to_owned(), ""),
        };
        f.summary = format!(
            "{fam} forwarding is off on {}: decapsulated traffic cannot reach the pods",
            r.node.overlay
        );
        f.evidence = vec![format!("{key} = 0")];
        let decap = sum(r, |p| p.traffic.rx_decap_packets);
        f.evidence.push(format!("rx_decap_packets={decap}"));
        f.remediation = format!(
            "sysctl -w {}=1{also}, and find what turned it off (a sysctl file, a hardening profile)",
            key.replace(&r.node.overlay, &r.node.overlay.replace('.', "/"))
        );
        f
    })
}

fn mtu_mismatch(r: &Report, node: &NodeState) -> Option<Finding> {
    let o = node.overlay.as_ref()?.mtu?;
    let u = node.uplink.as_ref()?.mtu?;
    let overhead = match node.family {
        VtepFamily::Ipv4 => VXLAN_OVERHEAD,
        VtepFamily::Ipv6 => VXLAN6_OVERHEAD,
    };
    (o + overhead > u).then(|| {
        let mut f = finding(FindingCode::MtuMismatch, None);
        f.summary = format!(
            "{} MTU {o} + {overhead} bytes of VXLAN exceeds the uplink's MTU {u}: large packets are lost",
            r.node.overlay
        );
        f.evidence = vec![format!(
            "{} mtu {o}, {} mtu {u}",
            r.node.overlay,
            r.node.uplink.as_deref().unwrap_or("uplink")
        )];
        f.remediation = format!(
            "set the overlay MTU to {} (uplink MTU - {overhead}), or raise the uplink MTU; \
             Flannel derives it from the uplink at start, so restart the CNI agent after an uplink change",
            u.saturating_sub(overhead)
        );
        f
    })
}

/// `ex`: what DECAP_FILTERED and VXLAN_CHECKSUM_ERRORS name; `otherhost`:
/// OTHERHOST drops (rx) that `VTEP_MAC_STALE` explains.
fn vxlan_drops(r: &Report, ex: &decap::Explained, otherhost: u64) -> Option<Finding> {
    // A peer whose VXLAN decapsulates: the drops of its odd packets for
    // another VNI are those packets, which PEER_ODD_VXLAN reports.
    let explained: u64 = r
        .peers
        .iter()
        .filter(|p| decapsulates(p))
        .map(|p| {
            p.drops
                .get(VNI_NOT_FOUND)
                .map_or(0, |n| (*n).min(p.rx_other_vni))
        })
        .sum();
    let counts: Vec<(&str, &str, u64)> = r
        .drops
        .iter()
        .map(|d| {
            let n = if d.reason == VNI_NOT_FOUND && d.direction == "rx" {
                d.packets.saturating_sub(explained)
            } else if d.reason == vtep_mac_stale::OTHERHOST && d.direction == "rx" {
                d.packets.saturating_sub(otherhost)
            } else {
                d.packets
            };
            // What DECAP_FILTERED and VXLAN_CHECKSUM_ERRORS name is theirs.
            let n = n.saturating_sub(ex.of_reason(&d.reason, d.direction));
            (d.reason.as_str(), d.direction, n)
        })
        .filter(|(_, _, n)| *n > 0)
        .collect();
    let total: u64 = counts.iter().map(|(_, _, n)| n).sum();
    (total > 0).then(|| {
        let mut f = finding(FindingCode::VxlanDrops, None);
        f.summary = format!("the kernel dropped {total} VXLAN-related packets in the window");
        f.evidence = counts
            .iter()
            .map(|(reason, dir, n)| format!("{reason} {dir} {n}"))
            .collect();
        for p in r.peers.iter().filter(|p| !p.drops.is_empty()) {
            let list: Vec<String> = p
                .drops
                .iter()
                .map(|(k, v)| (k, v.saturating_sub(ex.of_peer(p, k))))
                .filter(|(_, v)| *v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !list.is_empty() {
                f.evidence.push(format!("{}: {}", p.peer, list.join(" ")));
            }
        }
        f.remediation = "each reason names the kernel's decision: NO_SOCKET (no VXLAN socket), \
             NETFILTER_DROP (a firewall rule), VXLAN_VNI_NOT_FOUND (wrong VNI), VXLAN_NO_REMOTE (no FDB \
             entry); see the other findings"
            .into();
        f
    })
}

/// The kernel's drop reason for VXLAN of a VNI no device serves.
const VNI_NOT_FOUND: &str = "VXLAN_VNI_NOT_FOUND";

fn drops_unavailable(why: Option<&str>) -> Option<Finding> {
    why.map(|why| {
        let mut f = finding(FindingCode::DropReasonsUnavailable, None);
        f.summary = "kernel drop reasons are not counted on this node".into();
        f.evidence = vec![why.to_string()];
        f.remediation =
            "needs a kernel with BTF and the skb:kfree_skb tracepoint (5.17+ for reasons)".into();
        f
    })
}

/// VXLAN arriving for the other well-known port than ours: one side was set
/// up with another `dstport`. When every sending peer disagrees with us,
/// this node is the odd one out.
fn vxlan_port_mismatch(r: &Report) -> Vec<Finding> {
    let ours = r.node.vxlan_port;
    let senders: Vec<&PeerReport> = r
        .peers
        .iter()
        .filter(|p| p.traffic.rx_encap_packets + p.rx_other_port > 0)
        .collect();
    let foreign: Vec<&PeerReport> = senders
        .iter()
        .copied()
        .filter(|p| p.rx_other_port > 0 && !decapsulates(p))
        .collect();
    if foreign.is_empty() {
        return Vec::new();
    }
    let theirs = |p: &PeerReport| p.rx_last_other_port.map_or("?".into(), |v| v.to_string());
    if foreign.len() == senders.len() && senders.len() > 1 {
        let ports: BTreeSet<String> = foreign.iter().map(|p| theirs(p)).collect();
        let mut f = finding(FindingCode::VxlanPortMismatch, None);
        f.summary = format!(
            "every peer sends VXLAN to UDP {}, but {} on this node uses UDP {ours}",
            ports.into_iter().collect::<Vec<_>>().join("/"),
            r.node.overlay
        );
        f.evidence = foreign
            .iter()
            .map(|p| {
                format!(
                    "from {}: {} packets to UDP {}",
                    p.peer,
                    p.rx_other_port,
                    theirs(p)
                )
            })
            .collect();
        f.remediation = format!(
            "{} was created with the wrong dstport: set the CNI's VXLAN port to the cluster's and \
             restart it so the device is recreated",
            r.node.overlay
        );
        return vec![f];
    }
    foreign
        .into_iter()
        .map(|p| {
            let mut f = finding(FindingCode::VxlanPortMismatch, Some(&p.peer));
            f.summary = format!(
                "{} sends VXLAN to UDP {}, while this node uses UDP {ours}",
                p.peer,
                theirs(p)
            );
            f.evidence = vec![format!("rx_other_port={} (UDP {})", p.rx_other_port, theirs(p))];
            f.remediation = format!(
                "the overlay device on {} uses another dstport: recreate it there with the cluster's port",
                p.peer
            );
            f
        })
        .collect()
}
