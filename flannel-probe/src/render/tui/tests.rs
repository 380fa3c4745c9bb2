//! The live table on ratatui's `TestBackend`, and `WatchState` on its own.
use std::{collections::BTreeMap, time::Duration};

use ratatui::{
    Terminal,
    backend::TestBackend,
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    style::Color,
};

use super::{
    state::{EVENTS, RATE_HISTORY},
    *,
};
use crate::{
    datapath::Overflow,
    report::{NodeInfo, SCHEMA, Traffic},
};

const G: &str = "192.0.2.11";
const M: &str = "192.0.2.12";

fn node(state: OverlayState) -> NodeInfo {
    let up = state == OverlayState::Up;
    NodeInfo {
        hostname: "eq14-001".into(),
        overlay: "flannel.1".into(),
        overlay_state: state,
        uplink: Some("eth0".into()),
        uplink_source: None,
        local_vtep: Some("192.0.2.13".into()),
        vxlan_port: 8472,
        vni: up.then_some(1),
        port_bound: up,
        kernel: "6.18.44".into(),
        attached: BTreeMap::new(),
        attach_gaps: 0,
        detached: Vec::new(),
        overlay_mac: None,
        overlays: Vec::new(),
    }
}

/// `rx` packets in from the peer (148 wire bytes each), `decap` of them out
/// of the overlay device, `tx` sent to it, over one second.
fn peer(ip: &str, mac: &str, rx: u64, decap: u64, tx: u64) -> PeerReport {
    PeerReport {
        peer: ip.into(),
        vtep_mac: Some(mac.into()),
        traffic: Traffic {
            tx_encap_packets: tx,
            tx_encap_bytes: tx * 148,
            rx_encap_packets: rx,
            rx_encap_bytes: rx * 148,
            rx_decap_packets: decap,
            tx_inner_packets: tx,
            ..Traffic::default()
        },
        in_fdb: true,
        ..Default::default()
    }
}

fn finding(code: &'static str, severity: Severity, peer: Option<&str>) -> Finding {
    Finding {
        code: code.into(),
        severity,
        peer: peer.map(String::from),
        summary: format!("{code} summary"),
        evidence: vec![format!("{code} evidence")],
        remediation: format!("{code} remedy"),
        affected_peers: Vec::new(),
        overlay: None,
    }
}

fn report(state: OverlayState, peers: Vec<PeerReport>, findings: Vec<Finding>) -> Report {
    Report {
        schema: SCHEMA,
        node: node(state),
        window_secs: 1.0,
        peers,
        drops: Vec::new(),
        findings,
        unattributed_inner: Vec::new(),
        overflow: Overflow::default(),
        overlay_history: Vec::new(),
        unknown_sources: Default::default(),
    }
}

fn healthy() -> Report {
    report(
        OverlayState::Up,
        vec![
            peer(G, "0e:00:00:00:00:11", 10, 10, 10),
            peer(M, "0e:00:00:00:00:12", 5, 5, 5),
        ],
        Vec::new(),
    )
}

/// What the broken node's report looks like (as the diagnosis makes it).
fn incident() -> Report {
    let mut nd = finding("VXLAN_NOT_DECAPSULATED", Severity::Critical, None);
    nd.summary = "inbound VXLAN from 2 peers, none decapsulated".into();
    nd.affected_peers = vec![G.into(), M.into()];
    report(
        OverlayState::Missing,
        vec![peer(G, "-", 10, 0, 0), peer(M, "-", 5, 0, 0)],
        vec![
            finding("OVERLAY_DEVICE_MISSING", Severity::Critical, None),
            nd,
            finding("VXLAN_PORT_NOT_BOUND", Severity::Critical, None),
        ],
    )
}

fn state_with(r: Report) -> WatchState {
    let mut s = WatchState::new();
    s.update(r, Duration::from_secs(65));
    s
}

fn render(state: &WatchState, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| draw(f, state)).expect("draw");
    term.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn screen(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

/// The line holding `needle` (its row) and the column it starts at.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    lines(buf).iter().enumerate().find_map(|(y, l)| {
        l.find(needle).map(|byte| {
            let x = l[..byte].chars().count();
            (y as u16, x as u16)
        })
    })
}

