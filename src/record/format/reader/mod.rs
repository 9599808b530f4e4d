//! Reading recordings back: finding them (files, folders, globs), checking
//! that each is a complete schema v1 file, and streaming the few columns the
//! engine needs, in time order per flow.
//!
//! Time order is what the engine relies on. Files this version writes are
//! sorted, so each streams in constant memory; files whose metadata says
//! otherwise, and recordings of one boot that overlap in time (two captures
//! running at once), are merged in memory, which is the one case where
//! memory grows with events.
//!
//! One module per job: `discover` (which files), `file` (one recording
//! opened and checked), `journal` (a capture's unfinished file), `conform` (other tools' layouts), `filter` (which
//! rows), `dataset` (many files on one timeline, merged and deduplicated),
//! `decode` (batches into rows) and `pages` (what a column decodes to, by
//! its pages' headers).

mod conform;
mod dataset;
mod decode;
mod discover;
mod file;
mod filter;
mod journal;
mod pages;

pub use dataset::Dataset;
pub use decode::{Columns, Item, Row};
pub use discover::{discover, finished_of, Discovered};
pub use file::Recording;
pub use filter::{CgroupSel, ContainerSel, RowFilter};
