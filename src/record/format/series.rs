//! A recording as a series of complete files (`record -o DIR/`), rotated by
//! time and/or size, named to sort by time and to read as hive partitions:
//! `DIR/host=NAME/date=YYYY-MM-DD/tcpcong-YYYYMMDDTHHMMSSZ-SEQ.parquet`.
//!
//! Each file is a recording on its own: its metadata covers its own span
//! and the events lost during it. Files are cut between two rounds of the
//! capture loop, at the time up to which the stream is complete, so one
//! file ends exactly where the next starts and `analyze DIR` times flows
//! across them without a gap. With `--max-total` the oldest files of the
//! series are deleted to stay within the budget.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::schema::{CaptureInfo, Metadata};
use super::writer::{is_being_written, Breaks, RecordingWriter};
use crate::error::{Error, Result};
use crate::event::{Change, Event};
use crate::files;
use crate::host::hostname;
use crate::time::{file_stamp, Clock};

/// Rotation by size checks the file's size at least this often (events),
/// and sooner where fewer rows fit below the size.
const SIZE_CHECK_EVERY: usize = 2048;

/// When to start a new file, and how much to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    pub every_ns: Option<u64>,
    pub bytes: Option<u64>,
    pub max_total: Option<u64>,
}

pub struct Series {
    root: PathBuf,
    rotation: Rotation,
    clock: Clock,
    /// How the capture was made, for every file's metadata (known once
    /// the programs are attached).
    pub(super) info: Option<CaptureInfo>,
    current: Option<Current>,
    seq: u32,
    /// Complete files of this series, oldest first, with their sizes.
    done: Vec<(PathBuf, u64)>,
    /// Totals over all files, for the summary line.
    pub events: u64,
    pub files: u64,
    pub bytes: u64,
    pub breaks: Breaks,
    /// Distinct flows over all files.
    pub flows: HashSet<u64>,
    /// Old files removed to keep within `--max-total`.
    pub deleted: u64,
}

struct Current {
    writer: RecordingWriter,
    start_ktime: u64,
    lost_before: u64,
    /// The capture's count of untraced drops when the file began.
    untraced_before: BTreeMap<String, u64>,
    /// Socket snapshots taken for it: its start's, then its end's.
    snapshots: u8,
    /// When its end's snapshot was complete: it is not cut before.
    end_snapshot: Option<u64>,
}

impl Series {
    /// Creates the folder. Also returns the unfinished files an earlier
    /// capture left in it (not those a running one is writing), for the
    /// caller to report.
    pub fn open(root: &Path, rotation: Rotation, clock: Clock) -> Result<(Series, Vec<PathBuf>)> {
        files::create_root_dir(root).map_err(|e| Error::io(root, e))?;
        let mut leftovers = in_progress_files(root);
        leftovers.retain(|p| !is_being_written(p));
        let series = Series {
            root: root.to_path_buf(),
            rotation,
            clock,
            info: None,
            current: None,
            seq: 0,
            done: Vec::new(),
            events: 0,
            files: 0,
            bytes: 0,
            breaks: Breaks::default(),
            flows: HashSet::new(),
            deleted: 0,
        };
        Ok((series, leftovers))
    }

