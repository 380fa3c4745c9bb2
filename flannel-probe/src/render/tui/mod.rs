//! The full-screen face of `watch`: a header with the node's overlay state,
//! one row per VXLAN peer, the findings of the last window and a status
//! line. [`draw`] only shows a [`WatchState`]: health comes from the
//! report's findings, never from here.
mod state;
#[cfg(test)]
mod tests;

use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Rect},
    style::{Color, Modifier, Style, Stylize as _},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap},
};
pub(crate) use state::{Action, Rates, SortKey, WatchState, clock, top_drop};

pub(crate) use super::compact;
use super::plural;
use crate::{
    node::OverlayState,
    report::{Finding, PeerReport, Report, Severity},
};

/// A column of the peer table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Col {
    Peer,
    Health,
    Mac,
    TxPackets,
    TxBits,
    RxPackets,
    RxBits,
    Decap,
    DecapShare,
    Unreachable,
    Drops,
    Spark,
}

struct ColSpec {
    col: Col,
    title: &'static str,
    /// Width in cells (the sparkline's minimum: it takes what is left).
    width: u16,
    /// 0 is kept longest when the terminal is narrow.
    priority: u8,
    right: bool,
}

/// Display order.
const COLUMNS: [ColSpec; 12] = [
    ColSpec {
        col: Col::Peer,
        title: "PEER",
        width: 15,
        priority: 0,
        right: false,
    },
    ColSpec {
        col: Col::Health,
        title: "HEALTH",
        width: 7,
        priority: 3,
        right: false,
    },
    ColSpec {
        col: Col::Mac,
        title: "VTEP MAC",
        width: 17,
        priority: 11,
        right: false,
    },
    ColSpec {
        col: Col::TxPackets,
        title: "TX pkt/s",
        width: 9,
        priority: 4,
        right: true,
    },
    ColSpec {
        col: Col::TxBits,
        title: "TX bit/s",
        width: 9,
        priority: 8,
        right: true,
    },
    ColSpec {
        col: Col::RxPackets,
        title: "RX pkt/s",
        width: 9,
        priority: 1,
        right: true,
    },
    ColSpec {
        col: Col::RxBits,
        title: "RX bit/s",
        width: 9,
        priority: 7,
        right: true,
    },
    ColSpec {
        col: Col::Decap,
        title: "DECAP/s",
        width: 8,
        priority: 5,
        right: true,
    },
    ColSpec {
        col: Col::DecapShare,
        title: "DECAP%",
        width: 7,
        priority: 2,
        right: true,
    },
    ColSpec {
        col: Col::Unreachable,
        title: "UNREACH",
        width: 8,
        priority: 6,
        right: true,
    },
    ColSpec {
        col: Col::Drops,
        title: "DROPS",
        width: 16,
        priority: 10,
        right: false,
    },
    ColSpec {
        col: Col::Spark,
        title: "RX pkt/s, last 60 s",
        width: 10,
        priority: 9,
        right: false,
    },
];

const SPACING: u16 = 1;

fn sort_col(k: SortKey) -> Col {
    match k {
        SortKey::Peer => Col::Peer,
        SortKey::Health => Col::Health,
        SortKey::TxPackets => Col::TxPackets,
        SortKey::TxBits => Col::TxBits,
        SortKey::RxPackets => Col::RxPackets,
        SortKey::RxBits => Col::RxBits,
        SortKey::Decap => Col::Decap,
        SortKey::DecapShare => Col::DecapShare,
        SortKey::Unreachable => Col::Unreachable,
        SortKey::Drops => Col::Drops,
    }
}

/// The columns that fit in `width` cells, in display order, with their
/// widths: the most important first, the sparkline takes what is left.
#[cfg(test)]
pub(crate) fn columns(width: u16) -> Vec<(Col, u16)> {
    columns_for(width, spec(Col::Peer).width)
}

/// The longest IPv6 address's text (RFC 5952), the widest a peer gets.
const PEER_MAX: u16 = 39;

/// The PEER column's width for `rows`: IPv4's 15 cells, wider for the
/// IPv6 peers shown so their addresses are never cut.
pub(crate) fn peer_width<'a>(rows: impl Iterator<Item = &'a PeerReport>) -> u16 {
    let longest = rows.map(|p| p.peer.chars().count()).max().unwrap_or(0);
    u16::try_from(longest)
        .unwrap_or(PEER_MAX)
        .clamp(spec(Col::Peer).width, PEER_MAX)
}

