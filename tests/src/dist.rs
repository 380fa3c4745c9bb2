//! The dist binary (`cargo xtask dist`): where it is and whether it is static.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// The static binary's target triple.
pub const DIST_TARGET: &str = "x86_64-unknown-linux-musl";

/// `FLANNEL_PROBE_DIST_BIN` if set (CI builds dist once and reuses it), else
/// `<target>/dist/flannel-probe` as `cargo xtask dist` leaves it.
pub fn dist_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLANNEL_PROBE_DIST_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| ws.join("target"), |t| ws.join(t));
    target.join("dist").join("flannel-probe")
}

/// Why an ELF file needs a dynamic loader, or None if it needs none: a
/// PT_INTERP program header or a DT_NEEDED entry. (`file` says "statically
/// linked" or "static-pie linked": both pass.)
pub fn dynamic_needs(path: &Path) -> Result<Option<String>> {
    let b = std::fs::read(path).with_context(|| format!("reading {} failed", path.display()))?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let bad = || anyhow::anyhow!("{} has a truncated ELF header", path.display());
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?)?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match u32_at(ph).ok_or_else(bad)? {
            // PT_INTERP
            3 => return Ok(Some("it has a PT_INTERP (a dynamic loader)".into())),
            // PT_DYNAMIC: static-pie has one (relocations) but no DT_NEEDED.
            2 => {
                let off = usize::try_from(u64_at(ph + 8).ok_or_else(bad)?)?;
                let size = usize::try_from(u64_at(ph + 0x20).ok_or_else(bad)?)?;
                for e in (off..off + size).step_by(16) {
                    match u64_at(e).ok_or_else(bad)? {
                        0 => break,
                        1 => return Ok(Some("it has a DT_NEEDED (a shared library)".into())),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The dist binary if it was built; without it the test is skipped, except
/// under `CI=true`, where it fails (`cargo xtask test` builds it).
pub fn require_dist_bin() -> Option<PathBuf> {
    let p = dist_bin();
    if p.is_file() {
        return Some(p);
    }
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{test} needs the dist binary {}: run `cargo xtask dist` (or `cargo xtask test`, which builds it)",
        p.display()
    );
    eprintln!(
        "SKIPPED {test}: {} is missing (run `cargo xtask dist`)",
        p.display()
    );
    None
}

/// A shell line, run inside a node's namespace, that does what a container
/// runtime does before it starts an image's entrypoint: a private mount
/// namespace with /proc and /sys mounted in the root directory `$0`, then
/// `chroot`. Arguments after the root are the command inside it.
pub const CHROOT_SH: &str =
    r#"mount -t proc proc "$0/proc" && mount -t sysfs sysfs "$0/sys" && exec chroot "$0" "$@""#;

/// The venv `cargo xtask setup` puts kubectl and kubernetes-validate in:
/// `FLANNEL_PROBE_K8S_VENV`, else `<target>/k8s-venv`.
pub fn k8s_venv() -> PathBuf {
    if let Some(p) = std::env::var_os("FLANNEL_PROBE_K8S_VENV").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| ws.join("target"), |t| ws.join(t))
        .join("k8s-venv")
}

/// `podman build` of deploy/Containerfile from a context directory that
/// holds only the dist binary: offline (`--network=none --pull=never`,
/// FROM scratch needs no registry), one layer. `podman` is the command
/// with any storage options already added.
pub fn podman_build(
    mut podman: std::process::Command,
    context: &Path,
    tag: &str,
    labels: &ImageLabels,
) -> std::process::Command {
    let containerfile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/Containerfile");
    podman
        .args(["build", "--network=none", "--pull=never", "--layers=false"])
        .arg("-f")
        .arg(containerfile)
        .args(["-t", tag])
        .arg(format!("--build-arg=VERSION={}", labels.version))
        .arg(format!("--build-arg=REVISION={}", labels.revision))
        .arg(format!("--build-arg=CREATED={}", labels.created))
        .arg(context);
    podman
}

/// What the image's OCI labels say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLabels {
    pub version: String,
    pub revision: String,
    /// RFC 3339, UTC.
    pub created: String,
}

impl ImageLabels {
    /// From the binary's own `--version` ("flannel-probe 0.1.0 (git REV,
    /// built YYYY-MM-DD)"), so the labels say what is inside.
    pub fn of(bin: &Path) -> Result<ImageLabels> {
        let out = std::process::Command::new(bin)
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version failed", bin.display()))?;
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let parse = || -> Option<ImageLabels> {
            let rest = line.strip_prefix("flannel-probe ")?;
            let (version, rest) = rest.split_once(" (git ")?;
            let (revision, rest) = rest.split_once(", built ")?;
            let date = rest.strip_suffix(')')?;
            Some(ImageLabels {
                version: version.to_owned(),
                revision: revision.to_owned(),
                created: format!("{date}T00:00:00Z"),
            })
        };
        parse().with_context(|| format!("{} --version says {line:?}", bin.display()))
    }
}
