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
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

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
    /// The local VTEPs of the other overlays watched (dual-stack: the
    /// IPv6 one of `flannel-v6.1` beside `local_vtep`), so that `mesh`
    /// matches this node's peers of either family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_vteps: Vec<String>,
    /// Every watched overlay, as the report's `node.overlays[]` (the
    /// first is the one of the fields above): `/metrics` gives each its
    /// `flannel_probe_overlay_*` series.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<crate::report::OverlayReport>,
}

impl AgentNode {
    /// Every local VTEP of this node, `local_vtep` first.
    pub fn vteps(&self) -> impl Iterator<Item = &str> {
        self.local_vtep
            .as_deref()
            .into_iter()
            .chain(self.other_vteps.iter().map(String::as_str))
    }
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
            other_vteps: n
                .overlays
                .iter()
                .skip(1)
                .filter_map(|o| o.local_vtep.clone())
                .filter(|v| n.local_vtep.as_ref() != Some(v))
                .collect(),
            overlays: n.overlays.clone(),
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
    /// Cumulative since the agent started (or since the peer came back after
    /// being forgotten), one entry per peer not forgotten.
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
    /// Peers forgotten since the start (gone from the FDB and silent for
    /// `serve --forget-after`).
    #[serde(default)]
    pub forgotten_peers: u64,
    /// Kernel memory of the agent's eBPF maps (see `datapath::memory`).
    #[serde(default)]
    pub map_memory_bytes: u64,
    /// The agent's own cost and attachments (`/metrics`' self-metrics).
    #[serde(default)]
    pub agent: super::selfstats::AgentSelf,
    /// The node's overlay (VTEP) MAC, what its peers must address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_mac: Option<String>,
    /// The overlay's FDB as of the rolling window: which MAC each peer's
    /// VTEP is sent to (`mesh` compares it with that peer's `overlay_mac`).
    #[serde(default)]
    pub fdb: Vec<FdbDoc>,
}

/// One FDB entry of the overlay in `GET /counters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbDoc {
    pub mac: String,
    /// The peer's underlay address the MAC is sent to.
    pub dst: String,
}

impl Counters {
    /// The cumulative figures of `peer`, if it was ever seen.
    pub fn peer(&self, peer: &str) -> Option<&PeerCumulative> {
        self.peers.iter().find(|p| p.peer == peer)
    }
}

/// How long a peer that left the FDB and went silent is kept (`serve
/// --forget-after`).
pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(600);

/// Cumulative counters, fed one window report at a time.
///
/// A peer that is gone from the FDB and whose counters have not changed
/// for `forget_after` is forgotten, with its metric series: on a node of a
/// churning cluster the totals follow the live peers instead of growing
/// with every node that ever existed. One that comes back starts from zero
/// (a counter reset, which Prometheus' `rate()` handles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CumulativeTotals {
    peers: BTreeMap<String, Tracked>,
    drops: BTreeMap<(String, String), u64>,
    forget_after: Duration,
    /// The clock of [`CumulativeTotals::add`].
    epoch: Instant,
    forgotten: u64,
}

/// One peer's totals and what forgetting it depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tracked {
    totals: PeerCumulative,
    /// When a counter of it last changed (or it was first seen).
    changed_at: Duration,
    /// In the FDB at the last window.
    in_fdb: bool,
}

impl Default for CumulativeTotals {
    fn default() -> Self {
        Self::new(DEFAULT_FORGET_AFTER)
    }
}

impl CumulativeTotals {
    pub fn new(forget_after: Duration) -> Self {
        Self {
            peers: BTreeMap::new(),
            drops: BTreeMap::new(),
            forget_after,
            epoch: Instant::now(),
            forgotten: 0,
        }
    }

    /// Adds the figures of one window (consecutive windows, never
    /// overlapping), then forgets the peers that are due.
    pub fn add(&mut self, window: &Report) {
        let at = self.epoch.elapsed();
        self.add_at(window, at);
    }

