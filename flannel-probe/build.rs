//! Builds the eBPF object with the nightly toolchain and bpf-linker (see
//! `cargo xtask setup`) and puts it in OUT_DIR for `include_bytes!`.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};
// A build-dependency only so that cargo rebuilds when the eBPF crate changes.
use flannel_probe_ebpf as _;

fn main() -> anyhow::Result<()> {
    // aya-build watches the eBPF crate; the parser it compiles in lives in
    // the common crate, which must trigger a rebuild too.
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../flannel-probe-common")
    );
    let ebpf = Package {
        name: "flannel-probe-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../flannel-probe-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::default())
        .map_err(|e| anyhow!("{e:#}"))
        .context(
            "building the eBPF programs failed: run `cargo xtask setup` \
             (nightly rust-src and bpf-linker), then build again",
        )
}
