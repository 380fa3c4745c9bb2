//! The human report: verdict first, then findings by severity with evidence
//! and remediation, then the node, the per-peer table and the drops.
use std::fmt::Write as _;

use super::{plural, si, write_finding};
use crate::report::{Report, Severity};

pub(crate) fn report(r: &Report) -> String {
    let mut s = String::new();
    let crit = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .count();
    let warn = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    let verdict = match (crit, warn) {
        (0, 0) => "HEALTHY".to_string(),
        (0, w) => format!("WARNING: {w} warning{}", plural(w)),
        (c, w) => format!("CRITICAL: {c} critical, {w} warning{}", plural(w)),
    };
    let _ = writeln!(
        s,
        "flannel-probe on {}: {verdict} ({:.1}s window)",
        r.node.hostname, r.window_secs
    );
    for f in &r.findings {
        let _ = writeln!(s);
        let peer = f
            .peer
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        write_finding(
            &mut s,
            f.severity,
            &f.code,
            &peer,
            &f.summary,
            &f.evidence,
            &f.remediation,
        );
    }
    let _ = writeln!(s);
    s.push_str(&node_line(r));
    let _ = writeln!(s);
    s.push_str(&peer_table(r, None));
    let _ = writeln!(s);
    if r.drops.is_empty() {
        let _ = writeln!(s, "Drops: none of VXLAN traffic in the window");
    } else {
        let _ = writeln!(s, "Drops of VXLAN traffic:");
        let _ = writeln!(s, "  {:<32} {:<4} {:>10}", "REASON", "DIR", "PACKETS");
        for d in &r.drops {
            let _ = writeln!(s, "  {:<32} {:<4} {:>10}", d.reason, d.direction, d.packets);
        }
    }
    // Multicast and broadcast destinations (the overlay's own IPv6
    // neighbour discovery to 33:33:..., ARP broadcast) never have an FDB
    // entry: listing them reads as a fault. JSON keeps them.
    for u in r
        .unattributed_inner
        .iter()
        .filter(|u| !is_group_mac(&u.mac))
    {
        let _ = writeln!(
            s,
            "Inner traffic of {} (no FDB entry): rx {} tx {}",
            u.mac, u.rx_packets, u.tx_packets
        );
    }
    s
}

/// The group bit (I/G, the first octet's lowest bit) marks multicast and
/// broadcast MACs.
fn is_group_mac(mac: &str) -> bool {
    mac.get(..2)
        .and_then(|o| u8::from_str_radix(o, 16).ok())
        .is_some_and(|o| o & 1 == 1)
}

/// One line about the node: device, state, port, VNI, uplink.
pub(crate) fn node_line(r: &Report) -> String {
    let n = &r.node;
    let mut s = format!(
        "Node {}: overlay {} {}, VNI {}, UDP {} {}, uplink {}, local VTEP {}, kernel {}\n",
        n.hostname,
        n.overlay,
        n.overlay_state.as_str(),
        n.vni.map_or("-".into(), |v| v.to_string()),
        n.vxlan_port,
        if n.port_bound { "bound" } else { "NOT bound" },
        n.uplink.as_deref().unwrap_or("-"),
        n.local_vtep.as_deref().unwrap_or("-"),
        n.kernel,
    );
    // Several overlays (dual-stack): one line each; the peer table below
    // is the first one's.
    if n.overlays.len() > 1 {
        for o in &n.overlays {
            let _ = writeln!(
                s,
                "  overlay {} ({}) {}, VNI {}, UDP {} {}, uplink {}, local VTEP {}, FDB {} entr{}",
                o.name,
                o.family.as_str(),
                o.state.as_str(),
                o.vni.map_or("-".into(), |v| v.to_string()),
                o.vxlan_port,
                if o.port_bound { "bound" } else { "NOT bound" },
                o.uplink.as_deref().unwrap_or("-"),
                o.local_vtep.as_deref().unwrap_or("-"),
                o.fdb_entries,
                if o.fdb_entries == 1 { "y" } else { "ies" },
            );
        }
    }
    s
}

