//! What every kernel test needs before it starts.

/// True when the test can run (we are root). Under `CI=true` a missing
/// privilege fails the test instead: CI must never skip a kernel test.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("this test needs root (eBPF and network namespaces), and CI=true forbids skipping it");
    }
    eprintln!("skipped: this test needs root (eBPF and network namespaces)");
    false
}
