//! tcpcong as a library: the modules behind the `tcpcong` binary, public so
//! that the fuzz targets (`fuzz/`) can drive the reader and the engine
//! directly. The binary (`main.rs`) is the only supported interface.
//!
//! Where things live, and who may use whom (a test holds the rule):
//!
//! * `cli`: the flags and their resolution into a plan per command;
//! * `cmd`: one file per command, connecting the layers below;
//! * `record`: capture (`record::capture`, the kernel side) and the file
//!   format (`record::format`: schema, writer, series, reader);
//! * `analyze`: the engine (`analyze::engine`) and what it renders
//!   (`analyze::render`), no BPF;
//! * `http`: the bounded HTTP server behind `serve`'s metrics;
//! * `event`, `time`, `host`, `files`, `escape`, `error`, `messages`:
//!   shared by all.
//!
//! `main` uses `cli` and `cmd`; `cmd` uses the layers; the layers
//! (capture, format, engine, report) never use `cli` or `cmd`, and format
//! never uses capture.
//!
//! Without the `capture` feature (the Python package's build) only the
//! file format and the engine are here: no BPF, no command line.

/// tcpcong's version, as `--version` and the Python package say it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod analyze;
#[cfg(feature = "capture")]
pub mod cli;
#[cfg(feature = "capture")]
pub mod cmd;
pub mod error;
pub mod escape;
pub mod event;
pub mod files;
pub mod host;
#[cfg(feature = "capture")]
pub mod http;
pub mod messages;
pub mod record;
pub mod time;