fn fg_at(buf: &Buffer, needle: &str) -> Color {
    let (y, x) = find(buf, needle).unwrap_or_else(|| panic!("{needle} not on screen"));
    buf[(x, y)].fg
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn peers_shown(s: &WatchState) -> Vec<&str> {
    s.rows().iter().map(|p| p.peer.as_str()).collect()
}

// ---- rendering ----

#[test]
fn header_shows_the_node() {
    let buf = render(&state_with(healthy()), 160, 40);
    let top = lines(&buf)[0].clone();
    for want in [
        "eq14-001",
        "flannel.1",
        " up ",
        "VNI 1",
        "UDP 8472 bound",
        "uplink eth0",
        "VTEP 192.0.2.13",
        "kernel 6.18.44",
        "up 00:01:05",
    ] {
        assert!(top.contains(want), "{want:?} missing from {top:?}");
    }
    assert_eq!(fg_at(&buf, " up "), Color::Green);
    let second = lines(&buf)[1].clone();
    assert!(second.contains("HEALTHY"), "{second}");
    assert!(second.contains("2 peers"), "{second}");
    assert!(second.contains("rx 15 pkt/s 17.8k bit/s"), "{second}");
}

/// Dual-stack: the header lists flannel-v6.1 beside flannel.1, and the
/// PEER column widens so IPv6 peers are shown whole.
#[test]
fn dual_stack_header_and_whole_ipv6_peers() {
    use crate::{node::VtepFamily, report::OverlayReport};
    const LONG: &str = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1";
    let mut r = healthy();
    r.node.overlays = vec![
        OverlayReport::fixture(
            "flannel.1",
            VtepFamily::Ipv4,
            OverlayState::Up,
            "192.0.2.13",
            true,
        ),
        OverlayReport::fixture(
            "flannel-v6.1",
            VtepFamily::Ipv6,
            OverlayState::Missing,
            "fd00:192:0:2::13",
            false,
        ),
    ];
    r.peers.push(peer(LONG, "0e:00:00:00:06:11", 3, 3, 3));
    let buf = render(&state_with(r), 250, 20);
    let top = lines(&buf)[0].clone();
    for want in [
        "flannel.1",
        "UDP 8472 bound",
        "flannel-v6.1",
        " missing ",
        "NOT bound",
        "VTEP fd00:192:0:2::13",
    ] {
        assert!(top.contains(want), "{want:?} missing from {top:?}");
    }
    assert_eq!(fg_at(&buf, " missing "), Color::White, "white on red");
    let text = screen(&buf);
    assert!(text.contains(LONG), "the whole IPv6 peer:\n{text}");
    // IPv4-only tables keep their 15-cell column.
    assert_eq!(peer_width(healthy().peers.iter()), 15);
    assert_eq!(peer_width(std::iter::once(&peer(LONG, "-", 0, 0, 0))), 35);
}

#[test]
fn one_row_per_peer_with_rates() {
    let buf = render(&state_with(healthy()), 160, 40);
    let text = screen(&buf);
    for title in [
        "PEER",
        "HEALTH",
        "VTEP MAC",
        "TX pkt/s",
        "TX bit/s",
        "RX pkt/s",
        "RX bit/s",
        "DECAP/s",
        "DECAP%",
        "UNREACH",
        "DROPS",
        "last 60 s",
    ] {
        assert!(text.contains(title), "column {title} missing:\n{text}");
    }
    let (y, _) = find(&buf, G).expect("gladius row");
    let row = &lines(&buf)[y as usize];
    // 10 packets of 148 bytes in 1 s: 10 pkt/s, 11840 bit/s, all decapsulated.
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..11],
        [
            G,
            "ok",
            "0e:00:00:00:00:11",
            "10",
            "11.8k",
            "10",
            "11.8k",
            "10",
            "100%",
            "0",
            "0"
        ],
        "{row}"
    );
    assert!(row.contains('█'), "sparkline: {row}");
    let (ym, _) = find(&buf, M).expect("momonoke row");
    assert!(ym > y, "sorted by peer");
    assert_ne!(fg_at(&buf, G), Color::Red, "healthy rows are not red");
    assert!(text.contains("no findings"), "{text}");
}

