//! Typed errors for everything below `main`, each rendered as the one line a
//! user reads, and classified into the two exit codes the product promises:
//! 2 for usage mistakes, 1 for everything that went wrong at run time.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asked for something that cannot be done.
    #[error("{0}")]
    Usage(String),

    /// Not allowed to load BPF programs.
    #[error("{0}")]
    Privilege(String),

    /// This kernel lacks something the capture needs.
    #[error("{0}")]
    Kernel(String),

    /// libbpf refused to open, load or attach the programs.
    #[error("{what}: {source}")]
    Bpf {
        what: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },

    /// A recording given to analyze is unreadable or not one of ours.
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("writing {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// Anything else that must stop the run, already phrased for people.
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    pub fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn bad_input(path: &Path, reason: impl Into<String>) -> Error {
        Error::BadInput {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Output that ended because its reader went away (`| head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
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
