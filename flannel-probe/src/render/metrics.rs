//! `GET /metrics`: the agent's [`Counters`] in the Prometheus text format
//! (0.0.4), encoded with the prometheus-client crate. The names and labels
//! are the contract's; nothing here reads the kernel.
use std::{collections::BTreeSet, sync::Arc};

use anyhow::{Result, anyhow};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::ConstCounter,
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};

use flannel_probe_common::abi::LARGE_OUTER_LEN;

use crate::{
    fleet::agent::Counters,
    node::OverlayState,
    report::{OverlayReport, Traffic},
};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name `/metrics` exposes, as Prometheus sees them.
pub const METRIC_NAMES: &[&str] = &[
    "flannel_probe_peer_packets_total",
    "flannel_probe_peer_bytes_total",
    "flannel_probe_peer_icmp_port_unreachable_total",
    "flannel_probe_peer_large_packets_total",
    "flannel_probe_peer_max_outer_length_bytes",
    "flannel_probe_drops_total",
    "flannel_probe_overlay_up",
    "flannel_probe_vxlan_port_bound",
    "flannel_probe_finding",
    "flannel_probe_node_info",
    "flannel_probe_overlay_device_up",
    "flannel_probe_overlay_port_bound",
    "flannel_probe_overlay_info",
    "flannel_probe_overlay_mac_info",
    "flannel_probe_fdb_entry",
    "flannel_probe_datapath_reattach_total",
    "flannel_probe_samples_total",
    "flannel_probe_peers_forgotten_total",
    "flannel_probe_map_memory_bytes",
    "flannel_probe_build_info",
    "flannel_probe_sample_duration_seconds",
    "flannel_probe_map_read_duration_seconds",
    "flannel_probe_attached_hooks",
];

/// Exposes one reading of the counters.
#[derive(Debug)]
struct View(Arc<Counters>);

type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

