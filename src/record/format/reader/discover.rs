//! Finding recordings: the files, folders and globs a user names, with
//! the unfinished files of captures that are running or were killed.

use std::path::{Path, PathBuf};

use super::file::Recording;
use crate::error::{Error, Result};
use crate::record::format::writer::in_progress_path;

/// The recordings the inputs name.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Recording files, sorted by path.
    pub files: Vec<PathBuf>,
    /// Which of them are unfinished files (`.NAME.inprogress`) a capture
    /// is still writing or left when it was killed, found in folders or
    /// in the place of a recording named that is not there yet.
    pub unfinished: Vec<PathBuf>,
    /// Unfinished files in folders that cannot be read, and links in
    /// folders to recordings that are gone, and why: one that is damaged
    /// (or planted) does not stop the folder's recordings from being
    /// read.
    pub passed_over: Vec<(PathBuf, String)>,
}

/// Expands inputs (files, folders, globs) into recording files. Hidden
/// files are skipped inside folders.
pub fn discover(inputs: &[String]) -> Result<Discovered> {
    let mut found = Discovered::default();
    let mut in_folders = Vec::new();
    let files = &mut found.files;
    let passed_over = &mut found.passed_over;
    for input in inputs {
        let path = Path::new(input);
        // What this input found: a folder or a pattern that found nothing
        // at all (not even something passed over) is an error.
        let before = (files.len(), in_folders.len(), passed_over.len());
        let found_none = |files: &Vec<PathBuf>,
                          in_folders: &Vec<PathBuf>,
                          passed_over: &Vec<(PathBuf, String)>| {
            (files.len(), in_folders.len(), passed_over.len()) == before
        };
        if path.is_dir() {
            walk(path, files, &mut in_folders, passed_over)?;
            if found_none(files, &in_folders, passed_over) {
                return Err(Error::bad_input(
                    path,
                    "no recordings (*.parquet) in this folder",
                ));
            }
        } else if path.exists() {
            if super::file::is_unfinished(path) {
                not_a_link(path)?;
                found.unfinished.push(path.to_path_buf());
            }
            files.push(path.to_path_buf());
        } else if input.contains(['*', '?', '[']) {
            let matches = glob::glob(input)
                .map_err(|e| Error::BadPattern {
                    pattern: input.clone(),
                    why: e.to_string(),
                })?
                .filter_map(|m| m.ok());
            // A folder that matches is taken as a folder argument is.
            for m in matches {
                if m.is_dir() {
                    walk(&m, files, &mut in_folders, passed_over)?;
                } else if m.is_file() {
                    files.push(m);
                }
            }
            if found_none(files, &in_folders, passed_over) {
                // `record -o DIR/` files its series by host and date.
                let hint = if input.contains("**") {
                    ""
                } else {
                    " (a series is in subfolders: give its folder, or DIR/**/*.parquet)"
                };
                return Err(Error::bad_input(
                    path,
                    format!("no recording matches this pattern{hint}"),
                ));
            }
        } else if let Some(wip) = unfinished_beside(path)? {
            files.push(wip.clone());
            found.unfinished.push(wip);
        } else if input.parse::<f64>().is_ok() {
            return Err(Error::NumberForInput(input.clone()));
        } else {
            return Err(Error::Missing {
                path: path.to_path_buf(),
            });
        }
    }
    for p in in_folders {
        match Recording::open(&p) {
            Ok(_) => {
                found.files.push(p.clone());
                found.unfinished.push(p);
            }
            Err(e) => match finished_instead(&p, &e) {
                Some(done) => found.files.push(done),
                None => found.passed_over.push(match e {
                    Error::BadInput { reason, .. } => (p, reason),
                    e => (p, e.to_string()),
                }),
            },
        }
    }
    if found.files.is_empty() {
        if let Some((p, why)) = found.passed_over.first() {
            return Err(Error::bad_input(p, why.clone()));
        }
    }
    found.files.sort();
    found.files.dedup();
    Ok(found)
}

