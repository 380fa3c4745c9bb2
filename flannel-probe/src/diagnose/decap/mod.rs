//! VXLAN that arrived from a peer and died in this node's kernel, named by
//! where: before decapsulation for a bad outer UDP checksum
//! (`VXLAN_CHECKSUM_ERRORS`), or after it, when the decapsulated traffic is
//! dropped on its way to the pods (`DECAP_FILTERED`). The drops these name
//! are [`Explained`], so `VXLAN_DROPS` does not list them a second time.
use std::{collections::BTreeMap, net::IpAddr};

use flannel_probe_common::abi::DIR_RX;

use super::{
    Inputs,
    rules::{Index, finding, rx_acceptable},
};
use crate::report::{Finding, FindingCode, PeerReport, Report, Severity};

/// The kernel's reason for a UDP datagram with a bad checksum.
pub(super) const UDP_CSUM: &str = "UDP_CSUM";
const NETFILTER_DROP: &str = "NETFILTER_DROP";
/// A decapsulated frame for another MAC than the overlay's: the sender's
/// FDB is wrong (the FDB and VTEP MAC rules' business, not the forward path).
use super::vtep_mac_stale::OTHERHOST;
/// What the kernel says of forwarded packets while forwarding is off
/// (`FORWARDING_DISABLED` names that).
const IP_INADDRERRORS: &str = "IP_INADDRERRORS";

/// The drops this module's findings explain, per peer (only peers of the
/// report, and only when the finding is raised).
#[derive(Default)]
pub(super) struct Explained {
    /// peer -> reason -> decapsulated packets dropped afterwards.
    inner: BTreeMap<IpAddr, BTreeMap<String, u64>>,
    /// peer -> outer VXLAN datagrams dropped for a bad UDP checksum.
    csum: BTreeMap<IpAddr, u64>,
}

impl Explained {
    pub(super) fn new(r: &Report, inp: &Inputs<'_>, ix: &Index) -> Self {
        let mut inner: BTreeMap<IpAddr, BTreeMap<String, u64>> = BTreeMap::new();
        let mut csum: BTreeMap<IpAddr, u64> = BTreeMap::new();
        let forwarding_off = inp.node.forwarding == Some(false);
        for (w, n) in inp
            .window
            .drops
            .iter()
            .filter(|(w, n)| **n > 0 && w.dir == DIR_RX)
        {
            let reason = (inp.drop_reason)(w.reason);
            match (w.peer, w.mac) {
                // Inner, on the overlay device after decapsulation: its
                // source MAC names the sending VTEP through the FDB.
                (None, Some(mac)) => {
                    let Some(ip) = ix.fdb.get(&mac) else {
                        continue;
                    };
                    if reason == OTHERHOST || (forwarding_off && reason == IP_INADDRERRORS) {
                        continue;
                    }
                    *inner.entry(*ip).or_default().entry(reason).or_default() += n;
                }
                (Some(ip), None) if reason == UDP_CSUM => *csum.entry(ip).or_default() += n,
                _ => {}
            }
        }
        let mut ex = Explained::default();
        for p in &r.peers {
            let Some(ip) = p.ip() else { continue };
            if let Some(reasons) = inner.remove(&ip) {
                // At least half of what was decapsulated: fewer is what a
                // NetworkPolicy denying some flows looks like, no fault.
                let dropped: u64 = reasons.values().sum();
                let decap = p.traffic.rx_decap_packets;
                if decap > 0 && dropped.saturating_mul(2) >= decap {
                    ex.inner.insert(ip, reasons);
                }
            }
            if let Some(n) = csum.remove(&ip) {
                ex.csum.insert(ip, n);
            }
        }
        ex
    }

    /// Packets of `reason` in `dir` these findings explain, over all peers.
    pub(super) fn of_reason(&self, reason: &str, dir: &str) -> u64 {
        if dir != "rx" {
            return 0;
        }
        let inner: u64 = self.inner.values().filter_map(|m| m.get(reason)).sum();
        let csum: u64 = if reason == UDP_CSUM {
            self.csum.values().sum()
        } else {
            0
        };
        inner + csum
    }

    /// Packets of `reason` from `p` these findings explain.
    pub(super) fn of_peer(&self, p: &PeerReport, reason: &str) -> u64 {
        let Some(ip) = p.ip() else { return 0 };
        let inner = self
            .inner
            .get(&ip)
            .and_then(|m| m.get(reason))
            .copied()
            .unwrap_or(0);
        let csum = if reason == UDP_CSUM {
            self.csum.get(&ip).copied().unwrap_or(0)
        } else {
            0
        };
        inner + csum
    }

