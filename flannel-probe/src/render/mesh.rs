//! The mesh matrix for people: verdict, the matrix (rows send, columns
//! receive), then the findings.
use std::{borrow::Cow, fmt::Write as _};

use super::{plural, write_finding};
use crate::{
    fleet::mesh::MeshReport,
    report::{FindingCode, Severity},
};

/// Whether `c` must not reach a terminal as it is: control characters
/// (C0 with ESC, so ANSI sequences; DEL; C1 with CSI) and the bidi
/// controls that reorder what is shown.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A string from an agent (another node, anyone who answers on its port),
/// made safe to print: unsafe characters shown escaped (`\x1b`, `\n`,
/// `\u{9b}`), everything else as it is.
pub(crate) fn escape_remote(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn esc(s: &mut String) {
    if let Cow::Owned(e) = escape_remote(s) {
        *s = e;
    }
}

/// A copy of `m` with every string that came from an agent escaped.
fn sanitized(m: &MeshReport) -> MeshReport {
    let mut m = m.clone();
    for n in &mut m.nodes {
        esc(&mut n.agent);
        n.local_vtep.iter_mut().for_each(esc);
        n.hostname.iter_mut().for_each(esc);
        n.error.iter_mut().for_each(esc);
    }
    for l in &mut m.links {
        for f in [
            &mut l.from,
            &mut l.to,
            &mut l.from_hostname,
            &mut l.to_hostname,
        ] {
            esc(f);
        }
    }
    for f in &mut m.findings {
        if let FindingCode::Other(c) = &mut f.code {
            esc(c);
        }
        f.from.iter_mut().for_each(esc);
        f.to.iter_mut().for_each(esc);
        esc(&mut f.summary);
        f.evidence.iter_mut().for_each(esc);
        esc(&mut f.remediation);
        esc(&mut f.agent);
    }
    m
}

pub(crate) fn text(m: &MeshReport) -> String {
    let m = &sanitized(m);
    let mut s = String::new();
    let count = |sev: Severity| m.findings.iter().filter(|f| f.severity == sev).count();
    let (crit, warn) = (count(Severity::Critical), count(Severity::Warning));
    let lossy = m
        .findings
        .iter()
        .filter(|f| {
            // A link that loses only its large packets is lossy too.
            matches!(
                f.code,
                FindingCode::UnderlayLoss | FindingCode::UnderlayMtuBlackhole
            )
        })
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
    if let Some(p) = &m.prometheus {
        let _ = writeln!(
            s,
            "figures: what Prometheus at {} scraped from the agents, increase() over the window",
            p.url
        );
    }
    for n in &m.not_checked {
        let _ = writeln!(s, "not checked: {}: {}", n.code.as_str(), n.reason);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::mesh::{MeshFinding, MeshNode};

    #[test]
    fn remote_strings_are_escaped() {
        assert_eq!(escape_remote("gladius"), "gladius");
        assert!(matches!(escape_remote("eq14-001 ü"), Cow::Borrowed(_)));
        assert_eq!(
            escape_remote("a\x1b[31mred\x1b[0m\r\nb\tc\x07\x7f"),
            "a\\x1b[31mred\\x1b[0m\\r\\nb\\tc\\x07\\x7f"
        );
        // C1 CSI and a right-to-left override.
        assert_eq!(
            escape_remote("x\u{9b}2Jy\u{202e}z"),
            "x\\u{9b}2Jy\\u{202e}z"
        );
    }

    #[test]
    fn the_text_output_carries_no_control_character_from_an_agent() {
        let evil = "evil\x1b]0;owned\x07\x1b[2J\nCRITICAL fake";
        let m = MeshReport {
            schema: 1,
            window_secs: 1.0,
            nodes: vec![MeshNode {
                agent: "http://192.0.2.11:9465".into(),
                local_vtep: Some(format!("192.0.2.11{evil}")),
                hostname: Some(evil.into()),
                reachable: false,
                restarted: false,
                error: Some(evil.into()),
            }],
            links: vec![],
            findings: vec![MeshFinding {
                code: FindingCode::from_name(evil),
                severity: Severity::Critical,
                from: Some(evil.into()),
                to: Some(evil.into()),
                summary: evil.into(),
                evidence: vec![evil.into()],
                remediation: evil.into(),
                agent: evil.into(),
            }],
            loss_threshold_pct: 2.0,
            source: crate::fleet::mesh::MeshSource::Agents,
            prometheus: None,
            not_checked: vec![],
        };
        let out = text(&m);
        assert!(!out.chars().any(|c| c != '\n' && unsafe_char(c)), "{out:?}");
        assert!(
            out.contains("evil\\x1b]0;owned\\x07\\x1b[2J\\nCRITICAL fake"),
            "{out}"
        );
        // Every line the output has is one of ours: the agent's newline did
        // not start a line of its own.
        assert!(
            !out.lines().any(|l| l.starts_with("CRITICAL fake")),
            "{out}"
        );
    }
}
