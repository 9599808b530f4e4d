//! Benchmark helper (`make bench`): attaches empty programs to the hooks
//! tcpcong uses and keeps them attached until its standard input closes,
//! so that the benchmark can compare tcpcong's per-event cost with the cost
//! of running any program there, in the same run, on the same events.
//!
//! `floor lean` attaches only the hand-over variants on the lean record
//! (`floor_lean_*`), and plain `floor` everything else: the benchmark
//! starts the second after tcpcong, so that they run after its programs on
//! each event and leave its cache misses as they are alone. `floor empty`
//! attaches the empty tracepoint program alone: section 1's headline, the
//! configuration a user's host has (tcpcong and nothing else there).
//! `floor part NAME` attaches the one program NAME (a part of tcpcong's
//! lean path, `part_*`, or another variant), for section 1's breakdown.

use std::io::Read;
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

mod floor {
    #![allow(clippy::all, clippy::undocumented_unsafe_blocks, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let part_name = std::env::args().nth(2);
    let mut obj = MaybeUninit::uninit();
    let loaded = floor::FloorSkelBuilder::default()
        .open(&mut obj)
        .and_then(|mut o| {
            for mut prog in o.open_object_mut().progs_mut() {
                let name = prog.name().to_string_lossy().into_owned();
                let is_lean = name.starts_with("floor_lean_");
                let part = name.starts_with("part_");
                prog.set_autoload(match mode.as_str() {
                    "empty" => name == "floor_cong_state",
                    "lean" => is_lean,
                    "part" => part_name.as_deref() == Some(&name),
                    _ => !is_lean && !part,
                });
            }
            // The per-CPU ring variant's records: SLOTS per possible CPU.
            let cpus = libbpf_rs::num_possible_cpus()? as u32;
            let slots = o.maps.floor_slots.max_entries();
            o.maps.floor_slots.set_max_entries(cpus * slots)?;
            Ok(o)
        })
        .and_then(|o| o.load())
        .and_then(|mut s| s.attach().map(|()| s));
    let skel = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("floor: cannot attach the empty programs: {e}");
            std::process::exit(1);
        }
    };
    println!("ready");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    // The clock comparison's range (see floor.bpf.c), for the benchmark.
    if let Some(data) = skel.maps.data_data.as_deref() {
        println!("clock gap {} {}", data.clock_gap_min, data.clock_gap_max);
    }
}
