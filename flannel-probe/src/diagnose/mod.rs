//! From what was counted and what the node looks like to a [`Report`]: one
//! pure function, so every rule is unit-tested with hand-built inputs.
mod decap;
mod identity;
pub(crate) mod pmtu;
mod rules;
mod vtep_mac_stale;

use std::{collections::BTreeMap, net::IpAddr};

use flannel_probe_common::abi::DIR_RX;

use crate::{
    datapath::Snapshot,
    node::{NodeState, VtepFamily},
    report::{
        DropReport, Finding, NodeInfo, OverlayReport, PeerReport, Report, SCHEMA, Traffic,
        UnattributedInner, addr_string, mac_string,
    },
};

/// Everything one diagnosis looks at.
pub struct Inputs<'a> {
    /// Counters over the window (a [`Snapshot::since`] difference).
    pub window: &'a Snapshot,
    pub window_secs: f64,
    /// The node as discovered at the end of the window.
    pub node: &'a NodeState,
    /// Names a kernel drop reason number.
    pub drop_reason: &'a dyn Fn(u32) -> String,
    /// Device -> attach mode, for the report header.
    pub attached: BTreeMap<String, String>,
    /// Why kernel drop reasons are not counted, when they are not.
    pub drops_unavailable: Option<&'a str>,
    /// Self-health: attachments restored so far, and programs whose
    /// attachment is gone and not restored yet.
    pub attach_gaps: u64,
    pub detached: Vec<String>,
}

/// Builds the report: per-peer figures, drops, findings (worst first).
pub fn diagnose(inp: &Inputs<'_>) -> Report {
    if inp.node.other_overlays.is_empty() {
        diagnose_one(inp)
    } else {
        diagnose_overlays(inp)
    }
}

