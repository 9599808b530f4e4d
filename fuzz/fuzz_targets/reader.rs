//! Arbitrary bytes as a recording: `analyze` must answer with a result or
//! an error, never a panic, an abort or unbounded memory.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // Panics the reader turns into input errors are fine; any other is a crash.
        tcpcong::error::install_panic_hook(|_| std::process::abort());
    },
    |data: &[u8]| {
    let _ = tcpcong::analyze::hardening::read_recording(data);
    }
);
