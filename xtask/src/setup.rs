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
    ("chrt", "util-linux"),
    ("timeout", "coreutils"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    // The image test builds deploy/Containerfile (FROM scratch, offline).
    ("podman", "podman"),
    ("file", "file"),
    ("sha256sum", "coreutils"),
    // `cargo xtask vm-test`, and xtask's own boot test, which under
    // CI=true fails without qemu.
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("strip", "binutils"),
];

/// Commands only `cargo xtask bench` needs.
const BENCH_PACKAGES: &[(&str, &str)] = &[("iperf3", "iperf3"), ("gnuplot", "gnuplot-nox")];

/// The eBPF crate's toolchain file names the dated nightly (one source of
/// truth, also read by flannel-probe's build.rs).
const EBPF_TOOLCHAIN_FILE: &str = include_str!("../../flannel-probe-ebpf/rust-toolchain.toml");

pub(crate) fn all() -> Result<()> {
    toolchain()?;
    packages()?;
    k8s_tools().map(drop)
}

/// The pinned eBPF nightly, e.g. "nightly-2026-05-20".
pub(crate) fn ebpf_channel() -> Result<String> {
    channel(EBPF_TOOLCHAIN_FILE)
        .ok_or_else(|| anyhow!("flannel-probe-ebpf/rust-toolchain.toml names no channel"))
}

fn channel(toml: &str) -> Option<String> {
    toml.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|r| r.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .find(|v| !v.is_empty())
}

/// `rustup toolchain list` names a toolchain as "<channel>-<host triple>";
/// "nightly" must not match "nightly-2026-05-20-…".
fn lists_toolchain(list: &str, channel: &str) -> bool {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| n.strip_prefix(channel))
        .any(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('-')
                    .is_some_and(|t| !t.starts_with(|c: char| c.is_ascii_digit()))
        })
}

/// The pinned nightly with rust-src, and bpf-linker linked against its LLVM.
pub(crate) fn toolchain() -> Result<()> {
    let ch = ebpf_channel()?;
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !lists_toolchain(&installed, &ch) {
        eprintln!("xtask: installing the eBPF toolchain {ch}");
        run(Command::new("rustup").args(["toolchain", "install", &ch, "--profile", "minimal"]))
            .with_context(|| {
                format!(
                    "{ch} (pinned in flannel-probe-ebpf/rust-toolchain.toml) could not be installed"
                )
            })?;
    }
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        &ch,
        "--installed",
    ]))?;
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to {ch} (for -Z build-std=core)");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", &ch]))?;
    }
    bpf_linker(&ch)
}

/// The userspace toolchain's musl target (rust-toolchain.toml lists it; an
/// explicit add gives one clear line when it fails).
pub(crate) fn musl_target() -> Result<()> {
    let t = flannel_probe_tests::dist::DIST_TARGET;
    let ws = crate::workspace();
    let list = output(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(&ws),
    )?;
    if !list.lines().any(|l| l.trim() == t) {
        eprintln!("xtask: adding the {t} target (the static dist binary)");
        run(Command::new("rustup")
            .args(["target", "add", t])
            .current_dir(&ws))?;
    }
    Ok(())
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

/// The libLLVM file the installed bpf-linker is linked against (ldd).
fn linked_llvm() -> Option<String> {
    let path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("bpf-linker"))
            .find(|f| f.is_file())
    })?;
    let out = Command::new("ldd").arg(path).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("libLLVM.so."))
        .map(str::to_owned)
}

/// "LLVM version: 22.1.4" of `rustc -vV` -> "22".
fn rustc_llvm_major(vv: &str) -> Option<&str> {
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next())
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
}

/// "libLLVM.so.22.1-rust-1.97.0-nightly" -> "22".
fn file_llvm_major(name: &str) -> Option<&str> {
    name.strip_prefix("libLLVM.so.")
        .and_then(|v| v.split(['.', '-']).next())
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
}

