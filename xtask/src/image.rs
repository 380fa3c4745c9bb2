//! `cargo xtask image`: the FROM scratch image of deploy/Containerfile from
//! the dist binary, built offline with podman.
use std::process::Command;

use anyhow::{Context as _, Result};
use flannel_probe_tests::dist::{ImageLabels, podman_build};

use crate::{dist, run, setup, target_dir};

pub(crate) fn build(tag: Option<String>) -> Result<()> {
    setup::install(&[("podman", "podman")])?;
    let bin = dist::build()?;
    let labels = ImageLabels::of(&bin)?;
    let tag = tag.unwrap_or_else(|| format!("localhost/flannel-probe:{}", labels.version));
    // A context of just the binary: the repository is never sent.
    let ctx = target_dir().join("image-context");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(&ctx).with_context(|| format!("creating {} failed", ctx.display()))?;
    std::fs::copy(&bin, ctx.join("flannel-probe"))
        .with_context(|| format!("copying {} failed", bin.display()))?;
    run(&mut podman_build(
        Command::new("podman"),
        &ctx,
        &tag,
        &labels,
    ))?;
    eprintln!(
        "xtask: built {tag}; push it with `podman push {tag} REGISTRY/flannel-probe:{}`",
        labels.version
    );
    Ok(())
}
