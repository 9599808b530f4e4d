//! The recording file format: schema v1 (`schema`), writing a recording
//! (`writer`, with its unfinished file, the `journal`, its row groups
//! encoded by `encode`, strings by our own `dictionary`) or a rotated series
//! of them (`series`) behind one `output`, and reading recordings back
//! (`reader`). No BPF and no command line: the
//! format is what other tools share with tcpcong, and it knows nothing of
//! how events were captured.

mod dictionary;
mod encode;
pub mod journal;
pub mod output;
pub mod reader;
pub mod schema;
pub mod series;
pub mod writer;
