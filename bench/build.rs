//! Compiles the benchmark's and tests' BPF programs (the empty floor, the
//! synthetic producer, the independent observer) and their skeletons,
//! apart from tcpcong's own build so that the product never carries them;
//! and tcpcong's own skeleton, for the synthetic producer to find its way
//! in record's .bss.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const OBJECTS: [(&str, &str); 4] = [
    ("floor.bpf.c", "floor.skel.rs"),
    ("synth.bpf.c", "synth.skel.rs"),
    ("observer.bpf.c", "observer.skel.rs"),
    ("../bpf/tcpcong.bpf.c", "tcpcong.skel.rs"),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (src, skel) in OBJECTS {
        let object = out.join(skel.replace(".skel.rs", ".bpf.o"));
        if let Err(e) = SkeletonBuilder::new()
            .source(src)
            .obj(&object)
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
    println!("cargo:rerun-if-changed=../bpf/handlers.h");
}