#[test]
fn the_incident_is_red_and_named() {
    let buf = render(&state_with(incident()), 160, 40);
    let text = screen(&buf);
    assert!(lines(&buf)[0].contains(" missing "), "{text}");
    assert_eq!(
        buf[(find(&buf, " missing ").unwrap().1, 0)].bg,
        Color::Red,
        "the missing overlay stands out"
    );
    assert!(lines(&buf)[0].contains("NOT bound"));
    assert!(lines(&buf)[0].contains("VNI -"));
    assert!(text.contains("CRITICAL: 3 critical, 0 warnings"), "{text}");
    // Both peers' rows are red: the finding names them.
    for ip in [G, M] {
        let (y, x) = find(&buf, ip).unwrap();
        assert_eq!(buf[(x, y)].fg, Color::Red, "{ip} row");
        let row = &lines(&buf)[y as usize];
        assert!(row.contains("CRIT"), "{row}");
        assert!(row.contains("0%"), "nothing decapsulated: {row}");
        // The colour covers the whole row, not just the address.
        let end = u16::try_from(row.trim_end().chars().count()).unwrap() - 1;
        assert_eq!(buf[(end, y)].fg, Color::Red, "{ip} row end");
    }
    // The findings pane, fed by the report.
    assert!(text.contains("Findings: 3 critical, 0 warnings"), "{text}");
    for c in [
        "OVERLAY_DEVICE_MISSING",
        "VXLAN_NOT_DECAPSULATED",
        "VXLAN_PORT_NOT_BOUND",
    ] {
        assert!(text.contains(c), "{c} missing:\n{text}");
        assert_eq!(fg_at(&buf, c), Color::Red);
    }
    assert!(text.contains("inbound VXLAN from 2 peers, none decapsulated"));
    assert!(text.contains("fix: VXLAN_NOT_DECAPSULATED remedy"));
    // The state change is an event.
    assert!(text.contains("flannel.1 missing"), "{text}");
}

#[test]
fn a_peer_with_a_warning_is_yellow_and_only_it() {
    let mut r = healthy();
    r.findings = vec![finding("PEER_SILENT", Severity::Warning, Some(M))];
    let buf = render(&state_with(r), 160, 40);
    assert_eq!(fg_at(&buf, M), Color::Yellow);
    assert_ne!(fg_at(&buf, G), Color::Yellow);
    assert!(screen(&buf).contains("WARNING: 1 warning"));
    assert!(screen(&buf).contains("PEER_SILENT [192.0.2.12]"));
}

#[test]
fn narrow_terminals_drop_columns_and_never_panic() {
    for r in [healthy(), incident()] {
        let mut s = state_with(r);
        s.help = true;
        // Every tiny size, then a spread of usual ones.
        let tiny = (0..=24).flat_map(|w| (0..=8).map(move |h| (w, h)));
        let usual = [30, 39, 40, 41, 55, 70, 90, 120, 121, 159, 160, 161, 250]
            .into_iter()
            .flat_map(|w| [1, 3, 5, 10, 12, 20, 40].map(|h| (w, h)));
        for (w, h) in tiny.chain(usual) {
            render(&s, w, h);
        }
        s.help = false;
        s.editing = Some("192".into());
        render(&s, 3, 2);
        render(&s, 20, 5);
    }
    let s = state_with(incident());
    let buf = render(&s, 40, 10);
    let text = screen(&buf);
    assert!(text.contains("PEER"), "{text}");
    assert!(text.contains(G) && text.contains(M), "{text}");
    assert!(text.contains("RX pkt/s"), "{text}");
    assert!(!text.contains("VTEP MAC"), "dropped at 40 columns:\n{text}");
    assert!(!text.contains("DROPS"), "{text}");
    // Rows keep their colour.
    assert_eq!(fg_at(&buf, G), Color::Red);
    let buf = render(&s, 20, 5);
    let text = screen(&buf);
    assert!(text.contains(G), "the peer is what stays:\n{text}");
    assert!(!text.contains("RX pkt/s"), "{text}");
}

#[test]
fn column_choice_by_width() {
    let cols = |w| columns(w).into_iter().map(|(c, _)| c).collect::<Vec<_>>();
    assert_eq!(cols(15), vec![Col::Peer]);
    assert_eq!(cols(5), vec![Col::Peer]);
    assert_eq!(cols(25), vec![Col::Peer, Col::RxPackets]);
    assert_eq!(cols(200).len(), COLUMNS.len());
    for w in [0u16, 10, 40, 80, 120, 160, 300] {
        let total: u16 = columns(w).iter().map(|(_, cw)| cw).sum::<u16>()
            + SPACING * (columns(w).len() as u16).saturating_sub(1);
        assert!(total <= w.max(15), "{w}: {total}");
    }
    // The sparkline takes the spare width.
    let wide = columns(200);
    let spark = wide.iter().find(|(c, _)| *c == Col::Spark).unwrap().1;
    assert!(spark > 10);
}

