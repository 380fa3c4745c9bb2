//! What the live table shows and how the keys change it. Pure data: fed by
//! [`Report`]s and key events, read by [`super::draw`]; no terminal, no clock.
use std::{
    cmp::Ordering,
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
    time::Duration,
};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::{
    node::OverlayState,
    report::{PeerReport, Report, Severity},
};

/// Samples of rx history kept per peer (a minute at the default interval).
pub(crate) const RATE_HISTORY: usize = 60;
/// Events (state changes, log lines) kept for the findings pane.
pub(crate) const EVENTS: usize = 50;

/// The column the peer rows are sorted by; `s` cycles through them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SortKey {
    #[default]
    Peer,
    Health,
    TxPackets,
    TxBits,
    RxPackets,
    RxBits,
    Decap,
    DecapShare,
    Unreachable,
    Drops,
}

impl SortKey {
    /// Cycle order of `s`.
    pub(crate) const ALL: [SortKey; 10] = [
        SortKey::Peer,
        SortKey::Health,
        SortKey::TxPackets,
        SortKey::TxBits,
        SortKey::RxPackets,
        SortKey::RxBits,
        SortKey::Decap,
        SortKey::DecapShare,
        SortKey::Unreachable,
        SortKey::Drops,
    ];

    pub(crate) fn next(self) -> SortKey {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            SortKey::Peer => "peer",
            SortKey::Health => "health",
            SortKey::TxPackets => "tx pkt/s",
            SortKey::TxBits => "tx bit/s",
            SortKey::RxPackets => "rx pkt/s",
            SortKey::RxBits => "rx bit/s",
            SortKey::Decap => "decap/s",
            SortKey::DecapShare => "decap %",
            SortKey::Unreachable => "unreachable",
            SortKey::Drops => "drops",
        }
    }
}

/// What the event loop does after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing changed.
    None,
    /// The view changed: draw again.
    Redraw,
    /// Leave.
    Quit,
}

/// One peer's window as rates: packets/s = count / window, bits/s = bytes * 8 / window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Rates {
    pub tx_pps: f64,
    pub tx_bps: f64,
    pub rx_pps: f64,
    pub rx_bps: f64,
    pub decap_pps: f64,
    /// Decapsulated packets over encapsulated arrivals, 0..=1; `None`
    /// when nothing arrived.
    pub decap_share: Option<f64>,
}

impl Rates {
    pub(crate) fn of(p: &PeerReport, secs: f64) -> Rates {
        let per = |v: u64| {
            if secs > 0.0 { v as f64 / secs } else { 0.0 }
        };
        Rates {
            tx_pps: per(p.traffic.tx_encap_packets),
            tx_bps: per(p.traffic.tx_encap_bytes) * 8.0,
            rx_pps: per(p.traffic.rx_encap_packets),
            rx_bps: per(p.traffic.rx_encap_bytes) * 8.0,
            decap_pps: per(p.traffic.rx_decap_packets),
            // Window edges can put a packet's decapsulation in the next
            // window: never show more than all of it.
            decap_share: (p.traffic.rx_encap_packets > 0).then(|| {
                (p.traffic.rx_decap_packets as f64 / p.traffic.rx_encap_packets as f64).min(1.0)
            }),
        }
    }
}

/// The drop reason with most packets, and the total, of one peer.
pub(crate) fn top_drop(p: &PeerReport) -> (u64, Option<&str>) {
    let total = p.drops.values().sum();
    let top = p
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(r, _)| r.as_str());
    (total, top)
}

