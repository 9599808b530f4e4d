//! The command line: the flags as clap parses them (`args`), the parsers of
//! their values (`values`), and the one step that turns them into a
//! validated plan per command (`resolve`). Nothing outside this module
//! sees a clap type; the commands get their layers' configs.

pub mod args;
pub mod resolve;
pub mod values;

pub use resolve::resolve;