#[test]
fn compact_figures() {
    assert_eq!(compact(0.0), "0");
    assert_eq!(compact(5.2), "5.2");
    assert_eq!(compact(7.0), "7");
    assert_eq!(compact(48.4), "48");
    assert_eq!(compact(6144.6), "6.1k");
    assert_eq!(compact(12_345_678.0), "12.3M");
    assert_eq!(compact(2.0e9), "2.0G");
}

#[test]
fn sparkline_scales_and_squeezes() {
    let v = [0.0, 1.0, 2.0, 4.0, 8.0];
    assert_eq!(sparkline(v.iter(), 5), " ▂▃▅█");
    assert_eq!(sparkline(v.iter(), 7), "   ▂▃▅█");
    assert_eq!(sparkline([0.0; 3].iter(), 3), "   ");
    let long: Vec<f64> = (0..60).map(f64::from).collect();
    let s = sparkline(long.iter(), 10);
    assert_eq!(s.chars().count(), 10);
    assert!(s.ends_with('█'));
    assert_eq!(sparkline(long.iter(), 0), "");
}

#[test]
fn status_line_help_filter_and_sort_arrow() {
    let mut s = state_with(healthy());
    let text = screen(&render(&s, 160, 40));
    let status = text.lines().last().unwrap().to_string();
    for k in [
        "q quit",
        "s sort",
        "r reverse",
        "p pause",
        "/ filter",
        "? help",
    ] {
        assert!(status.contains(k), "{k} missing from {status}");
    }
    assert!(text.contains("PEER▲"), "sort arrow: {text}");

    s.key(key('s'));
    s.key(key('s'));
    let text = screen(&render(&s, 160, 40));
    assert!(text.contains("TX pkt/s▼"), "{text}");

    s.key(key('/'));
    s.key(key('1'));
    s.key(key('2'));
    let text = screen(&render(&s, 160, 40));
    assert!(text.contains("filter: 12"), "{text}");
    assert!(text.contains(M) && !text.contains(G), "{text}");
    s.key(key('x'));
    let text = screen(&render(&s, 160, 40));
    assert!(text.contains("no peer matches \"12x\""), "{text}");

    s.key(code(KeyCode::Esc));
    s.key(key('p'));
    let text = screen(&render(&s, 160, 40));
    assert!(text.contains("PAUSED"), "{text}");

    s.key(key('?'));
    let text = screen(&render(&s, 100, 30));
    assert!(text.contains("flannel-probe watch: keys"), "{text}");
    assert!(text.contains("cycle") || text.contains("sort by the next column"));
}

#[test]
fn before_the_first_window() {
    let s = WatchState::new();
    let text = screen(&render(&s, 80, 10));
    assert!(text.contains("collecting the first window"), "{text}");
    assert!(text.contains("PEER"));
}

// ---- WatchState ----

fn three_peers() -> Report {
    let mut r = healthy();
    r.peers = vec![
        peer("192.0.2.11", "0e:00:00:00:00:11", 5, 5, 30),
        peer("192.0.2.9", "0e:00:00:00:00:09", 50, 0, 1),
        peer("192.0.2.100", "0e:00:00:00:00:aa", 20, 10, 2),
    ];
    r.peers[2].traffic.icmp_port_unreachable = 4;
    r.peers[1].drops.insert("NO_SOCKET".into(), 7);
    r.peers[1].drops.insert("OTHER".into(), 2);
    r.findings = vec![finding(
        "PEER_PORT_UNREACHABLE",
        Severity::Critical,
        Some("192.0.2.100"),
    )];
    r
}

#[test]
fn sort_cycles_through_every_column_and_back() {
    let mut s = WatchState::new();
    assert_eq!(s.sort, SortKey::Peer);
    let mut seen = vec![s.sort];
    for _ in 0..SortKey::ALL.len() {
        assert_eq!(s.key(key('s')), Action::Redraw);
        seen.push(s.sort);
    }
    assert_eq!(seen.first(), seen.last(), "wraps around");
    seen.pop();
    assert_eq!(seen, SortKey::ALL.to_vec());
}

