//! What the engine's results become, one module per output: `printer`
//! (the seed's duration tables, BCC's log2 histograms, JSON lines and CSV,
//! for `analyze` and live mode), `arrow` (the per-flow table as Arrow and
//! Parquet), `page` (the HTML page of `tcpcong report`), `prometheus`
//! (`serve`'s counters), `compare` (two sets of recordings side by side). What they share: which flows a report shows and
//! whose they are (`flows`), and the per-flow and per-group rows, each one
//! list of columns that JSON, CSV and Arrow follow (`columns`).

pub mod arrow;
pub mod columns;
pub mod compare;
pub mod episodes;
pub mod flows;
pub mod page;
pub mod printer;
pub mod prometheus;
