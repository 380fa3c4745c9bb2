//! A minimal HTTP/1.1 GET client for `mesh` (plain http only: agents and
//! Prometheus servers inside the cluster).
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;

/// Default of `mesh --max-response`: an agent's `/counters` is a few
/// hundred bytes per peer, so 1 MiB holds a node of some thousand peers.
pub(crate) const DEFAULT_MAX_RESPONSE: u64 = 1 << 20;

/// `http://host:port/base`: where an agent (or Prometheus) listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" for none).
    pub path: String,
}

impl BaseUrl {
    /// Parses `http://host[:port][/path]`, `host[:port]` or `[v6]:port`;
    /// `default_port` applies when none is given.
    pub fn parse(s: &str, default_port: u16) -> Result<Self> {
        let s = s.trim();
        if s.contains("://") && !s.starts_with("http://") {
            bail!("'{s}': only http:// URLs are supported");
        }
        let full = if s.starts_with("http://") {
            s.to_string()
        } else {
            format!("http://{s}")
        };
        let uri: http::Uri = full
            .parse()
            .map_err(|e| anyhow::anyhow!("'{s}' is not a URL ({e})"))?;
        let authority = uri
            .authority()
            .with_context(|| format!("'{s}' names no host"))?;
        // `Uri` keeps an IPv6 host in its brackets, and takes a port it
        // cannot read as none: read the port from the text after the host.
        let bracketed = authority.host();
        let tail = authority
            .as_str()
            .rsplit_once(bracketed)
            .map_or("", |(_, t)| t);
        let host = bracketed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(bracketed);
        if host.is_empty() {
            bail!("'{s}' names no host");
        }
        let port = match tail.strip_prefix(':') {
            None if tail.is_empty() => default_port,
            None => bail!("'{s}' is not a URL"),
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => bail!("'{s}': '{p}' is not a TCP port"),
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
            path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// `GET base + path_and_query`; any status but 200 is an error, and so is
/// an answer of more than `max` bytes: it is never read past `max` (a
/// hostile or broken server cannot make the reader hold more). `cap` names
/// the limit in that error (the option that sets it).
pub(crate) async fn get(
    base: &BaseUrl,
    path_and_query: &str,
    timeout: Duration,
    max: u64,
    cap: &str,
) -> Result<Bytes> {
    tokio::time::timeout(timeout, get_inner(base, path_and_query, max, cap))
        .await
        .with_context(|| format!("{base}: no answer within {timeout:?}"))?
}

fn too_large(base: &BaseUrl, uri: &str, max: u64, cap: &str) -> anyhow::Error {
    // Only an option can be raised; a fixed limit is just named.
    let hint = if cap.starts_with("--") {
        format!(" (raise {cap} if this agent is genuine and its node has that many peers)")
    } else {
        String::new()
    };
    anyhow::anyhow!("{base}{uri}: the answer is larger than {cap} {max} bytes: not read{hint}")
}

async fn get_inner(base: &BaseUrl, path_and_query: &str, max: u64, cap: &str) -> Result<Bytes> {
    let stream = tokio::net::TcpStream::connect((base.host.as_str(), base.port))
        .await
        .with_context(|| format!("{base}: cannot connect"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("{base}: HTTP handshake failed"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let uri = format!("{}{}", base.path, path_and_query);
    let req = hyper::Request::get(uri.as_str())
        .header(hyper::header::HOST, base.authority())
        .header(hyper::header::USER_AGENT, "flannel-probe")
        .body(Empty::<Bytes>::new())
        .context("building the request failed")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("{base}{uri}: request failed"))?;
    let status = resp.status();
    // A declared length over the cap is refused before reading any of it.
    let declared = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        driver.abort();
        return Err(too_large(base, &uri, max, cap));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let body = match Limited::new(resp.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            driver.abort();
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large(base, &uri, max, cap));
            }
            bail!("{base}{uri}: reading the answer failed: {e}");
        }
    };
    driver.abort();
    if status != hyper::StatusCode::OK {
        let text = String::from_utf8_lossy(&body);
        bail!(
            "{base}{uri}: HTTP {status}: {}",
            text.lines().next().unwrap_or("").trim()
        );
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agent_addresses() {
        let u = BaseUrl::parse("http://192.0.2.11:9465", 1).expect("parse");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("192.0.2.11", 9465, "")
        );
        let u = BaseUrl::parse("192.0.2.12", 9465).expect("parse");
        assert_eq!(u.port, 9465);
        assert_eq!(u.to_string(), "http://192.0.2.12:9465");
        let u = BaseUrl::parse("http://prom.example:9090/prometheus/", 1).expect("parse");
        assert_eq!(u.path, "/prometheus");
        let u = BaseUrl::parse("http://[::1]:9465", 1).expect("parse");
        assert_eq!(u.host, "::1");
        assert_eq!(u.to_string(), "http://[::1]:9465");
        for bad in [
            "https://x:1",
            "http://:80",
            "x:0",
            "x:http",
            "",
            "http://[::1",
        ] {
            assert!(
                BaseUrl::parse(bad, 9465).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }
}
