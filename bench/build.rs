//! Compiles the benchmark's and tests' BPF programs (the empty floor, the
//! synthetic producer, the independent observer) and their skeletons,
//! apart from tcpcong's own build so that the product never carries them.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const OBJECTS: [(&str, &str); 3] = [
    ("floor.bpf.c", "floor.skel.rs"),
    ("synth.bpf.c", "synth.skel.rs"),
    ("observer.bpf.c", "observer.skel.rs"),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (src, skel) in OBJECTS {
        if let Err(e) = SkeletonBuilder::new()
            .source(src)
            .clang_args(["-Wall", "-Werror", "-O2", "-g"])
            .build_and_generate(out.join(skel))
        {
            eprintln!("error: building bench/{src} failed: {e:#}");
            eprintln!("hint: `make deps` installs clang, libelf-dev and zlib1g-dev");
            std::process::exit(1);
        }
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=../bpf/kernel_types.h");
    println!("cargo:rerun-if-changed=../bpf/event.h");
}
