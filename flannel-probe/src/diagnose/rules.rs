//! One function per finding code. Each reads the per-peer figures already in
//! the report and the node state, and says nothing unless its condition holds.
use crate::{
    node::OverlayState,
    report::{Finding, PeerReport, Report, Severity},
};

const RESTART_CNI: &str = "restart the CNI agent on this node (k3s: systemctl restart k3s; \
     kube-flannel: delete this node's kube-flannel pod) and check its log for the VXLAN backend";

/// Every rule, in no particular order (the caller sorts).
pub(super) fn all(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(overlay_device_missing(r));
    out.extend(overlay_device_down(r));
    out.extend(vxlan_port_not_bound(r));
    out.extend(vxlan_not_decapsulated(r));
    out.extend(peer_port_unreachable(r));
    out.extend(no_vxlan_traffic(r));
    out.extend(map_overflow(r));
    out
}

fn finding(code: &'static str, severity: Severity, peer: Option<&str>) -> Finding {
    Finding {
        code,
        severity,
        peer: peer.map(str::to_string),
        summary: String::new(),
        evidence: Vec::new(),
        remediation: String::new(),
        affected_peers: Vec::new(),
    }
}

fn sum(r: &Report, f: impl Fn(&PeerReport) -> u64) -> u64 {
    r.peers.iter().map(f).sum()
}

/// Inbound VXLAN this node's device should take: well-formed, for our VNI
/// (or any VNI when we do not know ours).
fn rx_acceptable(p: &PeerReport) -> u64 {
    p.rx_encap_packets
        .saturating_sub(p.rx_malformed)
        .saturating_sub(p.rx_other_vni)
}

fn overlay_device_missing(r: &Report) -> Option<Finding> {
    (r.node.overlay_state == OverlayState::Missing).then(|| {
        let rx = sum(r, |p| p.rx_encap_packets);
        let mut f = finding("OVERLAY_DEVICE_MISSING", Severity::Critical, None);
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
        let mut f = finding("OVERLAY_DEVICE_DOWN", Severity::Critical, None);
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
        let mut f = finding("VXLAN_PORT_NOT_BOUND", Severity::Critical, None);
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
fn vxlan_not_decapsulated(r: &Report) -> Option<Finding> {
    let arriving: Vec<&PeerReport> = r.peers.iter().filter(|p| rx_acceptable(p) > 0).collect();
    let rx: u64 = arriving.iter().map(|p| rx_acceptable(p)).sum();
    let decap = sum(r, |p| p.rx_decap_packets)
        + r.unattributed_inner
            .iter()
            .map(|u| u.rx_packets)
            .sum::<u64>();
    if rx == 0 || decap > 0 {
        return None;
    }
    let mut f = finding("VXLAN_NOT_DECAPSULATED", Severity::Critical, None);
    f.affected_peers = arriving.iter().map(|p| p.peer.clone()).collect();
    let n = arriving.len();
    f.summary = format!(
        "inbound VXLAN from {n} peer{}, none decapsulated",
        if n == 1 { "" } else { "s" }
    );
    f.evidence = vec![format!("rx_encap_packets={rx} rx_decap_packets=0")];
    for p in &arriving {
        f.evidence
            .push(format!("from {}: {} packets", p.peer, rx_acceptable(p)));
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
        .filter(|p| p.icmp_port_unreachable > 0)
        .map(|p| {
            let mut f = finding("PEER_PORT_UNREACHABLE", Severity::Critical, Some(&p.peer));
            f.summary = format!(
                "{} answers our VXLAN with ICMP port unreachable: it cannot decapsulate",
                p.peer
            );
            f.evidence = vec![format!(
                "icmp_port_unreachable={} tx_encap_packets={} rx_encap_packets={}",
                p.icmp_port_unreachable, p.tx_encap_packets, p.rx_encap_packets
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
    let total = sum(r, |p| p.rx_encap_packets + p.tx_encap_packets);
    (total == 0).then(|| {
        let mut f = finding("NO_VXLAN_TRAFFIC", Severity::Info, None);
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
    (o.peers + o.macs + o.drops > 0).then(|| {
        let mut f = finding("MAP_OVERFLOW", Severity::Info, None);
        f.summary = "more peers than the datapath's map slots: some were not counted".into();
        f.evidence = vec![format!(
            "new keys not stored: peers={} macs={} drops={}",
            o.peers, o.macs, o.drops
        )];
        f.remediation = "raise --max-peers".into();
        f
    })
}
