//! flannel-probe: finds why Flannel VXLAN traffic dies on a node.
//!
//! Data flows one way: the kernel's counters ([`datapath`]) and the node's
//! state ([`node`]) go into one pure function ([`diagnose`]) that makes a
//! [`report::Report`]; [`probe`] drives that for one node, [`fleet`] keeps an
//! agent's totals and compares agents, and the faces ([`render`], [`cli`])
//! only show. No module imports one above it.
//!
//! Public are the modules the lab tests, xtask and the binary use; the rest
//! is private so that the compiler sees what is unused.
pub mod cli;
pub mod datapath;
pub mod diagnose;
mod fleet;
pub mod logcapture;
pub mod node;
mod privilege;
mod probe;
mod render;
pub mod report;

// Named only for its `event-stream` feature, which ratatui's re-export of
// the same crate (`ratatui::crossterm`) then has.
use crossterm as _;

// The paths the lab tests and xtask have always used.
pub use fleet::agent;
pub use render::metrics;

#[cfg(test)]
mod docs;
#[cfg(test)]
mod layers;
