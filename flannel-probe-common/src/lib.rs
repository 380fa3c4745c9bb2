//! What the eBPF programs and the agent must agree on: the layout of every
//! map key and value, and the packet parser both sides run.
//!
//! The parser is written once over [`parse::Load`], implemented for the
//! kernel's `TcContext` (on `target_arch = "bpf"`) and for `&[u8]`, so the
//! host unit tests exercise exactly the code the kernel runs.
#![no_std]
// The kernel half's direct-read bound is an inline-asm AND (see bpf.rs).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(any(test, feature = "frames"))]
extern crate alloc;

// The unit tests name the crate's `frames` feature through a dev-dependency
// on the crate itself.
#[cfg(test)]
use flannel_probe_common as _;

pub mod abi;
pub mod parse;

#[cfg(any(test, feature = "frames"))]
pub mod frames;

#[cfg(any(test, feature = "frames"))]
pub mod fuzzcase;

#[cfg(target_arch = "bpf")]
mod bpf;
