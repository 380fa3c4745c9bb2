//! `flannel-probe mesh`: reads every agent's cumulative counters at the
//! start and the end of a window and prints the VXLAN matrix between every
//! pair of nodes; or, with `--from-prometheus`, builds the same matrix from
//! what a Prometheus server scraped. Needs no privileges and loads no eBPF.
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{ArgGroup, Args};

use super::{Common, duration};
use crate::{
    fleet::{
        DEFAULT_PORT,
        agent::Counters,
        http::{self, BaseUrl},
        mesh::{self, AgentReading, Bracket, MeshReport},
        promql::{self, Answers, Queries, Query},
    },
    probe::shutdown_signal,
    render::{Format, mesh as render_mesh},
};

#[derive(Debug, Args)]
// One source of figures: the agents, or a Prometheus that scrapes them.
#[command(group(ArgGroup::new("source").required(true).args(["agents", "from_prometheus"])))]
pub struct MeshArgs {
    /// The agents (`flannel-probe serve`), one per node: URL[,URL...];
    /// `http://` and the port 9465 may be left out.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = agent_url
    )]
    pub agents: Vec<BaseUrl>,
    /// Instead of asking the agents, build the matrix from a Prometheus
    /// server that scrapes them: http://host[:port][/path] (port 9090 when
    /// left out).
    #[arg(long, value_name = "URL", value_parser = prometheus_url)]
    pub from_prometheus: Option<BaseUrl>,
    /// With --from-prometheus: the window the counters' increase() is
    /// taken over, ending now (30s, 5m, 1h); at least two scrape intervals.
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub window: Duration,
    /// With --agents: how long to observe (10s, 1m).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Loss on a link, in percent, above which it is called lossy.
    #[arg(long, default_value_t = 2.0, value_parser = percent)]
    pub loss_threshold: f64,
    /// How long to wait for one agent's answer (or one Prometheus query's).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub timeout: Duration,
    /// The largest answer read from one agent (1MiB, 4Mi, bytes; default
    /// 1MiB): a larger one makes that agent unreachable, with the reason.
    /// With --from-prometheus, of one query's answer (default 64MiB): a
    /// larger one is an error.
    #[arg(long, value_parser = super::byte_size)]
    pub max_response: Option<u64>,
}

fn prometheus_url(s: &str) -> Result<BaseUrl> {
    BaseUrl::parse(s, promql::DEFAULT_PORT)
}

fn agent_url(s: &str) -> Result<BaseUrl> {
    BaseUrl::parse(s, DEFAULT_PORT)
}

fn percent(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| anyhow::anyhow!("'{s}' is not a percentage"))?;
    if !(0.0..=100.0).contains(&v) {
        bail!("'{s}' is not a percentage between 0 and 100");
    }
    Ok(v)
}

/// One agent's counters, asking for a reading taken now.
async fn read(agent: &BaseUrl, timeout: Duration, max: u64) -> Result<Counters, String> {
    let body = http::get(agent, "/counters?fresh=1", timeout, max, "--max-response")
        .await
        .map_err(|e| format!("{e:#}"))?;
    let c: Counters = serde_json::from_slice(&body)
        .with_context(|| format!("{agent}/counters is not flannel-probe's counters document"))
        .map_err(|e| format!("{e:#}"))?;
    if c.schema != 1 {
        return Err(format!(
            "{agent}/counters has schema {}, this mesh reads schema 1",
            c.schema
        ));
    }
    Ok(c)
}

/// Every agent at once, so the readings are as close in time as possible;
/// each with when it was asked for and answered (seconds since `t0`).
async fn read_all(
    agents: &[BaseUrl],
    t0: Instant,
    timeout: Duration,
    max: u64,
) -> Vec<(Result<Counters, String>, Bracket)> {
    futures::future::join_all(agents.iter().map(|a| async move {
        let asked = t0.elapsed().as_secs_f64();
        let r = read(a, timeout, max).await;
        let answered = t0.elapsed().as_secs_f64();
        (r, Bracket { asked, answered })
    }))
    .await
}

fn print(common: &Common, report: &MeshReport) -> Result<i32> {
    match common.format {
        // `run` refuses npd for mesh before anything is read.
        Format::Text | Format::Npd => print!("{}", common.paint(&render_mesh::text(report))),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).context("encoding the matrix failed")?
        ),
    }
    Ok(report.exit_code())
}

