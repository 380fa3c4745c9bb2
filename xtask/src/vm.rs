//! `cargo xtask vm-test`: the datapath part of the lab suite on other
//! kernels, each booted in qemu from its Debian package.
//!
//! Per kernel: `apt-get download` the package (cached under target/vm keyed
//! by its version), unpack it, compute the modules the lab needs and their
//! load order from modules.dep, and boot its vmlinuz with an initramfs of
//! three concatenated newc archives (the kernel unpacks them in order):
//! base (busybox, the host's ip/bridge/tc/nft/ping/bash/setpriv with their
//! libraries, /init), modules, and this run's probe + test binary. The guest
//! prints `VMTEST-*` markers on the serial console, which is a file, so it
//! survives qemu being killed and is kept on failure.
//!
//! The entry `host` runs the same tests directly on this machine's kernel.
//!
//! Acceleration (`--accel auto`): KVM when this host has hardware KVM
//! (kvm_intel or kvm_amd), given 20 s to reach /init, else TCG. What was
//! tried on the 2-core CI machine (kernel 6.18, AMD EPYC, nested), whose
//! /dev/kvm is served by `kvm_pvm` alone (no VMX/SVM inside the VM):
//! `-cpu host` and `-cpu max` abort at once (`failed to set MSR 0x10a`,
//! IA32_ARCH_CAPABILITIES); `host,migratable=off` aborts the same way;
//! `host,-arch-capabilities`, `qemu64`, `kvm64` and `EPYC` start but print
//! nothing after the real-mode setup's `Probing EDD ... ok` (the console
//! with `earlyprintk`): PVM runs only kernels built as PVM guests, which
//! Debian's are not. So `auto` goes straight to TCG when only kvm_pvm is
//! loaded, and keeps `-cpu host,-arch-capabilities` for real KVM hosts.
//! Under TCG the minimal boot to /init takes ~3 s; what was slow was the
//! debug agent (see [`build`]) and the report windows stretched for it.
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, ValueEnum};

/// The tests that prove the datapath on a kernel, run in one guest boot.
/// Lean on purpose: each costs 20-30 s under TCG. Drop reasons by name:
/// NO_SOCKET (the incident) and NETFILTER_DROP (the firewall); the VXLAN
/// driver's own reasons (VXLAN_VNI_NOT_FOUND, ...) are newer than 6.1,
/// which drops those packets as NOT_SPECIFIED.
const TESTS: &[&str] = &[
    "probe::bad_input_exits_2_with_one_line",
    "lifecycle::clsact_attachment_counts_the_same_and_cleans_up",
    "probe::healthy_mesh_counts_every_ping_exactly",
    "probe::the_incident_is_named_on_the_broken_node_and_on_its_senders",
    "faults::incident_overlay_deleted",
    "faults::underlay_firewall_drops_vxlan",
    "reattach::recreated_overlay_is_reattached_within_two_seconds",
    "kernels::two_instances_side_by_side_count_the_same_and_leave_nothing",
    "kernels::concurrent_flows_in_both_directions_count_exactly",
];

/// What the lab runs by name: the host's programs, never busybox applets of
/// the same name (busybox `ip`, `setpriv` lack what the lab uses).
const TOOLS: &[&str] = &[
    "ip", "bridge", "tc", "nft", "ping", "bash", "setpriv", "chrt",
];

/// Modules the probe and the lab need (dependencies come from
/// modules.dep). `?`: may be built in. crc32c_generic is libcrc32c's
/// softdep, which modules.dep does not list; built in on -cloud.
const MODULES: &[&str] = &[
    "?crc32c_generic",
    "inet_diag",
    "udp_diag",
    "tcp_diag",
    "veth",
    "vxlan",
    "bridge",
    "sch_ingress",
    "cls_bpf",
    "dummy",
    "nf_tables",
    "nft_numgen",
    "nft_reject_inet",
    "nft_meta_bridge",
    "sch_netem",
    "cls_u32",
    "act_gact",
];

/// Under TCG the release agent starts in ~1.5 s instead of ~0.3 s, and
/// several starting at once share the guest's two vCPUs.
const TCG_TIME_SCALE: u32 = 3;
/// Under KVM the guest runs near native speed.
const KVM_TIME_SCALE: u32 = 2;

