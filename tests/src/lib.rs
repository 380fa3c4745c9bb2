//! The flannel-probe lab: a Flannel VXLAN cluster built from network
//! namespaces on one machine (see docs/LAB.md), used by the integration tests,
//! the benchmarks and `cargo xtask lab`.
//!
//! Everything the lab creates lives in namespaces it owns; the host's root
//! network namespace is never touched. Building a lab needs root.

pub mod lab;
pub mod prometheus;
pub mod support;
pub mod synthetic;

pub use support::require_root;
