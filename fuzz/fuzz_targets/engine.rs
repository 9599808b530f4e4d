//! Arbitrary event sequences through the engine: no panic, and never more
//! time in states than a window lasts.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // Panics the reader turns into input errors are fine; any other is a crash.
        tcpcong::error::install_panic_hook(|_| std::process::abort());
    },
    |data: &[u8]| {
    tcpcong::analyze::hardening::engine_sequence(data);
    }
);
