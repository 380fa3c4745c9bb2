//! The underlay path MTU (`UNDERLAY_MTU_BLACKHOLE`) as one node sees it:
//! routers on the way to a peer answer our VXLAN with ICMP "fragmentation
//! needed". `mesh` decides the silent case (large packets lost, no ICMP)
//! in `fleet::pmtu`; both give the one remedy below.
use flannel_probe_common::{abi::LARGE_OUTER_LEN, parse::VXLAN_OVERHEAD};

use crate::report::{Finding, FindingCode, Report};

/// What to set when the path to a peer carries at most `path_mtu` bytes of
/// outer IPv4 (unknown: the size classes' boundary, which small packets
/// pass).
///
/// Flannel takes the underlay MTU from its interface and subtracts the 50
/// bytes of VXLAN; since 2023 (flannel-io/flannel#1736) the vxlan backend's `MTU` in
/// net-conf.json overrides the interface's (flannel still subtracts).
pub(crate) fn remedy(path_mtu: Option<u64>, overlay: &str) -> String {
    let (mtu, how) = match path_mtu {
        Some(m) => (m, "the MTU the router named"),
        None => (
            u64::from(LARGE_OUTER_LEN),
            "the size small packets pass; measure it with `ping -M do -s SIZE PEER` on the underlay",
        ),
    };
    let overhead = VXLAN_OVERHEAD as u64;
    format!(
        "the underlay path carries at most {mtu} bytes ({how}): set {overlay}'s MTU to {} \
         (path MTU - {overhead}) through flannel's net-conf.json backend setting \
         `\"Backend\": {{\"Type\": \"vxlan\", \"MTU\": {mtu}}}` (flannel releases since 2023 read it and subtract the {overhead} \
         bytes themselves; k3s: `--flannel-conf` with that file, or `--flannel-iface` naming the narrow interface), \
         then restart the CNI agent and the pods; or raise the MTU of the underlay hop that drops them",
        mtu.saturating_sub(overhead)
    )
}

/// The sender's side: a peer's path answers with "fragmentation needed".
pub(super) fn frag_needed(r: &Report) -> Vec<Finding> {
    r.peers
        .iter()
        .filter(|p| p.traffic.icmp_frag_needed > 0)
        .map(|p| {
            let t = &p.traffic;
            let named = p
                .icmp_frag_needed_mtu
                .map(|m| format!(", next-hop MTU {m}"))
                .unwrap_or_default();
            let code = FindingCode::UnderlayMtuBlackhole;
            Finding {
                severity: code.severity().unwrap_or(crate::report::Severity::Warning),
                code,
                peer: Some(p.peer.clone()),
                summary: format!(
                    "the underlay path to {} is narrower than our VXLAN: routers answer {} packets with \
                     ICMP fragmentation needed{named}",
                    p.peer, t.icmp_frag_needed
                ),
                evidence: vec![format!(
                    "icmp_frag_needed={} tx_encap_packets={} tx_encap_large={} (outer IPv4 > {LARGE_OUTER_LEN} bytes) \
                     tx_encap_max_len={}",
                    t.icmp_frag_needed, t.tx_encap_packets, t.tx_encap_large, t.tx_encap_max_len
                )],
                remediation: remedy(p.icmp_frag_needed_mtu.map(u64::from), &r.node.overlay),
                affected_peers: Vec::new(),
                overlay: None,
            }
        })
        .collect()
}
