//! Prerequisites, each checked before it is installed.
use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::run;

/// bpf-linker's major version; 0.13 is the newest that builds on Rust 1.95.
const BPF_LINKER_VERSION: &str = "0.13";

/// Commands the tests need -> the Debian package that has them.
const PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("ping", "iputils-ping"),
    ("nft", "nftables"),
    ("tmux", "tmux"),
    ("unshare", "util-linux"),
    ("timeout", "coreutils"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
];

/// Commands only `cargo xtask bench` needs.
const BENCH_PACKAGES: &[(&str, &str)] = &[("iperf3", "iperf3"), ("gnuplot", "gnuplot-nox")];

pub(crate) fn all() -> Result<()> {
    toolchain()?;
    packages()
}

/// The nightly toolchain's rust-src and bpf-linker.
pub(crate) fn toolchain() -> Result<()> {
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !installed.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("xtask: installing the nightly toolchain");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to nightly (for -Z build-std=core)");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    bpf_linker()
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains(&format!("bpf-linker {BPF_LINKER_VERSION}"))
        })
}

/// bpf-linker must use the LLVM that nightly rustc emits bitcode for: link
/// it against nightly's own libLLVM through a prefix of two symlinks.
fn bpf_linker() -> Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {} failed", lib.display()))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .ok_or_else(|| {
            anyhow!(
                "nightly has no libLLVM.so.* in {}: reinstall the nightly toolchain",
                lib.display()
            )
        })?;
    // "libLLVM.so.22.1-rust-1.97.0-nightly" -> 22
    let major = llvm
        .trim_start_matches("libLLVM.so.")
        .split(['.', '-'])
        .next()
        .filter(|m| m.chars().all(|c| c.is_ascii_digit()) && !m.is_empty())
        .ok_or_else(|| anyhow!("cannot read the LLVM version from {llvm}"))?
        .to_string();
    let prefix = prefix_dir()?;
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)
        .with_context(|| format!("creating {} failed", plib.display()))?;
    for name in ["libLLVM.so", llvm.as_str()] {
        let link = plib.join(name);
        let _ = std::fs::remove_file(&link);
        symlink(lib.join(&llvm), &link)
            .with_context(|| format!("linking {} failed", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} (about a minute)"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            &format!("^{BPF_LINKER_VERSION}"),
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--force",
        ])
        .env("LLVM_PREFIX", &prefix))?;
    if !bpf_linker_ok() {
        bail!(
            "bpf-linker was installed but `bpf-linker --version` fails: is ~/.cargo/bin on PATH?"
        );
    }
    Ok(())
}

/// Outside target/ so `cargo clean` keeps it.
fn prefix_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".local/share/flannel-probe/llvm"))
}

fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Debian packages for the lab, the TUI tests and the Prometheus tests.
pub(crate) fn packages() -> Result<()> {
    install(PACKAGES)
}

/// Debian packages for the benchmarks (iperf3, gnuplot).
pub(crate) fn bench_packages() -> Result<()> {
    install(BENCH_PACKAGES)
}

fn install(list: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = list
        .iter()
        .filter(|(c, _)| !have(c))
        .map(|(_, p)| *p)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
