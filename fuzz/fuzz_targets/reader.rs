//! Arbitrary bytes as a recording: `analyze` must answer with a result or
//! an error, never a panic, an abort or unbounded memory.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tcpcong::analyze::hardening::read_recording(data);
});