/// [`columns`] with a PEER column `peer` cells wide.
pub(crate) fn columns_for(width: u16, peer: u16) -> Vec<(Col, u16)> {
    let base = |c: &ColSpec| if c.col == Col::Peer { peer } else { c.width };
    let mut order: Vec<&ColSpec> = COLUMNS.iter().collect();
    order.sort_by_key(|c| c.priority);
    let mut used: u16 = 0;
    let mut keep: Vec<Col> = Vec::new();
    for c in order {
        let need = base(c) + if keep.is_empty() { 0 } else { SPACING };
        if used + need <= width {
            used += need;
            keep.push(c.col);
        } else if keep.is_empty() {
            // Not even the peer fits: show what does.
            keep.push(c.col);
            used = width;
        }
    }
    let spare = width.saturating_sub(used);
    COLUMNS
        .iter()
        .filter(|c| keep.contains(&c.col))
        .map(|c| {
            let w = match c.col {
                Col::Spark => c.width + spare,
                _ if keep.len() == 1 => width,
                _ => base(c),
            };
            (c.col, w)
        })
        .collect()
}

fn spec(col: Col) -> &'static ColSpec {
    COLUMNS.iter().find(|c| c.col == col).unwrap_or(&COLUMNS[0])
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `samples` (oldest first) as `width` bar characters, newest at the right;
/// squeezed (max of each bucket) when there are more samples than cells.
pub(crate) fn sparkline<'a>(
    samples: impl ExactSizeIterator<Item = &'a f64>,
    width: usize,
) -> String {
    let v: Vec<f64> = samples.copied().collect();
    if width == 0 {
        return String::new();
    }
    let buckets: Vec<f64> = if v.len() <= width {
        v
    } else {
        (0..width)
            .map(|i| {
                let (a, b) = (i * v.len() / width, (i + 1) * v.len() / width);
                v[a..b.max(a + 1)].iter().copied().fold(0.0, f64::max)
            })
            .collect()
    };
    let max = buckets.iter().copied().fold(0.0, f64::max);
    let mut s = " ".repeat(width - buckets.len());
    for x in buckets {
        s.push(if x <= 0.0 || max <= 0.0 {
            ' '
        } else {
            let i = ((x / max) * (BARS.len() - 1) as f64).round() as usize;
            BARS[i.min(BARS.len() - 1)]
        });
    }
    s
}

fn severity_style(s: Option<Severity>) -> Style {
    match s {
        Some(Severity::Critical) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Some(Severity::Warning) => Style::new().fg(Color::Yellow),
        _ => Style::new(),
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "WARNING",
        Severity::Info => "info",
    }
}

fn state_style(s: OverlayState) -> Style {
    match s {
        OverlayState::Up => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        OverlayState::Down | OverlayState::Missing => Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
    }
}

fn cell_text(col: Col, p: &PeerReport, r: &Report, state: &WatchState, width: u16) -> String {
    let rates = Rates::of(p, r.window_secs);
    match col {
        Col::Peer => p.peer.clone(),
        Col::Health => match r.peer_severity(&p.peer) {
            Some(Severity::Critical) => "CRIT".into(),
            Some(Severity::Warning) => "WARN".into(),
            Some(Severity::Info) => "info".into(),
            None => "ok".into(),
        },
        Col::Mac => p.vtep_mac.clone().unwrap_or_else(|| "-".into()),
        Col::TxPackets => compact(rates.tx_pps),
        Col::TxBits => compact(rates.tx_bps),
        Col::RxPackets => compact(rates.rx_pps),
        Col::RxBits => compact(rates.rx_bps),
        Col::Decap => compact(rates.decap_pps),
        Col::DecapShare => rates
            .decap_share
            .map_or_else(|| "-".into(), |s| format!("{:.0}%", s * 100.0)),
        Col::Unreachable => p.traffic.icmp_port_unreachable.to_string(),
        Col::Drops => match top_drop(p) {
            (0, _) => "0".into(),
            (n, Some(reason)) => format!("{n} {reason}"),
            (n, None) => n.to_string(),
        },
        Col::Spark => state
            .history(&p.peer)
            .map(|h| sparkline(h.iter(), usize::from(width)))
            .unwrap_or_default(),
    }
}

