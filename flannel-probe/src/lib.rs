//! flannel-probe: finds why Flannel VXLAN traffic dies on a node.
//!
//! Data flows one way: the kernel's counters ([`datapath`]) and the node's
//! state ([`node`]) go into one pure function ([`diagnose`]) that makes a
//! [`report::Report`], which the faces ([`render`], [`cli`]) only show.
pub mod agent;
pub mod cli;
pub mod datapath;
pub mod diagnose;
pub mod http;
pub mod logcapture;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod probe;
pub mod render;
pub mod report;
