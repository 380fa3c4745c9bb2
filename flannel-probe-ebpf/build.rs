//! Rebuild when bpf-linker changes: rustc links BPF objects with it, and
//! cargo cannot see that dependency.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
