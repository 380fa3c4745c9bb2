//! `flannel-probe serve`: the long-running agent. One loop (on this thread,
//! in the node's network namespace) reads the eBPF maps once per interval
//! into an immutable [`Sample`]; the HTTP handlers only render the latest
//! one, so scrapes are cheap and any number of them can run at once.
//!
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]);
//! - `GET /report`: the JSON report (schema 1) of the rolling `--window`;
//! - `GET /counters`: cumulative per-peer counters for `mesh` (`?fresh=1`
//!   asks the loop for a reading taken now, shared by concurrent callers);
//! - `GET /healthz`: 200 while readings are current, 503 when they stall.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use clap::Args;
use tokio::sync::{Notify, watch};

use super::{Common, duration};
use crate::{
    agent::{Counters, Totals},
    datapath::Snapshot,
    metrics,
    probe::{Probe, Shutdown},
    render::json,
    report::Report,
};

/// Port of the agent (`--listen`); also what the deployment files use.
pub const DEFAULT_PORT: u16 = 9465;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve on; use 0.0.0.0:9465 (or the node's IP) so
    /// Prometheus and `mesh` can reach it from other nodes.
    #[arg(long, default_value = "127.0.0.1:9465", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Length of the rolling window `GET /report` and the findings cover.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub window: Duration,
    /// How often the eBPF maps and the node's state are read.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub interval: Duration,
}

fn listen_addr(s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        anyhow::anyhow!("'{s}' is not an address to listen on: give IP:PORT, e.g. 0.0.0.0:9465")
    })
}

/// One reading, shared read-only with the handlers.
#[derive(Debug)]
pub struct Sample {
    pub seq: u64,
    pub at: Instant,
    pub counters: Arc<Counters>,
    pub report: Arc<Report>,
}

/// Reads the maps and keeps the cumulative totals and the rolling window.
struct Sampler {
    probe: Probe,
    window: Duration,
    started: Instant,
    started_unix: f64,
    totals: Totals,
    prev: (Instant, Snapshot),
    /// Cumulative snapshots of the last `window`, oldest first; the first
    /// is the base of the rolling report.
    history: VecDeque<(Instant, Snapshot)>,
    seq: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Sampler {
    fn new(probe: Probe, window: Duration) -> Self {
        let now = Instant::now();
        // The maps were empty when the datapath was loaded: counting from an
        // empty snapshot makes every counter "since the agent started".
        let zero = (now, Snapshot::default());
        Self {
            probe,
            window,
            started: now,
            started_unix: unix_now(),
            totals: Totals::default(),
            prev: zero.clone(),
            history: VecDeque::from([zero]),
            seq: 0,
        }
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
        self.seq += 1;
        let counters = self.totals.counters(
            &rolling,
            self.started_unix,
            unix_now(),
            now.duration_since(self.started).as_secs_f64(),
        );
        Ok(Sample {
            seq: self.seq,
            at: now,
            counters: Arc::new(counters),
            report: Arc::new(rolling),
        })
    }

    /// Follows the node (devices that appeared or were recreated), then reads.
    async fn sample(&mut self) -> Result<Sample> {
        if let Err(e) = self.probe.refresh().await {
            tracing::warn!("re-reading the node failed: {e:#}");
        }
        self.take()
    }
}

#[derive(Clone)]
struct AppState {
    latest: watch::Receiver<Arc<Sample>>,
    wake: Arc<Notify>,
    /// A reading older than this means the loop is stuck.
    stale_after: Duration,
}

pub async fn run(common: &Common, args: &ServeArgs) -> Result<i32> {
    // Bind first: a taken port is bad input, found before touching the kernel.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut shutdown = Shutdown::install()?;
    let probe = Probe::start(common).await?;
    let mut sampler = Sampler::new(probe, args.window);
    let first = sampler.sample().await?;
    let (tx, rx) = watch::channel(Arc::new(first));
    let wake = Arc::new(Notify::new());
    let state = AppState {
        latest: rx,
        wake: wake.clone(),
        stale_after: args.interval * 3 + Duration::from_secs(5),
    };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    tracing::info!(
        "serving on http://{}/metrics (window {:?}, interval {:?})",
        args.listen,
        args.window,
        args.interval
    );

    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let result = loop {
        tokio::select! {
            _ = shutdown.wait() => break Ok(0),
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            // A device appeared, went or was recreated: follow it now.
            _ = sampler.probe.link_changed() => {}
        }
        match sampler.sample().await {
            Ok(s) => {
                tx.send_replace(Arc::new(s));
            }
            // Kept running: /healthz turns 503 if this persists.
            Err(e) => tracing::warn!("reading the counters failed: {e:#}"),
        }
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!("the HTTP server failed: {e}"),
        Ok(_) => {}
        Err(_) => tracing::warn!("open connections did not close in 5s"),
    }
    // Dropping the sampler drops the probe, which detaches everything.
    drop(sampler);
    result
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/report", get(report_handler))
        .route("/counters", get(counters_handler))
        .route("/healthz", get(healthz_handler))
        .route("/", get(index_handler))
        .with_state(state)
}

fn latest(state: &AppState) -> Arc<Sample> {
    state.latest.borrow().clone()
}

fn internal_error(e: anyhow::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match metrics::encode(latest(&state).counters.clone()) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => internal_error(e),
    }
}

fn json_response(body: Result<String>) -> Response {
    match body {
        Ok(mut text) => {
            text.push('\n');
            ([(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(e) => internal_error(e),
    }
}

async fn report_handler(State(state): State<AppState>) -> Response {
    json_response(json::report(&latest(&state).report))
}

#[derive(Debug, serde::Deserialize)]
struct CountersQuery {
    #[serde(default)]
    fresh: Option<String>,
}

async fn counters_handler(
    State(state): State<AppState>,
    Query(q): Query<CountersQuery>,
) -> Response {
    let fresh = q
        .fresh
        .as_deref()
        .is_some_and(|v| matches!(v, "" | "1" | "true" | "yes"));
    if fresh {
        // A reading that starts after this request: ask the loop for one
        // (concurrent callers share it) and wait for it.
        let asked = Instant::now();
        let mut rx = state.latest.clone();
        state.wake.notify_one();
        let waited =
            tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.at >= asked)).await;
        if !matches!(waited, Ok(Ok(_))) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "no fresh reading within 5s\n",
            )
                .into_response();
        }
    }
    json_response(
        serde_json::to_string_pretty(&*latest(&state).counters)
            .context("encoding the counters failed"),
    )
}

async fn healthz_handler(State(state): State<AppState>) -> Response {
    let age = latest(&state).at.elapsed();
    if age > state.stale_after {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stale: last reading {:.1}s ago\n", age.as_secs_f64()),
        )
            .into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn index_handler() -> &'static str {
    "flannel-probe agent: GET /metrics, /report, /counters, /healthz\n"
}
