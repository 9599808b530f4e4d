//! Compiles the BPF C in `bpf/` and generates its Rust skeleton, as
//! libbpf-cargo's examples do, so that the object is embedded in the binary.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// (source, skeleton): the capture programs. The benchmark's programs are
/// built by bench/ (a workspace member), not with the product.
const OBJECTS: [(&str, &str); 1] = [("bpf/tcpcong.bpf.c", "tcpcong.skel.rs")];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (src, skel) in OBJECTS {
        if let Err(e) = SkeletonBuilder::new()
            .source(src)
            .clang_args(["-Wall", "-Werror", "-O2", "-g"])
            .build_and_generate(out.join(skel))
        {
            // A plain message, not a panic: the usual cause is a missing clang.
            eprintln!("error: building {src} failed: {e:#}");
            eprintln!("hint: `make deps` installs clang, libelf-dev and zlib1g-dev");
            std::process::exit(1);
        }
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=bpf/kernel_types.h");
    println!("cargo:rerun-if-changed=bpf/event.h");
    println!("cargo:rerun-if-changed=bpf/handlers.h");
}
