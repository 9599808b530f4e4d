//! Errors in the command line's words. The layers below say what happened
//! and stop there, because the Python package raises the same errors and
//! has no flags; here the line gets the flag that changes the outcome.

use crate::error::Error;

/// The one line `tcpcong` prints for `err`.
pub fn words(err: &Error) -> String {
    match err {
        Error::Exists { .. } => format!("{err}: pass --force to overwrite it"),
        Error::Leftover { .. } => format!("{err}, or pass --force to replace it"),
        Error::Appeared { .. } => {
            format!("{err}, or pass --force to replace the target next time")
        }
        Error::Listen { .. } => format!("{err} (choose another --listen address)"),
        Error::PinPath { .. } => format!("--pin-buffer {err}"),
        Error::NumberForInput(_) => {
            format!("{err}: [interval] [outputs] come last and are both numbers")
        }
        Error::AttachElsewhere { fallback, .. } => {
            format!("{err}; --attach auto would use {fallback}")
        }
        // A file that could not be completed names the cause first.
        Error::Incomplete { source, .. } => {
            let cause = source.to_string();
            err.to_string().replacen(&cause, &words(source), 1)
        }
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_flag_that_changes_the_outcome_is_added_to_the_layers_words() {
        let path = PathBuf::from("/r/run.parquet");
        let exists = Error::Exists { path: path.clone() };
        assert_eq!(exists.to_string(), "/r/run.parquet already exists");
        assert_eq!(
            words(&exists),
            "/r/run.parquet already exists: pass --force to overwrite it"
        );
        let elsewhere = Error::AttachElsewhere {
            why: "fentry: no BTF trampolines".into(),
            kernel: "6.1.0".into(),
            fallback: "tracepoint",
        };
        assert_eq!(
            words(&elsewhere),
            "fentry: no BTF trampolines on kernel 6.1.0; --attach auto would use tracepoint"
        );
        let incomplete = Error::incomplete(Error::Exists { path: path.clone() }, &path, 3);
        assert_eq!(
            words(&incomplete),
            "/r/run.parquet already exists: pass --force to overwrite it; /r/run.parquet could not be completed: its 3 events are lost (earlier files are complete)"
        );
        let io = Error::io(&path, std::io::Error::from_raw_os_error(28));
        assert_eq!(words(&io), io.to_string());
    }
}
