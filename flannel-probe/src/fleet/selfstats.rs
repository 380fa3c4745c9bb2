//! The agent's figures about itself (`flannel_probe_build_info` and the
//! self-metrics): what it costs to read the node, and what is attached.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One reading's cost and the agent's attachments, carried in
/// [`super::agent::Counters`] so that `/metrics` reads no kernel state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentSelf {
    /// The last reading, end to end (following the node, reading the maps,
    /// both reports), in seconds.
    pub sample_secs: f64,
    /// The part of it spent reading and summing the eBPF maps, in seconds.
    pub map_read_secs: f64,
    /// Attached programs by kind: `tcx`, `clsact` (the four classifiers)
    /// and `btf_tracepoint` (the drop tracer); every kind present, 0 or not.
    pub attached_hooks: BTreeMap<String, u64>,
    /// The running kernel's release (`uname -r`), read once at the start.
    pub kernel: String,
}

/// `uname -r`, or empty when /proc is not there.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What this binary is, from the build script's stamp.
pub(crate) struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub built: &'static str,
}

pub(crate) const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("FLANNEL_PROBE_GIT_REV"),
    built: env!("FLANNEL_PROBE_BUILD_DATE"),
};
