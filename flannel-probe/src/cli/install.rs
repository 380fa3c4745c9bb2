//! `install-binary DIR`: puts this binary into DIR (a hostPath) for
//! node-problem-detector's plugin. A subcommand because the image is
//! `FROM scratch`: no shell, no `cp`.
use std::{io::Write as _, os::unix::fs::PermissionsExt as _, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory to put `flannel-probe` in (created if missing).
    pub dir: PathBuf,
}

/// Copies /proc/self/exe to DIR/flannel-probe through a temporary file and a
/// rename, so a plugin run never sees half a binary.
pub(crate) fn run(args: &InstallArgs) -> Result<i32> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "creating {} failed: mount a writable directory there",
            dir.display()
        )
    })?;
    let exe = std::fs::read("/proc/self/exe")
        .context("reading /proc/self/exe failed: is /proc mounted?")?;
    let tmp = dir.join(".flannel-probe.tmp");
    let to = dir.join("flannel-probe");
    let mut f = std::fs::File::create(&tmp).with_context(|| {
        format!(
            "creating {} failed: is {} writable?",
            tmp.display(),
            dir.display()
        )
    })?;
    f.write_all(&exe)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {} failed", tmp.display()))?;
    std::fs::rename(&tmp, &to)
        .with_context(|| format!("renaming {} to {} failed", tmp.display(), to.display()))?;
    println!("installed {} ({} bytes)", to.display(), exe.len());
    Ok(0)
}