fn aligned(text: String, right: bool) -> Cell<'static> {
    let line = Line::from(text);
    Cell::from(if right {
        line.alignment(Alignment::Right)
    } else {
        line
    })
}

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame, state: &WatchState) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let header_h: u16 = match area.height {
        0..=1 => 0,
        2..=7 => 1,
        _ => 2,
    }
    .min(area.height);
    let status_h: u16 = if area.height >= 2 { 1 } else { 0 };
    let body = area.height - header_h - status_h;
    let rows = state.rows();
    let findings = findings_lines(state);
    let pane_need = if findings.is_empty() {
        0
    } else {
        1 + wrapped_height(&findings, area.width)
    };
    let table_need = 1 + rows.len().max(1) as u16;
    // The findings get what they need when the peers leave room, else
    // at least half: the verdict matters as much as the table.
    let pane_h = pane_need.min((body / 2).max(body.saturating_sub(table_need)));
    let table_h = body - pane_h;

    let mut y = area.y;
    let mut next = |h: u16| {
        let r = Rect::new(area.x, y, area.width, h);
        y += h;
        r
    };
    let (header_area, table_area, pane_area, status_area) =
        (next(header_h), next(table_h), next(pane_h), next(status_h));

    draw_header(frame, header_area, state);
    draw_table(frame, table_area, state, &rows);
    if pane_h > 0 {
        draw_findings(frame, pane_area, state, findings);
    }
    draw_status(frame, status_area, state);
    if state.help {
        draw_help(frame, area);
    }
}

fn sep() -> Span<'static> {
    Span::raw(" │ ").dark_gray()
}

