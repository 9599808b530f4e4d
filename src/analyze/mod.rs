//! Computation and what it renders, with no BPF (the layering test holds
//! it): `engine` (per-flow dwell times, changes and histograms from a
//! stream of events, whether it comes from a recording or a live capture;
//! over threads in `engine::sharded`, over a dataset's scan in
//! `engine::durations`), `render` (every output the results take: printed
//! tables, JSON and CSV, the Arrow table, the HTML page, Prometheus), what a
//! table cannot show in words (`caveats`), two sets of recordings side by
//! side (`compare`), and the entry points the fuzzers
//! drive (`hardening`).

pub mod caveats;
pub mod compare;
pub mod engine;
pub mod hardening;
pub mod render;
