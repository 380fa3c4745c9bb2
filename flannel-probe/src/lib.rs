//! flannel-probe: finds why Flannel VXLAN traffic dies on a node.
//!
//! Data flows one way: the kernel's counters ([`datapath`]) and the node's
//! state ([`node`]) go into one pure function ([`diagnose`]) that makes a
//! [`report::Report`]; [`probe`] drives that for one node, [`fleet`] keeps an
//! agent's totals and compares agents, and the faces ([`render`], [`cli`])
//! only show. No module imports one above it.
pub mod cli;
pub mod datapath;
pub mod diagnose;
pub mod fleet;
pub mod logcapture;
pub mod node;
pub mod probe;
pub mod render;
pub mod report;

// The paths the lab tests and xtask have always used.
pub use fleet::agent;
pub use render::metrics;

#[cfg(test)]
mod docs;
#[cfg(test)]
mod layers;
