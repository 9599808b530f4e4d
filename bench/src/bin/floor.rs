//! Benchmark helper (`make bench`): attaches empty programs to the hooks
//! tcpcong uses and keeps them attached until its standard input closes,
//! so that the benchmark can compare tcpcong's per-event cost with the cost
//! of running any program there, in the same run, on the same events.

use std::io::Read;
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

mod floor {
    #![allow(clippy::all, clippy::undocumented_unsafe_blocks, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}

fn main() {
    let mut obj = MaybeUninit::uninit();
    let loaded = floor::FloorSkelBuilder::default()
        .open(&mut obj)
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
