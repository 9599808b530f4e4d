//! Benchmark helper (`make bench`, and the series tests): drives tcpcong record's real ring buffer
//! and writer with synthetic events at a chosen rate. It reuses the ring
//! buffer that `record --pin-buffer PATH` pinned, and runs
//! bench/synth.bpf.c with BPF_PROG_TEST_RUN, each run emitting a batch
//! along the capture's own reserve/fill/submit path.
//!
//! usage: synth PINNED_RING EVENTS_PER_SECOND SECONDS
//! prints: {"offered": N, "reserve_failed": M, "seconds": S}

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

mod synth {
    #![allow(clippy::all, clippy::undocumented_unsafe_blocks, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/synth.skel.rs"));
}

const PER_RUN: u32 = 256;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("synth: {what}: {e}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        fail("usage", "synth PINNED_RING EVENTS_PER_SECOND SECONDS");
    }
    let rate: f64 = args[2].parse().unwrap_or_else(|e| fail("rate", e));
    let secs: f64 = args[3].parse().unwrap_or_else(|e| fail("seconds", e));

    let mut obj = MaybeUninit::uninit();
    let mut open = synth::SynthSkelBuilder::default()
        .open(&mut obj)
        .unwrap_or_else(|e| fail("open", e));
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.per_run = PER_RUN;
    }
    open.maps
        .events_rb
        .reuse_pinned_map(&args[1])
        .unwrap_or_else(|e| fail("reusing the pinned ring buffer", e));
    let skel = open.load().unwrap_or_else(|e| fail("load", e));
    let prog_fd = skel.progs.synth.as_fd().as_raw_fd();

    // Runs are paced on a schedule, so the offered rate holds on average
    // even when single runs are delayed.
    let runs_per_sec = rate / f64::from(PER_RUN);
    let start = Instant::now();
    let total_runs = (runs_per_sec * secs) as u64;
    for i in 0..total_runs {
        let due = start + Duration::from_secs_f64(i as f64 / runs_per_sec);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
            ..Default::default()
        };
        // SAFETY: prog_fd is the loaded program; opts is a valid, sized struct.
        let rc = unsafe { libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut opts) };
        if rc != 0 {
            fail("test run", std::io::Error::last_os_error());
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bss = skel.maps.bss_data.as_deref();
    let (offered, failed) = bss.map_or((0, 0), |b| (b.emitted, b.reserve_failed));
    println!("{{\"offered\": {offered}, \"reserve_failed\": {failed}, \"seconds\": {elapsed:.3}}}");
}
