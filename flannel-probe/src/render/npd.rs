//! `--format npd`: the report as one line for node-problem-detector, which
//! keeps only the first `max_output_length` bytes of a custom plugin's
//! output as the condition's message (80 by default, 200 in
//! `deploy/node-problem-detector/`). So the verdict comes first, then the
//! codes, the node, the worst finding's summary and the peers:
//!
//! `CRITICAL VXLAN_NOT_DECAPSULATED,OVERLAY_DEVICE_MISSING on eq14-001: inbound VXLAN ...; peers 192.0.2.11,192.0.2.12`
//! `WARNING PEER_SILENT on gladius: ...; peers 192.0.2.13`
//! `HEALTHY on momonoke: no critical or warning finding, 2 peers, 5.0s window`
use std::fmt::Write as _;

use crate::report::{Report, Severity};

/// At most this many bytes, the newline not counted.
pub(crate) const MAX_LINE: usize = 200;

/// The line, at most [`MAX_LINE`] bytes, without a newline.
pub(crate) fn line(r: &Report) -> String {
    let serious: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity <= Severity::Warning)
        .collect();
    let host = clean(&r.node.hostname);
    let mut s = String::new();
    // Findings come sorted worst first; sort again for hand-built reports.
    let worst = serious.iter().min_by_key(|f| f.severity);
    match worst {
        None => {
            let _ = write!(
                s,
                "HEALTHY on {host}: no critical or warning finding, {} peer{}, {:.1}s window",
                r.peers.len(),
                super::plural(r.peers.len()),
                r.window_secs
            );
            let info: Vec<&str> = dedup(r.findings.iter().map(|f| f.code.as_str()));
            if !info.is_empty() {
                let _ = write!(s, "; info {}", info.join(","));
            }
        }
        Some(worst) => {
            let mut ordered = serious.clone();
            ordered.sort_by_key(|f| f.severity);
            let codes = dedup(ordered.iter().map(|f| f.code.as_str()));
            let _ = write!(
                s,
                "{} {} on {host}: {}",
                worst.severity.as_str().to_uppercase(),
                codes.join(","),
                clean(&worst.summary)
            );
            let peers = dedup(ordered.iter().flat_map(|f| {
                f.peer
                    .iter()
                    .chain(f.affected_peers.iter())
                    .map(String::as_str)
            }));
            if !peers.is_empty() {
                let _ = write!(s, "; peers {}", clean(&peers.join(",")));
            }
        }
    }
    truncate(s, MAX_LINE)
}

/// Distinct items in first-seen order.
fn dedup<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// One line: control characters (a newline from a remote agent's text)
/// become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` cut to at most `max` bytes on a character boundary, ending in
/// `...` when cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("...");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Finding, FindingCode, NodeInfo, PeerReport, Report, SCHEMA};

    fn report(findings: Vec<Finding>) -> Report {
        Report {
            schema: SCHEMA,
            node: NodeInfo::gladius(),
            window_secs: 5.0,
            peers: vec![PeerReport::default(), PeerReport::default()],
            drops: vec![],
            findings,
            unattributed_inner: vec![],
            overflow: Default::default(),
            overlay_history: vec![],
            unknown_sources: Default::default(),
        }
    }

    fn finding(
        code: FindingCode,
        severity: Severity,
        peer: Option<&str>,
        summary: &str,
    ) -> Finding {
        Finding {
            code,
            severity,
            peer: peer.map(String::from),
            summary: summary.into(),
            evidence: vec!["x=1".into()],
            remediation: "do something".into(),
            affected_peers: vec![],
            overlay: None,
        }
    }

    #[test]
    fn healthy_and_info_only_say_healthy() {
        assert_eq!(
            line(&report(vec![])),
            "HEALTHY on gladius: no critical or warning finding, 2 peers, 5.0s window"
        );
        let r = report(vec![finding(
            FindingCode::UnknownVxlanSource,
            Severity::Info,
            None,
            "pods send VXLAN",
        )]);
        assert_eq!(
            line(&r),
            "HEALTHY on gladius: no critical or warning finding, 2 peers, 5.0s window; \
             info UNKNOWN_VXLAN_SOURCE"
        );
    }

    #[test]
    fn the_verdict_codes_and_peers_come_first() {
        let mut incident = finding(
            FindingCode::VxlanNotDecapsulated,
            Severity::Critical,
            None,
            "inbound VXLAN from 2 peers, none decapsulated",
        );
        incident.affected_peers = vec!["192.0.2.11".into(), "192.0.2.12".into()];
        let r = report(vec![
            finding(
                FindingCode::PeerSilent,
                Severity::Warning,
                Some("192.0.2.12"),
                "silent",
            ),
            incident,
            finding(
                FindingCode::OverlayDeviceMissing,
                Severity::Critical,
                None,
                "flannel.1 does not exist",
            ),
            finding(
                FindingCode::UnknownVxlanSource,
                Severity::Info,
                None,
                "pods",
            ),
        ]);
        let l = line(&r);
        assert_eq!(
            l,
            "CRITICAL VXLAN_NOT_DECAPSULATED,OVERLAY_DEVICE_MISSING,PEER_SILENT on gladius: \
             inbound VXLAN from 2 peers, none decapsulated; peers 192.0.2.11,192.0.2.12"
        );
        // NPD's default 80 bytes still carry the verdict and the first code.
        assert!(l[..80].starts_with("CRITICAL VXLAN_NOT_DECAPSULATED,"));

        let w = report(vec![finding(
            FindingCode::PeerSilent,
            Severity::Warning,
            Some("192.0.2.13"),
            "we send VXLAN to 192.0.2.13 and get none back",
        )]);
        assert_eq!(
            line(&w),
            "WARNING PEER_SILENT on gladius: we send VXLAN to 192.0.2.13 and get none back; \
             peers 192.0.2.13"
        );
    }

    #[test]
    fn capped_at_200_bytes_on_a_character_boundary_in_one_line() {
        let peers: Vec<Finding> = (0..40)
            .map(|i| {
                finding(
                    FindingCode::PeerPortUnreachable,
                    Severity::Critical,
                    Some(&format!("192.0.2.{i}")),
                    "peer answers ICMP port unreachable",
                )
            })
            .collect();
        let l = line(&report(peers));
        assert_eq!(l.len(), MAX_LINE, "{l}");
        assert!(l.ends_with("..."), "{l}");
        assert!(l.starts_with("CRITICAL PEER_PORT_UNREACHABLE on gladius: "));

        // Multibyte text from a remote agent: every cut point from 195 to
        // 200 bytes, never inside a character, never a newline.
        for pad in 0..8 {
            let mut r = report(vec![finding(
                FindingCode::VxlanDrops,
                Severity::Warning,
                None,
                &format!("{}{}\nsecond line", "x".repeat(pad), "ü€😀".repeat(60)),
            )]);
            r.node.hostname = "nœud-01".into();
            let l = line(&r);
            assert!(l.len() <= MAX_LINE, "{} bytes", l.len());
            assert!(l.len() >= MAX_LINE - 6, "{} bytes", l.len());
            assert!(l.ends_with("..."));
            assert!(!l.contains('\n'));
            let head = format!("WARNING VXLAN_DROPS on nœud-01: {}ü€", "x".repeat(pad));
            assert!(l.starts_with(&head), "{l}");
        }
        // Short text is never cut.
        assert_eq!(truncate("ab€".into(), 5), "ab€");
        assert_eq!(truncate("abc€d".into(), 6), "abc...");
        assert_eq!(truncate("ab€€".into(), 7), "ab...");
    }
}
