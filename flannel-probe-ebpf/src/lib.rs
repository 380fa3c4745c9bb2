//! Empty: this library target only lets flannel-probe's build.rs depend on
//! this crate, so cargo rebuilds the eBPF object when it changes.
#![no_std]
// The dependencies are the eBPF binary's (src/main.rs); this empty target
// shares the manifest.
#![allow(unused_crate_dependencies)]
