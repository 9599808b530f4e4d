//! The command line: the flags as clap parses them (`args`), the parsers of
//! their values (`values`), and the one step that turns them into a
//! validated plan per command (`resolve`); errors get their flags back in
//! `words`. Nothing outside this module sees a clap type; the commands get
//! their layers' configs.

pub mod args;
pub mod resolve;
mod states;
pub mod values;
mod words;

pub use resolve::resolve;
pub use words::words;
