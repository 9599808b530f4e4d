//! The one place that writes diagnostics to stderr (as ripgrep's
//! `messages`). Layers below the commands never print: they return what
//! they have to say, and the commands pass it here.
//!
//! Writing to stderr must never fail the program: `eprintln!` panics when
//! stderr is closed (`tcpcong ... 2>&-`, or a pipe whose reader left), and a
//! panic while reporting a panic aborts. These functions drop the message
//! instead; the exit code still tells what happened.

use std::fmt;
use std::io::Write;

use crate::escape;

/// `tcpcong: MESSAGE`, one line on stderr. Messages name paths, hosts and
/// processes that others choose: their control characters are escaped
/// (see [`escape::terminal`]), so that the message stays one line and
/// cannot drive the terminal.
pub fn say(msg: impl fmt::Display) {
    raw(format_args!(
        "tcpcong: {}",
        escape::terminal(&msg.to_string())
    ));
}

/// `tcpcong: WARNING: MESSAGE`: something the numbers on stdout cannot show.
pub fn warn(msg: impl fmt::Display) {
    raw(format_args!(
        "tcpcong: WARNING: {}",
        escape::terminal(&msg.to_string())
    ));
}

/// A line on stderr as given (banners that BCC users know without prefix).
pub fn raw(line: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