    /// The next file's path, from its start time.
    fn next_path(&mut self, start_ktime: u64) -> Result<PathBuf> {
        self.seq += 1;
        let (stamp, date) = file_stamp(self.clock.wall(start_ktime));
        let host: String = hostname()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Level by level, so that each is checked not to be a link.
        let mut dir = self.root.clone();
        for level in [format!("host={host}"), format!("date={date}")] {
            dir.push(level);
            files::create_own_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(dir.join(format!("tcpcong-{stamp}-{:06}.parquet", self.seq)))
    }

    /// The capture is attached: its first file starts at `start_ktime`.
    pub fn start(&mut self, info: CaptureInfo, start_ktime: u64) -> Result<()> {
        self.info = Some(info);
        // Readable once this returns: a file's begin writes its journal.
        self.begin(start_ktime, 0).map_err(|(e, _)| e)
    }

    /// Starts the next file; a failure says which file it was.
    fn begin(
        &mut self,
        start_ktime: u64,
        lost_before: u64,
    ) -> std::result::Result<(), (Error, PathBuf)> {
        let path = self
            .next_path(start_ktime)
            .map_err(|e| (e, self.root.clone()))?;
        let mut writer =
            RecordingWriter::create(&path, false, self.clock).map_err(|e| (e, path.clone()))?;
        if let Some(info) = &self.info {
            writer
                .begin(&Metadata::new(info, start_ktime, start_ktime, 0))
                .map_err(|e| (e, path.clone()))?;
        }
        let untraced_before = self
            .info
            .as_ref()
            .map(|i| i.untraced_drops.clone())
            .unwrap_or_default();
        self.current = Some(Current {
            writer,
            start_ktime,
            lost_before,
            untraced_before,
            snapshots: 0,
            end_snapshot: None,
        });
        Ok(())
    }

    /// A file wants a snapshot of every socket as it starts, and another
    /// before it is cut: by time, when its end falls before the capture's
    /// next round (`next`); by size, from nine tenths of the size on.
    pub fn snapshot_due(&self, next: u64) -> bool {
        let Some(cur) = &self.current else {
            return false;
        };
        let ending = || {
            let r = &self.rotation;
            r.every_ns
                .is_some_and(|n| cur.start_ktime.saturating_add(n) <= next)
                || r.bytes
                    .is_some_and(|b| cur.writer.size_estimate() >= b - b / 10)
        };
        cur.snapshots == 0 || cur.snapshots == 1 && ending()
    }

    /// Whether the current file has had no snapshot yet: one the capture's
    /// last round began.
    pub fn unsnapped(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.snapshots == 0)
    }

    pub fn snapshot_taken(&mut self, done: u64) {
        if let Some(cur) = &mut self.current {
            cur.snapshots = (cur.snapshots + 1).min(2);
            if cur.snapshots == 2 {
                cur.end_snapshot.get_or_insert(done);
            }
        }
    }

    /// Writes a round's events, cutting files inside it where a time or size
    /// boundary falls, so that files hold what the flags say, not whole
    /// rounds.
    /// `complete_until`: no event stamped before it is still to come;
    /// `lost`: the capture's losses so far.
    pub fn write(&mut self, mut events: &[Event], complete_until: u64, lost: u64) -> Result<()> {
        while let Some(cur) = self.current.as_mut() {
            // A file ends after its end's snapshot, even when the capture
            // loop came late to take it: the boundary moves to where it
            // was complete, so that its rows are in the file they end.
            let time_limit = self.rotation.every_ns.map(|n| {
                let t = cur.start_ktime.saturating_add(n);
                cur.end_snapshot.map_or(u64::MAX, |done| t.max(done))
            });
            let before_limit =
                events.partition_point(|e| time_limit.is_none_or(|t| e.ktime_ns < t));
            // No more rows than fit below the size (one at least): a
            // check every 2,048 rows let a small file grow past its size
            // by as much as they take.
            let room = self
                .rotation
                .bytes
                .map_or(usize::MAX, |b| cur.writer.rows_until(b).max(1));
            let n = before_limit.min(SIZE_CHECK_EVERY).min(room);
            cur.writer.write(&events[..n])?;
            events = &events[n..];

            // By size the cut is where the size says: a burst that fills
            // the file within one round of the capture loop leaves it
            // without its end's snapshot (the next file's start has one).
            // A file cut by size holds an event at least, so that each
            // turn of this loop takes one and the loop ends with the round
            // (a size its own rows exceed would otherwise cut for ever).
            let cut_at = if cur.writer.events() > 0
                && self
                    .rotation
                    .bytes
                    .is_some_and(|b| cur.writer.size_estimate() >= b)
            {
                Some(events.first().map_or(complete_until, |e| e.ktime_ns))
            } else {
                // Every event before the limit is in this file once the
                // stream is complete up to it.
                time_limit.filter(|&t| n == before_limit && t <= complete_until)
            };
            match cut_at {
                Some(t) => {
                    self.cut(t, lost)?;
                    // The round's events from the cut on go to the next
                    // file: if it cannot be started, they are lost.
                    self.begin(t, lost).map_err(|(e, next)| {
                        // Snapshot rows are not events.
                        let lost = events
                            .iter()
                            .filter(|e| !matches!(e.change, Change::Snapshot { .. }))
                            .count();
                        Error::incomplete(e, &next, lost as u64)
                    })?;
                }
                None if events.is_empty() => break,
                None => {}
            }
        }
        Ok(())
    }

