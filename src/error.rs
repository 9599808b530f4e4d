//! Typed errors for everything below `main`, each rendered as the one line a
//! user reads, and classified into the two exit codes the product promises:
//! 2 for usage mistakes, 1 for everything that went wrong at run time.
//! Variants keep their source error, so that the line names the cause and
//! a caller can still tell a full disk from a closed pipe.
//!
//! A variant says what happened, never which flag to type: the layers that
//! raise them serve the Python package as well as the command line. The
//! command line adds its flags to the words (`cli::words`); only
//! [`Error::Usage`], which the command line alone raises, is worded there.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asked for something that cannot be done (raised by
    /// the command line only, in its own words).
    #[error("{0}")]
    Usage(String),

    /// A glob pattern among the inputs that cannot be read.
    #[error("bad pattern '{pattern}': {why}")]
    BadPattern { pattern: String, why: String },

    /// A number where a recording was expected.
    #[error("'{0}' is not a recording")]
    NumberForInput(String),

    /// A recording's name that is a folder.
    #[error("{} is a directory: give a file name such as {}", path.display(), path.join("run.parquet").display())]
    TargetIsDir { path: PathBuf },

    /// A place to pin the capture's buffer that cannot hold it.
    #[error("{}: {why}", path.display())]
    PinPath { path: PathBuf, why: String },

    /// The attach mode asked for cannot work on this kernel, but `fallback`
    /// would.
    #[error("{why} on kernel {kernel}")]
    AttachElsewhere {
        why: String,
        kernel: String,
        fallback: &'static str,
    },

    /// Not allowed to load BPF programs.
    #[error("loading BPF programs needs root or CAP_BPF + CAP_PERFMON: run with sudo")]
    NoPrivilege,

    /// This kernel lacks something the capture needs; the reason names it.
    #[error("{0}")]
    Kernel(String),

    /// libbpf refused to open, load or attach the programs.
    #[cfg(feature = "capture")]
    #[error("{what}: {source}")]
    Bpf {
        what: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },

    /// Polling or reading the kernel's event buffer failed.
    #[error("{what}: {source}")]
    Buffer {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    /// The Ctrl-C / SIGTERM handler could not be installed.
    #[cfg(feature = "capture")]
    #[error("installing the Ctrl-C handler: {0}")]
    Signal(#[from] ctrlc::Error),

    /// The windows of a report (every flow alive in each) would not fit the
    /// memory an analysis may take.
    #[error("the report's windows would take more than {mib} MiB of memory (a long span, a short interval or many flows): choose a longer interval or a shorter span, or select fewer flows")]
    ReportTooLarge { mib: u64 },

    /// A recording given to analyze is unreadable or not one of ours.
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },

    /// An input named that is not there (nor a capture's unfinished file
    /// in its place).
    #[error("{}: no such file or folder", path.display())]
    Missing { path: PathBuf },

    /// A recording this user may not read (tcpcong writes them 0600).
    #[error("{}: permission denied: {whose}tcpcong writes recordings readable by their owner only (0600: they name processes and addresses); read it as that user, or give this user read access (chmod, chown)", path.display())]
    Unreadable {
        path: PathBuf,
        /// "it belongs to uid N, and ", where the file's owner can be told.
        whose: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing the report to standard output failed.
    #[error("writing to standard output: {0}")]
    Stdout(#[source] io::Error),

    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },

    #[error("{} is left over from an earlier capture that did not finish: inspect or remove it", path.display())]
    Leftover { path: PathBuf },

    /// The recording went away before it was named (renamed or removed by
    /// someone else, where the file system gave it a hidden name while it
    /// was written): what was written went with it.
    #[error("{} was moved or removed by someone else during the capture: its {events} events went with it, and {} was not written", tmp.display(), target.display())]
    Moved {
        tmp: PathBuf,
        target: PathBuf,
        events: u64,
    },

    /// Someone created the target during the capture (unless told to
    /// replace it, nothing is replaced): the recording is complete under a
    /// hidden name beside it.
    #[error("{} was created by someone else during the capture and is left as it is; the complete recording is {}: rename it", target.display(), kept.display())]
    Appeared { target: PathBuf, kept: PathBuf },

    #[error("{} is being written by another tcpcong that is still running: stop it, or choose another output", path.display())]
    Busy { path: PathBuf },

    #[error("cannot serve metrics at {addr}: {why}")]
    Listen {
        addr: std::net::SocketAddr,
        why: String,
    },

    #[error("writing {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("building a batch of rows: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    #[error("encoding the recording's metadata: {0}")]
    Metadata(#[from] serde_json::Error),

    /// A recording file could not be completed: its events are lost.
    #[error("{source}; {} could not be completed: its {events} events are lost (earlier files are complete)", path.display())]
    Incomplete {
        path: PathBuf,
        events: u64,
        #[source]
        source: Box<Error>,
    },

    /// `doctor` found that recording cannot work here (its lines say why).
    #[error("recording cannot work here: see the lines above")]
    NotReady,

    /// A broken promise inside tcpcong, phrased for the bug report.
    #[error("internal error: {0}; this is a bug, please report it")]
    Internal(&'static str),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::BadPattern { .. }
            | Error::NumberForInput(_)
            | Error::TargetIsDir { .. }
            | Error::PinPath { .. } => 2,
            _ => 1,
        }
    }

    pub fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `err` ended the file at `path` that held `events`: they are lost,
    /// unless `err` already says where they went or that they are lost.
    pub fn incomplete(err: Error, path: &Path, events: u64) -> Error {
        match err {
            Error::Incomplete { .. } | Error::Moved { .. } | Error::Appeared { .. } => err,
            _ => Error::Incomplete {
                path: path.to_path_buf(),
                events,
                source: Box::new(err),
            },
        }
    }

    pub fn bad_input(path: &Path, reason: impl Into<String>) -> Error {
        Error::BadInput {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Error {
        Error::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Output that ended because its reader went away (`| head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Stdout(source) if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic inside it into `Err(message)`. For third-party
/// decoders fed untrusted bytes (a malformed Parquet page can make the
/// parquet crate panic): the panic becomes an input error, and the hook
/// installed by [`install_panic_hook`] stays silent about it.
pub fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    GUARDED.with(|g| g.set(true));
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(false));
    res.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into())
    })
}

/// Installs a panic hook that leaves panics inside [`guarded`] to it and
/// hands every other one to `unguarded` (the binary prints one line; the
/// fuzz targets abort, so that the fuzzer sees a crash).
pub fn install_panic_hook(
    unguarded: impl Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync + 'static,
) {
    std::panic::set_hook(Box::new(move |info| {
        if !GUARDED.with(|g| g.get()) {
            unguarded(info);
        }
    }));
}