/// bpf-linker must use the LLVM that the pinned nightly emits bitcode for:
/// it links against that toolchain's own libLLVM through a prefix of two
/// symlinks, re-pointed here whenever they point elsewhere (the floating
/// `nightly` of older setups), and rebuilt when the library's name changed.
fn bpf_linker(ch: &str) -> Result<()> {
    let sysroot = output(
        Command::new("rustc")
            .arg(format!("+{ch}"))
            .args(["--print", "sysroot"]),
    )?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {} failed", lib.display()))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .ok_or_else(|| {
            anyhow!(
                "{ch} has no libLLVM.so.* in {}: reinstall it (rustup toolchain uninstall {ch}, then cargo xtask setup)",
                lib.display()
            )
        })?;
    let major = file_llvm_major(&llvm)
        .ok_or_else(|| anyhow!("cannot read the LLVM version from {llvm}"))?
        .to_owned();
    let vv = output(Command::new("rustc").arg(format!("+{ch}")).arg("-vV"))?;
    let emits = rustc_llvm_major(&vv).unwrap_or("unknown");
    if emits != major {
        bail!(
            "{ch}'s rustc emits LLVM {emits} bitcode but ships {llvm}: bpf-linker cannot match it;              pin another nightly in flannel-probe-ebpf/rust-toolchain.toml"
        );
    }
    let prefix = prefix_dir()?;
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)
        .with_context(|| format!("creating {} failed", plib.display()))?;
    for name in ["libLLVM.so", llvm.as_str()] {
        let link = plib.join(name);
        if std::fs::read_link(&link).is_ok_and(|t| t == lib.join(&llvm)) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        symlink(lib.join(&llvm), &link)
            .with_context(|| format!("linking {} failed", link.display()))?;
    }
    if bpf_linker_ok() && linked_llvm().as_deref() == Some(llvm.as_str()) {
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {ch}'s LLVM {major} (about a minute)"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
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

pub(crate) fn install(list: &[(&str, &str)]) -> Result<()> {
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

/// The kustomize test's pinned tools (tests/k8s-tools.txt).
const K8S_TOOLS: &str = include_str!("../../tests/k8s-tools.txt");

/// kubectl (kustomize) and kubernetes-validate, pinned, in a venv under the
/// target directory: the machine's kubectl (if any) may come from no apt
/// source a fresh machine has, and Debian's is too old for Components.
pub(crate) fn k8s_tools() -> Result<PathBuf> {
    let venv = flannel_probe_tests::dist::k8s_venv();
    let stamp = venv.join("flannel-probe-requirements.txt");
    // Run, not only present: a venv whose target dir was moved keeps
    // scripts whose `#!` names the old path.
    let runs = |tool: &str, arg: &[&str]| {
        Command::new(venv.join("bin").join(tool))
            .args(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == K8S_TOOLS)
        && runs("kubectl", &["version", "--client"])
        && runs("kubernetes-validate", &["--version"])
    {
        return Ok(venv);
    }
    eprintln!(
        "xtask: installing kubectl and kubernetes-validate into {} (about a minute)",
        venv.display()
    );
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))
    .context("creating the venv failed: install python3-venv (Debian) or a Python with venv")?;
    let req = crate::workspace().join("tests/k8s-tools.txt");
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "-r"])
        .arg(&req))?;
    std::fs::write(&stamp, K8S_TOOLS)
        .with_context(|| format!("writing {} failed", stamp.display()))?;
    Ok(venv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ebpf_toolchain_is_a_dated_nightly() {
        let ch = ebpf_channel().expect("channel");
        let date = ch.strip_prefix("nightly-").expect("a nightly");
        let parts: Vec<&str> = date.split('-').collect();
        assert_eq!(parts.len(), 3, "{ch}: nightly-YYYY-MM-DD");
        assert!(
            parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
            "{ch}"
        );
        assert_eq!(ch, "nightly-2026-05-20");
    }

    #[test]
    fn toolchain_names_and_llvm_versions_parse() {
        let list = "stable-x86_64-unknown-linux-gnu (default)\nnightly-2026-05-20-x86_64-unknown-linux-gnu\n";
        assert!(lists_toolchain(list, "nightly-2026-05-20"));
        assert!(!lists_toolchain(list, "nightly"));
        assert!(lists_toolchain(
            "nightly-x86_64-unknown-linux-gnu\n",
            "nightly"
        ));
        assert_eq!(
            file_llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"),
            Some("22")
        );
        assert_eq!(
            rustc_llvm_major("rustc 1.97.0-nightly\nLLVM version: 22.1.4\n"),
            Some("22")
        );
        assert_eq!(rustc_llvm_major("rustc 1.97.0-nightly\n"), None);
    }
}