#[derive(Args)]
pub(crate) struct VmArgs {
    /// A Debian kernel package (linux-image-...), or `host` for this
    /// machine's kernel; repeatable. Default: host, the newest Debian 12
    /// 6.1 cloud kernel and the newest 6.1 PREEMPT_RT kernel.
    #[arg(long = "kernel", value_name = "PACKAGE")]
    kernels: Vec<String>,
    /// How to run the guest: KVM when it works (tried first, with a
    /// deadline to reach /init), else TCG emulation.
    #[arg(long, value_enum, default_value = "auto")]
    accel: Accel,
    /// Run only these tests (module::name, as `cargo test` lists them).
    #[arg(long = "test", value_name = "NAME")]
    tests: Vec<String>,
    /// Give up on a guest after this many minutes.
    #[arg(long, default_value_t = 40)]
    timeout_min: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Accel {
    Auto,
    Kvm,
    Tcg,
}

/// One line per kernel and test, a summary, non-zero on any failure.
pub(crate) fn run(args: VmArgs) -> Result<()> {
    let started = Instant::now();
    let qemu = qemu_bin();
    let kernels = if args.kernels.is_empty() {
        default_kernels()?
    } else {
        args.kernels.clone()
    };
    let tests: Vec<String> = if args.tests.is_empty() {
        TESTS.iter().map(|s| (*s).to_string()).collect()
    } else {
        args.tests.clone()
    };
    // Bad input first, before any build: one line each, exit 2.
    let needs_vm = kernels.iter().any(|k| k != "host");
    if needs_vm {
        preflight(&qemu)?;
    }
    let mut pkgs = Vec::new();
    for k in kernels.iter().filter(|k| *k != "host") {
        pkgs.push((k.clone(), package_version(k)?));
    }

    // Only now (bad input costs nothing): what building and the lab need.
    crate::setup::all()?;
    let bins = build()?;
    let vm = vm_dir();
    let run_dir = vm.join("runs").join(timestamp());
    fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating {} failed", run_dir.display()))?;
    let mut failed = 0usize;
    let mut total = 0usize;
    for k in &kernels {
        let t0 = Instant::now();
        let outcome = if k == "host" {
            host(&bins, &tests)
        } else {
            let version = pkgs
                .iter()
                .find(|(p, _)| p == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow!("internal: no version for {k}"))?;
            guest(&qemu, k, &version, &bins, &tests, &run_dir, &args)
        };
        match outcome {
            Ok(k_out) => {
                total += k_out.cases.len();
                let bad = k_out.cases.iter().filter(|c| !c.ok).count()
                    + usize::from(k_out.error.is_some());
                failed += bad;
                if let Some(e) = &k_out.error {
                    println!("vm-test {}  FAIL  {e}", k_out.label);
                }
                println!(
                    "vm-test {}  {}  {} of {} tests passed  {:.0}s{}",
                    k_out.label,
                    if bad == 0 { "ok" } else { "FAIL" },
                    k_out.cases.iter().filter(|c| c.ok).count(),
                    tests.len(),
                    t0.elapsed().as_secs_f64(),
                    k_out
                        .console
                        .filter(|_| bad > 0)
                        .map(|c| format!("  (console: {})", c.display()))
                        .unwrap_or_default(),
                );
            }
            Err(e) => {
                failed += 1;
                println!("vm-test {k}  FAIL  {e:#}");
            }
        }
    }
    println!(
        "vm-test: {} kernels, {total} test runs, {failed} failures, {:.1} min",
        kernels.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    if failed > 0 {
        bail!("vm-test: {failed} failures (see the lines above)");
    }
    Ok(())
}

/// A bad-input error: printed as one line, exit 2.
fn bad_input(msg: String) -> ! {
    eprintln!("vm-test: {msg}");
    std::process::exit(2);
}

fn qemu_bin() -> String {
    std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// What the guest is built from and booted with -> its Debian package.
const VM_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("strip", "binutils"),
];

/// Installs what is missing with apt, as `cargo xtask setup` does for the
/// lab; a `QEMU` set by the caller is taken as given (and checked).
fn install_missing() -> Result<()> {
    let custom_qemu = std::env::var_os("QEMU").is_some();
    let missing: Vec<&str> = VM_PACKAGES
        .iter()
        .filter(|(c, _)| !(custom_qemu && c.starts_with("qemu")) && which(c).is_none())
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() || which("apt-get").is_none() {
        return Ok(());
    }
    eprintln!("vm-test: installing {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bad_input(format!(
            "apt-get install {} failed: run apt-get update, or install them by hand",
            missing.join(" ")
        ));
    }
    Ok(())
}

