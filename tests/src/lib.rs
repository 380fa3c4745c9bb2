//! The flannel-probe lab: a Flannel VXLAN cluster built from network
//! namespaces on one machine (see docs/LAB.md), used by the integration tests,
//! the benchmarks and `cargo xtask lab`.
//!
//! Everything the lab creates lives in namespaces it owns; the host's root
//! network namespace is never touched. Building a lab needs root.

pub mod dist;
pub mod lab;
pub mod prometheus;
pub mod support;
pub mod synthetic;

pub use support::require_root;

// The lib's unit tests see the integration tests' dev-dependencies too.
#[cfg(test)]
use {clap as _, flannel_probe as _, flannel_probe_common as _, serde as _, serde_norway as _};
