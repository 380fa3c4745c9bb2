//! Faces render a [`crate::report::Report`]; none of them decides anything.
use std::fmt::Write as _;

use crate::report::{FindingCode, Severity};

pub(crate) mod colour;
pub(crate) mod json;
pub(crate) mod mesh;
pub mod metrics;
pub(crate) mod npd;
pub(crate) mod text;
pub(crate) mod tui;

/// Output format of `report` and `watch --plain`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
    /// One line of at most 200 bytes, verdict first, for
    /// node-problem-detector (`report`, `watch --plain`).
    Npd,
}

/// `1.2 k`, `3.4 M`: compact figures for tables (`report`, `watch --plain`).
pub(crate) fn si(v: f64) -> String {
    scaled(v, 1e4, f64::INFINITY)
}

/// Figures for the live table's narrow columns: `5.2`, `48`, `6.1k`, `12.3M`.
pub(crate) fn compact(v: f64) -> String {
    scaled(v, 1e3, 10.0)
}

/// The one figure formatter: G, M and (from `k_from`) k prefixes with one
/// decimal; below that, whole numbers bare and from `whole_from` rounded.
fn scaled(v: f64, k_from: f64, whole_from: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= k_from {
        format!("{:.1}k", v / 1e3)
    } else if a >= whole_from || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One finding for people: `SEVERITY CODE[where]: summary`, then the
/// evidence and the fix, indented under it.
pub(crate) fn write_finding(
    s: &mut String,
    severity: Severity,
    code: &FindingCode,
    place: &str,
    summary: &str,
    evidence: &[String],
    remediation: &str,
) {
    let _ = writeln!(
        s,
        "{:<8} {code}{place}: {summary}",
        severity.as_str().to_uppercase()
    );
    for (i, e) in evidence.iter().enumerate() {
        let label = if i == 0 { "evidence:" } else { "" };
        let _ = writeln!(s, "         {label:<9} {e}");
    }
    let _ = writeln!(s, "         {:<9} {}", "fix:", remediation);
}

/// `s` for anything but one.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::si;

    #[test]
    fn si_prefixes() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(42.0), "42");
        assert_eq!(si(2.5), "2.5");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(9_876_543.0), "9.9M");
        assert_eq!(si(2.0e9), "2.0G");
    }
}
