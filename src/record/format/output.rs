//! Where a capture's events go: one recording file, or a rotated series in
//! a folder. `record` and live mode's `-o` both write through [`Output`],
//! so that they create, finish and give up on files the same way: a
//! failed capture never leaves an in-progress file behind, and always says
//! how many events the unfinished file held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::schema::{CaptureInfo, Metadata};
use super::series::{Rotation, Series};
use super::writer::{Breaks, RecordingWriter};
use crate::error::{Error, Result};
use crate::event::{CgroupNames, Event};
use crate::time::Clock;

/// What the user asked to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One file; `force` replaces an existing one.
    File { path: PathBuf, force: bool },
    /// A folder of rotated files.
    Series { root: PathBuf, rotation: Rotation },
}

impl Target {
    /// `-o DIR/` (or an existing directory) is a series, anything else a file.
    pub fn wants_series(path: &Path) -> bool {
        path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/')
    }
}

enum Sink {
    File {
        writer: Box<RecordingWriter>,
        info: Option<Box<CaptureInfo>>,
        start_ktime: u64,
    },
    Series(Box<Series>),
}

pub struct Output {
    sink: Sink,
}

/// What a finished output holds, for the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub events: u64,
    /// Distinct flows.
    pub flows: u64,
    /// Files written, and (a series with `--max-total`) how many of them
    /// were deleted again to keep within the budget.
    pub files: u64,
    pub deleted: u64,
    /// A series (a folder) rather than one file.
    pub series: bool,
    pub bytes: u64,
    /// Transitions that happened without an event (see the writer).
    pub breaks: Breaks,
    pub place: PathBuf,
}

impl Output {
    /// Creates the file (or the folder) before the capture starts, so that
    /// a bad path fails before any event is taken. Also returns the
    /// unfinished files an earlier capture left in a series folder.
    pub fn create(target: &Target, clock: Clock) -> Result<(Output, Vec<PathBuf>)> {
        Ok(match target {
            Target::File { path, force } => {
                let writer = RecordingWriter::create(path, *force, clock)?;
                let sink = Sink::File {
                    writer: Box::new(writer),
                    info: None,
                    start_ktime: 0,
                };
                (Output { sink }, Vec::new())
            }
            Target::Series { root, rotation } => {
                let (series, leftovers) = Series::open(root, *rotation, clock)?;
                let sink = Sink::Series(Box::new(series));
                (Output { sink }, leftovers)
            }
        })
    }

    /// How far the output has got: events, distinct flows, bytes (the
    /// file being written estimated), files begun.
    pub fn progress(&self) -> (u64, u64, u64, u64) {
        match &self.sink {
            Sink::File { writer, .. } => {
                (writer.events(), writer.flows(), writer.size_estimate(), 1)
            }
            Sink::Series(s) => s.progress(),
        }
    }

    /// Where the events go, for the banner.
    pub fn describe(&self) -> String {
        match &self.sink {
            Sink::File { writer, .. } => writer.target().display().to_string(),
            Sink::Series(s) => format!("a series of files in {}", s.root().display()),
        }
    }

    /// The capture is attached: events from `start_ktime` on follow.
    pub fn start(&mut self, info: CaptureInfo, start_ktime: u64) -> Result<()> {
        match &mut self.sink {
            Sink::File {
                writer,
                info: slot,
                start_ktime: start,
            } => {
                // Readable once this returns: begin writes the journal.
                writer.begin(&Metadata::new(&info, start_ktime, start_ktime, 0))?;
                *slot = Some(Box::new(info));
                *start = start_ktime;
                Ok(())
            }
            Sink::Series(s) => s.start(info, start_ktime),
        }
    }

    /// Names of cgroups the coming events' sockets are in.
    pub fn name_cgroups(&mut self, names: &CgroupNames) {
        let info = match &mut self.sink {
            Sink::File { info, .. } => info.as_deref_mut(),
            Sink::Series(s) => s.info.as_mut(),
        };
        if let Some(info) = info {
            info.cgroup_paths
                .extend(names.paths.iter().map(|(k, v)| (*k, v.clone())));
            info.containers
                .extend(names.containers.iter().map(|(k, v)| (*k, v.clone())));
        }
    }

