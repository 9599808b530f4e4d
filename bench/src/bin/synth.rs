//! Benchmark helper (`make bench`, and the series tests): drives tcpcong record's real ring buffer
//! and writer with synthetic events at a chosen rate. It reuses the ring
//! buffer that `record --pin-buffer PATH` pinned, and runs
//! bench/synth.bpf.c with BPF_PROG_TEST_RUN, each run emitting a batch
//! along the capture's own reserve/fill/submit path. With `lean`, flows'
//! events after their first go as lean records into record's lean rings
//! (pinned at PATH-lean, their positions in its .bss at PATH-bss).
//!
//! usage: synth PINNED_RING EVENTS_PER_SECOND SECONDS [lean]
//! prints: {"offered": N, "reserve_failed": M, "seconds": S}

use std::mem::offset_of;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder, OpenMapMut};

// The generated types only: loaded as a plain object (see main).
mod synth {
    #![allow(
        clippy::all,
        clippy::undocumented_unsafe_blocks,
        dead_code,
        non_camel_case_types
    )]
    include!(concat!(env!("OUT_DIR"), "/synth.skel.rs"));
}

// For the layout of record's .bss only.
mod tcpcong {
    #![allow(
        clippy::all,
        clippy::undocumented_unsafe_blocks,
        dead_code,
        non_camel_case_types
    )]
    include!(concat!(env!("OUT_DIR"), "/tcpcong.skel.rs"));
}

const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/synth.bpf.o"));
const PER_RUN: u32 = 256;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("synth: {what}: {e}");
    std::process::exit(1);
}

/// Sizes `map` as the map pinned at `path` and reuses that map.
fn reuse(map: &mut OpenMapMut<'_>, path: &str, size: impl Fn(&mut OpenMapMut<'_>, &MapHandle)) {
    let pinned = MapHandle::from_pinned_path(path)
        .unwrap_or_else(|e| fail(&format!("{path} (a record with --pin-buffer running?)"), e));
    size(map, &pinned);
    map.reuse_pinned_map(path)
        .unwrap_or_else(|e| fail(&format!("reusing {path}"), e));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let lean = match args.get(4).map(String::as_str) {
        None if args.len() == 4 => false,
        Some("lean") if args.len() == 5 => true,
        _ => fail(
            "usage",
            "synth PINNED_RING EVENTS_PER_SECOND SECONDS [lean]",
        ),
    };
    let rate: f64 = args[2].parse().unwrap_or_else(|e| fail("rate", e));
    let secs: f64 = args[3].parse().unwrap_or_else(|e| fail("seconds", e));

    // A plain object, not the skeleton: reusing record's .bss gives that
    // map record's name, which the skeleton would refuse.
    let mut open = ObjectBuilder::default()
        .name("synth")
        .and_then(|b| b.open_memory(OBJECT))
        .unwrap_or_else(|e| fail("open", e));
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if name.ends_with(".rodata") {
            let bytes = map
                .initial_value_mut()
                .unwrap_or_else(|| fail("open", "no read-only data"));
            let size = std::mem::size_of::<synth::types::rodata>();
            // The section has no tail padding; the struct may.
            assert!(bytes.len() <= size, "read-only data laid out as generated");
            // SAFETY: the generated struct is plain data laid out as the
            // section, whose bytes it is read from and written back to.
            unsafe {
                let mut ro = std::mem::MaybeUninit::<synth::types::rodata>::zeroed();
                let at = ro.as_mut_ptr().cast::<u8>();
                at.copy_from_nonoverlapping(bytes.as_ptr(), bytes.len());
                let ro = ro.assume_init_mut();
                ro.per_run = PER_RUN;
                ro.lean = lean;
                ro.cpus_at = offset_of!(tcpcong::types::bss, cong_cpus) as u32;
                ro.tails_at = offset_of!(tcpcong::types::bss, lean_tails) as u32;
                bytes.copy_from_slice(std::slice::from_raw_parts(
                    (ro as *const synth::types::rodata).cast::<u8>(),
                    bytes.len(),
                ));
            }
        }
        match name.as_str() {
            "events_rb" => reuse(&mut map, &args[1], |_, _| {}),
            "lean_rings" if lean => reuse(&mut map, &format!("{}-lean", args[1]), |m, p| {
                m.set_max_entries(p.max_entries())
                    .unwrap_or_else(|e| fail("sizing the lean rings", e))
            }),
            "record_bss" if lean => reuse(&mut map, &format!("{}-bss", args[1]), |m, p| {
                if p.value_size() as usize != std::mem::size_of::<tcpcong::types::bss>() {
                    fail(
                        "record's .bss",
                        "not laid out as this build's: rebuild both",
                    );
                }
                m.set_value_size(p.value_size())
                    .unwrap_or_else(|e| fail("sizing record's .bss", e))
            }),
            _ => {}
        }
    }
    let obj = open.load().unwrap_or_else(|e| fail("load", e));
    let prog = obj
        .progs()
        .find(|p| p.name() == "synth")
        .unwrap_or_else(|| fail("load", "no program synth"));
    let prog_fd = prog.as_fd().as_raw_fd();

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
    let bss = obj
        .maps()
        .find(|m| m.name() == "synth.bss")
        .and_then(|m| m.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok().flatten())
        .unwrap_or_else(|| fail("reading the counts", "no .bss"));
    let count = |at: usize| u64::from_ne_bytes(bss[at..at + 8].try_into().expect("8 bytes"));
    let offered = count(offset_of!(synth::types::bss, emitted));
    let failed = count(offset_of!(synth::types::bss, reserve_failed));
    println!("{{\"offered\": {offered}, \"reserve_failed\": {failed}, \"seconds\": {elapsed:.3}}}");
}
