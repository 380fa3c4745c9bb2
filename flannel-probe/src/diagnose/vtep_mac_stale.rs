//! `VTEP_MAC_STALE`: peers address decapsulated frames to a VTEP MAC this
//! node's overlay no longer has (its MAC changed, flannel-io/flannel#1795,
//! or the device was recreated before the peers resynced).
use super::rules::{FastMap, finding, rx_acceptable};
use crate::report::{Finding, FindingCode, PeerReport, Report, mac_string, parse_mac};

/// The kernel's drop reason for a frame not addressed to this host: what
/// becomes of the stale frames once decapsulated.
pub(super) const OTHERHOST: &str = "OTHERHOST";

/// The stale MAC a peer addresses, when its VXLAN shows the fault: most of
/// what it sends for our VNI goes to one unicast MAC that is neither ours
/// nor another peer's VTEP (a frame for another peer's MAC is a sender's
/// stale FDB entry, which `FDB_ENTRY_STALE` names on the sender). A
/// minority is not enough: anyone behind the peer's address (a pod through
/// ip-masq) can send VXLAN-shaped UDP to any MAC.
fn stale_mac(
    p: &PeerReport,
    ours: [u8; 6],
    fdb: &FastMap<[u8; 6], std::net::IpAddr>,
) -> Option<[u8; 6]> {
    let mac = p.rx_last_stale_dst_mac.as_deref().and_then(parse_mac)?;
    let most = p.rx_stale_dst > 0 && p.rx_stale_dst.saturating_mul(2) > rx_acceptable(p);
    (most && mac != ours && !fdb.contains_key(&mac)).then_some(mac)
}

/// The peers with the fault, each with the MAC it uses.
fn stale_peers<'a>(
    r: &'a Report,
    fdb: &'a FastMap<[u8; 6], std::net::IpAddr>,
) -> impl Iterator<Item = (&'a PeerReport, [u8; 6], [u8; 6])> + 'a {
    let ours = r.node.overlay_mac.as_deref().and_then(parse_mac);
    r.peers.iter().filter_map(move |p| {
        let ours = ours?;
        Some((p, stale_mac(p, ours, fdb)?, ours))
    })
}

/// Of the kernel's OTHERHOST drops, those of the stale frames (per peer, at
/// most what it sent stale): `VTEP_MAC_STALE` explains them, so they are
/// not also reported as generic `VXLAN_DROPS`.
pub(super) fn explained_drops(r: &Report, fdb: &FastMap<[u8; 6], std::net::IpAddr>) -> u64 {
    stale_peers(r, fdb)
        .map(|(p, _, _)| {
            p.drops
                .get(OTHERHOST)
                .map_or(0, |n| (*n).min(p.rx_stale_dst))
        })
        .sum()
}

/// One finding per sending peer, on the node whose MAC they no longer know.
pub(super) fn vtep_mac_stale(r: &Report, fdb: &FastMap<[u8; 6], std::net::IpAddr>) -> Vec<Finding> {
    let dev = &r.node.overlay;
    stale_peers(r, fdb)
        .map(|(p, theirs, ours)| {
            let (theirs, ours) = (mac_string(&theirs), mac_string(&ours));
            let mut f = finding(FindingCode::VtepMacStale, Some(&p.peer));
            f.summary = format!(
                "{} sends its VXLAN to VTEP MAC {theirs}, but {dev} here has {ours}: the frames are dropped after decapsulation",
                p.peer
            );
            f.evidence = vec![
                format!("peer uses {theirs}, {dev} has {ours}"),
                format!(
                    "rx_stale_dst={} of rx_encap_packets={} from {}",
                    p.rx_stale_dst, p.traffic.rx_encap_packets, p.peer
                ),
            ];
            if let Some(n) = p.drops.get(OTHERHOST).filter(|n| **n > 0) {
                f.evidence.push(format!(
                    "the kernel dropped {n} of them as {OTHERHOST} on {dev} (not addressed to this host)"
                ));
            }
            f.remediation = format!(
                "{peer} still has this node's old VTEP MAC {theirs} in its FDB and neighbour entries: restart flannel \
                 on {peer} (k3s: systemctl restart k3s; kube-flannel: delete its kube-flannel pod) so it relearns \
                 this node's annotation flannel.alpha.coreos.com/backend-data (VtepMAC {ours}). If {dev} takes a \
                 new MAC at every boot (systemd's MACAddressPolicy=persistent, flannel-io/flannel#1795), pin it with \
                 a systemd .link file: /etc/systemd/network/10-flannel.link with [Match] OriginalName=flannel* and \
                 [Link] MACAddressPolicy=none",
                peer = p.peer
            );
            f
        })
        .collect()
}
