//! The mesh matrix for people: verdict, the matrix (rows send, columns
//! receive), then the findings.
use std::fmt::Write as _;

use super::{plural, write_finding};
use crate::{
    fleet::mesh::MeshReport,
    report::{FindingCode, Severity},
};

pub(crate) fn text(m: &MeshReport) -> String {
    let mut s = String::new();
    let count = |sev: Severity| m.findings.iter().filter(|f| f.severity == sev).count();
    let (crit, warn) = (count(Severity::Critical), count(Severity::Warning));
    let lossy = m
        .findings
        .iter()
        .filter(|f| f.code == FindingCode::UnderlayLoss)
        .count();
    let unreachable = m.nodes.iter().filter(|n| !n.reachable).count();
    let verdict = match (crit, warn) {
        (0, 0) => "HEALTHY".to_string(),
        (0, _) => "WARNING".to_string(),
        _ => "CRITICAL".to_string(),
    };
    let _ = writeln!(
        s,
        "flannel-probe mesh: {verdict}: {lossy} lossy link{}, {unreachable} unreachable agent{}, {crit} critical node finding{} ({:.1}s window, {} agents)",
        plural(lossy),
        plural(unreachable),
        plural(crit),
        m.window_secs,
        m.nodes.len()
    );
    let _ = writeln!(s);

    // Nodes that appear in links, in the order the agents were given.
    let mut names: Vec<(String, String)> = Vec::new();
    for n in &m.nodes {
        if let Some(v) = &n.local_vtep
            && m.links.iter().any(|l| &l.from == v)
            && !names.iter().any(|(x, _)| x == v)
        {
            names.push((v.clone(), n.hostname.clone().unwrap_or_else(|| v.clone())));
        }
    }
    if names.is_empty() {
        let _ = writeln!(s, "(no pair of nodes could be compared)");
    } else {
        let _ = writeln!(
            s,
            "VXLAN packets sent by the row's node / received by the column's node (loss), threshold {:.1}%:",
            m.loss_threshold_pct
        );
        let w = names
            .iter()
            .map(|(_, h)| h.len())
            .max()
            .unwrap_or(0)
            .max(18);
        let _ = write!(s, "{:<w$}", "FROM \\ TO");
        for (_, h) in &names {
            let _ = write!(s, "  {h:<w$}");
        }
        let _ = writeln!(s);
        for (from, host) in &names {
            let _ = write!(s, "{host:<w$}");
            for (to, _) in &names {
                let cell = match m.link(from, to) {
                    None if from == to => "-".to_string(),
                    None => "?".to_string(),
                    Some(l) if l.sent == 0 && l.received == 0 => "0/0".to_string(),
                    Some(l) => format!("{}/{} {:.1}%", l.sent, l.received, l.loss_pct),
                };
                let _ = write!(s, "  {cell:<w$}");
            }
            let _ = writeln!(s);
        }
    }
    for n in m.nodes.iter().filter(|n| !n.reachable) {
        let _ = writeln!(
            s,
            "agent {} ({}): unreachable",
            n.agent,
            n.hostname.as_deref().unwrap_or("unknown node")
        );
    }
    for f in &m.findings {
        let _ = writeln!(s);
        let (from, to) = (f.from.as_deref(), f.to.as_deref());
        let place = match (from, to) {
            (Some(a), Some(b)) => format!(" [{a} -> {b}]"),
            (Some(a), None) => format!(" [{a}]"),
            (None, Some(b)) => format!(" [-> {b}]"),
            (None, None) => format!(" [{}]", f.agent),
        };
        write_finding(
            &mut s,
            f.severity,
            &f.code,
            &place,
            &f.summary,
            &f.evidence,
            &f.remediation,
        );
    }
    // Padding of the last column leaves trailing blanks.
    let mut out: String = s.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}