    /// [`CumulativeTotals::add`] at `at` (time since these totals began).
    pub fn add_at(&mut self, window: &Report, at: Duration) {
        let mut seen = BTreeSet::new();
        for p in &window.peers {
            let changed = !p.traffic.is_quiet();
            seen.insert(p.peer.as_str());
            if let Some(t) = self.peers.get_mut(&p.peer) {
                t.totals.traffic += p.traffic;
                t.in_fdb = p.in_fdb;
                if changed {
                    t.changed_at = at;
                }
            } else if changed || p.in_fdb {
                // A peer the datapath still holds but that was forgotten
                // (silent, not in the FDB) is not brought back by its
                // zero deltas: only by traffic or an FDB entry.
                self.peers.insert(
                    p.peer.clone(),
                    Tracked {
                        totals: PeerCumulative {
                            peer: p.peer.clone(),
                            traffic: p.traffic,
                        },
                        changed_at: at,
                        in_fdb: p.in_fdb,
                    },
                );
            }
        }
        for (peer, t) in &mut self.peers {
            if !seen.contains(peer.as_str()) {
                t.in_fdb = false;
            }
        }
        for d in &window.drops {
            *self
                .drops
                .entry((d.reason.clone(), d.direction.to_string()))
                .or_default() += d.packets;
        }
        let before = self.peers.len();
        let keep_for = self.forget_after;
        self.peers
            .retain(|_, t| t.in_fdb || at.saturating_sub(t.changed_at) < keep_for);
        self.forgotten += (before - self.peers.len()) as u64;
    }

