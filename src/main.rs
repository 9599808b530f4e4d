//! tcpcong: how long every TCP flow spends in each congestion state.
//!
//! `main` is the edge: it parses the command line, runs a subcommand, and
//! turns every error into one line on stderr with the promised exit code
//! (2 usage, 1 runtime), never a panic.

use clap::Parser;

use tcpcong::cli::{self, Cli, Command};
use tcpcong::{analyze, doctor, events, live, record};

fn main() {
    // A bug must still end in one line and exit code 1, not a backtrace.
    tcpcong::error::install_panic_hook(|info| {
        eprintln!("tcpcong: internal error: {info}; this is a bug, please report it");
    });
    if std::panic::catch_unwind(run).is_err() {
        std::process::exit(1);
    }
}

fn run() {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_on_clap_error(e),
    };
    if let Some(Command::Analyze(a)) = &mut cli.command {
        if let Err(msg) = a.split_positionals() {
            eprintln!("tcpcong: {msg}");
            std::process::exit(2);
        }
    }
    let res = match &cli.command {
        Some(Command::Record(args)) => record::run(args),
        Some(Command::Analyze(args)) => analyze::run(args),
        Some(Command::Events(args)) => events::run(args),
        Some(Command::Doctor) => doctor::run(),
        Some(Command::Completions { shell }) => cli::completions(*shell),
        Some(Command::Man) => cli::man_page(),
        None => live::run(&cli.live),
    };
    if let Err(e) = res {
        if e.is_broken_pipe() {
            std::process::exit(0);
        }
        eprintln!("tcpcong: {e}");
        std::process::exit(e.exit_code());
    }
}

/// Help and version print as clap renders them; a usage error is reduced to
/// its first line (which names the flag and the bad value), exit code 2.
fn exit_on_clap_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            // The first paragraph, on one line: clap puts the names of
            // missing arguments on the lines after its first.
            let text = e.render().to_string();
            let para: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("tcpcong: {}", para.join(" ").trim_start_matches("error: "));
            std::process::exit(2);
        }
    }
}
