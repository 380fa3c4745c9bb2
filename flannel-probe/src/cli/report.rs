//! `flannel-probe report`: observe for a while, print one fault report; or,
//! with `--from URL`, print the report a running agent already has.
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::{Common, duration};
use crate::{
    fleet::http::{self, BaseUrl},
    probe::{Probe, Shutdown},
    render::{Format, json, npd, text},
    report::Report,
};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// How long to observe (5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub duration: Duration,
    /// Read the report of the agent (`serve`) at this URL (its GET /report)
    /// instead of observing: no privileges, no eBPF. `$(NAME)` is replaced
    /// by the environment variable NAME (node-problem-detector's static
    /// config: `http://$(NODE_IP):9465`).
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// With --from: how long to wait for the agent's answer.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub from_timeout: Duration,
}

/// An agent's report is far below this; more is not an agent.
const MAX_REPORT: u64 = 8 << 20;

pub(crate) async fn run(common: &Common, args: &ReportArgs) -> Result<i32> {
    if let Some(url) = &args.from {
        return run_from(common, url, args.from_timeout).await;
    }
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
        Format::Text => print!("{}", common.paint(&text::report(&report))),
        Format::Json => println!("{}", json::report(&report)?),
        Format::Npd => println!("{}", npd::line(&report)),
    }
    Ok(report.exit_code())
}

/// `--from`: the agent's `GET /report`, shown as `report` would show its
/// own; exit 0/1 from its findings, 2 (an error) if it cannot be read.
async fn run_from(common: &Common, url: &str, timeout: Duration) -> Result<i32> {
    let expanded = expand_env(url, |name| std::env::var(name).ok())?;
    let base = BaseUrl::parse(&expanded, 9465)?;
    let body = http::get(&base, "/report", timeout, MAX_REPORT, "the limit of")
        .await
        .context("reading the agent's report failed (is `flannel-probe serve` running there?)")?;
    let report = parse_agent_report(&body).with_context(|| format!("{base}/report"))?;
    match common.format {
        Format::Text => print!("{}", common.paint(&text::report(&report))),
        // As the agent wrote it: keys a newer agent adds are kept.
        Format::Json => println!("{}", String::from_utf8_lossy(&body).trim_end()),
        Format::Npd => println!("{}", npd::line(&report)),
    }
    Ok(report.exit_code())
}

/// The agent's answer as a report of schema 1, or one line saying why not.
fn parse_agent_report(body: &[u8]) -> Result<Report> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        anyhow::anyhow!("the answer is not JSON ({e}): is that a flannel-probe agent?")
    })?;
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        Some(1) => {}
        Some(n) => bail!(
            "the report has schema {n}; this flannel-probe reads schema 1: use the agent's version"
        ),
        None => bail!("the answer is JSON without a report schema: is that a flannel-probe agent?"),
    }
    serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!("the report does not read as schema 1 ({e}): use the agent's version")
    })
}

/// Replaces `$(NAME)` by `lookup(NAME)`, as kubelet does in container
/// args; an unset NAME is an error naming it.
fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("$(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(close) = after.find(')') else {
            bail!("'{s}': unclosed $( in --from");
        };
        let name = &after[..close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("'{s}': '$({name})' is not an environment variable name");
        }
        let Some(value) = lookup(name) else {
            let hint = if name == "NODE_IP" {
                " (node-problem-detector's DaemonSet: env NODE_IP from fieldRef status.hostIP)"
            } else {
                ""
            };
            bail!(
                "--from {s} names $({name}) but {name} is not set: set it in the environment{hint}"
            );
        };
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{NodeInfo, SCHEMA};

    #[test]
    fn environment_references_are_expanded() {
        let env = |n: &str| (n == "NODE_IP").then(|| "192.0.2.13".to_string());
        assert_eq!(
            expand_env("http://$(NODE_IP):9465", env).ok().as_deref(),
            Some("http://192.0.2.13:9465")
        );
        assert_eq!(
            expand_env("http://127.0.0.1:9465", env).ok().as_deref(),
            Some("http://127.0.0.1:9465")
        );
        let err = expand_env("http://$(HOST_IP):9465", env).expect_err("unset");
        assert!(format!("{err}").contains("HOST_IP is not set"), "{err}");
        for bad in ["http://$(NODE_IP:9465", "http://$(a b)", "$()"] {
            assert!(expand_env(bad, env).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_reports_are_read_back_and_garbage_is_refused() {
        let r = Report {
            schema: SCHEMA,
            node: NodeInfo::gladius(),
            window_secs: 30.0,
            peers: vec![],
            drops: vec![],
            findings: vec![],
            unattributed_inner: vec![],
            overflow: Default::default(),
            overlay_history: vec![],
            unknown_sources: Default::default(),
        };
        let body = json::report(&r).expect("encode");
        assert_eq!(parse_agent_report(body.as_bytes()).ok(), Some(r));
        // The contract's example (no keys beyond it) reads too.
        let minimal = br#"{"schema":1,"node":{"hostname":"eq14-001","overlay":"flannel.1",
            "overlay_state":"missing","uplink":"eth0","local_vtep":"192.0.2.3","vxlan_port":8472,
            "vni":null,"port_bound":false,"kernel":"6.18.44"},"window_secs":5.0,
            "peers":[{"peer":"192.0.2.1","vtep_mac":null,"tx_encap_packets":1,"rx_encap_packets":2,
            "rx_decap_packets":0,"drops":{"NO_SOCKET":3}}],
            "drops":[{"reason":"NO_SOCKET","direction":"rx","packets":42}],
            "findings":[{"code":"VXLAN_NOT_DECAPSULATED","severity":"critical","peer":null,
            "summary":"s","evidence":[],"remediation":"r"}]}"#;
        let m = parse_agent_report(minimal).expect("the contract's keys suffice");
        assert_eq!(m.exit_code(), 1);
        assert_eq!(m.peers[0].traffic.rx_encap_packets, 2);
        for (bad, why) in [
            (&b"<html>hello</html>"[..], "not JSON"),
            (b"{\"schema\":2}", "schema 2"),
            (b"[1,2]", "without a report schema"),
            (b"{\"schema\":1,\"node\":{}}", "does not read as schema 1"),
        ] {
            let err = parse_agent_report(bad).expect_err("garbage");
            assert!(format!("{err}").contains(why), "{err}");
        }
    }
}