fn preflight(qemu: &str) -> Result<()> {
    install_missing()?;
    if which(qemu).is_none() {
        bad_input(format!(
            "{qemu} not found: install it (apt-get install qemu-system-x86)"
        ));
    }
    for (tool, pkg) in [
        ("busybox", "busybox-static"),
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("strip", "binutils"),
    ] {
        if which(tool).is_none() {
            bad_input(format!(
                "{tool} not found: install it (apt-get install {pkg})"
            ));
        }
    }
    Ok(())
}

fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The candidate version of `pkg`: the cache key, and the check that apt
/// knows the package at all.
fn package_version(pkg: &str) -> Result<String> {
    if !pkg.starts_with("linux-image-") {
        bad_input(format!(
            "unknown kernel package {pkg}: expected a Debian linux-image-... package or host"
        ));
    }
    let out = Command::new("apt-cache")
        .args(["policy", pkg])
        .output()
        .context("apt-cache policy failed: is apt installed?")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "(none)");
    match version {
        Some(v) => Ok(v),
        None => bad_input(format!(
            "unknown kernel package {pkg}: apt has no candidate for it (check the name, or run apt-get update)"
        )),
    }
}

/// host, then the newest 6.1 cloud and PREEMPT_RT kernels apt offers.
fn default_kernels() -> Result<Vec<String>> {
    let mut out = vec!["host".to_string()];
    for flavour in ["cloud-amd64", "rt-amd64"] {
        let pattern = format!("^linux-image-6\\.1\\.0-[0-9]+-{flavour}$");
        let list = Command::new("apt-cache")
            .args(["search", "--names-only", &pattern])
            .output()
            .context("apt-cache search failed: is apt installed?")?;
        let text = String::from_utf8_lossy(&list.stdout);
        let newest = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|name| {
                let abi = name
                    .strip_prefix("linux-image-6.1.0-")?
                    .strip_suffix(&format!("-{flavour}"))?;
                Some((abi.parse::<u32>().ok()?, name.to_string()))
            })
            .max();
        match newest {
            Some((_, name)) => out.push(name),
            None => bail!(
                "apt knows no linux-image-6.1.0-N-{flavour}: add Debian 12 (bookworm) to the apt sources and run apt-get update"
            ),
        }
    }
    Ok(out)
}

fn vm_dir() -> PathBuf {
    crate::built(crate::Profile::Debug, "")
        .parent()
        .map(|t| t.join("vm"))
        .unwrap_or_else(|| PathBuf::from("target/vm"))
}

fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}-{}", std::process::id())
}

struct Bins {
    probe: PathBuf,
    it: PathBuf,
}

/// The agent as shipped (dist: release, static) and the lab test binary,
/// built once for every kernel. Release, not debug: under TCG a debug
/// agent takes ~6 s from exec to `observing` (most of it parsing the
/// kernel's BTF, user-space code that debug builds run several times
/// slower), the release one ~1.5 s (measured in a 6.1 cloud guest).
fn build() -> Result<Bins> {
    let probe = crate::dist::build()?;
    let out = Command::new(crate::cargo_bin())
        .current_dir(crate::workspace())
        .args([
            "test",
            "-p",
            "flannel-probe-tests",
            "--test",
            "it",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run failed to start")?;
    if !out.status.success() {
        bail!("building the lab test binary failed (cargo test -p flannel-probe-tests --no-run)");
    }
    let it = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "it")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow!("cargo built no `it` test executable"))?;
    Ok(Bins { probe, it })
}

struct Case {
    name: String,
    ok: bool,
}

struct KernelOutcome {
    label: String,
    cases: Vec<Case>,
    error: Option<String>,
    console: Option<PathBuf>,
}