    /// The capture's count so far of the drops of no traced flow.
    pub fn count_untraced(&mut self, drops: &BTreeMap<String, u64>) {
        let info = match &mut self.sink {
            Sink::File { info, .. } => info.as_deref_mut(),
            Sink::Series(s) => s.info.as_mut(),
        };
        if let Some(info) = info {
            info.untraced_drops.clone_from(drops);
        }
    }

    /// Whether a file of a series starts or is about to be cut (see
    /// [`Series::snapshot_due`]); a single file has its capture's start
    /// and end snapshots.
    pub fn snapshot_due(&self, next: u64) -> bool {
        match &self.sink {
            Sink::File { .. } => false,
            Sink::Series(s) => s.snapshot_due(next),
        }
    }

    pub fn snapshot_taken(&mut self, done: u64) {
        if let Sink::Series(s) = &mut self.sink {
            s.snapshot_taken(done);
        }
    }

    /// Whether the current file has had no snapshot yet (see
    /// [`Series::unsnapped`]); a single file's start snapshot is the
    /// capture's.
    pub fn unsnapped(&self) -> bool {
        match &self.sink {
            Sink::File { .. } => false,
            Sink::Series(s) => s.unsnapped(),
        }
    }

    /// A round of ordered events; the stream is complete up to
    /// `complete_until`, and the capture has lost `lost` so far.
    pub fn write(&mut self, events: &[Event], complete_until: u64, lost: u64) -> Result<()> {
        match &mut self.sink {
            Sink::File { writer, .. } => writer.write(events),
            Sink::Series(s) => s.write(events, complete_until, lost),
        }
    }

    /// The capture ended at `end_ktime` having lost `lost` events: writes
    /// the footers. On failure the unfinished file is removed and the
    /// error says how many events it held.
    pub fn finish(self, end_ktime: u64, lost: u64) -> Result<Written> {
        match self.sink {
            Sink::File {
                writer,
                info,
                start_ktime,
            } => {
                let Some(info) = info else {
                    return Err(give_up(
                        Sink::File {
                            writer,
                            info: None,
                            start_ktime,
                        },
                        Error::Internal("a recording was finished before it started"),
                    ));
                };
                let (events, flows, breaks) = (writer.events(), writer.flows(), writer.breaks());
                let place = writer.target().to_path_buf();
                let meta = Metadata::new(&info, start_ktime, end_ktime, lost);
                let bytes = writer
                    .finish(meta)
                    .map_err(|e| Error::incomplete(e, &place, events))?;
                Ok(Written {
                    events,
                    flows,
                    files: 1,
                    deleted: 0,
                    series: false,
                    bytes,
                    breaks,
                    place,
                })
            }
            Sink::Series(mut s) => match s.finish(end_ktime, lost) {
                Ok(()) => Ok(Written {
                    events: s.events,
                    flows: s.flows.len() as u64,
                    files: s.files,
                    deleted: s.deleted,
                    series: true,
                    bytes: s.bytes,
                    breaks: s.breaks,
                    place: s.root().to_path_buf(),
                }),
                Err(e) => Err(give_up(Sink::Series(s), e)),
            },
        }
    }

    /// After a failure (a full disk, a capture that broke): the file being
    /// written cannot get its footer, so it is removed, and `err` says how
    /// many events it held; files completed before stay valid.
    pub fn abandon(self, err: Error) -> Error {
        give_up(self.sink, err)
    }
}

fn give_up(sink: Sink, err: Error) -> Error {
    let lost = match sink {
        Sink::File { writer, .. } => Some(writer.abandon()),
        Sink::Series(mut s) => s.abandon(),
    };
    match lost {
        Some((path, events)) if events > 0 => Error::incomplete(err, &path, events),
        // Nothing was lost (e.g. the programs never loaded): the error alone.
        _ => err,
    }
}
