//! The plot of the on/off ratios per pair: gnuplot's data and script.
use std::fmt::Write as _;

use super::{PLOT_DATA, PLOT_PNG, ratios};
use crate::bench::results::{Results, TCP_RATIO_TARGET, UDP_RATIO_TARGET, tcp_gbits, udp_kpps};

/// `pair tcp_ratio udp_ratio` per line, for gnuplot.
pub(crate) fn plot_data(r: &Results) -> String {
    let mut o =
        String::from("# pair tcp_on_off udp64_on_off tcp_control_off_off udp64_control_off_off\n");
    let cols = [
        r.tcp_ratios(),
        r.udp_ratios(),
        ratios(&r.control_tcp, tcp_gbits),
        ratios(&r.control_udp, udp_kpps),
    ];
    let rows = cols.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..rows {
        let cells: Vec<String> = cols
            .iter()
            .map(|v| v.get(i).map_or_else(|| "NaN".into(), |x| format!("{x:.5}")))
            .collect();
        let _ = writeln!(o, "{} {}", i + 1, cells.join(" "));
    }
    o
}

/// The gnuplot script that draws [`PLOT_PNG`] from [`PLOT_DATA`].
pub(crate) fn plot_script(r: &Results, terminal: &str) -> String {
    let n = [
        r.tcp.len(),
        r.udp.len(),
        r.control_tcp.len(),
        r.control_udp.len(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
    .max(1);
    let all: Vec<f64> = r
        .tcp_ratios()
        .into_iter()
        .chain(r.udp_ratios())
        .chain(ratios(&r.control_tcp, tcp_gbits))
        .chain(ratios(&r.control_udp, udp_kpps))
        .filter(|x| x.is_finite())
        .collect();
    let control = if r.control_tcp.is_empty() && r.control_udp.is_empty() {
        String::new()
    } else {
        format!(
            "     '{PLOT_DATA}' using 1:4 with points pt 6 ps 1.5 lc rgb '#9467bd' title 'control TCP (off/off)', \\\n\
             \x20    '{PLOT_DATA}' using 1:5 with points pt 4 ps 1.5 lc rgb '#2ca02c' title 'control UDP (off/off)', \\\n"
        )
    };
    // Room around every point and the targets.
    let lo = (all.iter().copied().fold(UDP_RATIO_TARGET, f64::min) - 0.02).min(0.9);
    let hi = (all.iter().copied().fold(1.0, f64::max) + 0.02).max(1.05);
    format!(
        "set terminal {terminal} size 900,500\n\
         set output '{PLOT_PNG}'\n\
         set title 'flannel-probe: probe on / probe off, per interleaved pair (hollow: off / off)'\n\
         set xlabel 'pair (odd: off run first; even: on run first)'\n\
         set ylabel 'on / off'\n\
         set xrange [0.5:{xmax}]\n\
         set yrange [{lo:.3}:{hi:.3}]\n\
         set xtics 1\n\
         set grid ytics\n\
         set key below\n\
         plot '{PLOT_DATA}' using 1:2 with linespoints lw 2 pt 7 title 'TCP throughput', \\\n\
         \x20    '{PLOT_DATA}' using 1:3 with linespoints lw 2 pt 5 title '64-byte UDP pps (received)', \\\n\
         {control}\
         \x20    {TCP_RATIO_TARGET} with lines dt 2 lc rgb '#1f77b4' title 'TCP target {TCP_RATIO_TARGET}', \\\n\
         \x20    {UDP_RATIO_TARGET} with lines dt 2 lc rgb '#ff7f0e' title 'UDP target {UDP_RATIO_TARGET}', \\\n\
         \x20    1 with lines lc rgb '#888888' notitle\n",
        xmax = n as f64 + 0.5,
    )
}