/// The same tests on this machine's kernel, one process per test as in the
/// guest.
fn host(bins: &Bins, tests: &[String]) -> Result<KernelOutcome> {
    let kver = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    // Not a VM: the same tests straight on this machine's kernel.
    let label = format!("host({kver},no-vm)");
    let mut cases = Vec::new();
    for t in tests {
        let t0 = Instant::now();
        let out = Command::new(&bins.it)
            .args(["--test-threads", "1", "--exact", t])
            .env("FLANNEL_PROBE_BIN", &bins.probe)
            .output()
            .with_context(|| format!("running {} failed", bins.it.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let ok = out.status.success() && text.contains("test result: ok. 1 passed");
        println!(
            "vm-test {label}  {}  {t}  {:.1}s",
            if ok { "ok  " } else { "FAIL" },
            t0.elapsed().as_secs_f64()
        );
        if !ok {
            print_tail(
                &format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
                60,
            );
        }
        cases.push(Case {
            name: t.clone(),
            ok,
        });
    }
    Ok(KernelOutcome {
        label,
        cases,
        error: None,
        console: None,
    })
}

fn print_tail(text: &str, n: usize) {
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(n)..] {
        println!("    | {l}");
    }
}

/// An unpacked kernel package in the cache.
struct Kernel {
    /// The cache entry (the modules archive is kept beside the tree).
    dir: PathBuf,
    root: PathBuf,
    kver: String,
}

/// Where kernel packages and guest archives are kept between runs:
/// `FLANNEL_PROBE_VM_CACHE`, else `$XDG_CACHE_HOME/flannel-probe/vm`, else
/// `~/.cache/flannel-probe/vm`, so that a fresh clone (CI) reuses them.
/// Every entry is named by what it is made from and written under a
/// temporary name first, so a stale or half-written entry is never used.
fn cache_dir() -> PathBuf {
    cache_dir_from(|k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

fn cache_dir_from(env: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    env("FLANNEL_PROBE_VM_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("flannel-probe/vm")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/flannel-probe/vm")))
        .unwrap_or_else(|| vm_dir().join("cache"))
}

/// Downloads and unpacks `pkg` at `version` unless the cache has it (a
/// package version's contents never change, so the entry stays valid).
fn fetch(pkg: &str, version: &str) -> Result<Kernel> {
    let kernels = cache_dir().join("kernels");
    let dir = kernels.join(format!("{pkg}_{}", version.replace([':', '/'], "_")));
    let stamp = dir.join(".unpacked");
    if !stamp.exists() {
        let tmp = kernels.join(format!(".tmp-{}", timestamp()));
        let _ = fs::remove_dir_all(&tmp);
        unpack(pkg, version, &tmp)?;
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&tmp, &dir)
            .with_context(|| format!("moving {} into the cache failed", tmp.display()))?;
    }
    let kver = fs::read_to_string(&stamp)?.trim().to_string();
    Ok(Kernel {
        root: dir.join("root"),
        dir,
        kver,
    })
}

/// `apt-get download` and `dpkg-deb -x` into `dir`, `.unpacked` last.
fn unpack(pkg: &str, version: &str, dir: &Path) -> Result<()> {
    let root = dir.join("root");
    let debs = dir.join("deb");
    fs::create_dir_all(&debs).with_context(|| format!("creating {} failed", debs.display()))?;
    let out = Command::new("apt-get")
        .current_dir(&debs)
        .args(["download", &format!("{pkg}={version}")])
        .output()
        .context("apt-get download failed to start")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "apt-get download {pkg}={version} failed: {}",
            err.lines().last().unwrap_or("no output")
        );
    }
    let deb = fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| anyhow!("apt-get download {pkg} left no .deb"))?;
    crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    // The unpacked tree is what is used; the .deb would only double the cache.
    let _ = fs::remove_dir_all(&debs);
    let kver = only_entry(&root.join("lib/modules"))?;
    // The package ships no modules.dep (its postinst runs depmod).
    crate::run(
        Command::new("busybox")
            .arg("depmod")
            .arg("-b")
            .arg(&root)
            .arg(&kver),
    )?;
    fs::write(dir.join(".unpacked"), &kver)?;
    Ok(())
}

/// `path` from the cache, else built by `make` and stored there under a
/// temporary name first.
fn cached(path: &Path, make: impl FnOnce(&mut Cpio) -> Result<()>) -> Result<Vec<u8>> {
    if let Ok(b) = fs::read(path) {
        return Ok(b);
    }
    let mut img = Cpio::default();
    make(&mut img)?;
    let b = img.finish();
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {} failed", d.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", timestamp()));
    fs::write(&tmp, &b).with_context(|| format!("writing {} failed", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} failed", tmp.display()))?;
    Ok(b)
}