fn draw_header(frame: &mut Frame, area: Rect, state: &WatchState) {
    if area.height == 0 {
        return;
    }
    let Some(r) = state.report() else {
        let line = Line::from(vec![
            Span::raw("flannel-probe ").bold(),
            Span::raw("collecting the first window…"),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    };
    let n = &r.node;
    let mut first = vec![
        Span::raw(n.hostname.clone()).bold(),
        Span::raw(" "),
        Span::raw(n.overlay.clone()),
        Span::raw(" "),
        Span::styled(
            format!(" {} ", n.overlay_state.as_str()),
            state_style(n.overlay_state),
        ),
        sep(),
        Span::raw(format!(
            "VNI {}",
            n.vni.map_or("-".into(), |v| v.to_string())
        )),
        sep(),
        Span::raw(format!("UDP {} ", n.vxlan_port)),
        if n.port_bound {
            Span::raw("bound").green()
        } else {
            Span::raw("NOT bound").red().bold()
        },
        sep(),
        Span::raw(format!("uplink {}", n.uplink.as_deref().unwrap_or("-"))),
        sep(),
        Span::raw(format!("VTEP {}", n.local_vtep.as_deref().unwrap_or("-"))),
        sep(),
    ];
    // The other watched overlays (dual-stack: flannel-v6.1), each with
    // its state, socket and VTEP.
    for o in n.overlays.iter().skip(1) {
        first.extend([
            Span::raw(format!("{} ", o.name)),
            Span::styled(format!(" {} ", o.state.as_str()), state_style(o.state)),
            Span::raw(format!(" UDP {} ", o.vxlan_port)),
            if o.port_bound {
                Span::raw("bound").green()
            } else {
                Span::raw("NOT bound").red().bold()
            },
            Span::raw(format!(" VTEP {}", o.local_vtep.as_deref().unwrap_or("-"))),
            sep(),
        ]);
    }
    first.extend([
        Span::raw(format!("kernel {}", n.kernel)),
        sep(),
        Span::raw(format!("up {}", clock(state.uptime()))),
    ]);
    if state.paused {
        first.push(sep());
        first.push(Span::raw(" PAUSED ").reversed());
    }
    let crit = count(r, Severity::Critical);
    let warn = count(r, Severity::Warning);
    let verdict = match (crit, warn) {
        (0, 0) => Span::raw("HEALTHY").green().bold(),
        (0, w) => Span::raw(format!("WARNING: {w} warning{}", plural(w)))
            .yellow()
            .bold(),
        (c, w) => Span::raw(format!("CRITICAL: {c} critical, {w} warning{}", plural(w)))
            .red()
            .bold(),
    };
    let secs = r.window_secs;
    let total = |f: fn(&PeerReport) -> u64| -> f64 {
        if secs > 0.0 {
            r.peers.iter().map(f).sum::<u64>() as f64 / secs
        } else {
            0.0
        }
    };
    let second = Line::from(vec![
        verdict,
        sep(),
        Span::raw(format!("{} peer{}", r.peers.len(), plural(r.peers.len()))),
        sep(),
        Span::raw(format!(
            "rx {} pkt/s {} bit/s",
            compact(total(|p| p.traffic.rx_encap_packets)),
            compact(total(|p| p.traffic.rx_encap_bytes) * 8.0)
        )),
        sep(),
        Span::raw(format!(
            "tx {} pkt/s {} bit/s",
            compact(total(|p| p.traffic.tx_encap_packets)),
            compact(total(|p| p.traffic.tx_encap_bytes) * 8.0)
        )),
        sep(),
        Span::raw(format!("window {secs:.1}s")),
    ]);
    let mut lines = vec![Line::from(first)];
    if area.height >= 2 {
        lines.push(second);
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn count(r: &Report, s: Severity) -> usize {
    r.findings.iter().filter(|f| f.severity == s).count()
}

fn draw_table(frame: &mut Frame, area: Rect, state: &WatchState, rows: &[&PeerReport]) {
    if area.height == 0 {
        return;
    }
    let cols = columns_for(area.width, peer_width(rows.iter().copied()));
    let arrow = if state.reverse { '▲' } else { '▼' };
    let arrow = if state.sort == SortKey::Peer {
        // The peer's natural order is ascending.
        if state.reverse { '▼' } else { '▲' }
    } else {
        arrow
    };
    let sorted = sort_col(state.sort);
    let header = Row::new(cols.iter().map(|(c, _)| {
        let s = spec(*c);
        let title = if *c == sorted {
            format!("{}{arrow}", s.title)
        } else {
            s.title.to_string()
        };
        aligned(title, s.right)
    }))
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    let widths: Vec<Constraint> = cols.iter().map(|(_, w)| Constraint::Length(*w)).collect();

    let Some(r) = state.report() else {
        frame.render_widget(Table::new(Vec::<Row>::new(), widths).header(header), area);
        return;
    };
    let body: Vec<Row> = if rows.is_empty() {
        let why = if state.active_filter().is_empty() {
            "no peers: no VXLAN seen and no FDB entries".to_string()
        } else {
            format!("no peer matches \"{}\"", state.active_filter())
        };
        vec![Row::new([Cell::from(why)])]
    } else {
        rows.iter()
            .map(|p| {
                Row::new(
                    cols.iter()
                        .map(|(c, w)| aligned(cell_text(*c, p, r, state, *w), spec(*c).right)),
                )
                .style(severity_style(r.peer_severity(&p.peer)))
            })
            .collect()
    };
    let widths = if rows.is_empty() {
        vec![Constraint::Length(area.width)]
    } else {
        widths
    };
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(SPACING)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut ts = TableState::default().with_selected(state.selected_index());
    frame.render_stateful_widget(table, area, &mut ts);
}

/// The findings pane's lines: every finding (serious ones with evidence
/// and fix), then the latest events.
fn findings_lines(state: &WatchState) -> Vec<Line<'static>> {
    let Some(r) = state.report() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if r.findings.is_empty() {
        out.push(Line::from(Span::raw("no findings").green()));
    }
    let sel = state.selected.as_deref();
    for f in &r.findings {
        out.extend(finding_lines(f, sel));
    }
    let events: Vec<&str> = state.events().rev().take(3).collect();
    for e in events.into_iter().rev() {
        out.push(Line::from(Span::raw(e.to_string()).dark_gray()));
    }
    if let Some(e) = state.error() {
        out.push(Line::from(Span::raw(format!("error: {e}")).red()));
    }
    out
}

fn finding_lines(f: &Finding, selected: Option<&str>) -> Vec<Line<'static>> {
    let style = match f.severity {
        Severity::Info => Style::new().fg(Color::Blue),
        s => severity_style(Some(s)),
    };
    let mark = if selected.is_some_and(|p| f.concerns(p)) {
        "▶ "
    } else {
        ""
    };
    let peer = f
        .peer
        .as_deref()
        .map(|p| format!(" [{p}]"))
        .unwrap_or_default();
    let mut lines = vec![Line::from(vec![
        Span::raw(mark),
        Span::styled(format!("{:<8} ", severity_word(f.severity)), style),
        Span::styled(f.code.to_string(), style.add_modifier(Modifier::BOLD)),
        Span::raw(format!("{peer}: {}", f.summary)),
    ])];
    if f.severity != Severity::Info {
        if !f.evidence.is_empty() {
            lines.push(Line::from(
                Span::raw(format!("         evidence: {}", f.evidence.join("; "))).dark_gray(),
            ));
        }
        if !f.remediation.is_empty() {
            lines.push(Line::from(
                Span::raw(format!("         fix: {}", f.remediation)).dark_gray(),
            ));
        }
    }
    lines
}

/// Rows `lines` take when wrapped at `width`.
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let w = usize::from(width.max(1));
    let n: usize = lines.iter().map(|l| l.width().max(1).div_ceil(w)).sum();
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn draw_findings(frame: &mut Frame, area: Rect, state: &WatchState, lines: Vec<Line<'static>>) {
    let title = match state.report() {
        Some(r) => {
            let (c, w) = (count(r, Severity::Critical), count(r, Severity::Warning));
            match (c, w) {
                (0, 0) => " Findings ".to_string(),
                (c, w) => format!(" Findings: {c} critical, {w} warning{} ", plural(w)),
            }
        }
        None => " Findings ".to_string(),
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(Style::new().dark_gray())
        .title(Span::raw(title).bold());
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn key_hint(k: &'static str, what: &'static str) -> [Span<'static>; 2] {
    [
        Span::raw(k).reversed().bold(),
        Span::raw(format!(" {what}  ")),
    ]
}

fn draw_status(frame: &mut Frame, area: Rect, state: &WatchState) {
    if area.height == 0 {
        return;
    }
    let line = if let Some(text) = &state.editing {
        Line::from(vec![
            Span::raw("filter: ").bold(),
            Span::raw(text.clone()),
            Span::raw("█").slow_blink(),
            Span::raw("   Enter apply  Esc clear").dark_gray(),
        ])
    } else {
        let mut spans: Vec<Span> = Vec::new();
        spans.extend(key_hint("q", "quit"));
        spans.extend(key_hint("s", "sort"));
        spans.extend(key_hint("r", "reverse"));
        spans.extend(key_hint("p", if state.paused { "resume" } else { "pause" }));
        spans.extend(key_hint("/", "filter"));
        spans.extend(key_hint("?", "help"));
        let dir = if state.reverse { " reversed" } else { "" };
        spans.push(Span::raw(format!("sort: {}{dir}", state.sort.label())).dark_gray());
        if !state.filter.is_empty() {
            spans.push(Span::raw(format!("  filter: {}", state.filter)).cyan());
        }
        if state.paused {
            spans.push(Span::raw(format!("  PAUSED ({} updates held)", state.skipped)).yellow());
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A rectangle of at most `w` x `h` in the middle of `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("s", "sort by the next column"),
    ("r", "reverse the sort order"),
    ("p, space", "pause / resume the display"),
    (
        "/",
        "filter peers by IP or VTEP MAC (Enter keeps, Esc clears)",
    ),
    ("j k, arrows", "select a peer (its findings get a ▶)"),
    ("Esc", "clear filter and selection"),
    ("?", "this help; any key closes it"),
];

const COLUMN_HELP: &[(&str, &str)] = &[
    (
        "TX/RX pkt/s",
        "encapsulated VXLAN packets per second on the uplink",
    ),
    ("TX/RX bit/s", "their wire bits per second"),
    ("DECAP/s", "packets from the peer out of the overlay device"),
    ("DECAP%", "share of what arrived that was decapsulated"),
    ("UNREACH", "ICMP port unreachable from the peer (window)"),
    ("DROPS", "kernel drops (window) and the top reason"),
    ("red/yellow", "the peer has a critical/warning finding"),
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let popup = centered(area, 76, (HELP.len() + COLUMN_HELP.len() + 3) as u16);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::raw(format!("{k:>12}  ")).bold(),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.extend(COLUMN_HELP.iter().map(|(k, what)| {
        Line::from(vec![
            Span::raw(format!("{k:>12}  ")).bold(),
            Span::raw(*what),
        ])
    }));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(Span::raw(" flannel-probe watch: keys ").bold()))
            .wrap(Wrap { trim: false }),
        popup,
    );
}
