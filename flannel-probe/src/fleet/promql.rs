//! `mesh --from-prometheus`: the matrix from what a Prometheus server
//! scraped from the agents' `/metrics`, instead of asking every agent.
//!
//! A fixed handful of instant queries, whatever the number of nodes, all
//! evaluated at one instant (the window's end). Their answers fill the
//! same [`AgentReading`]s that `mesh --agents` fills from `/counters`: a
//! start reading that holds only what was known before the window (the
//! running maxima) and an end reading that holds what `increase()` says
//! the window added. [`mesh::compute`] then decides exactly as for the
//! agents. Pure: `cli::mesh` does the asking.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    ops::{Index, IndexMut},
};

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::{
    fleet::{
        agent::{AgentFinding, AgentNode, Counters, FdbDoc, PeerCumulative},
        mesh::{self, AgentReading, MeshReport, MeshSource, NotChecked, PrometheusQueried},
    },
    report::{FindingCode, Severity, Traffic},
};

/// Port of a Prometheus server when the URL names none.
pub(crate) const DEFAULT_PORT: u16 = 9090;

/// Default cap of one query's answer: the packets query has two series
/// per pair of nodes (about 130 bytes each), so 64 MiB holds a cluster of
/// some 500 nodes.
pub(crate) const DEFAULT_MAX_ANSWER: u64 = 64 << 20;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub labels: BTreeMap<String, String>,
    /// The evaluation time (Unix seconds, the server's clock).
    pub at: f64,
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The scrape target it belongs to.
    fn target(&self) -> (&str, &str) {
        (self.label("job"), self.label("instance"))
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSample>,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[<unix time>, "<value>"]`: Prometheus sends the value as a string.
    value: (f64, String),
}

/// Prometheus' float text: Go's, with `+Inf`, `-Inf` and `NaN`.
fn float(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// The instant vector of an `/api/v1/query` answer; `what` names the query
/// in errors (one line each).
pub(crate) fn parse_vector(body: &[u8], what: &str) -> Result<Vec<Sample>> {
    let Ok(a) = serde_json::from_slice::<Answer>(body) else {
        bail!(
            "{what}: the answer is not a Prometheus API answer (is the URL a Prometheus server?)"
        );
    };
    if a.status != "success" {
        bail!(
            "{what}: Prometheus answered {}: {}: {}",
            a.status,
            a.error_type.as_deref().unwrap_or("no error type"),
            a.error.as_deref().unwrap_or("no reason given")
        );
    }
    let Some(data) = a.data else {
        bail!("{what}: the answer is not a Prometheus API answer (no data)");
    };
    if data.result_type != "vector" {
        bail!(
            "{what}: Prometheus answered a {}, not an instant vector",
            data.result_type
        );
    }
    data.result
        .into_iter()
        .map(|r| {
            let Some(value) = float(&r.value.1) else {
                bail!("{what}: '{}' is not a sample value", r.value.1);
            };
            Ok(Sample {
                labels: r.metric,
                at: r.value.0,
                value,
            })
        })
        .collect()
}

/// A window as PromQL writes it: whole seconds, else milliseconds.
pub(crate) fn range(window: std::time::Duration) -> String {
    if window.subsec_millis() == 0 {
        format!("{}s", window.as_secs().max(1))
    } else {
        format!("{}ms", window.as_millis())
    }
}

/// The queries, in the order `cli::mesh` asks them: [`Query::Info`]
/// first (its answer gives the instant the others are evaluated at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Query {
    /// Every agent seen in the window, with who it is.
    Info,
    /// Whether its last scrape succeeded.
    Up,
    /// How many scrapes the window holds (its scrape interval).
    Scrapes,
    /// Outer packets per target, peer and direction over the window.
    Packets,
    /// Of those, the large size class.
    Large,
    /// The largest outer length received from each peer, at the window's
    /// end (`at="end"`) and at its start (`at="start"`).
    MaxLen,
    /// The findings raised at the window's end.
    Findings,
    /// Every node's overlay (VTEP) MAC, and its FDB: which MAC each peer's
    /// VTEP is sent to, at the window's end (`VTEP_MAC_STALE`).
    OverlayMac,
    Fdb,
    /// Every watched overlay of every agent seen in the window: the local
    /// VTEPs of its other overlays (dual-stack: `flannel-v6.1`'s IPv6 one),
    /// so that its peers of either family are matched.
    Overlays,
}

impl Query {
    pub(crate) const ALL: [Query; 10] = [
        Query::Info,
        Query::Up,
        Query::Scrapes,
        Query::Packets,
        Query::Large,
        Query::MaxLen,
        Query::Findings,
        Query::OverlayMac,
        Query::Fdb,
        Query::Overlays,
    ];

    /// Its PromQL over `window` (a PromQL range).
    fn promql(self, window: &str) -> String {
        let agents = format!("last_over_time(flannel_probe_node_info[{window}])");
        let max = "flannel_probe_peer_max_outer_length_bytes{direction=\"rx\"}";
        match self {
            Query::Info => agents,
            Query::Up => format!("up and on (job, instance) {agents}"),
            Query::Scrapes => {
                format!("count_over_time(up[{window}]) and on (job, instance) {agents}")
            }
            Query::Packets => format!(
                "sum by (job, instance, peer, direction) \
                 (increase(flannel_probe_peer_packets_total{{layer=\"outer\"}}[{window}]))"
            ),
            Query::Large => format!(
                "sum by (job, instance, peer, direction) \
                 (increase(flannel_probe_peer_large_packets_total[{window}]))"
            ),
            Query::MaxLen => format!(
                "label_replace({max}, \"at\", \"end\", \"\", \"\") \
                 or label_replace({max} offset {window}, \"at\", \"start\", \"\", \"\")"
            ),
            Query::Findings => "flannel_probe_finding == 1".into(),
            Query::OverlayMac => "flannel_probe_overlay_mac_info".into(),
            Query::Fdb => "flannel_probe_fdb_entry".into(),
            Query::Overlays => format!("last_over_time(flannel_probe_overlay_info[{window}])"),
        }
    }
}

/// Every [`Query`]'s PromQL over one window, in [`Query::ALL`]'s order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Queries([String; 10]);

impl Queries {
    pub(crate) fn new(window: &str) -> Self {
        Self(Query::ALL.map(|q| q.promql(window)))
    }

    pub(crate) fn all(&self) -> &[String] {
        &self.0
    }
}

impl Index<Query> for Queries {
    type Output = str;

    fn index(&self, q: Query) -> &str {
        &self.0[q as usize]
    }
}

/// The answers to [`Queries`], one instant vector per [`Query`], all at `at`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Answers {
    /// The instant every query was evaluated at: the window's end.
    pub at: f64,
    pub window_secs: f64,
    answers: [Vec<Sample>; 10],
}

impl Answers {
    /// From the answers to [`Queries::all`], in its order.
    pub(crate) fn new(at: f64, window_secs: f64, answers: Vec<Vec<Sample>>) -> Result<Self> {
        let Ok(answers) = <[Vec<Sample>; 10]>::try_from(answers) else {
            bail!("the answers do not match the queries");
        };
        Ok(Self {
            at,
            window_secs,
            answers,
        })
    }
}

impl Index<Query> for Answers {
    type Output = Vec<Sample>;

    fn index(&self, q: Query) -> &Vec<Sample> {
        &self.answers[q as usize]
    }
}

impl IndexMut<Query> for Answers {
    fn index_mut(&mut self, q: Query) -> &mut Vec<Sample> {
        &mut self.answers[q as usize]
    }
}

/// A count Prometheus extrapolated, to whole packets.
fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

fn severity(s: &str) -> Option<Severity> {
    match s {
        "critical" => Some(Severity::Critical),
        "warning" => Some(Severity::Warning),
        "info" => Some(Severity::Info),
        _ => None,
    }
}

/// One agent's readings: the window's start (running maxima only) and end
/// (what the window added), or why it has none.
fn reading(a: &Answers, node: &Sample) -> AgentReading {
    let target = node.target();
    let instance = target.1;
    let mine = |v: &[Sample]| -> Vec<Sample> {
        v.iter().filter(|s| s.target() == target).cloned().collect()
    };
    let n = AgentNode {
        hostname: node.label("hostname").to_string(),
        overlay: node.label("overlay").to_string(),
        // /metrics says whether it is up (flannel_probe_overlay_up); the
        // mesh takes the node's own findings instead, as with /counters.
        overlay_state: "unknown".into(),
        uplink: Some(node.label("uplink").to_string()).filter(|u| !u.is_empty()),
        local_vtep: Some(node.label("local_vtep").to_string()).filter(|v| !v.is_empty()),
        vxlan_port: node.label("port").parse().unwrap_or(8472),
        vni: node.label("vni").parse().ok(),
        port_bound: true,
        other_vteps: other_vteps(a, node),
        ..AgentNode::default()
    };
    let scrapes = mine(&a[Query::Scrapes]).first().map_or(0.0, |s| s.value);
    let up = mine(&a[Query::Up]).first().map(|s| s.value);
    let mut peers: BTreeMap<String, [Traffic; 2]> = BTreeMap::new();
    // What the window added, per peer: (answer, its tx field, its rx field).
    type Field = fn(&mut Traffic) -> &mut u64;
    let added: [(&[Sample], Field, Field); 2] = [
        (
            &a[Query::Packets],
            |t| &mut t.tx_encap_packets,
            |t| &mut t.rx_encap_packets,
        ),
        (
            &a[Query::Large],
            |t| &mut t.tx_encap_large,
            |t| &mut t.rx_encap_large,
        ),
    ];
    for (answer, tx, rx) in added {
        for s in mine(answer) {
            let t = &mut peers.entry(s.label("peer").to_string()).or_default()[1];
            let field = match s.label("direction") {
                "tx" => tx(t),
                "rx" => rx(t),
                _ => continue,
            };
            *field = count(s.value);
        }
    }
    for s in mine(&a[Query::MaxLen]) {
        let at = match s.label("at") {
            "start" => 0,
            "end" => 1,
            _ => continue,
        };
        peers.entry(s.label("peer").to_string()).or_default()[at].rx_encap_max_len = count(s.value);
    }
    let findings: Vec<AgentFinding> = mine(&a[Query::Findings])
        .iter()
        .filter_map(|s| {
            let code = FindingCode::from_name(s.label("code"));
            let peer = Some(s.label("peer").to_string()).filter(|p| !p.is_empty());
            Some(AgentFinding {
                summary: match &peer {
                    Some(p) => format!("{} (peer {p})", code.as_str()),
                    None => code.as_str().to_string(),
                },
                evidence: vec![format!(
                    "flannel_probe_finding{{code=\"{}\",severity=\"{}\",peer=\"{}\"}} 1 at the window's end",
                    code.as_str(),
                    s.label("severity"),
                    s.label("peer")
                )],
                remediation: format!(
                    "the agent's own report says why and what to do: flannel-probe report --from http://{instance}"
                ),
                code,
                severity: severity(s.label("severity"))?,
                peer,
            })
        })
        .collect();
    let overlay_mac = mine(&a[Query::OverlayMac])
        .first()
        .map(|s| s.label("mac").to_string());
    let fdb: Vec<FdbDoc> = mine(&a[Query::Fdb])
        .iter()
        .map(|s| FdbDoc {
            mac: s.label("mac").to_string(),
            dst: s.label("dst").to_string(),
        })
        .collect();
    let at = |i: usize, t: f64| Counters {
        schema: 1,
        sampled_unix: t,
        node: n.clone(),
        peers: peers
            .iter()
            .map(|(peer, t)| PeerCumulative {
                peer: peer.clone(),
                traffic: t[i],
            })
            .collect(),
        findings: if i == 1 { findings.clone() } else { vec![] },
        // As `/counters` has them: of the latest reading.
        overlay_mac: overlay_mac.clone().filter(|_| i == 1),
        fdb: if i == 1 { fdb.clone() } else { vec![] },
        window_secs: a.window_secs,
        ..Counters::default()
    };
    let start = Ok(at(0, a.at - a.window_secs));
    let end = match up {
        None => Err(format!(
            "{instance}: Prometheus has no scrape of it at the window's end (the target is gone)"
        )),
        Some(v) if v < 1.0 => Err(format!(
            "{instance}: Prometheus' last scrape of it failed (up == 0)"
        )),
        // increase() needs two samples of a series in the window.
        _ if scrapes < 2.0 => Err(format!(
            "{instance}: {scrapes} scrape of it in the {}s window: widen --window",
            a.window_secs
        )),
        _ => Ok(at(1, a.at)),
    };
    AgentReading {
        agent: instance.to_string(),
        start,
        end,
        brackets: None,
        // Prometheus extrapolates each series from its first and last
        // sample to the window's edges, assuming a steady rate, and only
        // half an interval past a missed scrape: a node's figures may be
        // off by what a link carries in about one scrape interval (the
        // lab measured up to 1.2 s at 1 s scrapes).
        edge_secs: if scrapes > 0.0 {
            a.window_secs / scrapes
        } else {
            a.window_secs
        },
    }
}

/// The local VTEPs of `node`'s other watched overlays (agents older than
/// `flannel_probe_overlay_info`, and single-overlay nodes, have none).
fn other_vteps(a: &Answers, node: &Sample) -> Vec<String> {
    let own = node.label("local_vtep");
    let mut v: Vec<String> = a[Query::Overlays]
        .iter()
        .filter(|s| s.target() == node.target())
        .map(|s| s.label("local_vtep"))
        .filter(|v| !v.is_empty() && *v != own)
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The typed intermediate of the matrix, one reading per agent Prometheus
/// saw in the window, in the order of their VTEPs.
pub(crate) fn readings(a: &Answers) -> Vec<AgentReading> {
    let mut nodes: Vec<&Sample> = Vec::new();
    for s in &a[Query::Info] {
        if !nodes.iter().any(|n| n.target() == s.target()) {
            nodes.push(s);
        }
    }
    nodes.sort_by_key(|s| {
        (
            s.label("local_vtep").parse::<IpAddr>().ok(),
            s.label("instance").to_string(),
        )
    });
    nodes.into_iter().map(|n| reading(a, n)).collect()
}

/// What this source cannot say, and why.
fn not_checked() -> Vec<NotChecked> {
    vec![NotChecked {
        code: FindingCode::AgentRestarted,
        reason: "increase() carries counters across an agent's restart, so its links are kept"
            .into(),
    }]
}

/// The matrix from Prometheus' answers.
pub(crate) fn compute(a: &Answers, queries: &Queries, url: &str, threshold_pct: f64) -> MeshReport {
    let mut m = mesh::compute(&readings(a), a.window_secs, threshold_pct);
    m.source = MeshSource::Prometheus;
    m.prometheus = Some(PrometheusQueried {
        url: url.to_string(),
        evaluated_unix: a.at,
        queries: queries.all().to_vec(),
    });
    m.not_checked = not_checked();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "192.0.2.11";
    const M: &str = "192.0.2.12";
    const E: &str = "192.0.2.13";
    const AT: f64 = 1_764_657_000.5;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            at: AT,
            value,
        }
    }

    fn inst(vtep: &str) -> String {
        format!("{vtep}:9465")
    }

    fn target(vtep: &str) -> Vec<(&'static str, String)> {
        vec![("job", "flannel-probe".into()), ("instance", inst(vtep))]
    }

    fn with(vtep: &str, more: &[(&'static str, &str)], value: f64) -> Sample {
        let mut l: Vec<(&str, String)> = target(vtep);
        l.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
        let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sample(&l, value)
    }

    /// (code, from, to) of every finding, in the report's order.
    fn codes(m: &MeshReport) -> Vec<(&str, Option<&str>, Option<&str>)> {
        m.findings
            .iter()
            .map(|f| (f.code.as_str(), f.from.as_deref(), f.to.as_deref()))
            .collect()
    }

    /// Three nodes, 10 s window, scraped every second; every link carries
    /// 100 packets except that 30 of gladius's to eq14-001 are lost.
    fn answers() -> Answers {
        let nodes = [(G, "gladius"), (M, "momonoke"), (E, "eq14-001")];
        let mut a = Answers {
            at: AT,
            window_secs: 10.0,
            ..Answers::default()
        };
        // Not in VTEP order: the matrix sorts them.
        for &(vtep, host) in nodes.iter().rev() {
            a[Query::Info].push(with(
                vtep,
                &[
                    ("hostname", host),
                    ("local_vtep", vtep),
                    ("overlay", "flannel.1"),
                    ("uplink", "eth0"),
                    ("vni", "1"),
                    ("port", "8472"),
                ],
                1.0,
            ));
            a[Query::Up].push(with(vtep, &[], 1.0));
            a[Query::Scrapes].push(with(vtep, &[], 10.0));
            for &(peer, _) in nodes.iter().filter(|&&(p, _)| p != vtep) {
                // Extrapolated figures are not whole.
                a[Query::Packets].push(with(vtep, &[("peer", peer), ("direction", "tx")], 100.4));
                let rx = if vtep == E && peer == G { 70.2 } else { 99.6 };
                a[Query::Packets].push(with(vtep, &[("peer", peer), ("direction", "rx")], rx));
            }
        }
        a
    }

    #[test]
    fn parses_an_instant_vector() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"flannel-probe","instance":"192.0.2.11:9465","peer":"192.0.2.13","direction":"tx"},
             "value":[1764657000.5,"123.75"]},
            {"metric":{},"value":[1764657000.5,"NaN"]},
            {"metric":{"__name__":"up"},"value":[1764657000.5,"+Inf"]}]}}"#;
        let v = parse_vector(body, "q").expect("parse");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].label("peer"), E);
        assert_eq!(v[0].target(), ("flannel-probe", "192.0.2.11:9465"));
        assert_eq!((v[0].at, v[0].value), (AT, 123.75));
        assert!(v[1].value.is_nan());
        assert_eq!(v[2].value, f64::INFINITY);
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_vector(empty, "q").expect("parse"), vec![]);
    }

    #[test]
    fn refuses_what_is_not_an_instant_vector_with_one_line() {
        for (body, want) in [
            (&b"<html>nginx</html>"[..], "not a Prometheus API answer"),
            (b"{\"hello\":1}", "not a Prometheus API answer"),
            (b"{\"status\":\"success\"}", "no data"),
            (
                br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error"}"#,
                "Prometheus answered error: bad_data: 1:5: parse error",
            ),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "a matrix, not an instant vector",
            ),
            (
                br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#,
                "'x' is not a sample value",
            ),
        ] {
            let e = parse_vector(body, "the packets query").expect_err("refused");
            let e = format!("{e:#}");
            assert!(e.starts_with("the packets query: "), "{e}");
            assert!(e.contains(want), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn windows_are_written_as_promql_ranges() {
        use std::time::Duration;
        assert_eq!(range(Duration::from_secs(300)), "300s");
        assert_eq!(range(Duration::from_millis(1500)), "1500ms");
        let q = Queries::new("5m");
        assert_eq!(q.all()[0], "last_over_time(flannel_probe_node_info[5m])");
        let packets = &q[Query::Packets];
        assert!(packets.contains("[5m]") && packets.starts_with("sum by (job, instance"));
        assert!(q[Query::MaxLen].contains("offset 5m"));
        // A fixed number of queries, whatever the number of nodes.
        assert_eq!(q.all().len(), 10);
        // Their answers are indexed by the same names, in order.
        let one = |v: f64| vec![sample(&[], v)];
        let all: Vec<Vec<Sample>> = (0..10).map(|i| one(f64::from(i))).collect();
        let a = Answers::new(AT, 300.0, all.clone()).expect("ten answers");
        assert_eq!(
            (
                a[Query::Info][0].value,
                a[Query::Up][0].value,
                a[Query::Scrapes][0].value
            ),
            (0.0, 1.0, 2.0)
        );
        assert_eq!(
            (
                a[Query::Findings][0].value,
                a[Query::Fdb][0].value,
                a[Query::Overlays][0].value
            ),
            (6.0, 8.0, 9.0)
        );
        assert!(Answers::new(AT, 300.0, all[1..].to_vec()).is_err());
    }

    #[test]
    fn builds_the_same_matrix_as_the_agents_would() {
        let m = compute(&answers(), &Queries::new("10s"), "http://prom:9090", 2.0);
        assert_eq!(m.source, MeshSource::Prometheus);
        let hosts: Vec<Option<&str>> = m.nodes.iter().map(|n| n.hostname.as_deref()).collect();
        assert_eq!(hosts, [Some("gladius"), Some("momonoke"), Some("eq14-001")]);
        assert_eq!(m.nodes[0].agent, "192.0.2.11:9465");
        assert!(m.nodes.iter().all(|n| n.reachable && !n.restarted));
        assert_eq!(m.links.len(), 6);
        let ge = m.link(G, E).expect("g->e");
        assert_eq!(
            (ge.sent, ge.received, ge.lost, ge.loss_pct),
            (100, 70, 30, 30.0)
        );
        // One scrape interval (10 s / 10 scrapes) of each node.
        assert_eq!(ge.skew_secs, 2.0);
        assert_eq!(ge.in_flight_allowance, 2 + 20);
        for (a, b) in [(G, M), (M, G), (M, E), (E, G), (E, M)] {
            let l = m.link(a, b).expect("link");
            assert_eq!(
                (l.sent, l.received, l.loss_pct),
                (100, 100, 0.0),
                "{a}->{b}"
            );
        }
        let codes = codes(&m);
        assert_eq!(codes, [("UNDERLAY_LOSS", Some(G), Some(E))]);
        assert!(m.findings[0].summary.contains("from gladius to eq14-001"));
        assert!(
            m.findings[0].evidence[2].contains("scrape intervals): up to 22 packets may be off"),
            "{:?}",
            m.findings[0].evidence
        );
        assert_eq!(m.exit_code(), 1);
        let not: Vec<&str> = m.not_checked.iter().map(|n| n.code.as_str()).collect();
        assert_eq!(not, ["AGENT_RESTARTED"]);
        let p = m.prometheus.as_ref().expect("prometheus");
        assert_eq!(
            (p.url.as_str(), p.evaluated_unix, p.queries.len()),
            ("http://prom:9090", AT, 10)
        );
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["source"], "prometheus");
        assert_eq!(json["links"][0]["from"], G);
    }

    #[test]
    fn a_down_target_is_unreachable_and_node_findings_come_through() {
        let mut a = answers();
        // momonoke's last scrape failed; eq14-001 raised the incident.
        a[Query::Up][1].value = 0.0;
        a[Query::Findings].push(with(
            E,
            &[
                ("code", "VXLAN_NOT_DECAPSULATED"),
                ("severity", "critical"),
                ("peer", ""),
            ],
            1.0,
        ));
        a[Query::Findings].push(with(
            E,
            &[
                ("code", "NO_VXLAN_TRAFFIC"),
                ("severity", "info"),
                ("peer", ""),
            ],
            1.0,
        ));
        let m = compute(&a, &Queries::new("10s"), "http://prom:9090", 2.0);
        let codes = codes(&m);
        assert_eq!(
            codes,
            [
                ("VXLAN_NOT_DECAPSULATED", Some(E), None),
                ("AGENT_UNREACHABLE", Some(M), None),
                ("UNDERLAY_LOSS", Some(G), Some(E)),
            ]
        );
        let unreachable = &m.findings[1];
        assert_eq!(unreachable.agent, "192.0.2.12:9465");
        assert!(
            unreachable.evidence[0].contains("up == 0"),
            "{unreachable:?}"
        );
        assert!(
            m.findings[0]
                .remediation
                .contains("report --from http://192.0.2.13:9465")
        );
        let momonoke = &m.nodes[1];
        assert_eq!(
            (momonoke.hostname.as_deref(), momonoke.reachable),
            (Some("momonoke"), false)
        );
        assert_eq!(m.links.len(), 2, "only gladius <-> eq14-001 is measurable");

        // A target gone from the scrape, and one with too few scrapes.
        let mut a = answers();
        a[Query::Up].retain(|s| s.label("instance") != inst(M));
        a[Query::Scrapes][0].value = 1.0;
        let m = compute(&a, &Queries::new("10s"), "http://prom:9090", 2.0);
        let errors: Vec<&str> = m.nodes.iter().filter_map(|n| n.error.as_deref()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("target is gone")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("widen --window")),
            "{errors:?}"
        );
        assert!(m.links.is_empty());
    }

    #[test]
    fn large_packets_lost_while_small_ones_arrive_is_a_blackhole() {
        let mut a = answers();
        for s in &mut a[Query::Packets] {
            s.value = 100.0;
        }
        // eq14-001 got none of gladius's 40 large packets, all 60 small.
        let lg = |vtep: &str, peer: &str, dir: &str, v: f64| {
            with(vtep, &[("peer", peer), ("direction", dir)], v)
        };
        a[Query::Large].push(lg(G, E, "tx", 40.0));
        a[Query::Large].push(lg(E, G, "rx", 0.0));
        if let Some(s) = a[Query::Packets].iter_mut().find(|s| {
            s.target().1 == inst(E) && s.label("peer") == G && s.label("direction") == "rx"
        }) {
            s.value = 60.0;
        }
        let mx = |at: &str, v: f64| with(E, &[("peer", G), ("direction", "rx"), ("at", at)], v);
        a[Query::MaxLen].push(mx("start", 1400.0));
        a[Query::MaxLen].push(mx("end", 1400.0));
        let m = compute(&a, &Queries::new("10s"), "http://prom:9090", 2.0);
        let codes = codes(&m);
        assert_eq!(codes, [("UNDERLAY_MTU_BLACKHOLE", Some(G), Some(E))]);
        let ge = m.link(G, E).expect("g->e");
        assert_eq!(
            (
                ge.large_sent,
                ge.large_received,
                ge.small_sent,
                ge.small_received,
                ge.max_received_len
            ),
            (40, 0, 60, 60, 1400)
        );
    }

    /// Dual-stack: each agent's `flannel_probe_overlay_info` names its
    /// IPv6 VTEP beside node_info's IPv4 one; gladius's IPv6 VXLAN to
    /// eq14-001 loses 40 of 100. The links are per family and only the
    /// IPv6 one is lossy, as the agents' `/counters` would say.
    #[test]
    fn a_dual_stack_fleet_has_links_per_family() {
        const G6: &str = "fd00:192:0:2::11";
        const E6: &str = "fd00:192:0:2::13";
        let mut a = Answers {
            at: AT,
            window_secs: 10.0,
            ..Answers::default()
        };
        for (vtep, v6, host) in [(G, G6, "gladius"), (E, E6, "eq14-001")] {
            a[Query::Info].push(with(
                vtep,
                &[
                    ("hostname", host),
                    ("local_vtep", vtep),
                    ("overlay", "flannel.1"),
                ],
                1.0,
            ));
            for (o, local) in [("flannel.1", vtep), ("flannel-v6.1", v6)] {
                a[Query::Overlays].push(with(vtep, &[("overlay", o), ("local_vtep", local)], 1.0));
            }
            a[Query::Up].push(with(vtep, &[], 1.0));
            a[Query::Scrapes].push(with(vtep, &[], 10.0));
        }
        let mut packets = |from: &str, peer: &str, dir: &str, n: f64| {
            a[Query::Packets].push(with(from, &[("peer", peer), ("direction", dir)], n));
        };
        for (from, to, to6) in [(G, E, E6), (E, G, G6)] {
            packets(from, to, "tx", 100.0);
            packets(from, to6, "tx", 100.0);
            // What `from` received from the other node, by family.
            packets(from, to, "rx", 100.0);
            let lost = if from == E { 40.0 } else { 0.0 };
            packets(from, to6, "rx", 100.0 - lost);
        }
        let readings = readings(&a);
        let others = readings[0].end.as_ref().map(|c| c.node.other_vteps.clone());
        assert_eq!(others, Ok(vec![G6.to_string()]));
        let m = compute(&a, &Queries::new("10s"), "http://prom:9090", 2.0);
        let ge6 = m.link(G6, E6).expect("IPv6 link gladius -> eq14-001");
        assert_eq!((ge6.sent, ge6.received, ge6.lost), (100, 60, 40));
        let ge = m.link(G, E).expect("IPv4 link");
        assert_eq!((ge.sent, ge.received, ge.lost), (100, 100, 0));
        assert!(
            m.link(G, E6).is_none() && m.link(G6, E).is_none(),
            "never across families"
        );
        let codes = codes(&m);
        assert_eq!(codes, [("UNDERLAY_LOSS", Some(G6), Some(E6))]);
    }

    #[test]
    fn two_targets_claiming_one_vtep_are_flagged() {
        let mut a = answers();
        let mut twin = a[Query::Info][0].clone();
        twin.labels
            .insert("instance".into(), "192.0.2.99:9465".into());
        twin.labels.insert("hostname".into(), "eq14-clone".into());
        a[Query::Info].push(twin);
        let m = compute(&a, &Queries::new("10s"), "http://prom:9090", 2.0);
        assert!(
            m.findings
                .iter()
                .any(|f| f.code == FindingCode::DuplicateVtep && f.from.as_deref() == Some(E)),
            "{:?}",
            m.findings
        );
    }

    /// eq14-001's overlay took a new MAC; gladius's FDB still sends its
    /// VTEP to the old one, momonoke's has the new one.
    #[test]
    fn an_fdb_entry_for_an_old_vtep_mac_is_stale() {
        const OLD: &str = "0e:00:00:00:00:13";
        const NEW: &str = "0e:00:00:00:ee:13";
        let mut a = answers();
        for (vtep, mac) in [(G, "0e:00:00:00:00:11"), (M, "0e:00:00:00:00:12"), (E, NEW)] {
            a[Query::OverlayMac].push(with(vtep, &[("mac", mac)], 1.0));
        }
        for (vtep, mac, dst) in [
            (G, OLD, E),
            (M, "0E:00:00:00:EE:13", E),
            (E, "0e:00:00:00:00:11", G),
        ] {
            a[Query::Fdb].push(with(vtep, &[("mac", mac), ("dst", dst)], 1.0));
        }
        // eq14-001 itself sees gladius's frames to the old MAC.
        a[Query::Findings].push(with(
            E,
            &[
                ("code", "VTEP_MAC_STALE"),
                ("severity", "critical"),
                ("peer", G),
            ],
            1.0,
        ));
        let m = compute(&a, &Queries::new("10s"), "http://prom:9090", 50.0);
        // From the FDB, with both MACs; eq14-001's own finding is that link:
        // once, and nothing else (50% loss threshold).
        assert_eq!(codes(&m), [("VTEP_MAC_STALE", Some(G), Some(E))]);
        let text = m.findings[0].evidence.join(" ");
        assert!(text.contains(OLD) && text.contains(NEW), "{text}");
        assert_eq!(m.exit_code(), 1);
    }
}