/// `01:02:03`, or `2d 01:02:03`.
pub(crate) fn clock(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Everything the live table shows.
#[derive(Debug, Default)]
pub(crate) struct WatchState {
    report: Option<Report>,
    /// Per peer: rx encapsulated packets/s of the last [`RATE_HISTORY`] windows,
    /// oldest first.
    history: BTreeMap<String, VecDeque<f64>>,
    uptime: Duration,
    /// Overlay state of the last report, to notice changes.
    last_state: Option<OverlayState>,
    events: VecDeque<String>,
    error: Option<String>,
    pub sort: SortKey,
    pub reverse: bool,
    /// The applied peer filter (substring of peer IP or VTEP MAC).
    pub filter: String,
    /// The filter being typed after `/`; applies live while typed.
    pub editing: Option<String>,
    pub paused: bool,
    /// Reports that arrived while paused (not shown).
    pub skipped: u64,
    /// The selected peer (its IP), kept across sorting and updates.
    pub selected: Option<String>,
    pub help: bool,
}

impl WatchState {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Takes a new window. While paused the screen stays as it is and the
    /// report is only counted.
    pub(crate) fn update(&mut self, report: Report, uptime: Duration) {
        if self.paused {
            self.skipped += 1;
            return;
        }
        self.uptime = uptime;
        self.error = None;
        let state = report.node.overlay_state;
        match self.last_state {
            Some(old) if old != state => self.event(format!(
                "{} {} -> {}",
                report.node.overlay,
                old.as_str(),
                state.as_str()
            )),
            None if state != OverlayState::Up => {
                self.event(format!("{} {}", report.node.overlay, state.as_str()));
            }
            _ => {}
        }
        self.last_state = Some(state);

        let secs = report.window_secs;
        for p in &report.peers {
            let h = self.history.entry(p.peer.clone()).or_default();
            if h.len() == RATE_HISTORY {
                h.pop_front();
            }
            h.push_back(Rates::of(p, secs).rx_pps);
        }
        // Peers gone from the report fall silent; forgotten once their
        // whole history is silence.
        self.history.retain(|peer, h| {
            if report.peers.iter().any(|p| &p.peer == peer) {
                return true;
            }
            if h.len() == RATE_HISTORY {
                h.pop_front();
            }
            h.push_back(0.0);
            h.iter().any(|v| *v > 0.0)
        });
        self.report = Some(report);
    }

    /// Records something that happened (a state change, a log line), with
    /// the probe's uptime.
    pub(crate) fn event(&mut self, what: impl Into<String>) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events
            .push_back(format!("{} {}", clock(self.uptime), what.into()));
    }

    /// A failed refresh or read: shown until the next good window.
    pub(crate) fn set_error(&mut self, e: impl Into<String>) {
        self.error = Some(e.into());
    }

    pub(crate) fn report(&self) -> Option<&Report> {
        self.report.as_ref()
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.uptime
    }

    pub(crate) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Oldest first.
    pub(crate) fn events(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.events.iter().map(String::as_str)
    }

    /// The rx packets/s history of `peer`, oldest first.
    pub(crate) fn history(&self, peer: &str) -> Option<&VecDeque<f64>> {
        self.history.get(peer)
    }

    /// The filter in effect: the one being typed, else the applied one.
    pub(crate) fn active_filter(&self) -> &str {
        self.editing.as_deref().unwrap_or(&self.filter)
    }

    /// The peers shown, filtered and sorted.
    pub(crate) fn rows(&self) -> Vec<&PeerReport> {
        let Some(r) = &self.report else {
            return Vec::new();
        };
        let needle = self.active_filter().trim().to_lowercase();
        let mut rows: Vec<&PeerReport> = r
            .peers
            .iter()
            .filter(|p| {
                needle.is_empty()
                    || p.peer.contains(&needle)
                    || p.vtep_mac
                        .as_deref()
                        .is_some_and(|m| m.to_lowercase().contains(&needle))
            })
            .collect();
        let secs = r.window_secs;
        let by_ip = |a: &PeerReport, b: &PeerReport| {
            let ip = |p: &PeerReport| p.peer.parse::<IpAddr>().ok();
            ip(a).cmp(&ip(b)).then_with(|| a.peer.cmp(&b.peer))
        };
        // Natural order: the peer ascending, health worst first, figures
        // biggest first; `reverse` flips it. Ties go by peer.
        let key = self.sort;
        let natural = |a: &PeerReport, b: &PeerReport| -> Ordering {
            let (ra, rb) = (Rates::of(a, secs), Rates::of(b, secs));
            let desc = |x: f64, y: f64| y.total_cmp(&x);
            match key {
                SortKey::Peer => Ordering::Equal,
                SortKey::Health => {
                    let rank = |p: &PeerReport| match r.peer_severity(&p.peer) {
                        Some(Severity::Critical) => 0,
                        Some(Severity::Warning) => 1,
                        Some(Severity::Info) => 2,
                        None => 3,
                    };
                    rank(a).cmp(&rank(b))
                }
                SortKey::TxPackets => desc(ra.tx_pps, rb.tx_pps),
                SortKey::TxBits => desc(ra.tx_bps, rb.tx_bps),
                SortKey::RxPackets => desc(ra.rx_pps, rb.rx_pps),
                SortKey::RxBits => desc(ra.rx_bps, rb.rx_bps),
                SortKey::Decap => desc(ra.decap_pps, rb.decap_pps),
                // Lowest share first: that is where packets die. No
                // arrivals at all go last.
                SortKey::DecapShare => match (ra.decap_share, rb.decap_share) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                },
                SortKey::Unreachable => b
                    .traffic
                    .icmp_port_unreachable
                    .cmp(&a.traffic.icmp_port_unreachable),
                SortKey::Drops => top_drop(b).0.cmp(&top_drop(a).0),
            }
        };
        rows.sort_by(|a, b| natural(a, b).then_with(|| by_ip(a, b)));
        if self.reverse {
            rows.reverse();
        }
        rows
    }

    /// Index of the selected peer among the rows shown.
    pub(crate) fn selected_index(&self) -> Option<usize> {
        let sel = self.selected.as_deref()?;
        self.rows().iter().position(|p| p.peer == sel)
    }

    fn move_selection(&mut self, delta: isize) {
        let rows: Vec<String> = self.rows().iter().map(|p| p.peer.clone()).collect();
        if rows.is_empty() {
            self.selected = None;
            return;
        }
        let last = rows.len() as isize - 1;
        let at = match self
            .selected
            .as_deref()
            .and_then(|s| rows.iter().position(|p| p == s))
        {
            Some(i) => (i as isize + delta).clamp(0, last),
            None if delta < 0 => last,
            None => 0,
        };
        self.selected = Some(rows[at as usize].clone());
    }

    /// Applies one key.
    pub(crate) fn key(&mut self, k: KeyEvent) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(k.code, KeyCode::Char('c' | 'C')) {
            return Action::Quit;
        }
        // Alt-chords are nothing here (and a terminal sends Esc followed
        // quickly by a key as one).
        if k.modifiers.contains(KeyModifiers::ALT) {
            return Action::None;
        }
        if let Some(text) = &mut self.editing {
            match k.code {
                KeyCode::Enter => {
                    self.filter = self.editing.take().unwrap_or_default().trim().to_string();
                }
                KeyCode::Esc => {
                    self.editing = None;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !ctrl => text.push(c),
                _ => return Action::None,
            }
            return Action::Redraw;
        }
        if self.help {
            if k.code == KeyCode::Char('q') {
                return Action::Quit;
            }
            self.help = false;
            return Action::Redraw;
        }
        match k.code {
            KeyCode::Char('q' | 'Q') => return Action::Quit,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Char('p' | ' ') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.skipped = 0;
                }
            }
            KeyCode::Char('/') => self.editing = Some(self.filter.clone()),
            KeyCode::Char('?' | 'h') => self.help = true,
            KeyCode::Esc => {
                if self.filter.is_empty() && self.selected.is_none() {
                    return Action::None;
                }
                self.filter.clear();
                self.selected = None;
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX / 2),
            _ => return Action::None,
        }
        Action::Redraw
    }
}
