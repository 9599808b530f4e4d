//! tcpcong: how long every TCP flow spends in each congestion state.
//!
//! `main` is the edge: it resolves the command line into a plan, runs it,
//! and turns every error into one line on stderr with the promised exit
//! code (2 usage, 1 runtime), never a panic.

use std::process::ExitCode;

use tcpcong::{cli, cmd, messages};

fn main() -> ExitCode {
    // A bug must still end in one line and exit code 1, not a backtrace.
    tcpcong::error::install_panic_hook(|info| {
        messages::say(format_args!(
            "internal error: {info}; this is a bug, please report it"
        ));
    });
    ExitCode::from(std::panic::catch_unwind(run).unwrap_or(1))
}

fn run() -> u8 {
    match cli::resolve(std::env::args_os()).and_then(cmd::run) {
        Ok(()) => 0,
        // Output that ended because its reader went away (`| head`).
        Err(e) if e.is_broken_pipe() => 0,
        Err(e) => {
            messages::say(cli::words(&e));
            e.exit_code()
        }
    }
}