/// The per-peer table. With `per_sec`, packet figures become rates.
pub(crate) fn peer_table(r: &Report, per_sec: Option<f64>) -> String {
    let mut s = String::new();
    let unit = if per_sec.is_some() { "/s" } else { "" };
    let _ = writeln!(
        s,
        "{:<15} {:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6}",
        "PEER",
        "VTEP MAC",
        format!("TX PKT{unit}"),
        format!("TX B{unit}"),
        format!("RX PKT{unit}"),
        format!("RX B{unit}"),
        format!("DECAP{unit}"),
        format!("INNER TX"),
        "UNREACH",
        "DROPS"
    );
    let scale = |v: u64| match per_sec {
        Some(secs) if secs > 0.0 => si(v as f64 / secs),
        _ => si(v as f64),
    };
    if r.peers.is_empty() {
        let _ = writeln!(s, "(no peers: no VXLAN seen and no FDB entries)");
    }
    for p in &r.peers {
        let drops: u64 = p.drops.values().sum();
        let _ = writeln!(
            s,
            "{:<15} {:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6}",
            p.peer,
            p.vtep_mac.as_deref().unwrap_or("-"),
            scale(p.traffic.tx_encap_packets),
            scale(p.traffic.tx_encap_bytes),
            scale(p.traffic.rx_encap_packets),
            scale(p.traffic.rx_encap_bytes),
            scale(p.traffic.rx_decap_packets),
            scale(p.traffic.tx_inner_packets),
            p.traffic.icmp_port_unreachable,
            drops
        );
    }
    s
}

/// One interval of `watch --plain`: a time stamp, the node line, the peer
/// table and the findings that need attention, one per line.
pub(crate) fn watch_plain(report: &Report, now: std::time::SystemTime) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "--- {} ---\n",
        humantime::format_rfc3339_seconds(now)
    ));
    out.push_str(&node_line(report));
    out.push_str(&peer_table(report, Some(report.window_secs)));
    for f in report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
    {
        let peer = f
            .peer
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {}{peer}: {}\n",
            f.severity.as_str().to_uppercase(),
            f.code,
            f.summary
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::node::{OverlayState, VtepFamily};
    use crate::report::{NodeInfo, OverlayReport, Report};

    fn overlay(name: &str, family: VtepFamily, state: OverlayState, vtep: &str) -> OverlayReport {
        let up = state == OverlayState::Up;
        OverlayReport {
            name: name.into(),
            family,
            state,
            vni: Some(1),
            vxlan_port: 8472,
            port_bound: up,
            local_vtep: Some(vtep.into()),
            uplink: Some("eth0".into()),
            uplink_source: None,
            overlay_mac: None,
            mtu: None,
            forwarding: Some(true),
            fdb_entries: if up { 2 } else { 0 },
            neighbours: 0,
            routes: 0,
        }
    }

    fn report(overlays: Vec<OverlayReport>) -> Report {
        let mut node = NodeInfo::gladius();
        node.overlays = overlays;
        Report {
            schema: 1,
            node,
            window_secs: 1.0,
            peers: Vec::new(),
            drops: Vec::new(),
            findings: Vec::new(),
            unattributed_inner: Vec::new(),
            overflow: Default::default(),
            overlay_history: Vec::new(),
            unknown_sources: Default::default(),
        }
    }

    #[test]
    fn each_overlay_gets_a_line_when_there_are_several() {
        let r = report(vec![
            overlay(
                "flannel.1",
                VtepFamily::Ipv4,
                OverlayState::Up,
                "192.0.2.11",
            ),
            overlay(
                "flannel-v6.1",
                VtepFamily::Ipv6,
                OverlayState::Missing,
                "fd00:192:0:2::11",
            ),
        ]);
        let text = super::report(&r);
        assert!(
            text.contains(
                "  overlay flannel.1 (ipv4) up, VNI 1, UDP 8472 bound, uplink eth0, local VTEP 192.0.2.11, FDB 2 entries\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  overlay flannel-v6.1 (ipv6) missing, VNI 1, UDP 8472 NOT bound, uplink eth0, local VTEP fd00:192:0:2::11, FDB 0 entries\n"
            ),
            "{text}"
        );
        // One overlay: the node line only, as before.
        let one = super::report(&report(vec![overlay(
            "flannel.1",
            VtepFamily::Ipv4,
            OverlayState::Up,
            "192.0.2.11",
        )]));
        assert!(!one.contains("  overlay "), "{one}");
        assert!(one.contains("Node gladius: overlay flannel.1 up"), "{one}");
    }
}
