//! Compiles the BPF C in `bpf/` and generates its Rust skeleton, as
//! libbpf-cargo's examples do, so that the object is embedded in the binary.
//! Without the `capture` feature (the Python package) there is no BPF to
//! build.

/// (source, skeleton): the capture programs. The benchmark's programs are
/// built by bench/ (a workspace member), not with the product.
#[cfg(feature = "capture")]
const OBJECTS: [(&str, &str); 1] = [("bpf/tcpcong.bpf.c", "tcpcong.skel.rs")];

#[cfg(feature = "capture")]
fn main() {
    use libbpf_cargo::SkeletonBuilder;

    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
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

#[cfg(not(feature = "capture"))]
fn main() {}
