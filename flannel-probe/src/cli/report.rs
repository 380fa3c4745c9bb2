//! `flannel-probe report`: observe for a while, print one fault report.
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use super::{Common, duration};
use crate::{
    probe::{Probe, Shutdown},
    render::{Format, json, text},
};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// How long to observe (5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub duration: Duration,
}

pub(crate) async fn run(common: &Common, args: &ReportArgs) -> Result<i32> {
    let mut shutdown = Shutdown::install()?;
    let mut probe = Probe::start(&common.probe_options()).await?;
    let start = probe.snapshot()?;
    let t0 = Instant::now();
    tracing::info!("observing for {:?}", args.duration);
    let deadline = tokio::time::Instant::now() + args.duration;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.wait() => {
                tracing::info!("interrupted: reporting the shortened window");
                break;
            }
            // Follow a device recreated mid-window, so counting goes on.
            _ = probe.link_changed() => probe.refresh().await?,
        }
    }
    probe.refresh().await?;
    let end = probe.snapshot()?;
    let report = probe.report(&end.since(&start), t0.elapsed().as_secs_f64());
    match common.format {
        Format::Text => print!("{}", text::report(&report)),
        Format::Json => println!("{}", json::report(&report)?),
    }
    Ok(report.exit_code())
}
