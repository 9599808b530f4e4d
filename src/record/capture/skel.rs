//! The generated BPF skeleton (see build.rs), kept in a module of its own so
//! that its generated code is isolated from lints meant for ours, and the
//! constants of the BPF C that the Rust side shares (`KIND_*`, `LEAN_CPUS`,
//! `LEAN_PROGRAMS`, `LOST_SLOTS`), read from the C at build time.
#![allow(
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    unused_qualifications,
    non_camel_case_types,
    unsafe_op_in_unsafe_fn
)]

include!(concat!(env!("OUT_DIR"), "/tcpcong.skel.rs"));
include!(concat!(env!("OUT_DIR"), "/bpf_constants.rs"));
