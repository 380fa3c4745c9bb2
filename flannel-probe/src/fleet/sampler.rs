//! The agent's reading loop body: one [`Sample`] per interval, with the
//! cumulative totals since the start and the report of the rolling window.
use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Result;

use super::agent::{Counters, CumulativeTotals};
use crate::{datapath::Snapshot, probe::Probe, report::Report};

/// One reading, shared read-only with the HTTP handlers.
#[derive(Debug)]
pub(crate) struct Sample {
    pub at: Instant,
    pub counters: Arc<Counters>,
    pub report: Arc<Report>,
}

/// Reads the maps and keeps the cumulative totals and the rolling window.
pub(crate) struct Sampler {
    pub probe: Probe,
    window: Duration,
    started: Instant,
    started_unix: f64,
    totals: CumulativeTotals,
    prev: (Instant, Snapshot),
    /// Cumulative snapshots of the last `window`, oldest first; the first
    /// is the base of the rolling report.
    history: VecDeque<(Instant, Snapshot)>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Sampler {
    pub(crate) fn new(probe: Probe, window: Duration) -> Self {
        let now = Instant::now();
        // The maps were empty when the datapath was loaded: counting from an
        // empty snapshot makes every counter "since the agent started".
        let zero = (now, Snapshot::default());
        Self {
            probe,
            window,
            started: now,
            started_unix: unix_now(),
            totals: CumulativeTotals::default(),
            prev: zero.clone(),
            history: VecDeque::from([zero]),
        }
    }

    /// Forgets peers gone from the FDB and silent for `d` (`--forget-after`).
    pub(crate) fn forget_after(mut self, d: Duration) -> Self {
        self.totals = CumulativeTotals::new(d);
        self
    }

    fn take(&mut self) -> Result<Sample> {
        // Taken before the read: a reading is at least as new as this.
        let now = Instant::now();
        let snap = self.probe.snapshot()?;
        let (prev_at, prev) = &self.prev;
        let delta = self.probe.report(
            &snap.since(prev),
            now.duration_since(*prev_at).as_secs_f64(),
        );
        self.totals.add(&delta);
        self.history.push_back((now, snap.clone()));
        // Keep the newest snapshot that is at least `window` old as the base.
        while self.history.len() > 2 && now.duration_since(self.history[1].0) >= self.window {
            self.history.pop_front();
        }
        let (base_at, base) = &self.history[0];
        let rolling = self.probe.report(
            &snap.since(base),
            now.duration_since(*base_at).as_secs_f64(),
        );
        self.prev = (now, snap);
        let mut counters = self.totals.counters(
            &rolling,
            self.started_unix,
            unix_now(),
            now.duration_since(self.started).as_secs_f64(),
        );
        counters.map_memory_bytes = self.probe.map_memory_bytes();
        Ok(Sample {
            at: now,
            counters: Arc::new(counters),
            report: Arc::new(rolling),
        })
    }

    /// Follows the node (devices that appeared or were recreated), then reads.
    pub(crate) async fn sample(&mut self) -> Result<Sample> {
        if let Err(e) = self.probe.refresh().await {
            tracing::warn!("re-reading the node failed: {e:#}");
        }
        self.take()
    }
}