/// Characters of a query parameter value sent unencoded: RFC 3986's
/// unreserved ones.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One instant query, at `time` (Unix seconds) or at the server's now.
async fn query(
    prom: &BaseUrl,
    expr: &str,
    time: Option<f64>,
    timeout: Duration,
    max: u64,
) -> Result<Vec<promql::Sample>> {
    let mut path = format!(
        "/api/v1/query?query={}",
        percent_encoding::utf8_percent_encode(expr, QUERY_VALUE)
    );
    if let Some(t) = time {
        path.push_str(&format!("&time={t}"));
    }
    let body = http::get(prom, &path, timeout, max, "--max-response")
        .await
        .with_context(|| format!("asking Prometheus for {expr}"))?;
    promql::parse_vector(&body, &format!("{prom}: {expr}"))
}

/// `mesh --from-prometheus`: a fixed handful of queries, the first giving
/// the instant all the others are evaluated at.
async fn from_prometheus(common: &Common, args: &MeshArgs, prom: &BaseUrl) -> Result<i32> {
    let window = promql::range(args.window);
    let queries = Queries::new(&window);
    let max = args.max_response.unwrap_or(promql::DEFAULT_MAX_ANSWER);
    let info = query(prom, &queries[Query::Info], None, args.timeout, max).await?;
    let Some(at) = info.first().map(|s| s.at) else {
        bail!(
            "{prom}: no flannel_probe_node_info in the last {window}: this Prometheus does not scrape \
             flannel-probe agents (serve --listen 0.0.0.0:9465 on every node, and a scrape job for them)"
        );
    };
    // The rest at once, at the same instant.
    let rest = futures::future::try_join_all(
        queries.all()[1..]
            .iter()
            .map(|e| query(prom, e, Some(at), args.timeout, max)),
    )
    .await?;
    let answers = Answers::new(
        at,
        args.window.as_secs_f64(),
        std::iter::once(info).chain(rest).collect(),
    )?;
    let report = promql::compute(&answers, &queries, &prom.to_string(), args.loss_threshold);
    // As with --agents: nothing observed is exit 2, not a finding.
    if let Some(why) = report
        .nodes
        .iter()
        .map(|n| n.error.as_deref())
        .collect::<Option<Vec<&str>>>()
        .and_then(|e| e.first().copied())
    {
        bail!(
            "no agent Prometheus scraped could be used ({})",
            render_mesh::escape_remote(why)
        );
    }
    print(common, &report)
}

pub(crate) async fn run(common: &Common, args: &MeshArgs) -> Result<i32> {
    if let Some(prom) = &args.from_prometheus {
        return from_prometheus(common, args, prom).await;
    }
    let max_response = args.max_response.unwrap_or(http::DEFAULT_MAX_RESPONSE);
    let t0 = Instant::now();
    let start = read_all(&args.agents, t0, args.timeout, max_response).await;
    if start.iter().all(|(r, _)| r.is_err()) {
        let why = start
            .iter()
            .filter_map(|(r, _)| r.as_ref().err())
            .next()
            .cloned()
            .unwrap_or_default();
        // The reason may quote an agent's answer: escaped for the terminal.
        bail!(
            "no agent could be read ({})",
            render_mesh::escape_remote(&why)
        );
    }
    tracing::info!(
        "observing {} agents for {:?}",
        args.agents.len(),
        args.duration
    );
    tokio::select! {
        _ = tokio::time::sleep(args.duration) => {}
        r = shutdown_signal() => {
            r?;
            tracing::info!("interrupted: comparing the shortened window");
        }
    }
    let end = read_all(&args.agents, t0, args.timeout, max_response).await;
    // The window is what the agents measured between their two readings.
    let spans: Vec<f64> = start
        .iter()
        .zip(&end)
        .filter_map(|((s, _), (e, _))| {
            Some(e.as_ref().ok()?.sampled_unix - s.as_ref().ok()?.sampled_unix)
        })
        .filter(|d| *d > 0.0)
        .collect();
    let secs = if spans.is_empty() {
        t0.elapsed().as_secs_f64()
    } else {
        spans.iter().sum::<f64>() / spans.len() as f64
    };
    let readings: Vec<AgentReading> = args
        .agents
        .iter()
        .zip(start.into_iter().zip(end))
        .map(|(agent, ((start, asked), (end, ended)))| AgentReading {
            agent: agent.to_string(),
            start,
            end,
            brackets: Some([asked, ended]),
            edge_secs: 0.0,
        })
        .collect();
    let secs = (secs * 100.0).round() / 100.0;
    let report = mesh::compute(&readings, secs, args.loss_threshold);
    print(common, &report)
}
