//! The cross-node view: from every agent's cumulative counters at the start
//! and the end of a window to the VXLAN matrix between every pair of nodes
//! (schema 1, the contract's "mesh matrix"). One pure function,
//! [`compute`]; `cli::mesh` does the reading and the printing.
use serde::Serialize;

use crate::{
    fleet::{
        agent::Counters,
        pmtu::{self, Classes},
    },
    report::{FindingCode, Severity, Traffic},
};

/// The JSON schema version of [`MeshReport`].
pub(crate) const MESH_SCHEMA: u32 = 1;

/// Missing packets up to this many are not called loss: two agents are
/// read a few milliseconds apart, so a packet or two may be in flight.
/// Readings further apart allow what the link carries in that time more
/// (see [`Link::in_flight_allowance`]).
pub(crate) const IN_FLIGHT_TOLERANCE: u64 = 2;

/// When the mesh asked for a reading and when the answer came, in seconds
/// of the mesh's own monotonic clock: the reading was taken in between.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Bracket {
    pub asked: f64,
    pub answered: f64,
}

/// What was read from one agent.
#[derive(Clone, Debug)]
pub(crate) struct AgentReading {
    /// The agent's URL as given.
    pub agent: String,
    pub start: Result<Counters, String>,
    pub end: Result<Counters, String>,
    /// When the two readings were asked for and answered; `None` when not
    /// known (then only the agents' clocks say how far apart they were).
    pub brackets: Option<[Bracket; 2]>,
    /// How far each reading may lie from the window's edge beyond what its
    /// `sampled_unix` says: 0 for an agent read directly; one scrape
    /// interval for figures Prometheus extrapolated to the edges.
    pub edge_secs: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct MeshNode {
    pub agent: String,
    pub local_vtep: Option<String>,
    pub hostname: Option<String>,
    /// Both readings succeeded.
    pub reachable: bool,
    /// The agent restarted within the window (its counters began again).
    pub restarted: bool,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// VXLAN from one node to another over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Link {
    /// The sender's VTEP (underlay IPv4).
    pub from: String,
    pub to: String,
    /// Encapsulated packets the sender sent to the receiver.
    pub sent: u64,
    /// Encapsulated packets the receiver got from the sender.
    pub received: u64,
    /// Share of `sent` not received, in percent (0 when nothing was sent).
    pub loss_pct: f64,
    // Beyond the contract's minimum:
    pub from_hostname: String,
    pub to_hostname: String,
    pub lost: u64,
    /// How far apart the sender's and the receiver's readings were, start
    /// and end added (seconds; the agents' clocks, bounded by when the
    /// mesh asked and was answered).
    pub skew_secs: f64,
    /// Missing packets not called loss: [`IN_FLIGHT_TOLERANCE`] plus what
    /// the link carried, at its rate over the window, during `skew_secs`.
    pub in_flight_allowance: u64,
    /// Of `sent` and `received`, the size classes (outer IPv4 total length
    /// above `abi::LARGE_OUTER_LEN` or not), and the largest outer length
    /// the receiver has had from the sender (since its agent started).
    pub large_sent: u64,
    pub large_received: u64,
    pub small_sent: u64,
    pub small_received: u64,
    pub max_received_len: u64,
}

/// A finding of the mesh: about a link (`from` -> `to`) or an agent, which
/// a node's [`crate::report::Finding`] (one node, one peer) cannot say.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct MeshFinding {
    pub code: FindingCode,
    pub severity: Severity,
    /// The node it is about (its VTEP), or the sending side of a link.
    pub from: Option<String>,
    /// The receiving side of a link, or the peer a node's finding names.
    pub to: Option<String>,
    pub summary: String,
    pub evidence: Vec<String>,
    pub remediation: String,
    /// The agent it came from or is about.
    pub agent: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct MeshReport {
    pub schema: u32,
    pub window_secs: f64,
    pub nodes: Vec<MeshNode>,
    pub links: Vec<Link>,
    pub findings: Vec<MeshFinding>,
    /// `--loss-threshold`, in percent.
    pub loss_threshold_pct: f64,
    /// Where the figures came from: the agents' `/counters`, or what a
    /// Prometheus server scraped from their `/metrics`.
    pub source: MeshSource,
    /// The Prometheus server asked, when `source` is `prometheus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusQueried>,
    /// Findings this source cannot give, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<NotChecked>,
}

/// Where a mesh's figures came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MeshSource {
    Agents,
    Prometheus,
}

/// What `mesh --from-prometheus` asked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct PrometheusQueried {
    pub url: String,
    /// The instant every query was evaluated at (Unix seconds, the
    /// server's clock): the window ends there.
    pub evaluated_unix: f64,
    /// The PromQL instant queries, in the order they were asked.
    pub queries: Vec<String>,
}

