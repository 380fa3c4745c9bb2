//! `flannel-probe watch`: per-peer traffic every interval until Ctrl-C.
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use super::{Common, duration};
use crate::{
    probe::{Probe, Shutdown},
    render::{Format, json, text},
    report::Severity,
};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Refresh interval.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub interval: Duration,
    /// Print one plain table (or JSON line) per interval.
    #[arg(long)]
    pub plain: bool,
}

pub async fn run(common: &Common, args: &WatchArgs) -> Result<i32> {
    let mut shutdown = Shutdown::install()?;
    let mut probe = Probe::start(common).await?;
    let mut prev = probe.snapshot()?;
    let mut t_prev = Instant::now();
    let mut tick = tokio::time::interval(args.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return Ok(0),
            // A device changed: follow it now; the table waits for the tick.
            _ = probe.link_changed() => {
                probe.refresh().await?;
                continue;
            }
        }
        probe.refresh().await?;
        let now = probe.snapshot()?;
        let secs = t_prev.elapsed().as_secs_f64();
        let report = probe.report(&now.since(&prev), secs);
        prev = now;
        t_prev = Instant::now();
        match common.format {
            Format::Json => println!("{}", json::line(&report)?),
            Format::Text => {
                let mut out = String::new();
                out.push_str(&format!(
                    "--- {} ---\n",
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                ));
                out.push_str(&text::node_line(&report));
                out.push_str(&text::peer_table(&report, Some(secs)));
                for f in report
                    .findings
                    .iter()
                    .filter(|f| f.severity != Severity::Info)
                {
                    let peer = f
                        .peer
                        .as_deref()
                        .map(|p| format!(" [{p}]"))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "{} {}{peer}: {}\n",
                        f.severity.as_str().to_uppercase(),
                        f.code,
                        f.summary
                    ));
                }
                println!("{out}");
            }
        }
    }
}