/// What the base archive is made from: the host files in it (path, size,
/// modification time) and the image code's own inputs; a change to any
/// gives a new key, so a cached base never outlives an upgraded tool.
fn base_key() -> Result<String> {
    use std::{
        hash::{Hash as _, Hasher as _},
        os::unix::fs::MetadataExt as _,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    include_bytes!("../vm/init.sh").hash(&mut h);
    TOOLS.hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    let mut files: Vec<PathBuf> =
        vec![which("busybox").ok_or_else(|| anyhow!("busybox not found"))?];
    for t in TOOLS {
        let path = which(t)
            .ok_or_else(|| anyhow!("{t} not found on the host: cargo xtask setup installs it"))?;
        files.extend(libraries(&path)?);
        files.push(path);
    }
    for f in files {
        let md = fs::metadata(&f).with_context(|| format!("reading {} failed", f.display()))?;
        (f, md.len(), md.mtime(), md.mtime_nsec()).hash(&mut h);
    }
    Ok(format!("{:016x}", h.finish()))
}

fn only_entry(dir: &Path) -> Result<String> {
    let names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("{} is missing: not a kernel package?", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one kernel in {}, found {names:?}", dir.display()),
    }
}

/// The modules to insmod, dependencies first, as paths under
/// lib/modules/<kver>/.
fn module_order(k: &Kernel) -> Result<Vec<String>> {
    let base = k.root.join("lib/modules").join(&k.kver);
    let dep = fs::read_to_string(base.join("modules.dep"))?;
    let builtin = fs::read_to_string(base.join("modules.builtin")).unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    for m in MODULES {
        let (optional, m) = m.strip_prefix('?').map_or((false, *m), |m| (true, m));
        let file = format!("{m}.ko");
        let line = dep.lines().find(|l| {
            l.split(':')
                .next()
                .is_some_and(|p| p.rsplit('/').next() == Some(file.as_str()))
        });
        let Some(line) = line else {
            if optional && builtin.lines().any(|l| l.ends_with(&format!("/{file}"))) {
                continue;
            }
            bail!("module {m} is not in {} (needed by the lab)", k.kver);
        };
        let (this, deps) = line.split_once(':').unwrap_or((line, ""));
        // modules.dep lists the deepest dependency last.
        for f in deps.split_whitespace().rev().chain([this]) {
            if !order.iter().any(|o| o == f) {
                order.push(f.to_string());
            }
        }
    }
    Ok(order)
}

/// Builds the initramfs, boots it, reads the verdict.
fn guest(
    qemu: &str,
    pkg: &str,
    version: &str,
    bins: &Bins,
    tests: &[String],
    run_dir: &Path,
    args: &VmArgs,
) -> Result<KernelOutcome> {
    let k = fetch(pkg, version)?;
    let label = k.kver.clone();
    let dir = run_dir.join(pkg);
    fs::create_dir_all(&dir)?;
    let initrd = dir.join("initrd");
    {
        // Three newc archives, concatenated: the kernel unpacks each in
        // turn. Base and modules come from the cache; only the binaries of
        // this build are archived every run.
        let base = cached(
            &cache_dir().join(format!("base-{}.cpio", base_key()?)),
            base_image,
        )?;
        let modules = cached(&k.dir.join("modules.cpio"), |img| modules_image(img, &k))?;
        let mut img = Cpio::default();
        run_image(&mut img, bins, tests, &dir)?;
        let mut f = fs::File::create(&initrd)
            .with_context(|| format!("creating {} failed", initrd.display()))?;
        for part in [base, modules, img.finish()] {
            f.write_all(&part)
                .with_context(|| format!("writing {} failed", initrd.display()))?;
        }
    }
    let vmlinuz = k.root.join("boot").join(format!("vmlinuz-{}", k.kver));
    let console = dir.join("console.log");
    let boot = boot(qemu, &vmlinuz, &initrd, &console, args)?;
    let _ = fs::remove_file(&initrd);
    let text = fs::read_to_string(&console)
        .map(|s| s.replace('\r', ""))
        .unwrap_or_default();
    let mut cases = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("VMTEST-CASE ") {
            let mut w = rest.split_whitespace();
            let (verdict, name, secs) = (w.next(), w.next(), w.next());
            if let (Some(v), Some(n)) = (verdict, name) {
                let ok = v == "ok";
                println!(
                    "vm-test {label}  {}  {n}  {}",
                    if ok { "ok  " } else { "FAIL" },
                    secs.unwrap_or("?")
                );
                cases.push(Case {
                    name: n.to_string(),
                    ok,
                });
            }
        }
    }
    let mut error = None;
    let ready = text.lines().find(|l| l.starts_with("VMTEST-READY"));
    if text.lines().any(|l| l.starts_with("VMTEST-MODFAIL")) {
        error = Some("a module failed to load (VMTEST-MODFAIL in the console)".to_string());
    }
    if ready.is_none() {
        error = Some(format!(
            "{pkg} did not boot to the test script ({})",
            boot.why
        ));
    } else if !text.lines().any(|l| l.starts_with("VMTEST-EXIT")) {
        error = Some(format!("the guest did not finish ({})", boot.why));
    }
    for t in tests {
        if !cases.iter().any(|c| &c.name == t) && error.is_none() {
            error = Some(format!("no result for {t}"));
        }
    }
    let bad = error.is_some() || cases.iter().any(|c| !c.ok);
    if bad && std::env::var("CI").is_ok_and(|v| v == "true") {
        // CI keeps only its log: the end of the console goes there too.
        print_tail(&text, 150);
    }
    println!(
        "vm-test {label}  boot  accel={} {}",
        boot.accel,
        ready.unwrap_or("no VMTEST-READY")
    );
    if !bad {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(KernelOutcome {
        label,
        cases,
        error,
        console: Some(console),
    })
}

struct Boot {
    accel: &'static str,
    why: String,
}

/// What KVM this host offers, from the loaded modules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KvmKind {
    /// No usable /dev/kvm.
    None,
    /// kvm_intel or kvm_amd: hardware virtualisation, boots any kernel.
    Hardware,
    /// Only kvm_pvm (a nested host without VMX/SVM): it runs PVM guest
    /// kernels only; a stock kernel hangs right after its real-mode setup.
    PvmOnly,
}