    /// `p`'s VXLAN dropped before decapsulation for a bad checksum.
    pub(super) fn csum_of(&self, p: &PeerReport) -> u64 {
        p.ip()
            .and_then(|ip| self.csum.get(&ip))
            .copied()
            .unwrap_or(0)
    }
}

/// Per peer and reason: VXLAN from the peer decapsulated, then most of it
/// dropped on its way on (a FORWARD policy or rule, rp_filter, ...).
pub(super) fn decap_filtered(r: &Report, ex: &Explained) -> Vec<Finding> {
    let dev = &r.node.overlay;
    let mut out = Vec::new();
    for p in &r.peers {
        let Some(reasons) = p.ip().and_then(|ip| ex.inner.get(&ip)) else {
            continue;
        };
        for (reason, n) in reasons {
            let mut f = finding(FindingCode::DecapFiltered, Some(&p.peer));
            f.summary = format!(
                "VXLAN from {} is decapsulated, then {n} of its {} inner packets are dropped \
                 ({reason}) on their way from {dev} to the pods",
                p.peer, p.traffic.rx_decap_packets
            );
            f.evidence = vec![
                format!(
                    "rx_encap_packets={} rx_decap_packets={} from {}",
                    p.traffic.rx_encap_packets, p.traffic.rx_decap_packets, p.peer
                ),
                format!("{reason} rx {n} (inner packets on {dev}, after decapsulation)"),
            ];
            f.remediation = if reason == NETFILTER_DROP {
                format!(
                    "the firewall's forward path drops pod traffic arriving on {dev}: look at the \
                     FORWARD policy and rules (iptables -S FORWARD; nft list ruleset, chains with \
                     hook forward). Docker sets iptables -P FORWARD DROP, and host firewalls \
                     (firewalld, ufw) default to drop; accept the cluster's pod CIDR in FORWARD \
                     (iptables -I FORWARD -s <pod CIDR> -j ACCEPT; iptables -I FORWARD -d <pod CIDR> \
                     -j ACCEPT), as k3s and kube-flannel expect"
                )
            } else {
                format!(
                    "the kernel drops traffic decapsulated from {} after {dev} ({reason}): look at \
                     the forward path (iptables -S FORWARD; nft list ruleset; sysctl \
                     net.ipv4.conf.{}.rp_filter; ip route get <pod IP> iif {dev} from <remote pod IP>)",
                    p.peer,
                    dev.replace('.', "/")
                )
            };
            out.push(f);
        }
    }
    out
}

/// Per sending peer: VXLAN to our port dropped for a bad outer UDP
/// checksum, the offload bug of flannel#1279 on the sender. `InCsumErrors`
/// witnesses it (every UDP port of the overlay's `family`, since the
/// namespace was created).
pub(super) fn vxlan_checksum_errors(
    r: &Report,
    ex: &Explained,
    in_csum_errors: Option<u64>,
    family: crate::node::VtepFamily,
) -> Vec<Finding> {
    let dev = &r.node.overlay;
    let (path, counter) = crate::node::csum_counter(family);
    r.peers
        .iter()
        .filter_map(|p| {
            let n = ex.csum_of(p);
            if n == 0 {
                return None;
            }
            let mut f = finding(FindingCode::VxlanChecksumErrors, Some(&p.peer));
            // All of the peer's VXLAN is lost: nothing of it gets through.
            if p.traffic.rx_decap_packets == 0 && n >= rx_acceptable(p) {
                f.severity = Severity::Critical;
            }
            f.summary = format!(
                "{n} VXLAN datagram{} from {} dropped for a bad UDP checksum before decapsulation",
                if n == 1 { "" } else { "s" },
                p.peer
            );
            f.evidence = vec![
                format!(
                    "{UDP_CSUM} rx {n} of rx_encap_packets={} from {} (rx_decap_packets={})",
                    p.traffic.rx_encap_packets, p.peer, p.traffic.rx_decap_packets
                ),
                match in_csum_errors {
                    Some(c) => format!(
                        "kernel {counter}={c} ({path}, since this network namespace started)"
                    ),
                    None => format!("kernel {counter} unreadable ({path})"),
                },
            ];
            f.remediation = format!(
                "{} sends VXLAN with bad checksums (its checksum offload on the VXLAN device, \
                 flannel#1279, k3s#2013): on {} run ethtool -K {dev} tx-checksum-ip-generic off, and \
                 make it stick across CNI restarts with a udev rule, /etc/udev/rules.d/90-flannel-csum.rules: \
                 ACTION==\"add\", SUBSYSTEM==\"net\", KERNEL==\"{dev}\", RUN+=\"/usr/sbin/ethtool -K {dev} \
                 tx-checksum-ip-generic off\"",
                p.peer, p.peer
            );
            Some(f)
        })
        .collect()
}

#[cfg(test)]
mod tests;