/// The report of one overlay (`inp.node`'s own, not its others').
fn diagnose_one(inp: &Inputs<'_>) -> Report {
    let node = inp.node;
    // Indexes built once: everything below is linear in peers, MACs and
    // drops (10 000 peers must diagnose in milliseconds).
    let ix = rules::Index::new(node);
    let mac_to_peer = &ix.fdb;
    let local = node.local_vtep;
    // The FDB by address, walked alongside the sorted peers below.
    let mut peer_macs: Vec<(IpAddr, [u8; 6])> =
        mac_to_peer.iter().map(|(mac, ip)| (*ip, *mac)).collect();
    peer_macs.sort_unstable();
    let mut peer_drops: BTreeMap<IpAddr, BTreeMap<String, u64>> = BTreeMap::new();
    for (w, n) in inp.window.drops.iter().filter(|(_, n)| **n > 0) {
        let by_mac = w.mac.and_then(|m| mac_to_peer.get(&m)).copied();
        if let Some(ip) = w.peer.or(by_mac) {
            *peer_drops
                .entry(ip)
                .or_default()
                .entry((inp.drop_reason)(w.reason))
                .or_default() += n;
        }
    }

    // A peer is an address with traffic or an FDB entry; both lists are
    // sorted, so they merge in one pass.
    let mut ips: Vec<IpAddr> = Vec::with_capacity(inp.window.peers.len().max(peer_macs.len()));
    let mut counted = inp.window.peers.keys().copied().peekable();
    let mut programmed = peer_macs.iter().map(|(ip, _)| *ip).peekable();
    loop {
        let next = match (counted.peek(), programmed.peek()) {
            (Some(a), Some(b)) if a <= b => counted.next(),
            (_, Some(_)) => programmed.next(),
            (Some(_), None) => counted.next(),
            (None, None) => break,
        };
        if let Some(ip) = next.filter(|ip| Some(*ip) != local && ips.last() != Some(ip)) {
            ips.push(ip);
        }
    }

    let mut macs = peer_macs.iter().peekable();
    let mut outers = inp.window.peers.iter().peekable();
    let peers: Vec<PeerReport> = ips
        .into_iter()
        .map(|ip| {
            // The window's peers are sorted too: walked, not looked up.
            while outers.next_if(|(a, _)| **a < ip).is_some() {}
            let outer = outers
                .next_if(|(a, _)| **a == ip)
                .map(|(_, o)| *o)
                .unwrap_or_default();
            let rx_vtep = (outer.rx.last_inner_src != [0; 6]).then_some(outer.rx.last_inner_src);
            let mut p = PeerReport {
                peer: addr_string(ip),
                traffic: Traffic {
                    tx_encap_packets: outer.tx.packets,
                    tx_encap_bytes: outer.tx.bytes,
                    rx_encap_packets: outer.rx.packets,
                    rx_encap_bytes: outer.rx.bytes,
                    icmp_port_unreachable: outer.rx.icmp_port_unreachable,
                    tx_encap_large: outer.tx.large,
                    rx_encap_large: outer.rx.large,
                    tx_encap_max_len: u64::from(outer.tx.max_outer_len),
                    rx_encap_max_len: u64::from(outer.rx.max_outer_len),
                    icmp_frag_needed: outer.rx.frag_needed,
                    ..Traffic::default()
                },
                icmp_frag_needed_mtu: (outer.rx.frag_needed > 0 && outer.rx.last_frag_mtu != 0)
                    .then_some(outer.rx.last_frag_mtu),
                rx_malformed: outer.rx.malformed,
                rx_other_vni: outer.rx.other_vni,
                rx_last_other_vni: (outer.rx.other_vni > 0).then_some(outer.rx.last_other_vni),
                rx_other_port: outer.rx.other_port,
                rx_last_other_port: (outer.rx.other_port > 0).then_some(outer.rx.last_other_port),
                rx_vtep_mac: rx_vtep.as_ref().map(mac_string),
                addr: Some(ip),
                rx_vtep,
                rx_stale_dst: outer.rx.stale_dst,
                rx_last_stale_dst_mac: (outer.rx.stale_dst > 0)
                    .then(|| mac_string(&outer.rx.last_stale_dst)),
                ..Default::default()
            };
            // Both are sorted by address: skip what belongs to the local
            // VTEP, take this peer's MACs.
            while macs.next_if(|(a, _)| *a < ip).is_some() {}
            while let Some((_, mac)) = macs.next_if(|(a, _)| *a == ip) {
                p.in_fdb = true;
                p.vtep_mac.get_or_insert_with(|| mac_string(mac));
                if let Some(i) = inp.window.inner.get(mac) {
                    p.traffic.rx_decap_packets += i.rx.packets;
                    p.traffic.rx_decap_bytes += i.rx.bytes;
                    p.traffic.tx_inner_packets += i.tx.packets;
                    p.traffic.tx_inner_bytes += i.tx.bytes;
                }
            }
            p.drops = peer_drops.remove(&ip).unwrap_or_default();
            p
        })
        .collect();
    let (peers, mut unknown_sources, not_peers) =
        identity::split(&identity::Identity::new(node), peers, inp.window.not_ours);

    let mut drops: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for (w, n) in &inp.window.drops {
        // A non-peer's packets the kernel dropped are its business, not a
        // fault of this node (a VNI nobody serves, say).
        if w.peer.is_some_and(|ip| not_peers.contains(&ip)) {
            unknown_sources.rx_dropped += n;
            continue;
        }
        if *n > 0 {
            let d = if w.dir == DIR_RX { "rx" } else { "tx" };
            *drops.entry(((inp.drop_reason)(w.reason), d)).or_default() += n;
        }
    }
    let drops = drop_reports(drops);

    let unattributed_inner = inp
        .window
        .inner
        .iter()
        .filter(|(mac, t)| {
            !mac_to_peer.contains_key(*mac) && (t.rx.packets > 0 || t.tx.packets > 0)
        })
        .map(|(mac, t)| UnattributedInner {
            mac: mac_string(mac),
            rx_packets: t.rx.packets,
            tx_packets: t.tx.packets,
        })
        .collect();

    let mut report = Report {
        schema: SCHEMA,
        node: node_info(node, inp),
        window_secs: inp.window_secs,
        peers,
        drops,
        findings: Vec::new(),
        unattributed_inner,
        overflow: inp.window.overflow,
        overlay_history: Vec::new(),
        unknown_sources,
    };
    let mut findings = rules::all(&report, inp, &ix);
    findings.sort_by(|a, b| a.severity.cmp(&b.severity).then(a.code.cmp(&b.code)));
    report.findings = findings;
    report
}

