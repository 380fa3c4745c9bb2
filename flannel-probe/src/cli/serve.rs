//! `flannel-probe serve`: the long-running agent's options; the agent itself
//! is [`crate::fleet::server`].
use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use clap::Args;

use super::{Common, duration};
use crate::fleet::server::{self, ServeOptions};

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
    /// Forget a peer's totals and metric series once it is gone from the
    /// FDB and its counters have not changed for this long; one that comes
    /// back counts from zero again.
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub forget_after: Duration,
}

fn listen_addr(s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        anyhow::anyhow!("'{s}' is not an address to listen on: give IP:PORT, e.g. 0.0.0.0:9465")
    })
}

pub(crate) async fn run(common: &Common, args: &ServeArgs) -> Result<i32> {
    server::run(&ServeOptions {
        probe: common.probe_options(),
        listen: args.listen,
        window: args.window,
        interval: args.interval,
        forget_after: args.forget_after,
    })
    .await
}