/// A mesh finding a source cannot give.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NotChecked {
    pub code: FindingCode,
    pub reason: String,
}

impl MeshReport {
    /// As `report`: 1 when a critical or warning finding is present.
    pub(crate) fn exit_code(&self) -> i32 {
        i32::from(
            self.findings
                .iter()
                .any(|f| f.severity <= Severity::Warning),
        )
    }

    /// The link from `from` to `to` (VTEP addresses).
    pub(crate) fn link(&self, from: &str, to: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.from == from && l.to == to)
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A node both of whose readings are usable for links.
struct Usable<'a> {
    agent: &'a str,
    vtep: &'a str,
    hostname: &'a str,
    start: &'a Counters,
    end: &'a Counters,
    brackets: Option<[Bracket; 2]>,
    edge_secs: f64,
}

/// Whether two VTEP addresses are of one family (an unparsable one is
/// taken as IPv4, as agents before dual-stack sent only IPv4).
fn same_family(a: &str, b: &str) -> bool {
    let v6 = |s: &str| s.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_ipv6());
    v6(a) == v6(b)
}

/// How far apart `a`'s and `b`'s readings were, start and end added. The
/// agents' clocks say it finely; when the mesh knows when it asked and was
/// answered, that bounds it too (a node whose clock is off cannot widen it).
/// Figures extrapolated to the edges add both nodes'
/// [`AgentReading::edge_secs`]: either may be off by that much.
fn skew(a: &Usable<'_>, b: &Usable<'_>) -> f64 {
    let clocks = (a.start.sampled_unix - b.start.sampled_unix).abs()
        + (a.end.sampled_unix - b.end.sampled_unix).abs();
    let edges = a.edge_secs + b.edge_secs;
    let Some((x, y)) = a.brackets.zip(b.brackets) else {
        return clocks + edges;
    };
    let within = |p: Bracket, q: Bracket| p.answered.max(q.answered) - p.asked.min(q.asked);
    clocks.min(within(x[0], y[0]) + within(x[1], y[1])) + edges
}

/// Packets `sent` over the sender's window may be in flight for `skew`.
fn allowance(sent: u64, span: f64, skew: f64) -> u64 {
    if span <= 0.0 || !skew.is_finite() {
        return IN_FLIGHT_TOLERANCE;
    }
    IN_FLIGHT_TOLERANCE + (sent as f64 * skew / span).ceil() as u64
}

fn delta(start: &Counters, end: &Counters, peer: &str, f: fn(&Traffic) -> u64) -> u64 {
    let traffic = |c: &Counters| c.peer(peer).map(|p| p.traffic).unwrap_or_default();
    f(&(traffic(end) - traffic(start)))
}

/// `DUPLICATE_VTEP`: two agents that say they are one VTEP. One agent
/// reached under two URLs (same hostname, same start) is not two.
fn duplicate_vteps(readings: &[AgentReading]) -> Vec<MeshFinding> {
    // (vtep, agent, hostname, started) of every agent that said who it is.
    let mut claims: Vec<(&str, &str, &str, f64)> = Vec::new();
    for r in readings {
        let Some(c) = r.end.as_ref().or(r.start.as_ref()).ok() else {
            continue;
        };
        let Some(vtep) = c.node.local_vtep.as_deref() else {
            continue;
        };
        let same_agent = |&(v, _, h, t): &(&str, &str, &str, f64)| {
            v == vtep && h == c.node.hostname && t == c.started_unix
        };
        if !claims.iter().any(same_agent) {
            claims.push((vtep, &r.agent, &c.node.hostname, c.started_unix));
        }
    }
    let mut out: Vec<MeshFinding> = Vec::new();
    for (i, &(vtep, agent, host, _)) in claims.iter().enumerate() {
        if out.iter().any(|f| f.from.as_deref() == Some(vtep)) {
            continue;
        }
        let others: Vec<&(&str, &str, &str, f64)> =
            claims[i + 1..].iter().filter(|c| c.0 == vtep).collect();
        if others.is_empty() {
            continue;
        }
        let names: Vec<String> = std::iter::once((agent, host))
            .chain(others.iter().map(|c| (c.1, c.2)))
            .map(|(a, h)| format!("{h} ({a})"))
            .collect();
        out.push(MeshFinding {
            code: FindingCode::DuplicateVtep,
            severity: Severity::Warning,
            from: Some(vtep.to_string()),
            to: None,
            summary: format!("{} agents claim VTEP {vtep}: {}", names.len(), names.join(" and ")),
            evidence: names
                .iter()
                .map(|n| format!("{n} reports local_vtep {vtep}"))
                .collect(),
            remediation: format!(
                "two nodes use one underlay address {vtep} (a cloned VM, a reused IP, flannel's --iface or \
                 public-ip pointing at the same address): give every node its own; the links of {vtep} are \
                 left out until then, its counters cannot be told apart"
            ),
            agent: agent.to_string(),
        });
    }
    out
}

