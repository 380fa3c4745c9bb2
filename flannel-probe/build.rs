//! Builds the eBPF object with the pinned nightly and bpf-linker (see
//! `cargo xtask setup`) and puts it in OUT_DIR for `include_bytes!`; stamps
//! the git revision and build date for `--version`.
use std::process::Command;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};
// A build-dependency only so that cargo rebuilds when the eBPF crate changes.
use flannel_probe_ebpf as _;

/// The eBPF crate's toolchain file: included so cargo reruns this script when
/// the pinned nightly moves.
const EBPF_TOOLCHAIN_FILE: &str = include_str!("../flannel-probe-ebpf/rust-toolchain.toml");

fn main() -> anyhow::Result<()> {
    stamp_version();
    // aya-build turns every stderr line of the nested cargo (`Compiling ...`)
    // into a `cargo:warning`, ~30 alarming lines on a fresh build. A quiet
    // nested cargo still reports rustc's warnings and errors (they come
    // through its JSON stdout); FLANNEL_PROBE_EBPF_VERBOSE=1 brings the log
    // back (a build script cannot see the outer cargo's -v).
    println!("cargo:rerun-if-env-changed=FLANNEL_PROBE_EBPF_VERBOSE");
    if std::env::var_os("FLANNEL_PROBE_EBPF_VERBOSE").is_none_or(|v| v.is_empty() || v == "0") {
        // SAFETY: the build script has no other thread yet.
        unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    }
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
    // An escape hatch for trying another nightly without editing the file.
    println!("cargo:rerun-if-env-changed=FLANNEL_PROBE_EBPF_TOOLCHAIN");
    let channel = std::env::var("FLANNEL_PROBE_EBPF_TOOLCHAIN")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| channel(EBPF_TOOLCHAIN_FILE))
        .ok_or_else(|| anyhow!("flannel-probe-ebpf/rust-toolchain.toml names no channel"))?;
    aya_build::build_ebpf([ebpf], Toolchain::Custom(&channel))
        .map_err(|e| anyhow!("{e:#}"))
        .with_context(|| {
            format!(
                "building the eBPF programs with {channel} failed: run `cargo xtask setup` \
                 ({channel} with rust-src, bpf-linker), then build again \
                 (FLANNEL_PROBE_EBPF_VERBOSE=1 shows the eBPF crate's cargo log)"
            )
        })
}

/// `channel = "..."` of a rust-toolchain.toml (the file is ours: one line).
fn channel(toml: &str) -> Option<String> {
    toml.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|r| r.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .find(|v| !v.is_empty())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// `--version`: "0.1.0 (git <rev>, built <date>)". The date is
/// SOURCE_DATE_EPOCH or the commit's, never the clock, so that rebuilding a
/// commit gives the same binary.
fn stamp_version() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=FLANNEL_PROBE_GIT_REV");
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for p in &watch {
        // Only existing paths: a missing one makes cargo rerun this script on
        // every build (a branch ref often lives only in packed-refs).
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", p])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // xtask dist passes the revision (with "-dirty" for a changed tree).
    let rev = std::env::var("FLANNEL_PROBE_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| git(&["log", "-1", "--format=%ct"]))
        .and_then(|s| s.trim().parse::<i64>().ok());
    let date = epoch.map_or_else(
        || "unknown".to_owned(),
        |e| {
            let (y, m, d) = civil_from_days(e.div_euclid(86_400));
            format!("{y:04}-{m:02}-{d:02}")
        },
    );
    println!("cargo:rustc-env=FLANNEL_PROBE_GIT_REV={rev}");
    println!("cargo:rustc-env=FLANNEL_PROBE_BUILD_DATE={date}");
    println!(
        "cargo:rustc-env=FLANNEL_PROBE_LONG_VERSION={} (git {rev}, built {date})",
        env!("CARGO_PKG_VERSION")
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
