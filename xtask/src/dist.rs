//! `cargo xtask dist`: the static x86_64 binary (musl, eBPF object inside)
//! with its sha256 beside it, in `<target>/dist/`.
use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use flannel_probe_tests::dist::{DIST_TARGET, dynamic_needs};

use crate::{cargo_bin, run, setup, target_dir, workspace};

/// Builds dist and returns the path of `<target>/dist/flannel-probe`.
pub(crate) fn build() -> Result<PathBuf> {
    setup::toolchain()?;
    setup::musl_target()?;
    let ws = workspace();
    let git = |args: &[&str]| -> Option<String> {
        let o = Command::new("git")
            .args(args)
            .current_dir(&ws)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // The commit's time, not the clock: the same commit gives the same
    // `--version` (and, from the same checkout path, the same binary).
    let epoch = git(&["log", "-1", "--format=%ct"]).unwrap_or_else(|| "0".into());
    let mut rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) {
        rev.push_str("-dirty");
    }
    run(Command::new(cargo_bin())
        .current_dir(&ws)
        .args(["build", "--locked", "--release", "-p", "flannel-probe"])
        .args(["--target", DIST_TARGET])
        .env("SOURCE_DATE_EPOCH", &epoch)
        .env("FLANNEL_PROBE_GIT_REV", &rev))?;
    let built = target_dir().join(DIST_TARGET).join("release/flannel-probe");
    if let Some(why) = dynamic_needs(&built)? {
        bail!("{} is not static: {why}", built.display());
    }
    let dir = target_dir().join("dist");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {} failed", dir.display()))?;
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("flannel-probe-{version}-x86_64-linux-musl");
    for n in [name.as_str(), "flannel-probe"] {
        let to = dir.join(n);
        // Replace, never write through: a running copy may be mapped.
        let tmp = dir.join(format!(".{n}.tmp"));
        std::fs::copy(&built, &tmp)
            .with_context(|| format!("copying {} to {} failed", built.display(), tmp.display()))?;
        std::fs::rename(&tmp, &to).with_context(|| format!("renaming {} failed", tmp.display()))?;
    }
    // sha256sum's own format, so `sha256sum -c` verifies a download.
    let sum = Command::new("sha256sum")
        .arg(&name)
        .current_dir(&dir)
        .output()
        .context("could not start sha256sum (coreutils)")?;
    if !sum.status.success() {
        bail!(
            "sha256sum {name} failed: {}",
            String::from_utf8_lossy(&sum.stderr).trim()
        );
    }
    let sha = dir.join(format!("{name}.sha256"));
    std::fs::write(&sha, &sum.stdout)
        .with_context(|| format!("writing {} failed", sha.display()))?;
    let size = std::fs::metadata(dir.join(&name))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "xtask: {} ({size} bytes, static)\nxtask: {}\n{}",
        dir.join(&name).display(),
        sha.display(),
        String::from_utf8_lossy(&sum.stdout).trim()
    );
    Ok(dir.join("flannel-probe"))
}