    /// Peers forgotten since the start.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Every peer, in address order.
    pub fn peers(&self) -> Vec<PeerCumulative> {
        let mut v: Vec<PeerCumulative> = self.peers.values().map(|t| t.totals.clone()).collect();
        v.sort_by_key(|p| p.peer.parse::<std::net::IpAddr>().ok());
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
            forgotten_peers: self.forgotten,
            map_memory_bytes: 0,
            agent: Default::default(),
            overlay_mac: rolling.node.overlay_mac.clone(),
            fdb: rolling
                .peers
                .iter()
                .filter(|p| p.in_fdb)
                .filter_map(|p| {
                    Some(FdbDoc {
                        mac: p.vtep_mac.clone()?,
                        dst: p.peer.clone(),
                    })
                })
                .collect(),
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
            "tx_encap_large",
            "rx_encap_large",
            "tx_encap_max_len",
            "rx_encap_max_len",
            "icmp_frag_needed",
        ];
        want.sort_unstable();
        let peer = serde_json::to_value(&peers[1]).expect("encode");
        assert_eq!(crate::report::tests::keys(&peer), want, "/counters peers[]");
        let json = serde_json::to_string(&c).expect("encode");
        let back: Counters = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, c);
    }

    /// `mesh`'s VTEP_MAC_STALE reads these: the node's overlay MAC and the
    /// FDB (peers without an entry are not in it).
    #[test]
    fn counters_carry_the_overlay_mac_and_the_fdb() {
        let mut r = report(
            vec![
                PeerReport {
                    vtep_mac: Some("0e:00:00:00:00:13".into()),
                    ..fdb_peer("192.0.2.13", true, 1)
                },
                fdb_peer("192.0.2.14", false, 1),
            ],
            vec![],
        );
        r.node.overlay_mac = Some("0e:00:00:00:00:11".into());
        let c = CumulativeTotals::default().counters(&r, 100.0, 110.0, 10.0);
        assert_eq!(c.overlay_mac.as_deref(), Some("0e:00:00:00:00:11"));
        assert_eq!(
            c.fdb,
            vec![FdbDoc {
                mac: "0e:00:00:00:00:13".into(),
                dst: "192.0.2.13".into()
            }]
        );
        let json = serde_json::to_value(&c).expect("encode");
        assert_eq!(json["overlay_mac"], "0e:00:00:00:00:11");
        assert_eq!(json["fdb"][0]["dst"], "192.0.2.13");
        // An older agent's document has neither: read as unknown.
        let old: Counters = serde_json::from_str(r#"{"schema":1,"started_unix":1,"sampled_unix":2,"uptime_secs":1,
            "node":{"hostname":"h","overlay":"flannel.1","overlay_state":"up","vxlan_port":8472,"port_bound":true},
            "peers":[],"drops":[],"findings":[],"window_secs":30}"#)
            .expect("decode");
        assert_eq!((old.overlay_mac, old.fdb.len()), (None, 0));
    }

    fn fdb_peer(peer: &str, in_fdb: bool, tx: u64) -> PeerReport {
        PeerReport {
            peer: peer.into(),
            in_fdb,
            traffic: Traffic {
                tx_encap_packets: tx,
                ..Traffic::default()
            },
            ..Default::default()
        }
    }

    fn names(t: &CumulativeTotals) -> Vec<String> {
        t.peers().into_iter().map(|p| p.peer).collect()
    }

    /// Every window of a peer carries the datapath's running maximum of
    /// its outer sizes: that is no traffic, and a silent peer gone from
    /// the FDB is forgotten all the same.
    #[test]
    fn the_largest_size_seen_does_not_keep_a_silent_peer() {
        let s = Duration::from_secs;
        let mut t = CumulativeTotals::new(s(10));
        let with_max = |tx: u64| {
            let mut p = fdb_peer("192.0.2.12", false, tx);
            p.traffic.tx_encap_max_len = 1478;
            p.traffic.rx_encap_max_len = 134;
            p
        };
        t.add_at(&report(vec![with_max(5)], vec![]), s(0));
        assert_eq!(names(&t), ["192.0.2.12"]);
        t.add_at(&report(vec![with_max(0)], vec![]), s(11));
        assert!(names(&t).is_empty(), "silent for 11 s, not in the FDB");
        assert_eq!(t.forgotten(), 1);
        // Nor does it bring the peer back.
        t.add_at(&report(vec![with_max(0)], vec![]), s(12));
        assert!(names(&t).is_empty());
    }

    #[test]
    fn a_peer_is_forgotten_only_when_gone_from_the_fdb_and_silent_for_forget_after() {
        let s = Duration::from_secs;
        let mut t = CumulativeTotals::new(s(10));
        let (a, b, c) = ("192.0.2.12", "192.0.2.13", "192.0.2.14");
        // a and b in the FDB, c only sends (no FDB entry).
        t.add_at(
            &report(
                vec![
                    fdb_peer(a, true, 0),
                    fdb_peer(b, true, 5),
                    fdb_peer(c, false, 1),
                ],
                vec![],
            ),
            s(0),
        );
        assert_eq!(names(&t), [a, b, c]);
        // Silent for long, but a is still in the FDB: kept. b left the FDB
        // at 30 s but only went silent at 25 s; c went silent at 0 s.
        t.add_at(
            &report(vec![fdb_peer(a, true, 0), fdb_peer(b, true, 2)], vec![]),
            s(25),
        );
        t.add_at(&report(vec![fdb_peer(a, true, 0)], vec![]), s(30));
        assert_eq!(names(&t), [a, b], "c: no FDB entry, silent for 30 s");
        assert_eq!(t.forgotten(), 1);
        t.add_at(&report(vec![fdb_peer(a, true, 0)], vec![]), s(34));
        assert_eq!(names(&t), [a, b], "b silent for 9 s only");
        t.add_at(&report(vec![fdb_peer(a, true, 0)], vec![]), s(35));
        assert_eq!(names(&t), [a], "b silent for 10 s and gone from the FDB");
        assert_eq!(t.forgotten(), 2);
        // The datapath still holds b and reports it with zero deltas: that
        // does not bring it back.
        t.add_at(
            &report(vec![fdb_peer(a, true, 0), fdb_peer(b, false, 0)], vec![]),
            s(36),
        );
        assert_eq!(names(&t), [a]);
        // Traffic does, from zero.
        t.add_at(
            &report(vec![fdb_peer(a, true, 0), fdb_peer(b, false, 3)], vec![]),
            s(37),
        );
        assert_eq!(names(&t), [a, b]);
        assert_eq!(
            t.peers()[1].traffic.tx_encap_packets,
            3,
            "counts restart at zero"
        );
        // Traffic keeps a peer without an FDB entry.
        for at in 38..60 {
            t.add_at(
                &report(vec![fdb_peer(a, true, 0), fdb_peer(b, false, 1)], vec![]),
                s(at),
            );
        }
        assert_eq!(t.peers()[1].traffic.tx_encap_packets, 3 + 22);
        // Leaving the FDB after a long silence forgets at once.
        t.add_at(&report(vec![], vec![]), s(60));
        assert_eq!(names(&t), [b]);
        let c = t.counters(&report(vec![], vec![]), 0.0, 60.0, 60.0);
        assert_eq!(c.forgotten_peers, 3);
    }

    #[test]
    fn churned_fdb_entries_leave_only_the_live_peers() {
        let s = Duration::from_secs;
        let mut t = CumulativeTotals::new(s(2));
        let live = fdb_peer("192.0.2.12", true, 1);
        for round in 0..50u64 {
            let mut peers = vec![live.clone()];
            peers.extend((0..100).map(|i| fdb_peer(&format!("100.64.{round}.{i}"), true, 0)));
            t.add_at(&report(peers, vec![]), s(round * 2));
            t.add_at(&report(vec![live.clone()], vec![]), s(round * 2 + 1));
            assert!(
                t.peers().len() <= 1 + 2 * 100,
                "bounded: {}",
                t.peers().len()
            );
        }
        t.add_at(&report(vec![live.clone()], vec![]), s(200));
        assert_eq!(names(&t), ["192.0.2.12"]);
        assert_eq!(t.forgotten(), 5000);
        assert_eq!(t.peers()[0].traffic.tx_encap_packets, 101);
    }
}
