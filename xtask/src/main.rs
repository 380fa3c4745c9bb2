//! `cargo xtask`: everything a fresh machine needs, in one place.
//!
//! - `setup`: installs the prerequisites (nightly rust-src, bpf-linker built
//!   against nightly's LLVM, the Debian packages the tests use), idempotently;
//! - `build`, `run`, `test`: call `setup` first;
//! - `lab`: drives the namespace lab by hand;
//! - `bench`: measures what the probe costs and writes BENCHMARKS.md.
mod bench;
mod lab;
mod setup;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build flannel-probe (release) with its eBPF programs.
    Build,
    /// Build and run flannel-probe on this node as root (default: `watch`).
    Run {
        /// Arguments for flannel-probe, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit, eBPF (BPF_PROG_TEST_RUN) and lab tests.
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The soak test: `serve` for ten minutes (SOAK_SECS) while the overlay
    /// is recreated every 30 s; kept out of `test` for its length.
    Soak,
    /// The namespace lab: up, down, fault NAME [NODE], traffic.
    Lab {
        #[command(subcommand)]
        cmd: lab::LabCmd,
    },
    /// Measure the probe's cost against no probe (minutes; writes
    /// BENCHMARKS.md and bench/).
    Bench(bench::BenchArgs),
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::all(),
        Cmd::Build => {
            setup::toolchain()?;
            cargo(&["build", "--release", "-p", "flannel-probe"])
        }
        Cmd::Run { args } => {
            setup::toolchain()?;
            cargo(&["build", "--release", "-p", "flannel-probe"])?;
            let args = if args.is_empty() {
                vec!["watch".to_string()]
            } else {
                args
            };
            let bin = workspace().join("target/release/flannel-probe");
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {} failed", bin.display()))?;
            std::process::exit(status.code().unwrap_or(2));
        }
        Cmd::Test { args } => {
            setup::all()?;
            // The lab tests run the binary itself, as an operator would.
            cargo(&["build", "-p", "flannel-probe"])?;
            let bin = workspace().join("target/debug/flannel-probe");
            let mut cmd = Command::new(cargo_bin());
            cmd.current_dir(workspace())
                .args(["test", "--workspace"])
                .args(&args)
                .env("FLANNEL_PROBE_BIN", &bin);
            run(&mut cmd)
        }
        Cmd::Soak => {
            setup::all()?;
            cargo(&["build", "-p", "flannel-probe"])?;
            let bin = workspace().join("target/debug/flannel-probe");
            let mut cmd = Command::new(cargo_bin());
            cmd.current_dir(workspace())
                .args([
                    "test",
                    "-p",
                    "flannel-probe-tests",
                    "--test",
                    "soak",
                    "--",
                    "--ignored",
                    "--nocapture",
                ])
                .env("FLANNEL_PROBE_BIN", &bin);
            run(&mut cmd)
        }
        Cmd::Lab { cmd } => lab::run(cmd),
        Cmd::Bench(args) => bench::run(args),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo ARGS` in the workspace.
pub fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(cargo_bin())
        .current_dir(workspace())
        .args(args))
}

/// Runs a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
