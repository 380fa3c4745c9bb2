//! The integration tests, one binary with a module per area (as aya's
//! integration tests are), so the agent is linked once instead of once per
//! area. Most need root (eBPF, network namespaces) and build their own lab
//! through `Lab::for_test`; without root they are skipped, except under
//! `CI=true`, where they fail. The soak test is its own binary (`soak.rs`,
//! run by `cargo xtask soak`).

mod bounds;
mod churn;
mod coexist;
mod conventions;
mod datapath;
mod decap;
mod deploy;
mod dist;
mod dualstack;
mod faults;
mod identity;
mod image;
mod ipv6;
mod kernels;
mod kustomize;
mod lifecycle;
mod macstale;
mod malformed;
mod memory;
mod mesh;
mod meshhostile;
mod meshprom;
mod npd;
mod pmtu;
mod privilege;
mod probe;
mod prometheus;
mod reattach;
mod runbooks;
mod selfhealth;
mod selftest;
mod uplink;
mod watch;

// The library's dependencies, which a test binary sees too but these tests
// do not call directly.
use {anyhow as _, percent_encoding as _};