    /// Completes the current file as covering up to `end_ktime`.
    fn cut(&mut self, end_ktime: u64, lost_now: u64) -> Result<()> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let info = self.info.as_ref().ok_or(Error::Internal(
            "a series file was cut before the capture started",
        ))?;
        let lost = lost_now.saturating_sub(cur.lost_before);
        let mut meta = Metadata::new(info, cur.start_ktime, end_ktime, lost);
        // The file's own share of the capture's count.
        for (reason, n) in &mut meta.untraced_drops {
            *n -= cur.untraced_before.get(reason).copied().unwrap_or(0);
        }
        meta.untraced_drops.retain(|_, n| *n > 0);
        let path = cur.writer.target().to_path_buf();
        let (events, breaks) = (cur.writer.events(), cur.writer.breaks());
        self.flows.extend(cur.writer.flow_ids());
        let size = cur
            .writer
            .finish(meta)
            .map_err(|e| Error::incomplete(e, &path, events))?;
        self.events += events;
        self.breaks += breaks;
        self.files += 1;
        self.bytes += size;
        self.done.push((path, size));
        self.enforce_budget()
    }

    /// Deletes the oldest complete files while the series is over budget.
    fn enforce_budget(&mut self) -> Result<()> {
        let Some(max) = self.rotation.max_total else {
            return Ok(());
        };
        let mut total: u64 = self.done.iter().map(|(_, s)| s).sum();
        while total > max && self.done.len() > 1 {
            let (oldest, size) = self.done.remove(0);
            fs::remove_file(&oldest).map_err(|e| Error::io(&oldest, e))?;
            total -= size;
            self.deleted += 1;
        }
        Ok(())
    }

    /// The capture ended at `end_ktime`, having lost `lost` in all.
    pub fn finish(&mut self, end_ktime: u64, lost: u64) -> Result<()> {
        // A stop right after a rotation leaves a last file with nothing in
        // it: drop it rather than keep an empty recording, unless it is the
        // only one (then it says the capture saw nothing).
        let empty = self
            .current
            .as_ref()
            .is_some_and(|c| c.writer.events() == 0);
        let lost_in_it = lost > self.current.as_ref().map_or(0, |c| c.lost_before);
        if empty && !lost_in_it && self.files > 0 {
            if let Some(cur) = self.current.take() {
                cur.writer.abandon();
            }
            return Ok(());
        }
        self.cut(end_ktime, lost)
    }

    /// After a failure: the file being written cannot be completed.
    pub fn abandon(&mut self) -> Option<(PathBuf, u64)> {
        self.current.take().map(|c| c.writer.abandon())
    }

    /// Events, distinct flows (of the finished files, and of the current
    /// one as far as its own), bytes and files so far.
    pub fn progress(&self) -> (u64, u64, u64, u64) {
        let cur = self.current.as_ref().map(|c| &c.writer);
        (
            self.events + cur.map_or(0, |w| w.events()),
            (self.flows.len() as u64).max(cur.map_or(0, |w| w.flows())),
            self.bytes + cur.map_or(0, |w| w.size_estimate()),
            self.files + u64::from(cur.is_some()),
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Hidden in-progress files below `dir`, which a crashed capture leaves.
fn in_progress_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        // Not through links: one to a parent would loop.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(in_progress_files(&p));
        } else if e.file_name().to_string_lossy().ends_with(".inprogress") {
            out.push(p);
        }
    }
    out.sort();
    out
}