fn kvm_kind() -> KvmKind {
    let usable = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    kvm_kind_from(usable, |m| Path::new("/sys/module").join(m).exists())
}

fn kvm_kind_from(usable: bool, loaded: impl Fn(&str) -> bool) -> KvmKind {
    if !usable {
        KvmKind::None
    } else if !loaded("kvm_intel") && !loaded("kvm_amd") && loaded("kvm_pvm") {
        KvmKind::PvmOnly
    } else {
        KvmKind::Hardware
    }
}

/// Boots with KVM if asked or if it works (reaches /init within 20 s),
/// else TCG; waits for power-off, a panic or the timeout.
fn boot(qemu: &str, vmlinuz: &Path, initrd: &Path, console: &Path, args: &VmArgs) -> Result<Boot> {
    let limit = Duration::from_secs(args.timeout_min * 60);
    let kind = kvm_kind();
    let try_kvm = match args.accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto if kind == KvmKind::PvmOnly => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                println!(
                    "vm-test: this host's KVM is kvm_pvm, which boots only PVM guest kernels; using TCG"
                );
            });
            false
        }
        Accel::Auto => kind == KvmKind::Hardware,
    };
    if try_kvm {
        // arch-capabilities off: nested hosts refuse MSR 0x10a with `host`
        // and `max` (qemu aborts); the guest only loses a mitigation hint.
        let child = spawn_qemu(
            qemu,
            &["-accel", "kvm", "-cpu", "host,-arch-capabilities"],
            KVM_TIME_SCALE,
            vmlinuz,
            initrd,
            console,
        )?;
        let deadline = (args.accel == Accel::Auto).then(|| Duration::from_secs(20));
        match watch(child, console, limit, deadline)? {
            Watched::Done(why) => return Ok(Boot { accel: "kvm", why }),
            Watched::NoInit => {
                println!("vm-test: KVM did not reach /init within 20 s here; using TCG");
            }
        }
    }
    let child = spawn_qemu(
        qemu,
        &["-accel", "tcg,thread=multi", "-cpu", "max"],
        TCG_TIME_SCALE,
        vmlinuz,
        initrd,
        console,
    )?;
    match watch(child, console, limit, None)? {
        Watched::Done(why) => Ok(Boot { accel: "tcg", why }),
        Watched::NoInit => Ok(Boot {
            accel: "tcg",
            why: "no /init".into(),
        }),
    }
}

