//! Pod churn as a busy node sees it: veth pairs created and deleted by the
//! hundred per second in one namespace (each pair is two link-add and two
//! link-delete notifications to every RTNLGRP_LINK listener).
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;

use super::netns::ip_batch;

/// What a churn run did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Churned {
    /// Pairs created and deleted again.
    pub pairs: u64,
    pub secs: f64,
}

impl Churned {
    pub fn pairs_per_sec(&self) -> f64 {
        self.pairs as f64 / self.secs.max(1e-9)
    }
}

/// Creates and deletes `per_sec` veth pairs (`vchN`/`vchNp`) in `ns` once a
/// second for `duration` (or until `stop`); every pair is gone at the end.
pub fn veth_churn(
    ns: &str,
    per_sec: u32,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<Churned> {
    let t0 = Instant::now();
    let mut pairs = 0u64;
    let mut second = 0u32;
    while t0.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let add: String = (0..per_sec)
            .map(|i| format!("link add vch{i} type veth peer name vch{i}p\n"))
            .collect();
        let del: String = (0..per_sec).map(|i| format!("link del vch{i}\n")).collect();
        ip_batch(ns, &add)?;
        ip_batch(ns, &del)?;
        pairs += u64::from(per_sec);
        second += 1;
        // One batch a second; a slow machine just runs them back to back.
        let next = Duration::from_secs(u64::from(second));
        if let Some(wait) = next.checked_sub(t0.elapsed()) {
            thread::sleep(wait);
        }
    }
    Ok(Churned {
        pairs,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// [`veth_churn`] on its own thread until the handle is finished or dropped.
pub struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Result<Churned>>>,
}

impl Churn {
    pub fn start(ns: &str, per_sec: u32, duration: Duration) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, flag) = (ns.to_string(), Arc::clone(&stop));
        let thread = thread::spawn(move || veth_churn(&ns, per_sec, duration, &flag));
        Churn {
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for the run to end (its duration) and returns what it did.
    pub fn finish(mut self) -> Result<Churned> {
        match self.thread.take().map(thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the churn thread panicked"),
            None => Ok(Churned::default()),
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
