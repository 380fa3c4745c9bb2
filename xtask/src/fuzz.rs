//! `cargo xtask fuzz [--time SECS]`: the parser's structure-aware fuzz
//! target (`fuzz/`, cargo-fuzz on the pinned eBPF nightly) for a bounded
//! time over the committed seeds (`fuzz/corpus/parse_outer`, written by the
//! corpus generator in `flannel-probe-common/tests/corpus.rs`). What the
//! fuzzer adds goes to `<target>/fuzz-corpus/`, never into the repository;
//! a failing input is saved under `fuzz/artifacts/` and fails the command.
use std::process::Command;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{run, setup, target_dir, workspace};

/// The cargo-fuzz release installed when it is missing.
const CARGO_FUZZ: &str = "0.13.2";
const TARGET: &str = "parse_outer";

#[derive(Args)]
pub(crate) struct FuzzArgs {
    /// How long to fuzz, in seconds.
    #[arg(long, default_value_t = 60)]
    time: u64,
}

/// `cargo` of the pinned nightly (sanitizers and `-Z` flags need it).
fn nightly_cargo(channel: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", channel, "cargo"])
        // The stable toolchain's, set when xtask runs under cargo.
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

pub(crate) fn run_fuzz(args: &FuzzArgs) -> Result<()> {
    setup::toolchain()?;
    let channel = setup::ebpf_channel()?;
    let installed = nightly_cargo(&channel)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ}");
        run(nightly_cargo(&channel).args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ,
        ]))
        .context("installing cargo-fuzz failed: check the network, or install it by hand")?;
    }
    let work = target_dir().join("fuzz-corpus").join(TARGET);
    std::fs::create_dir_all(&work)
        .with_context(|| format!("creating {} failed", work.display()))?;
    let seeds = workspace().join("fuzz/corpus").join(TARGET);
    let build_dir = target_dir().join("fuzz");
    run(nightly_cargo(&channel)
        .current_dir(workspace())
        .args(["fuzz", "run", TARGET, "--target-dir"])
        .arg(&build_dir)
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", args.time))
        .arg("-print_final_stats=1"))
    .context("the fuzzer found a failing input (fuzz/artifacts/): add it to the corpus as a regression and fix the parser")
}