fn spawn_qemu(
    qemu: &str,
    accel: &[&str],
    scale: u32,
    vmlinuz: &Path,
    initrd: &Path,
    console: &Path,
) -> Result<Child> {
    let _ = fs::remove_file(console);
    // Unknown name=value parameters reach /init as environment variables.
    let append =
        format!("console=ttyS0 panic=-1 noapic quiet FLANNEL_PROBE_TEST_TIME_SCALE={scale}");
    Command::new(qemu)
        .args(accel)
        .args([
            "-m", "1024", "-smp", "2", "-display", "none", "-monitor", "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(console.with_extension("qemu-stderr"))?)
        .spawn()
        .with_context(|| format!("starting {qemu} failed"))
}

enum Watched {
    Done(String),
    NoInit,
}

/// Waits for qemu; kills it on a kernel panic, a lockup, the time limit,
/// or (with `init_deadline`) when /init is not reached in time.
fn watch(
    mut child: Child,
    console: &Path,
    limit: Duration,
    init_deadline: Option<Duration>,
) -> Result<Watched> {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let err = fs::read_to_string(console.with_extension("qemu-stderr")).unwrap_or_default();
            let text = fs::read_to_string(console).unwrap_or_default();
            if init_deadline.is_some() && !text.contains("VMTEST-INIT") {
                return Ok(Watched::NoInit);
            }
            let err = err.lines().next().unwrap_or("").to_string();
            return Ok(Watched::Done(format!(
                "qemu exited with {status}{}",
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            )));
        }
        let text = fs::read_to_string(console).unwrap_or_default();
        let fatal = [
            "Kernel panic",
            "soft lockup",
            "RCU grace-period kthread stack dump",
        ]
        .into_iter()
        .find(|m| text.contains(m));
        let why = if let Some(m) = fatal {
            Some(format!("the guest hit {m:?}"))
        } else if t0.elapsed() > limit {
            Some(format!("no power-off within {} min", limit.as_secs() / 60))
        } else if init_deadline.is_some_and(|d| t0.elapsed() > d) && !text.contains("VMTEST-INIT") {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Watched::NoInit);
        } else {
            None
        };
        if let Some(why) = why {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Watched::Done(why));
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// busybox, the host's tools with their libraries, config files, /init.
fn base_image(img: &mut Cpio) -> Result<()> {
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc",
        "opt",
        "lib",
        "lib/modules",
    ] {
        img.dir(d);
    }
    let busybox = which("busybox").ok_or_else(|| anyhow!("busybox not found"))?;
    img.file("bin/busybox", &fs::read(&busybox)?, 0o755);
    let list = Command::new(&busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" || TOOLS.contains(&applet) {
            continue;
        }
        img.symlink(&format!("bin/{applet}"), "busybox");
    }
    img.symlink("sbin/modprobe", "/bin/busybox");
    img.symlink("sbin/insmod", "/bin/busybox");
    for t in TOOLS {
        let path = which(t)
            .ok_or_else(|| anyhow!("{t} not found on the host: cargo xtask setup installs it"))?;
        img.elf(&path, &format!("usr/sbin/{t}"))?;
    }
    if Path::new("/etc/iproute2").is_dir() {
        img.tree(Path::new("/etc/iproute2"), "etc/iproute2")?;
    }
    img.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    img.file("etc/group", b"root:x:0:\n", 0o644);
    for f in ["protocols", "services"] {
        if let Ok(b) = fs::read(Path::new("/etc").join(f)) {
            img.file(&format!("etc/{f}"), &b, 0o644);
        }
    }
    img.file("init", include_bytes!("../vm/init.sh"), 0o755);
    Ok(())
}

fn modules_image(img: &mut Cpio, k: &Kernel) -> Result<()> {
    let order = module_order(k)?;
    let src = k.root.join("lib/modules").join(&k.kver);
    let dst = format!("lib/modules/{}", k.kver);
    img.dir(&dst);
    for f in &order {
        let b = fs::read(src.join(f)).with_context(|| format!("reading module {f}"))?;
        img.file(&format!("{dst}/{f}"), &b, 0o644);
    }
    for f in ["dep", "alias", "symbols", "builtin", "order"] {
        if let Ok(b) = fs::read(src.join(format!("modules.{f}"))) {
            img.file(&format!("{dst}/modules.{f}"), &b, 0o644);
        }
    }
    img.file(
        "lib/modules/load.list",
        format!("{}\n", order.join("\n")).as_bytes(),
        0o644,
    );
    Ok(())
}

fn run_image(img: &mut Cpio, bins: &Bins, tests: &[String], scratch: &Path) -> Result<()> {
    img.file("run.sh", include_bytes!("../vm/run.sh"), 0o755);
    img.file(
        "opt/tests",
        format!("{}\n", tests.join("\n")).as_bytes(),
        0o644,
    );
    for (src, name) in [(&bins.probe, "flannel-probe"), (&bins.it, "it")] {
        // Debug info is most of a debug build; strip a copy, keep symbols.
        let copy = scratch.join(name);
        crate::run(
            Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&copy)
                .arg(src),
        )?;
        img.elf(&copy, &format!("opt/{name}"))?;
        let _ = fs::remove_file(&copy);
    }
    Ok(())
}

