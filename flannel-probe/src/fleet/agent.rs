//! The long-running agent (`serve`): cumulative per-peer counters since it
//! started, the report of a rolling window, and the `GET /counters`
//! document that `mesh` compares across nodes.
//!
//! Everything here is plain data built from [`Report`]s, so the rules of
//! attribution (inner traffic to peers through the FDB, drop reason names)
//! are exactly the report's. Cumulative counters are the sum of the
//! per-interval reports: a peer's inner counters stay monotonic even when
//! its VTEP MAC changes (a recreated overlay device), because every
//! interval is attributed with the FDB of that moment.
use std::{
    collections::BTreeMap,
    ops::{AddAssign, Sub},
};

use serde::{Deserialize, Serialize};

use crate::report::{Finding, FindingCode, PeerReport, Report, Severity};

/// The JSON schema version of [`Counters`].
pub const COUNTERS_SCHEMA: u32 = 1;

/// One peer's figures since the agent started (the same names as the
/// report's per-peer fields, which cover a window instead).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCumulative {
    /// The remote VTEP's underlay IPv4 address.
    pub peer: String,
    #[serde(default)]
    pub tx_encap_packets: u64,
    #[serde(default)]
    pub tx_encap_bytes: u64,
    #[serde(default)]
    pub rx_encap_packets: u64,
    #[serde(default)]
    pub rx_encap_bytes: u64,
    #[serde(default)]
    pub rx_decap_packets: u64,
    #[serde(default)]
    pub rx_decap_bytes: u64,
    #[serde(default)]
    pub tx_inner_packets: u64,
    #[serde(default)]
    pub tx_inner_bytes: u64,
    #[serde(default)]
    pub icmp_port_unreachable: u64,
}

/// Applies `op` to every figure (the peer's name is not a figure).
macro_rules! each_figure {
    ($a:expr, $b:expr, $op:ident) => {
        PeerCumulative {
            peer: $a.peer.clone(),
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

/// Adds a later window's figures.
impl AddAssign<&PeerCumulative> for PeerCumulative {
    fn add_assign(&mut self, later: &PeerCumulative) {
        *self = each_figure!(self, later, saturating_add);
    }
}

/// The figures between two readings (a counter that went back reads 0).
impl Sub for &PeerCumulative {
    type Output = PeerCumulative;

    fn sub(self, earlier: &PeerCumulative) -> PeerCumulative {
        each_figure!(self, earlier, saturating_sub)
    }
}

/// A window's figures of one peer, as the report has them.
impl From<&PeerReport> for PeerCumulative {
    fn from(p: &PeerReport) -> Self {
        Self {
            peer: p.peer.clone(),
            tx_encap_packets: p.tx_encap_packets,
            tx_encap_bytes: p.tx_encap_bytes,
            rx_encap_packets: p.rx_encap_packets,
            rx_encap_bytes: p.rx_encap_bytes,
            rx_decap_packets: p.rx_decap_packets,
            rx_decap_bytes: p.rx_decap_bytes,
            tx_inner_packets: p.tx_inner_packets,
            tx_inner_bytes: p.tx_inner_bytes,
            icmp_port_unreachable: p.icmp_port_unreachable,
        }
    }
}

/// Kernel drops of VXLAN traffic since the agent started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCumulative {
    pub reason: String,
    pub direction: String,
    pub packets: u64,
}

/// The node as the agent sees it (a readable copy of the report's header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentNode {
    pub hostname: String,
    pub overlay: String,
    pub overlay_state: String,
    #[serde(default)]
    pub uplink: Option<String>,
    #[serde(default)]
    pub local_vtep: Option<String>,
    pub vxlan_port: u16,
    #[serde(default)]
    pub vni: Option<u32>,
    pub port_bound: bool,
    #[serde(default)]
    pub kernel: String,
}

/// A finding of the agent's rolling window, as `GET /counters` carries it.
/// Its own type, not [`Finding`]: this is the counters document's fixed
/// shape (no `affected_peers`), read back by `mesh` from agents of other
/// versions, so it changes only when that document does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFinding {
    pub code: FindingCode,
    pub severity: Severity,
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub remediation: String,
}

impl From<&Finding> for AgentFinding {
    fn from(f: &Finding) -> Self {
        Self {
            code: f.code.clone(),
            severity: f.severity,
            peer: f.peer.clone(),
            summary: f.summary.clone(),
            evidence: f.evidence.clone(),
            remediation: f.remediation.clone(),
        }
    }
}

/// `GET /counters` (schema 1): what `mesh` reads at the start and the end
/// of its window. Fields are only ever added.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub schema: u32,
    /// When the agent started (Unix seconds): a change means its counters
    /// restarted from zero.
    pub started_unix: f64,
    /// When these counters were read from the kernel (Unix seconds).
    pub sampled_unix: f64,
    /// Seconds from the start to this reading.
    pub uptime_secs: f64,
    pub node: AgentNode,
    /// Cumulative since the agent started, one entry per peer ever seen.
    pub peers: Vec<PeerCumulative>,
    /// Cumulative since the agent started.
    pub drops: Vec<DropCumulative>,
    /// The findings of the rolling window (`serve --window`).
    pub findings: Vec<AgentFinding>,
    /// Length of that window in seconds.
    pub window_secs: f64,
}