#[test]
fn sort_orders_and_reverse() {
    let mut s = state_with(three_peers());
    // Peers in address order, not string order.
    assert_eq!(peers_shown(&s), ["192.0.2.9", "192.0.2.11", "192.0.2.100"]);
    s.key(key('r'));
    assert_eq!(peers_shown(&s), ["192.0.2.100", "192.0.2.11", "192.0.2.9"]);
    s.key(key('r'));
    let order = |s: &mut WatchState, k: SortKey| {
        s.sort = k;
        peers_shown(s)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        order(&mut s, SortKey::RxPackets),
        ["192.0.2.9", "192.0.2.100", "192.0.2.11"]
    );
    assert_eq!(
        order(&mut s, SortKey::TxPackets),
        ["192.0.2.11", "192.0.2.100", "192.0.2.9"]
    );
    assert_eq!(
        order(&mut s, SortKey::Health),
        ["192.0.2.100", "192.0.2.9", "192.0.2.11"]
    );
    assert_eq!(
        order(&mut s, SortKey::DecapShare),
        ["192.0.2.9", "192.0.2.100", "192.0.2.11"],
        "where packets die first"
    );
    assert_eq!(order(&mut s, SortKey::Unreachable)[0], "192.0.2.100");
    assert_eq!(order(&mut s, SortKey::Drops)[0], "192.0.2.9");
    s.key(key('r'));
    assert_eq!(peers_shown(&s)[2], "192.0.2.9", "reversed");
    assert_eq!(top_drop(&three_peers().peers[1]), (9, Some("NO_SOCKET")));
}

#[test]
fn filter_by_ip_or_mac() {
    let mut s = state_with(three_peers());
    s.key(key('/'));
    assert_eq!(s.editing.as_deref(), Some(""));
    for c in "2.1".chars() {
        s.key(key(c));
    }
    // Applies while typed.
    assert_eq!(peers_shown(&s), ["192.0.2.11", "192.0.2.100"]);
    s.key(code(KeyCode::Backspace));
    s.key(key('9'));
    s.key(code(KeyCode::Enter));
    assert_eq!(s.editing, None);
    assert_eq!(s.filter, "2.9");
    assert_eq!(peers_shown(&s), ["192.0.2.9"]);
    // `/` edits the applied filter; Esc first to start afresh. Keys are
    // text while typing: 'q' does not quit.
    s.key(key('/'));
    assert_eq!(s.editing.as_deref(), Some("2.9"));
    s.key(code(KeyCode::Esc));
    s.key(key('/'));
    for c in "0E:00:00:00:00:AAq".chars() {
        assert_ne!(s.key(key(c)), Action::Quit);
    }
    s.key(code(KeyCode::Backspace));
    assert_eq!(peers_shown(&s), ["192.0.2.100"], "MACs, any case");
    s.key(code(KeyCode::Esc));
    assert_eq!(s.filter, "");
    assert_eq!(peers_shown(&s).len(), 3);
}

#[test]
fn pause_holds_the_screen() {
    let mut s = state_with(healthy());
    s.key(key('p'));
    assert!(s.paused);
    s.update(incident(), Duration::from_secs(70));
    s.update(incident(), Duration::from_secs(71));
    assert_eq!(s.skipped, 2);
    assert_eq!(
        s.report().unwrap().node.overlay_state,
        OverlayState::Up,
        "frozen"
    );
    assert_eq!(s.history(G).unwrap().len(), 1);
    assert_eq!(s.uptime(), Duration::from_secs(65));
    s.key(key('p'));
    assert!(!s.paused);
    assert_eq!(s.skipped, 0);
    s.update(incident(), Duration::from_secs(72));
    assert_eq!(
        s.report().unwrap().node.overlay_state,
        OverlayState::Missing
    );
    assert_eq!(s.history(G).unwrap().len(), 2);
}

#[test]
fn history_is_bounded_to_a_minute() {
    let mut s = WatchState::new();
    for i in 0..150u64 {
        let mut r = healthy();
        r.peers[0] = peer(G, "0e:00:00:00:00:11", i, i, i);
        s.update(r, Duration::from_secs(i));
    }
    let h = s.history(G).unwrap();
    assert_eq!(h.len(), RATE_HISTORY);
    assert_eq!(RATE_HISTORY, 60);
    assert_eq!(h.back().copied(), Some(149.0), "newest last");
    assert_eq!(h.front().copied(), Some(90.0));
    // A peer gone from the reports fades out and is forgotten.
    for i in 0..RATE_HISTORY {
        let mut r = healthy();
        r.peers.remove(0);
        s.update(r, Duration::from_secs(200 + i as u64));
        if i + 1 < RATE_HISTORY {
            assert!(
                s.history(G).is_some(),
                "kept while its history shows traffic"
            );
        }
    }
    assert!(s.history(G).is_none());
}

