//! Arbitrary event sequences through the engine: no panic, and never more
//! time in states than a window lasts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tcpcong::analyze::hardening::engine_sequence(data);
});
