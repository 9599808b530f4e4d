//! Finding recordings: the files, folders and globs a user names, and
//! what was passed over (captures that have not finished).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::format::writer::{in_progress_path, is_being_written};

/// The recordings the inputs name, and what was passed over.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Recording files, sorted by path.
    pub files: Vec<PathBuf>,
    /// Hidden in-progress files inside folders: captures still running,
    /// or killed before they finished.
    pub unfinished: Vec<PathBuf>,
}

/// Expands inputs (files, folders, globs) into recording files. Hidden
/// files are skipped inside folders.
pub fn discover(inputs: &[String]) -> Result<Discovered> {
    let mut found = Discovered::default();
    let files = &mut found.files;
    for input in inputs {
        let path = Path::new(input);
        if path.is_dir() {
            let (before, unfinished) = (files.len(), found.unfinished.len());
            walk(path, files, &mut found.unfinished)?;
            if files.len() == before {
                let reason = match found.unfinished.get(unfinished) {
                    Some(p) => format!(
                        "no finished recordings in this folder, only captures that have not finished (e.g. {})",
                        p.display()
                    ),
                    None => "no recordings (*.parquet) in this folder".to_string(),
                };
                return Err(Error::bad_input(path, reason));
            }
        } else if path.exists() {
            files.push(path.to_path_buf());
        } else if input.contains(['*', '?', '[']) {
            let before = files.len();
            let matches = glob::glob(input)
                .map_err(|e| Error::BadPattern {
                    pattern: input.clone(),
                    why: e.to_string(),
                })?
                .filter_map(|m| m.ok());
            // A folder that matches is taken as a folder argument is.
            for m in matches {
                if m.is_dir() {
                    walk(&m, files, &mut found.unfinished)?;
                } else if m.is_file() {
                    files.push(m);
                }
            }
            if files.len() == before {
                return Err(Error::bad_input(path, "no recording matches this pattern"));
            }
        } else if let Some(note) = unfinished_beside(path) {
            return Err(Error::bad_input(path, note));
        } else if input.parse::<f64>().is_ok() {
            return Err(Error::NumberForInput(input.clone()));
        } else {
            return Err(Error::bad_input(path, "no such file or folder"));
        }
    }
    files.sort();
    files.dedup();
    Ok(found)
}

/// What a recording that is not there yet is: the unfinished file a
/// capture writes it as, while it runs or after it stopped short.
fn unfinished_beside(path: &Path) -> Option<String> {
    let wip = in_progress_path(path);
    if !wip.is_file() {
        return None;
    }
    // Whether it is being written cannot be told without opening it.
    if crate::files::open_regular_nofollow(&wip)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    {
        return Some(format!(
            "not there: {} is a capture's unfinished file (running or killed) that this user may not read",
            wip.display()
        ));
    }
    Some(if is_being_written(&wip) {
        format!("{RUNNING} ({})", wip.display())
    } else {
        format!(
            "not there: a capture that did not finish (killed, or the name was taken meanwhile) left {}; name that file to read what it holds",
            wip.display()
        )
    })
}

/// Why the unfinished file of a running capture cannot be read yet.
pub(super) const RUNNING: &str = "not finished: a capture that is still running is writing it; its events are written out when it ends (a rotated series' finished files can be read while it runs)";

/// Why the unfinished file of a stopped capture holds nothing to read.
pub(super) const KILLED: &str = "not finished: a capture that was killed before it finished left it, without the events it held (they are written out when a capture ends)";

pub(super) fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    unfinished: &mut Vec<PathBuf>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            if entry.file_name().to_string_lossy().ends_with(".inprogress") {
                unfinished.push(path);
            }
            continue;
        }
        // A link to a folder is not followed inside a folder: a link to
        // one of its parents would send the walk round for ever.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            walk(&path, out, unfinished)?;
        } else if path.extension().is_some_and(|x| x == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}
