//! tcpcong's integration tests: one binary (as ripgrep has), its helpers in
//! `util`, one module per area.
//!
//! The end-to-end tests in `record` load BPF programs and build private
//! network namespaces, so the suite runs as root. They never skip: without
//! BPF they fail, because a green run must mean the capture was tested.

mod analyze;
mod cli;
mod containers;
mod episodes;
mod evidence;
mod fuzz_corpus;
mod layout;
mod live;
mod owners;
mod record;
mod report;
mod schema;
mod series;
mod snapshot;
mod util;
