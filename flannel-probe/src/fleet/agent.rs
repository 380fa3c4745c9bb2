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
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::{Finding, FindingCode, NodeInfo, Report, Severity, Traffic};

/// The JSON schema version of [`Counters`].
pub const COUNTERS_SCHEMA: u32 = 1;

/// One peer's traffic since the agent started (the same names as the
/// report's per-peer fields, which cover a window instead).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCumulative {
    /// The remote VTEP's underlay IPv4 address.
    pub peer: String,
    #[serde(flatten)]
    pub traffic: Traffic,
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
    /// Attachments that vanished and were restored since the start.
    #[serde(default)]
    pub attach_gaps: u64,
}

impl From<&NodeInfo> for AgentNode {
    fn from(n: &NodeInfo) -> Self {
        Self {
            hostname: n.hostname.clone(),
            overlay: n.overlay.clone(),
            overlay_state: n.overlay_state.as_str().to_string(),
            uplink: n.uplink.clone(),
            local_vtep: n.local_vtep.clone(),
            vxlan_port: n.vxlan_port,
            vni: n.vni,
            port_bound: n.port_bound,
            kernel: n.kernel.clone(),
            attach_gaps: n.attach_gaps,
        }
    }
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

/// A finding with only its code, severity and peer (test fixtures).
#[cfg(test)]
impl AgentFinding {
    pub(crate) fn bare(code: &str, severity: Severity, peer: Option<&str>) -> Self {
        Self {
            code: code.into(),
            severity,
            peer: peer.map(str::to_string),
            summary: String::new(),
            evidence: vec![],
            remediation: String::new(),
        }
    }
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
    /// Readings of the kernel's maps since the start: scheduled, asked for
    /// (`?fresh=1`) or after a link event (`flannel_probe_samples_total`).
    #[serde(default)]
    pub samples: u64,
}

impl Counters {
    /// The cumulative figures of `peer`, if it was ever seen.
    pub fn peer(&self, peer: &str) -> Option<&PeerCumulative> {
        self.peers.iter().find(|p| p.peer == peer)
    }
}

/// Cumulative counters, fed one window report at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CumulativeTotals {
    peers: BTreeMap<String, PeerCumulative>,
    drops: BTreeMap<(String, String), u64>,
}

impl CumulativeTotals {
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
            t.traffic += p.traffic;
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
        Counters {
            schema: COUNTERS_SCHEMA,
            started_unix,
            sampled_unix,
            uptime_secs,
            node: AgentNode::from(&rolling.node),
            peers: self.peers(),
            drops: self.drops(),
            findings: rolling.findings.iter().map(AgentFinding::from).collect(),
            window_secs: rolling.window_secs,
            samples: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        datapath::Overflow,
        report::{DropReport, PeerReport, SCHEMA},
    };

    pub(crate) fn report(peers: Vec<PeerReport>, drops: Vec<DropReport>) -> Report {
        Report {
            schema: SCHEMA,
            node: NodeInfo::gladius(),
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
        let mut t = CumulativeTotals::default();
        let p = |peer: &str, tx: u64, decap: u64| PeerReport {
            peer: peer.into(),
            traffic: Traffic {
                tx_encap_packets: tx,
                tx_encap_bytes: tx * 148,
                rx_decap_packets: decap,
                ..Traffic::default()
            },
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
        assert_eq!(peers[1].traffic.tx_encap_packets, 7);
        assert_eq!(peers[1].traffic.tx_encap_bytes, 7 * 148);
        assert_eq!(peers[1].traffic.rx_decap_packets, 1);
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
        let mut want = vec![
            "peer",
            "tx_encap_packets",
            "tx_encap_bytes",
            "rx_encap_packets",
            "rx_encap_bytes",
            "rx_decap_packets",
            "rx_decap_bytes",
            "tx_inner_packets",
            "tx_inner_bytes",
            "icmp_port_unreachable",
        ];
        want.sort_unstable();
        let peer = serde_json::to_value(&peers[1]).expect("encode");
        assert_eq!(crate::report::tests::keys(&peer), want, "/counters peers[]");
        let json = serde_json::to_string(&c).expect("encode");
        let back: Counters = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, c);
    }
}