impl Collector for View {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &*self.0;
        // (direction, layer, packets, bytes) per peer.
        let sides = |p: &crate::fleet::agent::PeerCumulative| {
            [
                (
                    "tx",
                    "outer",
                    p.traffic.tx_encap_packets,
                    p.traffic.tx_encap_bytes,
                ),
                (
                    "rx",
                    "outer",
                    p.traffic.rx_encap_packets,
                    p.traffic.rx_encap_bytes,
                ),
                (
                    "tx",
                    "inner",
                    p.traffic.tx_inner_packets,
                    p.traffic.tx_inner_bytes,
                ),
                (
                    "rx",
                    "inner",
                    p.traffic.rx_decap_packets,
                    p.traffic.rx_decap_bytes,
                ),
            ]
        };
        {
            let mut fam = enc.encode_descriptor(
                "flannel_probe_peer_packets",
                "Packets to (tx) and from (rx) a remote VTEP since the agent started: \
                 outer = VXLAN on the uplink, inner = frames on the overlay device",
                None,
                MetricType::Counter,
            )?;
            for p in &c.peers {
                for (dir, layer, packets, _) in sides(p) {
                    let l: Labels<3> = [("peer", &p.peer), ("direction", dir), ("layer", layer)];
                    ConstCounter::new(packets).encode(fam.encode_family(&l)?)?;
                }
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "flannel_probe_peer_bytes",
                "Bytes to (tx) and from (rx) a remote VTEP since the agent started (wire bytes)",
                None,
                MetricType::Counter,
            )?;
            for p in &c.peers {
                for (dir, layer, _, bytes) in sides(p) {
                    let l: Labels<3> = [("peer", &p.peer), ("direction", dir), ("layer", layer)];
                    ConstCounter::new(bytes).encode(fam.encode_family(&l)?)?;
                }
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "flannel_probe_peer_icmp_port_unreachable",
                "ICMP port unreachable answers to our VXLAN from a remote VTEP: it cannot decapsulate",
                None,
                MetricType::Counter,
            )?;
            for p in &c.peers {
                let l: Labels<1> = [("peer", &p.peer)];
                ConstCounter::new(p.traffic.icmp_port_unreachable)
                    .encode(fam.encode_family(&l)?)?;
            }
        }
        // Per peer and direction: the size classes of UNDERLAY_MTU_BLACKHOLE.
        per_direction(
            &mut enc,
            c,
            "flannel_probe_peer_large_packets",
            &format!(
                "Of the outer packets to (tx) and from (rx) a remote VTEP, those whose outer IPv4 total \
                 length is above {LARGE_OUTER_LEN} bytes: the size classes of UNDERLAY_MTU_BLACKHOLE"
            ),
            MetricType::Counter,
            |t| [t.tx_encap_large, t.rx_encap_large],
        )?;
        per_direction(
            &mut enc,
            c,
            "flannel_probe_peer_max_outer_length_bytes",
            "The largest outer IPv4 total length sent to (tx) or received from (rx) a remote VTEP since the agent started",
            MetricType::Gauge,
            |t| [t.tx_encap_max_len, t.rx_encap_max_len],
        )?;
        {
            let mut fam = enc.encode_descriptor(
                "flannel_probe_drops",
                "Kernel drops of VXLAN traffic by drop reason since the agent started",
                None,
                MetricType::Counter,
            )?;
            for d in &c.drops {
                let l: Labels<2> = [("reason", &d.reason), ("direction", &d.direction)];
                ConstCounter::new(d.packets).encode(fam.encode_family(&l)?)?;
            }
        }
        ConstCounter::new(c.node.attach_gaps).encode(enc.encode_descriptor(
            "flannel_probe_datapath_reattach",
            "Attachments of the probe that vanished (tc qdisc del, a CNI reinstall) and were restored: each is a gap in the counts",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(c.samples).encode(enc.encode_descriptor(
            "flannel_probe_samples",
            "Readings of the kernel maps since the agent started: one per interval, extra ones for ?fresh=1 (at most 10 per second), and after overlay or uplink link events",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(c.forgotten_peers).encode(enc.encode_descriptor(
            "flannel_probe_peers_forgotten",
            "Peers whose totals and series were dropped: gone from the FDB and silent for --forget-after",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(i64::try_from(c.map_memory_bytes).unwrap_or(i64::MAX)).encode(
            enc.encode_descriptor(
                "flannel_probe_map_memory_bytes",
                "Kernel memory of the agent's eBPF maps, from --max-peers and the possible CPUs",
                None,
                MetricType::Gauge,
            )?,
        )?;
        let flag = |b: bool| ConstGauge::new(i64::from(b));
        flag(c.node.overlay_state == "up").encode(enc.encode_descriptor(
            "flannel_probe_overlay_up",
            "1 if the overlay device exists and is up",
            None,
            MetricType::Gauge,
        )?)?;
        flag(c.node.port_bound).encode(enc.encode_descriptor(
            "flannel_probe_vxlan_port_bound",
            "1 if a UDP socket on this node is bound to the VXLAN port",
            None,
            MetricType::Gauge,
        )?)?;
        {
            let mut fam = enc.encode_descriptor(
                "flannel_probe_finding",
                "1 while a finding is raised in the agent's rolling window (peer is empty for node findings)",
                None,
                MetricType::Gauge,
            )?;
            let raised: BTreeSet<(&str, &str, &str)> = c
                .findings
                .iter()
                .map(|f| {
                    (
                        f.code.as_str(),
                        f.severity.as_str(),
                        f.peer.as_deref().unwrap_or(""),
                    )
                })
                .collect();
            for (code, severity, peer) in raised {
                let l: Labels<3> = [("code", code), ("severity", severity), ("peer", peer)];
                ConstGauge::new(1i64).encode(fam.encode_family(&l)?)?;
            }
        }
        {
            let n = &c.node;
            let vni = n.vni.map(|v| v.to_string()).unwrap_or_default();
            let port = n.vxlan_port.to_string();
            let l: Labels<6> = [
                ("hostname", &n.hostname),
                ("local_vtep", n.local_vtep.as_deref().unwrap_or("")),
                ("overlay", &n.overlay),
                ("uplink", n.uplink.as_deref().unwrap_or("")),
                ("vni", &vni),
                ("port", &port),
            ];
            let mut fam = enc.encode_descriptor(
                "flannel_probe_node_info",
                "Always 1: this node's hostname, local VTEP (underlay IPv4), overlay and uplink devices",
                None,
                MetricType::Gauge,
            )?;
            let one: Gauge = Gauge::default();
            one.set(1);
            one.encode(fam.encode_family(&l)?)?;
        }
        // Every watched overlay (dual-stack: flannel.1 and flannel-v6.1),
        // the first also in the unlabelled gauges and node_info above.
        for (name, help, of) in [
            (
                "flannel_probe_overlay_device_up",
                "1 if this watched overlay device exists and is up",
                (|o: &OverlayReport| o.state == OverlayState::Up) as fn(&OverlayReport) -> bool,
            ),
            (
                "flannel_probe_overlay_port_bound",
                "1 if a UDP socket of this overlay's family is bound to its VXLAN port",
                |o: &OverlayReport| o.port_bound,
            ),
        ] {
            let mut fam = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for o in &c.node.overlays {
                let l: Labels<2> = [("overlay", &o.name), ("family", o.family.as_str())];
                flag(of(o)).encode(fam.encode_family(&l)?)?;
            }
        }
        {
            let texts: Vec<[String; 2]> = c
                .node
                .overlays
                .iter()
                .map(|o| {
                    [
                        o.vni.map(|v| v.to_string()).unwrap_or_default(),
                        o.vxlan_port.to_string(),
                    ]
                })
                .collect();
            ones(
                &mut enc,
                "flannel_probe_overlay_info",
                "Always 1 per watched overlay: its family, local VTEP (underlay IPv4 or IPv6), uplink, VNI, port and MAC",
                c.node.overlays.iter().zip(&texts).map(|(o, [vni, port])| {
                    [
                        ("overlay", o.name.as_str()),
                        ("family", o.family.as_str()),
                        ("local_vtep", o.local_vtep.as_deref().unwrap_or("")),
                        ("uplink", o.uplink.as_deref().unwrap_or("")),
                        ("vni", vni.as_str()),
                        ("port", port.as_str()),
                        ("mac", o.overlay_mac.as_deref().unwrap_or("")),
                    ]
                }),
            )?;
        }
        ones(
            &mut enc,
            "flannel_probe_overlay_mac_info",
            "Always 1 while the overlay device exists: its MAC, the VTEP MAC its peers must send to",
            c.overlay_mac.iter().map(|mac| [("mac", mac.as_str())]),
        )?;
        ones(
            &mut enc,
            "flannel_probe_fdb_entry",
            "1 for each FDB entry of the overlay: the VTEP MAC sent to that peer's underlay address (dst)",
            c.fdb
                .iter()
                .map(|e| [("mac", e.mac.as_str()), ("dst", e.dst.as_str())]),
        )?;
        encode_self(c, &mut enc)?;
        Ok(())
    }
}

/// A gauge family whose every sample is 1, one per label set.
fn ones<'a, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    sets: impl Iterator<Item = Labels<'a, N>>,
) -> Result<(), std::fmt::Error> {
    let mut fam = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for l in sets {
        ConstGauge::new(1i64).encode(fam.encode_family(&l)?)?;
    }
    Ok(())
}

/// A family of one sample per peer and direction: `tx` and `rx` of `of`.
fn per_direction(
    enc: &mut DescriptorEncoder,
    c: &Counters,
    name: &str,
    help: &str,
    kind: MetricType,
    of: fn(&Traffic) -> [u64; 2],
) -> Result<(), std::fmt::Error> {
    let mut fam = enc.encode_descriptor(name, help, None, kind)?;
    for p in &c.peers {
        for (dir, n) in ["tx", "rx"].into_iter().zip(of(&p.traffic)) {
            let l: Labels<2> = [("peer", &p.peer), ("direction", dir)];
            let sample = fam.encode_family(&l)?;
            match kind {
                MetricType::Counter => ConstCounter::new(n).encode(sample)?,
                _ => ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(sample)?,
            }
        }
    }
    Ok(())
}

/// `flannel_probe_build_info` and the agent's self-metrics.
fn encode_self(c: &Counters, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let b = &crate::fleet::selfstats::BUILD;
    let l: Labels<4> = [
        ("version", b.version),
        ("commit", b.commit),
        ("built", b.built),
        ("kernel", &c.agent.kernel),
    ];
    ConstGauge::new(1i64).encode(
        enc.encode_descriptor(
            "flannel_probe_build_info",
            "Always 1: the agent's version, git commit and build date, and the running kernel",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&l)?,
    )?;
    ConstGauge::new(c.agent.sample_secs).encode(enc.encode_descriptor(
        "flannel_probe_sample_duration_seconds",
        "How long the last reading took end to end: following the node, reading the maps, both reports",
        None,
        MetricType::Gauge,
    )?)?;
    ConstGauge::new(c.agent.map_read_secs).encode(enc.encode_descriptor(
        "flannel_probe_map_read_duration_seconds",
        "How long the last reading spent reading and summing the eBPF maps",
        None,
        MetricType::Gauge,
    )?)?;
    let mut fam = enc.encode_descriptor(
        "flannel_probe_attached_hooks",
        "eBPF programs the agent has attached, by kind: tcx or clsact (the four classifiers), btf_tracepoint (the drop tracer)",
        None,
        MetricType::Gauge,
    )?;
    for (kind, n) in &c.agent.attached_hooks {
        let l: Labels<1> = [("kind", kind)];
        ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX)).encode(fam.encode_family(&l)?)?;
    }
    Ok(())
}

/// The text exposition of `counters`.
pub fn encode(counters: Arc<Counters>) -> Result<String> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(View(counters)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .map_err(|_| anyhow!("encoding the metrics failed"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fleet::agent::{AgentFinding, AgentNode, DropCumulative, FdbDoc, PeerCumulative},
        report::{NodeInfo, Severity, Traffic},
    };

    fn counters() -> Counters {
        Counters {
            schema: 1,
            node: AgentNode::from(&NodeInfo::gladius()),
            peers: vec![PeerCumulative {
                peer: "192.0.2.13".into(),
                traffic: Traffic {
                    tx_encap_packets: 10,
                    tx_encap_bytes: 1480,
                    rx_encap_packets: 0,
                    tx_inner_packets: 10,
                    tx_inner_bytes: 980,
                    icmp_port_unreachable: 4,
                    tx_encap_large: 3,
                    tx_encap_max_len: 1514,
                    ..Traffic::default()
                },
            }],
            drops: vec![DropCumulative {
                reason: "NO_SOCKET".into(),
                direction: "rx".into(),
                packets: 3,
            }],
            findings: vec![
                AgentFinding::bare(
                    "PEER_PORT_UNREACHABLE",
                    Severity::Critical,
                    Some("192.0.2.13"),
                ),
                AgentFinding::bare("NO_VXLAN_TRAFFIC", Severity::Info, None),
            ],
            samples: 7,
            forgotten_peers: 2,
            overlay_mac: Some("0e:00:00:00:00:11".into()),
            fdb: vec![FdbDoc {
                mac: "0e:00:00:00:00:13".into(),
                dst: "192.0.2.13".into(),
            }],
            map_memory_bytes: 5_000_000,
            agent: crate::fleet::selfstats::AgentSelf {
                sample_secs: 0.0125,
                map_read_secs: 0.0005,
                attached_hooks: [("tcx", 4), ("clsact", 0), ("btf_tracepoint", 1)]
                    .into_iter()
                    .map(|(k, n)| (k.to_string(), n))
                    .collect(),
                kernel: "6.18.0-test".into(),
            },
            ..Default::default()
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn encodes_the_contract_names_and_labels() {
        let text = encode(Arc::new(counters())).expect("encode");
        let l = lines(&text);
        for want in [
            r#"flannel_probe_peer_packets_total{peer="192.0.2.13",direction="tx",layer="outer"} 10"#,
            r#"flannel_probe_peer_packets_total{peer="192.0.2.13",direction="rx",layer="outer"} 0"#,
            r#"flannel_probe_peer_packets_total{peer="192.0.2.13",direction="tx",layer="inner"} 10"#,
            r#"flannel_probe_peer_packets_total{peer="192.0.2.13",direction="rx",layer="inner"} 0"#,
            r#"flannel_probe_peer_bytes_total{peer="192.0.2.13",direction="tx",layer="outer"} 1480"#,
            r#"flannel_probe_peer_bytes_total{peer="192.0.2.13",direction="tx",layer="inner"} 980"#,
            r#"flannel_probe_peer_icmp_port_unreachable_total{peer="192.0.2.13"} 4"#,
            r#"flannel_probe_drops_total{reason="NO_SOCKET",direction="rx"} 3"#,
            r#"flannel_probe_peer_large_packets_total{peer="192.0.2.13",direction="tx"} 3"#,
            r#"flannel_probe_peer_large_packets_total{peer="192.0.2.13",direction="rx"} 0"#,
            r#"flannel_probe_peer_max_outer_length_bytes{peer="192.0.2.13",direction="tx"} 1514"#,
            r#"flannel_probe_overlay_mac_info{mac="0e:00:00:00:00:11"} 1"#,
            r#"flannel_probe_fdb_entry{mac="0e:00:00:00:00:13",dst="192.0.2.13"} 1"#,
            "flannel_probe_overlay_up 1",
            "flannel_probe_vxlan_port_bound 1",
            "flannel_probe_samples_total 7",
            "flannel_probe_peers_forgotten_total 2",
            "flannel_probe_map_memory_bytes 5000000",
            r#"flannel_probe_finding{code="PEER_PORT_UNREACHABLE",severity="critical",peer="192.0.2.13"} 1"#,
            r#"flannel_probe_finding{code="NO_VXLAN_TRAFFIC",severity="info",peer=""} 1"#,
            r#"flannel_probe_node_info{hostname="gladius",local_vtep="192.0.2.11",overlay="flannel.1",uplink="eth0",vni="1",port="8472"} 1"#,
            "flannel_probe_sample_duration_seconds 0.0125",
            "flannel_probe_map_read_duration_seconds 0.0005",
            r#"flannel_probe_attached_hooks{kind="tcx"} 4"#,
            r#"flannel_probe_attached_hooks{kind="clsact"} 0"#,
            r#"flannel_probe_attached_hooks{kind="btf_tracepoint"} 1"#,
        ] {
            assert!(l.contains(&want), "missing {want} in\n{text}");
        }
        assert!(text.contains("# TYPE flannel_probe_peer_packets_total counter\n"));
        assert!(text.contains("# TYPE flannel_probe_finding gauge\n"));
        assert!(text.contains("# TYPE flannel_probe_build_info gauge\n"));
        let build = format!(
            r#"flannel_probe_build_info{{version="{}",commit="{}",built="{}",kernel="6.18.0-test"}} 1"#,
            env!("CARGO_PKG_VERSION"),
            env!("FLANNEL_PROBE_GIT_REV"),
            env!("FLANNEL_PROBE_BUILD_DATE")
        );
        assert!(l.contains(&build.as_str()), "missing {build} in\n{text}");
        assert!(
            !text.contains("# EOF"),
            "classic text format, not OpenMetrics"
        );
        // Every sample's name is one of METRIC_NAMES.
        for line in l {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(METRIC_NAMES.contains(&name), "{name} is not listed");
        }
    }

    #[test]
    fn every_watched_overlay_has_its_series() {
        use crate::{node::VtepFamily, report::OverlayReport};
        let overlay = OverlayReport::fixture;
        let mut c = counters();
        c.node.overlays = vec![
            overlay(
                "flannel.1",
                VtepFamily::Ipv4,
                OverlayState::Up,
                "192.0.2.11",
                true,
            ),
            overlay(
                "flannel-v6.1",
                VtepFamily::Ipv6,
                OverlayState::Missing,
                "fd00:192:0:2::11",
                false,
            ),
        ];
        let text = encode(Arc::new(c)).expect("encode");
        let l = lines(&text);
        for want in [
            r#"flannel_probe_overlay_device_up{overlay="flannel.1",family="ipv4"} 1"#,
            r#"flannel_probe_overlay_device_up{overlay="flannel-v6.1",family="ipv6"} 0"#,
            r#"flannel_probe_overlay_port_bound{overlay="flannel.1",family="ipv4"} 1"#,
            r#"flannel_probe_overlay_port_bound{overlay="flannel-v6.1",family="ipv6"} 0"#,
            r#"flannel_probe_overlay_info{overlay="flannel.1",family="ipv4",local_vtep="192.0.2.11",uplink="eth0",vni="1",port="8472",mac="0e:00:00:00:06:11"} 1"#,
            r#"flannel_probe_overlay_info{overlay="flannel-v6.1",family="ipv6",local_vtep="fd00:192:0:2::11",uplink="eth0",vni="1",port="8472",mac=""} 1"#,
            // The contract's unlabelled gauges stay the first overlay's.
            "flannel_probe_overlay_up 1",
            "flannel_probe_vxlan_port_bound 1",
        ] {
            assert!(l.contains(&want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn an_ipv6_peer_is_labelled_with_its_rfc_5952_text() {
        let mut c = counters();
        c.peers[0].peer = crate::report::addr_string("2001:DB8:0:0:0:0:0:2".parse().expect("IPv6"));
        c.findings.clear();
        let text = encode(Arc::new(c)).expect("encode");
        let want = r#"flannel_probe_peer_packets_total{peer="2001:db8::2",direction="tx",layer="outer"} 10"#;
        assert!(lines(&text).contains(&want), "missing {want} in\n{text}");
    }

    #[test]
    fn a_broken_node_reads_zero_and_label_values_are_escaped() {
        let mut c = counters();
        c.node.overlay_state = "missing".into();
        c.node.port_bound = false;
        c.node.hostname = "odd\"host\\name".into();
        c.findings.clear();
        let text = encode(Arc::new(c)).expect("encode");
        let l = lines(&text);
        assert!(l.contains(&"flannel_probe_overlay_up 0"), "{text}");
        assert!(l.contains(&"flannel_probe_vxlan_port_bound 0"), "{text}");
        assert!(!l.iter().any(|s| s.starts_with("flannel_probe_finding")));
        assert!(text.contains(r#"hostname="odd\"host\\name""#), "{text}");
    }
}
