//! tcpcong as a library: the modules behind the `tcpcong` binary, public so
//! that the fuzz targets (`fuzz/`) can drive the reader and the engine
//! directly. The binary (`main.rs`) is the only supported interface.
//!
//! Where things live: `record` (capture: BPF loading, buffers, decoding,
//! Parquet writing), `analyze` (reading recordings, the engine, reports),
//! `live`, `events` and `doctor` (the other commands), `cli` (flags),
//! `schema` and `event` (the file format and its vocabulary).

pub mod analyze;
pub mod cli;
pub mod doctor;
pub mod error;
pub mod event;
pub mod events;
pub mod live;
pub mod record;
pub mod schema;