/// `VTEP_MAC_STALE` across nodes: A's FDB sends B's VTEP to a MAC that B's
/// overlay does not have (B's MAC changed and A did not relearn it), from
/// the latest reading of each. Only when A has an entry for B and none of
/// its entries for B names B's MAC; agents too old to say their FDB or MAC
/// are not compared, nor VTEPs two agents claim.
fn vtep_mac_stale(readings: &[AgentReading], duplicated: &[String]) -> Vec<MeshFinding> {
    let latest: Vec<(&str, &Counters, &str)> = readings
        .iter()
        .filter_map(|r| {
            let c = r.end.as_ref().or(r.start.as_ref()).ok()?;
            let vtep = c.node.local_vtep.as_deref()?;
            (!duplicated.iter().any(|d| d == vtep)).then_some((r.agent.as_str(), c, vtep))
        })
        .collect();
    let mut out = Vec::new();
    for &(agent, a, a_vtep) in &latest {
        for &(_, b, b_vtep) in &latest {
            let Some(b_mac) = b.overlay_mac.as_deref() else {
                continue;
            };
            if a_vtep == b_vtep {
                continue;
            }
            let entries: Vec<&str> = a
                .fdb
                .iter()
                .filter(|e| e.dst == b_vtep)
                .map(|e| e.mac.as_str())
                .collect();
            if entries.is_empty() || entries.iter().any(|m| m.eq_ignore_ascii_case(b_mac)) {
                continue;
            }
            let (ah, bh) = (&a.node.hostname, &b.node.hostname);
            let old = entries.join(", ");
            out.push(MeshFinding {
                code: FindingCode::VtepMacStale,
                severity: Severity::Critical,
                from: Some(a_vtep.to_string()),
                to: Some(b_vtep.to_string()),
                summary: format!(
                    "{ah} sends {bh}'s VXLAN to VTEP MAC {old}, but {bh}'s {} has {b_mac}: {bh} drops it",
                    b.node.overlay
                ),
                evidence: vec![
                    format!("{ah}: FDB {old} dst {b_vtep}"),
                    format!("{bh}: {} address {b_mac}", b.node.overlay),
                ],
                remediation: format!(
                    "{ah} did not relearn {bh}'s new VTEP MAC: restart flannel on {ah} (k3s: systemctl restart k3s; \
                     kube-flannel: delete its kube-flannel pod) so it reads {bh}'s annotation \
                     flannel.alpha.coreos.com/backend-data again; if {bh}'s MAC changes at every boot, pin it \
                     with a systemd .link file (MACAddressPolicy=none for OriginalName=flannel*, flannel-io/flannel#1795)"
                ),
                agent: agent.to_string(),
            });
        }
    }
    out
}

