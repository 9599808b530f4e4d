//! Computation and reports, with no BPF and no files of their own (they
//! write to what they are given): the engine (`engine`: per-flow dwell
//! times, changes and histograms from a stream of events, whether the
//! stream comes from a recording or a live capture), the engine over
//! threads (`sharded`) and over a dataset's scan (`durations`), its
//! renderings (`report`: BCC's table and histograms, JSON, CSV; `table`:
//! the per-flow table as Arrow and Parquet; `page`: the HTML report with
//! its charts), what a table cannot show in words (`caveats`), and the
//! entry points the fuzzers drive (`hardening`).

pub mod caveats;
pub mod durations;
pub mod engine;
pub mod hardening;
pub mod metrics;
pub mod page;
pub mod report;
pub mod sharded;
pub mod table;
