//! The agent (`serve`). One loop (on this thread, in the node's network
//! namespace) reads the eBPF maps once per interval into an immutable
//! [`Sample`]; the HTTP handlers only render the latest one, so scrapes are
//! cheap and any number of them can run at once.
//!
//! - `GET /metrics`: Prometheus text format (see [`crate::render::metrics`]);
//! - `GET /report`: the JSON report (schema 1) of the rolling `--window`;
//! - `GET /counters`: cumulative per-peer counters for `mesh` (`?fresh=1`
//!   asks the loop for a reading taken after the request, shared by
//!   concurrent callers, spaced by [`super::fresh`]);
//! - `GET /healthz`: 200 while readings are current, 503 when they stall.
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::{Notify, watch};

use super::{
    fresh::FreshPacer,
    listener::{self, HttpLimits},
    sampler::{Sample, Sampler},
};
use crate::{
    probe::{Probe, ProbeOptions, Shutdown},
    render::{json, metrics},
};

/// What the agent needs: the probe's options and its own.
#[derive(Clone, Debug)]
pub(crate) struct ServeOptions {
    pub probe: ProbeOptions,
    pub listen: SocketAddr,
    /// Length of the rolling window.
    pub window: Duration,
    /// How often the maps and the node are read.
    pub interval: Duration,
    /// Peers gone from the FDB and silent this long are forgotten.
    pub forget_after: Duration,
}

#[derive(Clone)]
struct AppState {
    latest: watch::Receiver<Arc<Sample>>,
    wake: Arc<Notify>,
    /// A reading older than this means the loop is stuck.
    stale_after: Duration,
    /// How long `?fresh=1` waits for its reading.
    fresh_wait: Duration,
}

pub(crate) async fn run(args: &ServeOptions) -> Result<i32> {
    // Bind first: a taken port is bad input, found before touching the kernel.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut shutdown = Shutdown::install()?;
    let probe = Probe::start(&args.probe).await?;
    let mut sampler =
        Sampler::new(probe, args.window, args.interval).forget_after(args.forget_after);
    let first = sampler.sample().await?;
    let (tx, rx) = watch::channel(Arc::new(first));
    let wake = Arc::new(Notify::new());
    let state = AppState {
        latest: rx,
        wake: wake.clone(),
        stale_after: args.interval * 3 + Duration::from_secs(5),
        // A deferred fresh request waits a fraction of a second; this
        // bounds a loop stuck in a reading.
        fresh_wait: args.interval * 2 + Duration::from_secs(5),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(listener::serve(
        listener,
        router(state),
        HttpLimits::default(),
        stop_rx,
    ));
    tracing::info!(
        "serving on http://{}/metrics (window {:?}, interval {:?})",
        args.listen,
        args.window,
        args.interval
    );

    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // `?fresh=1` readings beyond the scheduled ones, shared by every request
    // waiting when one starts and spaced by `fresh::FreshPacer`.
    let mut pacer = FreshPacer::default();
    let result = loop {
        let due = pacer.due();
        let extra = tokio::select! {
            _ = shutdown.wait() => break Ok(0),
            _ = tick.tick() => false,
            _ = wake.notified() => {
                if !pacer.ask(Instant::now()) {
                    continue;
                }
                true
            }
            _ = until(due) => true,
            // The overlay or the uplink appeared, went or was recreated:
            // follow it now (other devices wait for the tick).
            _ = sampler.probe.link_changed() => false,
        };
        let started = Instant::now();
        match sampler.sample().await {
            Ok(s) => {
                tx.send_replace(Arc::new(s));
            }
            // Kept running: /healthz turns 503 if this persists.
            Err(e) => tracing::warn!("reading the counters failed: {e:#}"),
        }
        pacer.read(started, Instant::now(), extra);
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // The server gives open connections 5 s, then closes them.
    if let Err(e) = server.await {
        tracing::warn!("the HTTP server failed: {e}");
    }
    // Dropping the sampler drops the probe, which detaches everything.
    drop(sampler);
    result
}

/// Resolves at `at`; never without one.
async fn until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
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
        let waited = tokio::time::timeout(state.fresh_wait, rx.wait_for(|s| s.at >= asked)).await;
        if !matches!(waited, Ok(Ok(_))) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no fresh reading within {}s\n", state.fresh_wait.as_secs()),
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
    let sample = latest(&state);
    let age = sample.at.elapsed();
    let detached = &sample.report.node.detached;
    if !detached.is_empty() {
        // Counting with a gap is not healthy: DATAPATH_DETACHED is raised.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("detached: {}\n", detached.join(", ")),
        )
            .into_response()
    } else if age > state.stale_after {
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