/// A newc (SVR4, no CRC) archive written in memory; parents must be added
/// before their children.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    names: BTreeSet<String>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        if !self.names.insert(name.to_string()) {
            return;
        }
        self.ino += 1;
        let mut h = String::new();
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0,
            0,
            0,
            0,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0,
        ];
        h.push_str("070701");
        for f in fields {
            let _ = write!(h, "{f:08x}");
        }
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn parents(&mut self, name: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            let a = acc.clone();
            self.dir(&a);
        }
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.parents(name);
        self.entry(name, 0o100_000 | perm, data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.parents(name);
        self.entry(name, 0o120_777, target.as_bytes());
    }

    /// A host directory tree (regular files only).
    fn tree(&mut self, src: &Path, dst: &str) -> Result<()> {
        self.dir(dst);
        for e in fs::read_dir(src)? {
            let e = e?;
            let name = format!("{dst}/{}", e.file_name().to_string_lossy());
            let ft = e.file_type()?;
            if ft.is_dir() {
                self.tree(&e.path(), &name)?;
            } else if ft.is_file() {
                self.file(&name, &fs::read(e.path())?, 0o644);
            }
        }
        Ok(())
    }

    /// An executable and every library `ldd` names, at the same paths.
    fn elf(&mut self, src: &Path, dst: &str) -> Result<()> {
        self.file(dst, &fs::read(src)?, 0o755);
        for lib in libraries(src)? {
            let name = lib.to_string_lossy().trim_start_matches('/').to_string();
            if self.names.contains(&name) {
                continue;
            }
            // The soname path is what ld.so opens; store the file it points to.
            let real =
                fs::canonicalize(&lib).with_context(|| format!("resolving {}", lib.display()))?;
            self.file(&name, &fs::read(real)?, 0o755);
        }
        Ok(())
    }

    /// The archive, with its trailer.
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.buf
    }
}

/// The libraries `ldd` names for `src` (none for a static binary).
fn libraries(src: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(src)
        .output()
        .context("ldd failed to start")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match l.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => l.split_whitespace().next(),
        })
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that is not a kernel: qemu refuses it, and the runner says
    /// the guest did not boot, in one line, instead of hanging.
    #[test]
    fn a_kernel_that_does_not_boot_is_one_line() {
        let Some(qemu) = which(&qemu_bin()) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("qemu-system-x86_64 is missing and CI=true forbids skipping");
            }
            return;
        };
        let dir = tempfile_dir();
        let (k, i, c) = (dir.join("vmlinuz"), dir.join("initrd"), dir.join("console"));
        fs::write(&k, b"not a kernel").expect("write");
        fs::write(&i, b"").expect("write");
        let args = VmArgs {
            kernels: vec![],
            accel: Accel::Tcg,
            tests: vec![],
            timeout_min: 1,
        };
        let b = boot(&qemu.to_string_lossy(), &k, &i, &c, &args).expect("boot runs");
        assert!(b.why.contains("qemu exited"), "{}", b.why);
        assert_eq!(b.why.lines().count(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn newc_entries_are_aligned_and_terminated() {
        let mut c = Cpio::default();
        c.file("a/b", b"xyz", 0o644);
        c.symlink("a/l", "b");
        let b = c.finish();
        assert_eq!(b.len() % 4, 0);
        assert!(b.starts_with(b"070701"));
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
        // a, a/b, a/l, trailer.
        assert_eq!(b.windows(6).filter(|w| *w == b"070701").count(), 4);
    }

    #[test]
    fn only_kvm_pvm_is_not_kvm_for_a_stock_kernel() {
        let with = |mods: &'static [&'static str]| move |m: &str| mods.contains(&m);
        assert_eq!(kvm_kind_from(false, with(&["kvm_amd"])), KvmKind::None);
        assert_eq!(
            kvm_kind_from(true, with(&["kvm", "kvm_pvm"])),
            KvmKind::PvmOnly
        );
        assert_eq!(
            kvm_kind_from(true, with(&["kvm", "kvm_amd"])),
            KvmKind::Hardware
        );
        assert_eq!(
            kvm_kind_from(true, with(&["kvm", "kvm_intel", "kvm_pvm"])),
            KvmKind::Hardware
        );
    }

    #[test]
    fn the_cache_is_the_variable_then_xdg_then_home() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        const ALL: &[(&str, &str)] = &[
            ("FLANNEL_PROBE_VM_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(cache_dir_from(env(ALL)), PathBuf::from("/c"));
        assert_eq!(
            cache_dir_from(env(&ALL[1..])),
            PathBuf::from("/x/flannel-probe/vm")
        );
        assert_eq!(
            cache_dir_from(env(&ALL[2..])),
            PathBuf::from("/h/.cache/flannel-probe/vm")
        );
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vmtest-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        fs::create_dir_all(&d).expect("tempdir");
        d
    }
}
