//! A real Prometheus server for tests: Debian's `prometheus`, started inside
//! a lab namespace with a scratch config and data directory, its lifetime
//! bounded by `timeout`, stopped and removed when dropped.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{http_get_in, wait_exit};

/// What a query parameter value may carry unencoded: RFC 3986's unreserved
/// characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where Prometheus listens inside its namespace.
pub const LISTEN: &str = "127.0.0.1:9090";

/// Prometheus' binary: `PROMETHEUS_BIN`, else `prometheus` on PATH.
pub fn prometheus_bin() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN").map_or_else(|| PathBuf::from("prometheus"), PathBuf::from)
}

/// `promtool`: `PROMTOOL_BIN`, else `promtool` on PATH.
pub fn promtool_bin() -> PathBuf {
    std::env::var_os("PROMTOOL_BIN").map_or_else(|| PathBuf::from("promtool"), PathBuf::from)
}

pub struct Prometheus {
    child: Child,
    ns: String,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus in `ns` with `config` (prometheus.yml); `files` are
    /// written next to it first (rule files the config names). It is
    /// killed after `max_life` whatever happens to the test.
    pub fn start(
        ns: &str,
        config: &str,
        files: &[(&str, String)],
        max_life: Duration,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("flannel-probe-prometheus-")
            .tempdir()
            .context("creating a scratch directory for prometheus failed")?;
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text)
                .with_context(|| format!("writing {name} failed"))?;
        }
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).context("writing prometheus.yml failed")?;
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "-s", "TERM", "-k", "5"])
            .arg(format!("{}s", max_life.as_secs().max(1)))
            .arg(prometheus_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={LISTEN}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus failed (cargo xtask setup installs it)")?;
        let mut p = Self {
            child,
            ns: ns.to_string(),
            dir,
        };
        p.wait_ready(Duration::from_secs(30))?;
        Ok(p)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited with {status}: {}", self.log());
            }
            if let Ok((200, _)) = http_get_in(&self.ns, LISTEN, "/-/ready", Duration::from_secs(2))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready after {timeout:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET /api/v1/<path>`; returns `data` of a successful answer.
    pub fn api(&self, path_and_query: &str) -> Result<Value> {
        let (status, body) = http_get_in(
            &self.ns,
            LISTEN,
            &format!("/api/v1/{path_and_query}"),
            Duration::from_secs(10),
        )?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("prometheus answered {status} with non-JSON: {body}"))?;
        if v["status"] != "success" {
            bail!("prometheus: {path_and_query}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// An instant query; returns the result vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let data = self.api(&format!(
            "query?query={}",
            utf8_percent_encode(expr, QUERY_VALUE)
        ))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `f` until it returns `Some`, or fails after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match f(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!(
                    "{what}: not within {timeout:?} (last error: {last}); log: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // `timeout` passes SIGTERM on to prometheus and waits for it.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        if let Ok(Some(_)) = wait_exit(&mut self.child, Duration::from_secs(10)) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