/// Several overlays (dual-stack: `flannel.1` and `flannel-v6.1`): each is
/// diagnosed alone over its share of the window, the peers of its family
/// and the drops and inner frames of its VTEPs, so the incident on one
/// family is found with the other healthy; the reports are then joined.
/// What belongs to no overlay in particular (traffic nobody sent to a
/// VTEP, map overflow, drops naming neither address nor MAC, attachment
/// health) is the first overlay's.
fn diagnose_overlays(inp: &Inputs<'_>) -> Report {
    let node = inp.node;
    let all: Vec<&NodeState> = node
        .overlays()
        .filter(|o| !ipv6_only_leftover(o, node, inp.window))
        .collect();
    if all.len() == 1 {
        let mut r = diagnose_one(&Inputs {
            node: all[0],
            attached: inp.attached.clone(),
            detached: inp.detached.clone(),
            ..*inp
        });
        // An IPv6-only node: its one overlay is the report's, and the
        // IPv4 one looked for stays listed (missing) in `overlays`.
        r.node.overlays = node.overlays().map(OverlayReport::from).collect();
        for f in &mut r.findings {
            name_overlay(f, &all[0].overlay_name);
        }
        return r;
    }
    // Each overlay's FDB MACs, once: the window's MACs and drops are
    // sorted to their overlay against them.
    let fdb_macs: Vec<FdbMacs> = all
        .iter()
        .map(|o| o.fdb.iter().map(|e| e.mac).collect())
        .collect();
    let mut reports: Vec<Report> = all
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let window = overlay_window(inp.window, o, &fdb_macs, i);
            let first = i == 0;
            let mut r = diagnose_one(&Inputs {
                window: &window,
                window_secs: inp.window_secs,
                node: o,
                drop_reason: inp.drop_reason,
                attached: inp.attached.clone(),
                drops_unavailable: inp.drops_unavailable.filter(|_| first),
                attach_gaps: if first { inp.attach_gaps } else { 0 },
                detached: if first {
                    inp.detached.clone()
                } else {
                    Vec::new()
                },
            });
            for f in &mut r.findings {
                name_overlay(f, &o.overlay_name);
            }
            r
        })
        .collect();
    let mut report = reports.remove(0);
    report.node = node_info(node, inp);
    let mut drops: BTreeMap<(String, &'static str), u64> = report
        .drops
        .drain(..)
        .map(|d| ((d.reason, d.direction), d.packets))
        .collect();
    for r in reports {
        report.peers.extend(r.peers);
        report.findings.extend(r.findings);
        report.unattributed_inner.extend(r.unattributed_inner);
        for d in r.drops {
            *drops.entry((d.reason, d.direction)).or_default() += d.packets;
        }
        let (u, o) = (&mut report.unknown_sources, r.unknown_sources);
        u.sources.extend(o.sources);
        u.other_sources += o.other_sources;
        u.other_packets += o.other_packets;
        u.rx_dropped += o.rx_dropped;
    }
    report.peers.sort_by_key(PeerReport::ip);
    report.drops = drop_reports(drops);
    report
        .findings
        .sort_by(|a, b| a.severity.cmp(&b.severity).then(a.code.cmp(&b.code)));
    report
}

/// Drops by (reason, direction), most first.
fn drop_reports(drops: BTreeMap<(String, &'static str), u64>) -> Vec<DropReport> {
    let mut v: Vec<DropReport> = drops
        .into_iter()
        .map(|((reason, direction), packets)| DropReport {
            reason,
            direction,
            packets,
        })
        .collect();
    v.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.reason.cmp(&b.reason)));
    v
}