#[test]
fn overlay_state_changes_are_events() {
    let mut s = state_with(healthy());
    assert_eq!(s.events().count(), 0, "starting up is no event");
    s.update(incident(), Duration::from_secs(66));
    s.update(incident(), Duration::from_secs(67));
    s.update(healthy(), Duration::from_secs(68));
    let ev: Vec<&str> = s.events().collect();
    assert_eq!(
        ev,
        [
            "00:01:06 flannel.1 up -> missing",
            "00:01:08 flannel.1 missing -> up"
        ]
    );
    let mut fresh = WatchState::new();
    fresh.update(incident(), Duration::from_secs(1));
    assert_eq!(
        fresh.events().collect::<Vec<_>>(),
        ["00:00:01 flannel.1 missing"]
    );
    for i in 0..EVENTS + 3 {
        fresh.event(format!("e{i}"));
    }
    assert_eq!(fresh.events().count(), EVENTS);
}

#[test]
fn quit_keys_selection_and_help() {
    let mut s = state_with(three_peers());
    assert_eq!(s.key(key('q')), Action::Quit);
    assert_eq!(
        s.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
    assert_eq!(s.key(key('x')), Action::None);
    assert_eq!(
        s.key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::ALT)),
        Action::None,
        "Alt-s is not s"
    );
    assert_eq!(s.sort, SortKey::Peer);
    s.key(code(KeyCode::Down));
    assert_eq!(s.selected.as_deref(), Some("192.0.2.9"));
    s.key(key('j'));
    s.key(key('j'));
    s.key(key('j'));
    assert_eq!(
        s.selected.as_deref(),
        Some("192.0.2.100"),
        "stops at the end"
    );
    assert_eq!(s.selected_index(), Some(2));
    // The selection follows the peer, not the position.
    s.sort = SortKey::Health;
    assert_eq!(s.selected_index(), Some(0));
    s.key(key('k'));
    assert_eq!(s.selected_index(), Some(0));
    s.key(code(KeyCode::Esc));
    assert_eq!(s.selected, None);
    s.key(key('?'));
    assert!(s.help);
    assert_eq!(s.key(key('s')), Action::Redraw);
    assert!(!s.help, "any key closes help");
    assert_eq!(s.sort, SortKey::Health, "and does nothing else");
    s.key(key('?'));
    assert_eq!(s.key(key('q')), Action::Quit);
}

#[test]
fn rates_are_window_counts_over_seconds() {
    let mut p = peer(G, "m", 30, 15, 60);
    p.traffic.rx_encap_bytes = 3000;
    let r = Rates::of(&p, 2.0);
    assert_eq!(r.rx_pps, 15.0);
    assert_eq!(r.rx_bps, 12_000.0);
    assert_eq!(r.tx_pps, 30.0);
    assert_eq!(r.decap_pps, 7.5);
    assert_eq!(r.decap_share, Some(0.5));
    assert_eq!(Rates::of(&peer(G, "m", 0, 0, 3), 1.0).decap_share, None);
    assert_eq!(
        Rates::of(&peer(G, "m", 3, 4, 0), 1.0).decap_share,
        Some(1.0)
    );
    assert_eq!(Rates::of(&p, 0.0).rx_pps, 0.0);
    assert_eq!(clock(Duration::from_secs(3 * 86_400 + 3661)), "3d 01:01:01");
}

/// The overlay's own multicast (IPv6 ND to 33:33:..., IPv4 multicast,
/// broadcast) is not "traffic with no FDB entry"; a unicast stranger is.
#[test]
fn text_report_lists_only_unicast_inner_traffic_without_fdb_entry() {
    use crate::report::UnattributedInner;
    let mut r = healthy();
    for (mac, rx) in [
        ("33:33:00:00:00:01", 7),
        ("33:33:ff:00:00:11", 3),
        ("01:00:5e:00:00:fb", 2),
        ("ff:ff:ff:ff:ff:ff", 5),
        ("0e:00:00:00:00:99", 4),
    ] {
        r.unattributed_inner.push(UnattributedInner {
            mac: mac.into(),
            rx_packets: rx,
            tx_packets: 1,
        });
    }
    let text = crate::render::text::report(&r);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("no FDB entry"))
        .collect();
    assert_eq!(
        lines,
        ["Inner traffic of 0e:00:00:00:00:99 (no FDB entry): rx 4 tx 1"],
        "{text}"
    );
}
