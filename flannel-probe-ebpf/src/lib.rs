//! Empty: this library target only lets flannel-probe's build.rs depend on
//! this crate, so cargo rebuilds the eBPF object when it changes.
#![no_std]