/// Builds the matrix. `sent` of A->B is A's encapsulated tx to B, `received`
/// is B's encapsulated rx from A, both over the window.
pub(crate) fn compute(
    readings: &[AgentReading],
    window_secs: f64,
    threshold_pct: f64,
) -> MeshReport {
    let mut nodes = Vec::new();
    let mut findings = duplicate_vteps(readings);
    // Their links are left out: whose counters are whose is unknown.
    let duplicated: Vec<String> = findings.iter().filter_map(|f| f.from.clone()).collect();
    let stale = vtep_mac_stale(readings, &duplicated);
    let mut usable: Vec<Usable<'_>> = Vec::new();
    for r in readings {
        let known = r.end.as_ref().or(r.start.as_ref()).ok();
        let local_vtep = known.and_then(|c| c.node.local_vtep.clone());
        let hostname = known.map(|c| c.node.hostname.clone());
        let error = match (&r.start, &r.end) {
            (Err(e), _) | (_, Err(e)) => Some(e.clone()),
            _ => None,
        };
        let restarted =
            matches!((&r.start, &r.end), (Ok(s), Ok(e)) if s.started_unix != e.started_unix);
        nodes.push(MeshNode {
            agent: r.agent.clone(),
            local_vtep: local_vtep.clone(),
            hostname: hostname.clone(),
            reachable: error.is_none(),
            restarted,
            error: error.clone(),
        });
        let who = hostname.clone().unwrap_or_else(|| r.agent.clone());
        if let Some(e) = &error {
            findings.push(MeshFinding {
                code: FindingCode::AgentUnreachable,
                severity: Severity::Warning,
                from: local_vtep.clone(),
                to: None,
                summary: match &hostname {
                    Some(h) => format!("the agent at {} ({h}) could not be read: no figures for {h}", r.agent),
                    None => format!("the agent at {} could not be read", r.agent),
                },
                evidence: vec![e.clone()],
                remediation: "check that `flannel-probe serve` runs on that node (kubectl -n flannel-probe get pods -o wide) \
                     and listens on an address reachable from here (--listen 0.0.0.0:9465), and that no firewall blocks the port"
                    .into(),
                agent: r.agent.clone(),
            });
        }
        if restarted {
            findings.push(MeshFinding {
                code: FindingCode::AgentRestarted,
                severity: Severity::Info,
                from: local_vtep.clone(),
                to: None,
                summary: format!(
                    "the agent on {who} restarted within the window: its links are left out"
                ),
                evidence: vec![],
                remediation: "run mesh again".into(),
                agent: r.agent.clone(),
            });
        }
        // The node's own critical findings, as of the end of the window.
        if let Some(c) = known {
            for f in c
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Critical)
            {
                // A node's VTEP_MAC_STALE is about the link from the peer
                // that sends to the old MAC: shown that way, once.
                let (from, to) = if f.code == FindingCode::VtepMacStale {
                    (f.peer.clone(), local_vtep.clone())
                } else {
                    (local_vtep.clone(), f.peer.clone())
                };
                if f.code == FindingCode::VtepMacStale
                    && stale.iter().any(|m| m.from == from && m.to == to)
                {
                    continue;
                }
                findings.push(MeshFinding {
                    code: f.code.clone(),
                    severity: Severity::Critical,
                    from,
                    to,
                    summary: format!("{}: {}", c.node.hostname, f.summary),
                    evidence: f.evidence.clone(),
                    remediation: f.remediation.clone(),
                    agent: r.agent.clone(),
                });
            }
        }
        if let (Ok(s), Ok(e), false) = (&r.start, &r.end, restarted) {
            // A node without a known VTEP cannot be matched with its peers;
            // a dual-stack node is matched once per family, by that
            // family's VTEP.
            for vtep in e.node.vteps() {
                if usable.iter().any(|u| u.vtep == vtep) || duplicated.iter().any(|d| d == vtep) {
                    continue;
                }
                usable.push(Usable {
                    agent: &r.agent,
                    vtep,
                    hostname: &e.node.hostname,
                    start: s,
                    end: e,
                    brackets: r.brackets,
                    edge_secs: r.edge_secs,
                });
            }
        }
    }

    findings.extend(stale);
    let mut links = Vec::new();
    for a in &usable {
        for b in &usable {
            // Links within one family: a node's IPv4 VTEP sends to the
            // others' IPv4 VTEPs only.
            if a.vtep == b.vtep || a.agent == b.agent || !same_family(a.vtep, b.vtep) {
                continue;
            }
            let sent = delta(a.start, a.end, b.vtep, |p| p.tx_encap_packets);
            let received = delta(b.start, b.end, a.vtep, |p| p.rx_encap_packets);
            let lost = sent.saturating_sub(received);
            let loss_pct = if sent > 0 {
                round1(lost as f64 * 100.0 / sent as f64)
            } else {
                0.0
            };
            let skew_secs = (skew(a, b) * 1000.0).round() / 1000.0;
            let in_flight_allowance =
                allowance(sent, a.end.sampled_unix - a.start.sampled_unix, skew_secs);
            let span = a.end.sampled_unix - a.start.sampled_unix;
            let traffic =
                |c: &Counters, peer: &str| c.peer(peer).map(|p| p.traffic).unwrap_or_default();
            let classes = Classes::new(
                &(traffic(a.end, b.vtep) - traffic(a.start, b.vtep)),
                &(traffic(b.end, a.vtep) - traffic(b.start, a.vtep)),
                traffic(b.start, a.vtep).rx_encap_max_len,
            );
            let blackhole = pmtu::blackhole(
                &classes,
                a.hostname,
                b.hostname,
                b.vtep,
                a.vtep,
                &a.end.node.overlay,
                threshold_pct,
                |n| allowance(n, span, skew_secs),
            );
            // The cause named, the loss it explains is not repeated.
            if let Some(h) = blackhole {
                findings.push(MeshFinding {
                    code: h.code,
                    severity: h.severity,
                    from: Some(a.vtep.to_string()),
                    to: Some(b.vtep.to_string()),
                    summary: h.summary,
                    evidence: h.evidence,
                    remediation: h.remediation,
                    agent: a.agent.to_string(),
                });
            } else if loss_pct > threshold_pct && lost > in_flight_allowance {
                let mut evidence = vec![
                    format!(
                        "{} sent {sent} encapsulated packets to {}",
                        a.hostname, b.vtep
                    ),
                    format!("{} received {received} from {}", b.hostname, a.vtep),
                ];
                if a.edge_secs + b.edge_secs > 0.0 {
                    evidence.push(format!(
                        "Prometheus extrapolated both to the window's edges ({skew_secs:.3}s of scrape intervals): \
                         up to {in_flight_allowance} packets may be off"
                    ));
                } else if in_flight_allowance > IN_FLIGHT_TOLERANCE {
                    evidence.push(format!(
                        "the two nodes were read {skew_secs:.3}s apart: up to {in_flight_allowance} packets may have been in flight"
                    ));
                }
                findings.push(MeshFinding {
                    code: FindingCode::UnderlayLoss,
                    severity: Severity::Warning,
                    from: Some(a.vtep.to_string()),
                    to: Some(b.vtep.to_string()),
                    summary: format!(
                        "{loss_pct:.1}% of VXLAN from {} to {} lost on the underlay",
                        a.hostname, b.hostname
                    ),
                    evidence,
                    remediation: format!(
                        "the packets leave {} and never reach {}'s uplink: check the underlay path between {} and {} \
                         (switch ports, NIC errors with `ip -s link`, firewalls or security groups on UDP {})",
                        a.hostname, b.hostname, a.vtep, b.vtep, b.end.node.vxlan_port
                    ),
                    agent: a.agent.to_string(),
                });
            }
            links.push(Link {
                from: a.vtep.to_string(),
                to: b.vtep.to_string(),
                sent,
                received,
                loss_pct,
                from_hostname: a.hostname.to_string(),
                to_hostname: b.hostname.to_string(),
                lost,
                skew_secs,
                in_flight_allowance,
                large_sent: classes.large_sent,
                large_received: classes.large_received,
                small_sent: classes.small_sent,
                small_received: classes.small_received,
                max_received_len: classes.max_received,
            });
        }
    }
    findings.sort_by(|x, y| {
        x.severity
            .cmp(&y.severity)
            .then_with(|| x.code.cmp(&y.code))
            .then_with(|| x.from.cmp(&y.from))
            .then_with(|| x.to.cmp(&y.to))
    });
    MeshReport {
        schema: MESH_SCHEMA,
        window_secs,
        nodes,
        links,
        findings,
        loss_threshold_pct: threshold_pct,
        source: MeshSource::Agents,
        prometheus: None,
        not_checked: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::agent::{AgentFinding, AgentNode, FdbDoc, PeerCumulative};

    fn node(host: &str, vtep: &str) -> Counters {
        Counters {
            schema: 1,
            started_unix: 1000.0,
            node: AgentNode {
                hostname: host.into(),
                overlay: "flannel.1".into(),
                overlay_state: "up".into(),
                local_vtep: Some(vtep.into()),
                vxlan_port: 8472,
                port_bound: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn with(mut c: Counters, peer: &str, tx: u64, rx: u64) -> Counters {
        c.peers.push(PeerCumulative {
            peer: peer.into(),
            traffic: Traffic {
                tx_encap_packets: tx,
                rx_encap_packets: rx,
                ..Traffic::default()
            },
        });
        c
    }

    const G: &str = "192.0.2.11";
    const M: &str = "192.0.2.12";
    const E: &str = "192.0.2.13";

    /// Three nodes; every link carries 100 packets in the window, except
    /// that the switch loses 30 of each sent towards eq14-001.
    fn readings() -> Vec<AgentReading> {
        let g0 = with(with(node("gladius", G), M, 50, 50), E, 50, 50);
        let m0 = with(with(node("momonoke", M), G, 50, 50), E, 50, 50);
        let e0 = with(with(node("eq14-001", E), G, 50, 50), M, 50, 50);
        let g1 = with(with(node("gladius", G), M, 150, 150), E, 150, 150);
        let m1 = with(with(node("momonoke", M), G, 150, 150), E, 150, 150);
        let e1 = with(with(node("eq14-001", E), G, 150, 120), M, 150, 121);
        vec![
            AgentReading {
                agent: "http://192.0.2.11:9465".into(),
                start: Ok(g0),
                end: Ok(g1),
                brackets: None,
                edge_secs: 0.0,
            },
            AgentReading {
                agent: "http://192.0.2.12:9465".into(),
                start: Ok(m0),
                end: Ok(m1),
                brackets: None,
                edge_secs: 0.0,
            },
            AgentReading {
                agent: "http://192.0.2.13:9465".into(),
                start: Ok(e0),
                end: Ok(e1),
                brackets: None,
                edge_secs: 0.0,
            },
        ]
    }

    #[test]
    fn names_exactly_the_lossy_links() {
        let m = compute(&readings(), 10.0, 2.0);
        assert_eq!(m.schema, 1);
        assert_eq!(m.links.len(), 6);
        let ge = m.link(G, E).expect("g->e");
        assert_eq!((ge.sent, ge.received, ge.loss_pct), (100, 70, 30.0));
        let me = m.link(M, E).expect("m->e");
        assert_eq!((me.sent, me.received, me.loss_pct), (100, 71, 29.0));
        for (a, b) in [(G, M), (M, G), (E, G), (E, M)] {
            let l = m.link(a, b).expect("link");
            assert_eq!(
                (l.sent, l.received, l.loss_pct),
                (100, 100, 0.0),
                "{a}->{b}"
            );
        }
        let lossy: Vec<(Option<&str>, Option<&str>)> = m
            .findings
            .iter()
            .filter(|f| f.code == "UNDERLAY_LOSS")
            .map(|f| (f.from.as_deref(), f.to.as_deref()))
            .collect();
        assert_eq!(lossy, vec![(Some(G), Some(E)), (Some(M), Some(E))]);
        assert!(m.findings[0].summary.contains("from gladius to eq14-001"));
        assert_eq!(m.exit_code(), 1);
        assert!(m.nodes.iter().all(|n| n.reachable));
    }

    /// Dual-stack: every node also has an IPv6 VTEP; gladius's IPv6 VXLAN
    /// to eq14-001 loses 40 of 100, its IPv4 VXLAN none. The links are per
    /// family, never IPv4 to IPv6, and only the IPv6 one is lossy.
    #[test]
    fn a_dual_stack_mesh_has_links_per_family() {
        const G6: &str = "fd00:192:0:2::11";
        const E6: &str = "fd00:192:0:2::13";
        let dual = |c: Counters, v6: &str| {
            let mut c = c;
            c.node.other_vteps = vec![v6.into()];
            c
        };
        let r = vec![
            AgentReading {
                agent: "http://192.0.2.11:9465".into(),
                start: Ok(with(with(dual(node("gladius", G), G6), E, 0, 0), E6, 0, 0)),
                end: Ok(with(
                    with(dual(node("gladius", G), G6), E, 100, 100),
                    E6,
                    100,
                    100,
                )),
                brackets: None,
                edge_secs: 0.0,
            },
            AgentReading {
                agent: "http://192.0.2.13:9465".into(),
                start: Ok(with(with(dual(node("eq14-001", E), E6), G, 0, 0), G6, 0, 0)),
                end: Ok(with(
                    with(dual(node("eq14-001", E), E6), G, 100, 100),
                    G6,
                    100,
                    60,
                )),
                brackets: None,
                edge_secs: 0.0,
            },
        ];
        let m = compute(&r, 10.0, 2.0);
        assert_eq!(m.links.len(), 4, "{:?}", m.links);
        let l = |a, b| m.link(a, b).map(|l| (l.sent, l.received, l.loss_pct));
        assert_eq!(l(G, E), Some((100, 100, 0.0)));
        assert_eq!(l(E, G), Some((100, 100, 0.0)));
        assert_eq!(l(G6, E6), Some((100, 60, 40.0)));
        assert_eq!(l(E6, G6), Some((100, 100, 0.0)));
        assert!(l(G, E6).is_none() && l(G6, E).is_none());
        let lossy: Vec<_> = m
            .findings
            .iter()
            .filter(|f| f.code == "UNDERLAY_LOSS")
            .map(|f| (f.from.as_deref(), f.to.as_deref()))
            .collect();
        assert_eq!(lossy, [(Some(G6), Some(E6))]);
        // The node list is one entry per agent, by its first VTEP.
        assert_eq!(m.nodes.len(), 2);
    }

    /// eq14-001's overlay took a new MAC; gladius and momonoke keep the old
    /// one in their FDB; eq14-001 itself raised VTEP_MAC_STALE for gladius.
    #[test]
    fn an_fdb_entry_for_an_old_vtep_mac_is_stale_from_its_sender_to_the_node() {
        const OLD: &str = "0e:00:00:00:00:13";
        const NEW: &str = "0e:00:00:00:ee:13";
        let mac = |c: &mut Counters, own: &str, fdb: &[(&str, &str)]| {
            c.overlay_mac = Some(own.into());
            c.fdb = fdb
                .iter()
                .map(|(m, d)| FdbDoc {
                    mac: m.to_string(),
                    dst: d.to_string(),
                })
                .collect();
        };
        let mut r = readings();
        for x in &mut r {
            for c in [&mut x.start, &mut x.end].into_iter().flatten() {
                match c.node.hostname.as_str() {
                    "gladius" => mac(
                        c,
                        "0e:00:00:00:00:11",
                        &[("0e:00:00:00:00:12", M), (OLD, E)],
                    ),
                    // Another case, the same MAC: not stale.
                    "momonoke" => mac(
                        c,
                        "0e:00:00:00:00:12",
                        &[("0E:00:00:00:00:11", G), (OLD, E)],
                    ),
                    _ => {
                        mac(
                            c,
                            NEW,
                            &[("0e:00:00:00:00:11", G), ("0e:00:00:00:00:12", M)],
                        );
                        c.findings = vec![AgentFinding::bare(
                            "VTEP_MAC_STALE",
                            Severity::Critical,
                            Some(G),
                        )];
                    }
                }
            }
        }
        let m = compute(&r, 10.0, 50.0);
        let stale: Vec<(Option<&str>, Option<&str>)> = m
            .findings
            .iter()
            .filter(|f| f.code == FindingCode::VtepMacStale)
            .map(|f| (f.from.as_deref(), f.to.as_deref()))
            .collect();
        // eq14-001's own finding is the link gladius -> eq14-001: once.
        assert_eq!(stale, vec![(Some(G), Some(E)), (Some(M), Some(E))]);
        for f in m
            .findings
            .iter()
            .filter(|f| f.code == FindingCode::VtepMacStale)
        {
            assert_eq!(f.severity, Severity::Critical);
            let text = f.evidence.join(" ");
            assert!(text.contains(OLD) && text.contains(NEW), "{f:?}");
            assert!(f.summary.contains("eq14-001"), "{}", f.summary);
        }
        assert_eq!(m.exit_code(), 1);

        // An agent that does not say its MAC (older) is not compared; a
        // node's own finding then still shows, from the sender to it.
        for x in &mut r {
            for c in [&mut x.start, &mut x.end].into_iter().flatten() {
                if c.node.hostname == "eq14-001" {
                    c.overlay_mac = None;
                }
            }
        }
        let m = compute(&r, 10.0, 50.0);
        let stale: Vec<(Option<&str>, Option<&str>, &str)> = m
            .findings
            .iter()
            .filter(|f| f.code == FindingCode::VtepMacStale)
            .map(|f| (f.from.as_deref(), f.to.as_deref(), f.agent.as_str()))
            .collect();
        assert_eq!(stale, vec![(Some(G), Some(E), "http://192.0.2.13:9465")]);
    }

    #[test]
    fn a_healthy_mesh_exits_0_and_tolerates_packets_in_flight() {
        let mut r = readings();
        // eq14-001 got everything but one packet from each (in flight).
        let e1 = with(with(node("eq14-001", E), G, 150, 149), M, 150, 149);
        r[2].end = Ok(e1);
        let m = compute(&r, 10.0, 0.5);
        assert!(m.findings.is_empty(), "{:?}", m.findings);
        assert_eq!(m.exit_code(), 0);
        assert_eq!(m.link(G, E).map(|l| l.loss_pct), Some(1.0));
    }

    #[test]
    fn unreachable_agents_and_node_findings_are_reported() {
        let mut r = readings();
        r[1].end = Err("http://192.0.2.12:9465: cannot connect".into());
        let mut e1 = with(with(node("eq14-001", E), G, 150, 150), M, 150, 150);
        e1.node.overlay_state = "missing".into();
        e1.findings = vec![
            AgentFinding {
                code: "VXLAN_NOT_DECAPSULATED".into(),
                severity: Severity::Critical,
                peer: None,
                summary: "inbound VXLAN from 2 peers, none decapsulated".into(),
                evidence: vec![],
                remediation: String::new(),
            },
            AgentFinding::bare("NO_VXLAN_TRAFFIC", Severity::Info, None),
        ];
        r[2].end = Ok(e1);
        let m = compute(&r, 10.0, 2.0);
        assert_eq!(m.links.len(), 2, "only gladius <-> eq14-001 is measurable");
        let codes: Vec<(&str, Option<&str>)> = m
            .findings
            .iter()
            .map(|f| (f.code.as_str(), f.from.as_deref()))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("VXLAN_NOT_DECAPSULATED", Some(E)),
                ("AGENT_UNREACHABLE", Some(M)),
            ]
        );
        assert!(m.findings[0].summary.starts_with("eq14-001: "));
        let momonoke = &m.nodes[1];
        assert!(!momonoke.reachable);
        assert_eq!(momonoke.hostname.as_deref(), Some("momonoke"));
        assert_eq!(m.exit_code(), 1);
    }

    /// The CI failure this guards against: eq14-001 read 0.4 s before
    /// gladius at the end of a 6 s window, so 7 of the 108 packets it sent
    /// at 18/s were still to be counted at gladius.
    fn skewed(clock_off: f64) -> Vec<AgentReading> {
        let at = |c: Counters, unix: f64| Counters {
            sampled_unix: unix,
            ..c
        };
        let g0 = at(with(node("gladius", G), E, 0, 0), 100.0);
        let e0 = at(with(node("eq14-001", E), G, 0, 0), 100.0 + clock_off);
        let g1 = at(with(node("gladius", G), E, 100, 101), 106.4);
        let e1 = at(with(node("eq14-001", E), G, 108, 100), 106.0 + clock_off);
        let b = |asked: f64, answered: f64| Bracket { asked, answered };
        vec![
            AgentReading {
                agent: "http://192.0.2.11:9465".into(),
                start: Ok(g0),
                end: Ok(g1),
                brackets: Some([b(0.0, 0.01), b(6.0, 6.41)]),
                edge_secs: 0.0,
            },
            AgentReading {
                agent: "http://192.0.2.13:9465".into(),
                start: Ok(e0),
                end: Ok(e1),
                brackets: Some([b(0.0, 0.01), b(6.0, 6.01)]),
                edge_secs: 0.0,
            },
        ]
    }

    #[test]
    fn readings_taken_apart_allow_what_the_link_carries_meanwhile() {
        let m = compute(&skewed(0.0), 6.2, 2.0);
        let eg = m.link(E, G).expect("e->g");
        assert_eq!((eg.sent, eg.received, eg.lost), (108, 101, 7));
        assert_eq!(eg.skew_secs, 0.4);
        // 2 + ceil(108 * 0.4 / 6.0) = 2 + 8.
        assert_eq!(eg.in_flight_allowance, 10);
        assert!(m.findings.is_empty(), "{:?}", m.findings);
        assert_eq!(m.exit_code(), 0);
        // Real loss is still loss: 30 missing of 108.
        let mut r = skewed(0.0);
        if let Ok(c) = r[0].end.as_mut() {
            c.peers[0].traffic.rx_encap_packets = 78;
        }
        let m = compute(&r, 6.2, 2.0);
        assert_eq!(m.link(E, G).map(|l| l.lost), Some(30));
        assert_eq!(m.exit_code(), 1);
        assert!(
            m.findings[0].evidence[2].contains("read 0.400s apart: up to 10 packets"),
            "{:?}",
            m.findings[0].evidence
        );
    }

    #[test]
    fn a_node_whose_clock_is_off_cannot_widen_the_allowance() {
        // eq14-001's clock runs 30 s ahead: its readings look 60 s off,
        // but the mesh asked both within 0.42 s (0.01 at the start, 0.41 at the end).
        let mut r = skewed(30.0);
        if let Ok(c) = r[0].end.as_mut() {
            c.peers[0].traffic.rx_encap_packets = 78;
        }
        let m = compute(&r, 6.2, 2.0);
        let eg = m.link(E, G).expect("e->g");
        assert_eq!(eg.skew_secs, 0.42);
        assert_eq!(eg.in_flight_allowance, 2 + 8);
        assert_eq!(m.exit_code(), 1, "{:?}", m.findings);
        // Without brackets only the clocks are there to go by.
        for a in &mut r {
            a.brackets = None;
        }
        let m = compute(&r, 6.2, 2.0);
        assert_eq!(m.link(E, G).map(|l| l.skew_secs), Some(59.6));
    }

    #[test]
    fn a_restarted_agent_is_left_out_of_the_links() {
        let mut r = readings();
        if let Ok(c) = r[0].end.as_mut() {
            c.started_unix = 2000.0;
        }
        let m = compute(&r, 10.0, 2.0);
        assert!(m.nodes[0].restarted);
        assert!(m.links.iter().all(|l| l.from != G && l.to != G));
        assert!(m.findings.iter().any(|f| f.code == "AGENT_RESTARTED"));
    }

    #[test]
    fn two_agents_claiming_one_vtep_are_flagged_and_left_out_of_the_links() {
        let mut r = readings();
        // A fourth agent says it is gladius's VTEP too.
        let twin0 = with(node("gladius-clone", G), E, 0, 0);
        r.push(AgentReading {
            agent: "http://192.0.2.99:9465".into(),
            start: Ok(twin0.clone()),
            end: Ok(twin0),
            brackets: None,
            edge_secs: 0.0,
        });
        // And gladius itself, asked a second time under another URL, is
        // one agent, not two.
        r.push(AgentReading {
            agent: "http://127.0.0.1:9465".into(),
            start: r[0].start.clone(),
            end: r[0].end.clone(),
            brackets: None,
            edge_secs: 0.0,
        });
        let m = compute(&r, 10.0, 2.0);
        let dup: Vec<&MeshFinding> = m
            .findings
            .iter()
            .filter(|f| f.code == "DUPLICATE_VTEP")
            .collect();
        assert_eq!(dup.len(), 1, "{:?}", m.findings);
        let f = dup[0];
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.from.as_deref(), Some(G));
        assert_eq!(
            f.summary,
            "2 agents claim VTEP 192.0.2.11: gladius (http://192.0.2.11:9465) and \
             gladius-clone (http://192.0.2.99:9465)"
        );
        assert!(
            m.links.iter().all(|l| l.from != G && l.to != G),
            "{:?}",
            m.links
        );
        assert_eq!(m.links.len(), 2, "momonoke <-> eq14-001 only");
        assert_eq!(m.exit_code(), 1);
        // Without the twin: nothing.
        r.remove(3);
        let m = compute(&r, 10.0, 2.0);
        assert!(!m.findings.iter().any(|f| f.code == "DUPLICATE_VTEP"));
    }
}