/// What a recording that is not there yet is: the unfinished file a
/// capture writes it as, while it runs or after it stopped short, to be
/// read in its place.
fn unfinished_beside(path: &Path) -> Result<Option<PathBuf>> {
    let wip = in_progress_path(path);
    if std::fs::symlink_metadata(&wip).is_err() {
        return Ok(None);
    }
    not_a_link(&wip)?;
    if crate::files::open_regular_nofollow(&wip)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    {
        return Err(Error::bad_input(
            path,
            format!(
                "not there: {} is a capture's unfinished file (running or killed) that this user may not read",
                wip.display()
            ),
        ));
    }
    Ok(Some(wip))
}

/// Why an unfinished file an earlier tcpcong left holds nothing to read.
pub(super) const EARLIER: &str = "a capture that was killed before it finished left it, and the tcpcong that wrote it kept nothing readable before the end (this version's captures can be read until their last second)";

fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    unfinished: &mut Vec<PathBuf>,
    passed_over: &mut Vec<(PathBuf, String)>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    walk_entries(dir, entries, out, unfinished, passed_over);
    Ok(())
}

/// The recordings in a folder and the folders inside it. One inside that
/// cannot be read (another user's, or one that goes meanwhile, as under
/// /proc) is passed over with its reason: the folder named still is read.
fn walk_entries(
    dir: &Path,
    entries: std::fs::ReadDir,
    out: &mut Vec<PathBuf>,
    unfinished: &mut Vec<PathBuf>,
    passed_over: &mut Vec<(PathBuf, String)>,
) {
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                passed_over.push((dir.to_path_buf(), unreadable(&e)));
                return;
            }
        };
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            // Once its recording is complete the unfinished file goes; until
            // it has gone, the recording holds all it does.
            if super::file::is_unfinished(&path) {
                match finished_of(&path) {
                    // Finished as the walk went by: its recording, which
                    // the walk may have passed already (a repeat goes).
                    Some(done) => out.push(done),
                    None => unfinished.push(path),
                }
            }
            continue;
        }
        // A link to a folder is not followed inside a folder: a link to
        // one of its parents would send the walk round for ever.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            match std::fs::read_dir(&path) {
                Ok(inner) => walk_entries(&path, inner, out, unfinished, passed_over),
                Err(e) => passed_over.push((path, unreadable(&e))),
            }
        } else if path.extension().is_some_and(|x| x == "parquet") {
            // A link whose recording has gone (exists() follows it).
            if path.exists() {
                out.push(path);
            } else {
                passed_over.push((path, "a link to nothing: what it named is gone".into()));
            }
        }
    }
}

/// Why a folder inside a walked one could not be read.
fn unreadable(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "a folder this user may not read".into(),
        std::io::ErrorKind::NotFound => "a folder that went while it was being read".into(),
        _ => format!("a folder that could not be read: {e}"),
    }
}

/// The recording an unfinished file (`.NAME.inprogress`) is the journal
/// of, if it is there: the capture finished it.
pub fn finished_of(journal: &Path) -> Option<PathBuf> {
    let name = journal.file_name()?.to_string_lossy().into_owned();
    let name = name.strip_prefix('.')?.strip_suffix(".inprogress")?;
    let done = journal.with_file_name(name);
    done.is_file().then_some(done)
}

/// The recording to read in place of the unfinished file `journal`, when
/// opening it failed with `e` because its capture finished it since it was
/// found (a series that rotated, a capture that ended).
pub(super) fn finished_instead(journal: &Path, e: &Error) -> Option<PathBuf> {
    match e {
        Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound
                && super::file::is_unfinished(journal) =>
        {
            finished_of(journal)
        }
        _ => None,
    }
}

/// Refuses a link named as a capture's unfinished file: tcpcong never
/// makes one, and following it would read whatever file its planter chose.
fn not_a_link(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::bad_input(
            path,
            "a symbolic link named as a capture's unfinished file, which never is one: not followed",
        ));
    }
    Ok(())
}