impl Counters {
    /// The cumulative figures of `peer`, if it was ever seen.
    pub fn peer(&self, peer: &str) -> Option<&PeerCumulative> {
        self.peers.iter().find(|p| p.peer == peer)
    }
}

/// Cumulative counters, fed one window report at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    peers: BTreeMap<String, PeerCumulative>,
    drops: BTreeMap<(String, String), u64>,
}

impl Totals {
    /// Adds the figures of one window (consecutive windows, never overlapping).
    pub fn add(&mut self, window: &Report) {
        for p in &window.peers {
            let t = self
                .peers
                .entry(p.peer.clone())
                .or_insert_with(|| PeerCumulative {
                    peer: p.peer.clone(),
                    ..Default::default()
                });
            *t += &PeerCumulative::from(p);
        }
        for d in &window.drops {
            *self
                .drops
                .entry((d.reason.clone(), d.direction.to_string()))
                .or_default() += d.packets;
        }
    }

    /// Every peer, in address order.
    pub fn peers(&self) -> Vec<PeerCumulative> {
        let mut v: Vec<PeerCumulative> = self.peers.values().cloned().collect();
        v.sort_by_key(|p| p.peer.parse::<std::net::Ipv4Addr>().ok());
        v
    }

    pub fn drops(&self) -> Vec<DropCumulative> {
        self.drops
            .iter()
            .map(|((reason, direction), packets)| DropCumulative {
                reason: reason.clone(),
                direction: direction.clone(),
                packets: *packets,
            })
            .collect()
    }

    /// The `GET /counters` document: these totals, the node and the
    /// findings of `rolling` (the report of the agent's rolling window).
    pub fn counters(
        &self,
        rolling: &Report,
        started_unix: f64,
        sampled_unix: f64,
        uptime_secs: f64,
    ) -> Counters {
        let n = &rolling.node;
        Counters {
            schema: COUNTERS_SCHEMA,
            started_unix,
            sampled_unix,
            uptime_secs,
            node: AgentNode {
                hostname: n.hostname.clone(),
                overlay: n.overlay.clone(),
                overlay_state: n.overlay_state.as_str().to_string(),
                uplink: n.uplink.clone(),
                local_vtep: n.local_vtep.clone(),
                vxlan_port: n.vxlan_port,
                vni: n.vni,
                port_bound: n.port_bound,
                kernel: n.kernel.clone(),
            },
            peers: self.peers(),
            drops: self.drops(),
            findings: rolling.findings.iter().map(AgentFinding::from).collect(),
            window_secs: rolling.window_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        datapath::Overflow,
        node::OverlayState,
        report::{DropReport, NodeInfo, PeerReport, SCHEMA},
    };

    pub(crate) fn report(peers: Vec<PeerReport>, drops: Vec<DropReport>) -> Report {
        Report {
            schema: SCHEMA,
            node: NodeInfo {
                hostname: "gladius".into(),
                overlay: "flannel.1".into(),
                overlay_state: OverlayState::Up,
                uplink: Some("eth0".into()),
                local_vtep: Some("192.0.2.11".into()),
                vxlan_port: 8472,
                vni: Some(1),
                port_bound: true,
                kernel: "6.18.0".into(),
                attached: Default::default(),
            },
            window_secs: 1.0,
            peers,
            drops,
            findings: Vec::new(),
            unattributed_inner: Vec::new(),
            overflow: Overflow::default(),
            overlay_history: Vec::new(),
            unknown_sources: Default::default(),
        }
    }

    #[test]
    fn windows_add_up_per_peer_and_drop_reason() {
        let mut t = Totals::default();
        let p = |peer: &str, tx: u64, decap: u64| PeerReport {
            peer: peer.into(),
            tx_encap_packets: tx,
            tx_encap_bytes: tx * 148,
            rx_decap_packets: decap,
            ..Default::default()
        };
        let drop = |n| DropReport {
            reason: "NO_SOCKET".into(),
            direction: "rx",
            packets: n,
        };
        t.add(&report(vec![p("192.0.2.13", 3, 1)], vec![drop(2)]));
        t.add(&report(
            vec![p("192.0.2.13", 4, 0), p("192.0.2.12", 1, 1)],
            vec![drop(5)],
        ));
        let peers = t.peers();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].peer, "192.0.2.12", "address order");
        assert_eq!(peers[1].tx_encap_packets, 7);
        assert_eq!(peers[1].tx_encap_bytes, 7 * 148);
        assert_eq!(peers[1].rx_decap_packets, 1);
        assert_eq!(
            t.drops(),
            vec![DropCumulative {
                reason: "NO_SOCKET".into(),
                direction: "rx".into(),
                packets: 7
            }]
        );
        let c = t.counters(&report(vec![], vec![]), 100.0, 110.0, 10.0);
        assert_eq!(c.schema, 1);
        assert_eq!(c.node.local_vtep.as_deref(), Some("192.0.2.11"));
        assert_eq!(c.node.overlay_state, "up");
        let json = serde_json::to_string(&c).expect("encode");
        let back: Counters = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, c);
    }
}