/// `o` is the IPv4 overlay looked for by default on a node that runs only
/// the IPv6 one: missing, an IPv6 overlay up, and no IPv4 VXLAN arriving.
/// On a dual-stack node whose `flannel.1` is missing the peers' IPv4 VXLAN
/// still arrives (counted on the uplink), and it is the incident.
fn ipv6_only_leftover(o: &NodeState, node: &NodeState, w: &Snapshot) -> bool {
    o.family == VtepFamily::Ipv4
        && o.overlay.is_none()
        && node
            .overlays()
            .any(|n| n.family == VtepFamily::Ipv6 && n.overlay.is_some())
        && !w
            .peers
            .iter()
            .any(|(ip, v)| ip.is_ipv4() && v.rx.packets > 0)
}

/// The VTEP MACs of one overlay's FDB.
type FdbMacs = std::collections::HashSet<[u8; 6], foldhash::fast::RandomState>;

/// The part of `w` that overlay `i` (`o`, whose FDB MACs are
/// `fdb_macs[i]`) is about: peers of its family,
/// drops by address of its family or by a MAC of its FDB, inner frames of
/// its FDB's MACs; the first overlay also gets what no overlay's FDB names
/// and the window-wide counts.
fn overlay_window(w: &Snapshot, o: &NodeState, fdb_macs: &[FdbMacs], i: usize) -> Snapshot {
    let first = i == 0;
    let mac_is_ours = |mac: &[u8; 6]| {
        fdb_macs[i].contains(mac) || (first && !fdb_macs.iter().any(|m| m.contains(mac)))
    };
    Snapshot {
        peers: w
            .peers
            .iter()
            .filter(|(ip, _)| o.family.holds(**ip))
            .map(|(ip, v)| (*ip, *v))
            .collect(),
        inner: w
            .inner
            .iter()
            .filter(|(mac, _)| mac_is_ours(mac))
            .map(|(mac, v)| (*mac, *v))
            .collect(),
        drops: w
            .drops
            .iter()
            .filter(|(d, _)| match (d.peer, d.mac) {
                (Some(ip), _) => o.family.holds(ip),
                (None, Some(mac)) => mac_is_ours(&mac),
                (None, None) => first,
            })
            .map(|(d, n)| (*d, *n))
            .collect(),
        overflow: if first {
            w.overflow
        } else {
            Default::default()
        },
        not_ours: if first {
            w.not_ours
        } else {
            Default::default()
        },
    }
}

/// With several overlays, a finding says which one it is about: the field,
/// and the summary when it does not name the device already.
fn name_overlay(f: &mut Finding, overlay: &str) {
    if !f.summary.contains(overlay) {
        f.summary = format!("{} (on {overlay})", f.summary);
    }
    f.overlay = Some(overlay.to_owned());
}

/// The report header of one overlay (`node`, and `node.overlays[]` with
/// every watched overlay).
fn node_info(node: &NodeState, inp: &Inputs<'_>) -> NodeInfo {
    NodeInfo {
        hostname: node.hostname.clone(),
        overlay: node.overlay_name.clone(),
        overlay_state: node.overlay_state(),
        uplink: node.uplink.as_ref().map(|u| u.name.clone()),
        uplink_source: node.uplink_source,
        local_vtep: node.local_vtep.map(|a| a.to_string()),
        vxlan_port: node.vxlan_port,
        vni: node.vni,
        port_bound: node.port_bound,
        kernel: node.kernel.clone(),
        attached: inp.attached.clone(),
        attach_gaps: inp.attach_gaps,
        detached: inp.detached.clone(),
        overlay_mac: node
            .overlay
            .as_ref()
            .and_then(|o| o.mac)
            .as_ref()
            .map(mac_string),
        overlays: node.overlays().map(OverlayReport::from).collect(),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_vtep_mac;

#[cfg(test)]
mod tests_overlays;
