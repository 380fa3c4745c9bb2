//! The fleet: the long-running agent of one node (cumulative totals, the
//! rolling window, the HTTP server) and the cross-node view built from
//! several agents (the HTTP client and the mesh matrix).
pub mod agent;
pub(crate) mod fresh;
pub(crate) mod http;
pub(crate) mod listener;
pub(crate) mod mesh;
pub(crate) mod pmtu;
pub(crate) mod promql;
pub(crate) mod sampler;
pub(crate) mod selfstats;
pub(crate) mod server;

/// Port of the agent (`serve --listen`, `mesh --agents`); also what the
/// deployment files use.
pub(crate) const DEFAULT_PORT: u16 = 9465;
