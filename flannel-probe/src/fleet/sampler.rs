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
    started: Instant,
    started_unix: f64,
    totals: CumulativeTotals,
    prev: (Instant, Snapshot),
    history: History,
    /// Readings taken since the start (`flannel_probe_samples_total`).
    samples: u64,
    /// `uname -r`, read once.
    kernel: String,
}

/// Cumulative snapshots of the last `window`, oldest first; the first is
/// the base of the rolling report. Bounded by count as well as by age, so
/// readings taken between the scheduled ones (`?fresh=1`, link events)
/// cannot grow it: past `max` the one closest to its predecessor goes,
/// which keeps the base and the newest and thins the middle evenly.
pub(crate) struct History {
    window: Duration,
    max: usize,
    snaps: VecDeque<(Instant, Snapshot)>,
}

impl History {
    /// A window of `window` read every `interval`: room for one snapshot per
    /// interval, the base and the newest.
    pub(crate) fn new(window: Duration, interval: Duration, first: (Instant, Snapshot)) -> Self {
        let per_window = window.as_secs_f64() / interval.as_secs_f64().max(1e-3);
        // Saturating float-to-int cast; the clamp keeps it sane either way.
        let max = (per_window.ceil() as usize)
            .saturating_add(2)
            .clamp(4, 4096);
        Self {
            window,
            max,
            snaps: VecDeque::from([first]),
        }
    }

    /// Adds the newest reading; returns the base of the rolling window.
    pub(crate) fn push(&mut self, now: Instant, snap: Snapshot) -> &(Instant, Snapshot) {
        self.snaps.push_back((now, snap));
        // Keep the newest snapshot that is at least `window` old as the base.
        while self.snaps.len() > 2 && now.duration_since(self.snaps[1].0) >= self.window {
            self.snaps.pop_front();
        }
        while self.snaps.len() > self.max {
            let closest = (1..self.snaps.len() - 1)
                .min_by_key(|&i| self.snaps[i].0.duration_since(self.snaps[i - 1].0));
            match closest {
                Some(i) => {
                    self.snaps.remove(i);
                }
                None => break,
            }
        }
        &self.snaps[0]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.snaps.len()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Sampler {
    pub(crate) fn new(probe: Probe, window: Duration, interval: Duration) -> Self {
        let now = Instant::now();
        // The maps were empty when the datapath was loaded: counting from an
        // empty snapshot makes every counter "since the agent started".
        let zero = (now, Snapshot::default());
        Self {
            probe,
            started: now,
            started_unix: unix_now(),
            totals: CumulativeTotals::default(),
            prev: zero.clone(),
            history: History::new(window, interval, zero),
            samples: 0,
            kernel: super::selfstats::kernel_release(),
        }
    }

    /// Forgets peers gone from the FDB and silent for `d` (`--forget-after`).
    pub(crate) fn forget_after(mut self, d: Duration) -> Self {
        self.totals = CumulativeTotals::new(d);
        self
    }

    fn take(&mut self, began: Instant) -> Result<Sample> {
        // Taken before the read: a reading is at least as new as this.
        let now = Instant::now();
        // What `mesh` lines up across nodes: the instant the maps are read.
        let now_unix = unix_now();
        let snap = self.probe.snapshot()?;
        let map_read_secs = now.elapsed().as_secs_f64();
        let (prev_at, prev) = &self.prev;
        let delta = self.probe.report(
            &snap.since(prev),
            now.duration_since(*prev_at).as_secs_f64(),
        );
        self.totals.add(&delta);
        self.samples += 1;
        let (base_at, base) = self.history.push(now, snap.clone());
        let rolling = self.probe.report(
            &snap.since(base),
            now.duration_since(*base_at).as_secs_f64(),
        );
        self.prev = (now, snap);
        let mut counters = self.totals.counters(
            &rolling,
            self.started_unix,
            now_unix,
            now.duration_since(self.started).as_secs_f64(),
        );
        counters.samples = self.samples;
        counters.map_memory_bytes = self.probe.map_memory_bytes();
        counters.agent = super::selfstats::AgentSelf {
            sample_secs: began.elapsed().as_secs_f64(),
            map_read_secs,
            attached_hooks: self.probe.attached_hooks(),
            kernel: self.kernel.clone(),
        };
        Ok(Sample {
            at: now,
            counters: Arc::new(counters),
            report: Arc::new(rolling),
        })
    }

    /// Follows the node (devices that appeared or were recreated), then reads.
    pub(crate) async fn sample(&mut self) -> Result<Sample> {
        let began = Instant::now();
        if let Err(e) = self.probe.refresh().await {
            tracing::warn!("re-reading the node failed: {e:#}");
        }
        self.take(began)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_by_count_and_keeps_its_base() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A 10 s window read every second: 12 snapshots at most.
        let mut h = History::new(
            Duration::from_secs(10),
            Duration::from_secs(1),
            (t0, Snapshot::default()),
        );
        assert_eq!(h.max, 12);
        // Scheduled readings plus 20 fresh ones per second, for 5 s.
        let mut ms = 0;
        while ms < 5000 {
            ms += 50;
            let (base_at, _) = h.push(at(ms), Snapshot::default());
            assert_eq!(
                *base_at, t0,
                "the window is not 10 s old yet: its base stays"
            );
            assert!(h.len() <= 12, "{} snapshots after {ms} ms", h.len());
        }
        assert_eq!(h.len(), 12);
        // Thinning kept them spread over the window, not bunched at its end.
        let first_gap = h.snaps[1].0.duration_since(h.snaps[0].0);
        assert!(first_gap >= Duration::from_millis(200), "{first_gap:?}");
        assert_eq!(h.snaps.back().map(|s| s.0), Some(at(5000)));
        // Once readings are older than the window, the base moves on.
        for s in 6..=20u64 {
            h.push(at(s * 1000), Snapshot::default());
        }
        let (base_at, _) = h.push(at(21_000), Snapshot::default());
        assert_eq!(*base_at, at(11_000), "the newest snapshot >= 10 s old");
        assert!(h.len() <= 12);
    }
}
