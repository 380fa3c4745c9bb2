//! A minimal HTTP/1.1 GET client for `mesh` (plain http only: agents and
//! Prometheus servers inside the cluster).
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;

/// Responses larger than this are refused.
const MAX_BODY: usize = 64 << 20;

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

/// `GET base + path_and_query`; any status but 200 is an error.
pub(crate) async fn get(base: &BaseUrl, path_and_query: &str, timeout: Duration) -> Result<Bytes> {
    get_at_most(base, path_and_query, timeout, MAX_BODY).await
}

/// [`get`] refusing answers longer than `max_body` bytes.
pub(crate) async fn get_at_most(
    base: &BaseUrl,
    path_and_query: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes> {
    tokio::time::timeout(timeout, get_inner(base, path_and_query, max_body))
        .await
        .with_context(|| format!("{base}: no answer within {timeout:?}"))?
}

async fn get_inner(base: &BaseUrl, path_and_query: &str, max_body: usize) -> Result<Bytes> {
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
    let body = Limited::new(resp.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{base}{uri}: reading the answer failed: {e}"))?
        .to_bytes();
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
