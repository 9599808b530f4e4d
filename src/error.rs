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
