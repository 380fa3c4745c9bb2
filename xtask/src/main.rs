//! `cargo xtask`: everything a fresh machine needs, in one place.
//!
//! - `setup`: installs the prerequisites (nightly rust-src, bpf-linker built
//!   against nightly's LLVM, the Debian packages the tests use), idempotently;
//! - `build`, `run`, `test`: call `setup` first;
//! - `dist`: the static binary and its sha256; `image`: the image from it;
//! - `lab`: drives the namespace lab by hand;
//! - `bench`: measures what the probe costs and writes BENCHMARKS.md;
//! - `fuzz`: the parser's fuzz target for a bounded time.
mod bench;
mod dist;
mod fuzz;
mod image;
mod lab;
mod setup;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

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
    /// The static x86_64 binary (musl, eBPF object inside) and its sha256,
    /// in <target>/dist/.
    Dist,
    /// The FROM scratch image (deploy/Containerfile) from the dist binary,
    /// built offline with podman.
    Image {
        /// Image name (default localhost/flannel-probe:VERSION).
        #[arg(long)]
        tag: Option<String>,
    },
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
    /// Fuzz the packet parser (structure-aware, cargo-fuzz on the eBPF
    /// nightly) for --time seconds over the committed seeds.
    Fuzz(fuzz::FuzzArgs),
    /// The datapath tests on other kernels, each booted in qemu from its
    /// Debian package (default: host, 6.1 cloud, 6.1 PREEMPT_RT).
    VmTest(vm::VmArgs),
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
            probe(Profile::Release).map(drop)
        }
        Cmd::Dist => dist::build().map(drop),
        Cmd::Image { tag } => image::build(tag),
        Cmd::Run { args } => {
            setup::toolchain()?;
            let bin = probe(Profile::Release)?;
            let args = if args.is_empty() {
                vec!["watch".to_string()]
            } else {
                args
            };
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {} failed", bin.display()))?;
            std::process::exit(status.code().unwrap_or(2));
        }
        Cmd::Test { args } => {
            setup::all()?;
            // Built once per run and shared by every test that needs it.
            let dist = dist::build()?;
            cargo_test(&["--workspace"], &args, Some(&dist))
        }
        Cmd::Soak => {
            setup::all()?;
            cargo_test(
                &["-p", "flannel-probe-tests", "--test", "soak"],
                &["--".into(), "--ignored".into(), "--nocapture".into()],
                None,
            )
        }
        Cmd::Lab { cmd } => lab::run(cmd),
        Cmd::Bench(args) => bench::run(args),
        Cmd::VmTest(args) => vm::run(args),
        Cmd::Fuzz(args) => fuzz::run_fuzz(&args),
    }
}

#[derive(Clone, Copy)]
enum Profile {
    Debug,
    Release,
}

/// Builds the agent (and with it the eBPF object) and returns its path.
fn probe(profile: Profile) -> Result<PathBuf> {
    match profile {
        Profile::Debug => cargo(&["build", "-p", "flannel-probe"])?,
        Profile::Release => cargo(&["build", "--release", "-p", "flannel-probe"])?,
    }
    Ok(built(profile, "flannel-probe"))
}

/// Where cargo put a build product: under `CARGO_TARGET_DIR` when it is set
/// (as cargo itself resolves it), else under the workspace's target/.
pub(crate) fn built(profile: Profile, rel: &str) -> PathBuf {
    let target = target_dir();
    let dir = match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    };
    target.join(dir).join(rel)
}

/// `CARGO_TARGET_DIR` (relative to the workspace, as cargo resolves it) or
/// the workspace's target/.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), |t| workspace().join(t))
}

/// `cargo test ARGS -- TEST_ARGS` with the debug agent built: the lab tests
/// run the binary itself, as an operator would.
fn cargo_test(args: &[&str], test_args: &[String], dist: Option<&Path>) -> Result<()> {
    let bin = probe(Profile::Debug)?;
    let mut cmd = Command::new(cargo_bin());
    cmd.current_dir(workspace())
        .arg("test")
        .args(args)
        .args(test_args)
        .env("FLANNEL_PROBE_BIN", &bin);
    if let Some(d) = dist {
        cmd.env("FLANNEL_PROBE_DIST_BIN", d);
    }
    run(&mut cmd)
}

/// The workspace root (xtask lives one level below it).
pub fn workspace() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

pub(crate) fn cargo_bin() -> String {
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
