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

use std::fs;
use std::path::{Path, PathBuf};

use super::capture::{CaptureStats, Progress};
use super::host::hostname;
use super::load::KernelConfig;
use super::writer::RecordingWriter;
use crate::error::{Error, Result};
use crate::event::Event;

/// Rotation by size checks the file's size this often (events).
const SIZE_CHECK_EVERY: usize = 2048;

/// When to start a new file, and how much to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    pub every_ns: Option<u64>,
    pub bytes: Option<u64>,
    pub max_total: Option<u64>,
}

pub struct Series {
    root: PathBuf,
    rotation: Rotation,
    cfg: KernelConfig,
    clock_offset_ns: i64,
    /// What the capture attached to, for every file's metadata.
    attach: String,
    current: Option<Current>,
    seq: u32,
    /// Complete files of this series, oldest first, with their sizes.
    done: Vec<(PathBuf, u64)>,
    /// Totals over all files, for the summary line.
    pub events: u64,
    pub files: u64,
    pub bytes: u64,
    pub gaps: u64,
}

struct Current {
    writer: RecordingWriter,
    start_ktime: u64,
    lost_before: u64,
}

impl Series {
    pub fn open(
        root: &Path,
        rotation: Rotation,
        cfg: &KernelConfig,
        clock_offset_ns: i64,
    ) -> Result<Series> {
        fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let leftovers = in_progress_files(root);
        if !leftovers.is_empty() {
            eprintln!(
                "tcpcong: {} unfinished file(s) from an earlier capture left in {} (e.g. {}): not complete recordings; inspect or remove them",
                leftovers.len(),
                root.display(),
                leftovers[0].display()
            );
        }
        Ok(Series {
            root: root.to_path_buf(),
            rotation,
            cfg: cfg.clone(),
            clock_offset_ns,
            attach: String::new(),
            current: None,
            seq: 0,
            done: Vec::new(),
            events: 0,
            files: 0,
            bytes: 0,
            gaps: 0,
        })
    }

    fn wall(&self, ktime: u64) -> i64 {
        ktime as i64 + self.clock_offset_ns
    }

    /// The next file's path, from its start time.
    fn next_path(&mut self, start_ktime: u64) -> Result<PathBuf> {
        self.seq += 1;
        let t = chrono::DateTime::from_timestamp_nanos(self.wall(start_ktime));
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
        let dir = self
            .root
            .join(format!("host={host}"))
            .join(format!("date={}", t.format("%Y-%m-%d")));
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir.join(format!(
            "tcpcong-{}-{:06}.parquet",
            t.format("%Y%m%dT%H%M%S%.3fZ"),
            self.seq
        )))
    }

    pub fn set_attach(&mut self, attach: &str) {
        self.attach = attach.to_string();
    }

    pub fn begin(&mut self, start_ktime: u64, lost_before: u64) -> Result<()> {
        let path = self.next_path(start_ktime)?;
        let writer = RecordingWriter::create(&path, false, self.clock_offset_ns)?;
        self.current = Some(Current {
            writer,
            start_ktime,
            lost_before,
        });
        Ok(())
    }

    /// Writes a round's events, cutting files inside it where a time or size
    /// boundary falls, so that files hold what the flags say, not whole
    /// rounds.
    pub fn write(&mut self, mut events: &[Event], progress: Progress) -> Result<()> {
        while let Some(cur) = self.current.as_mut() {
            let time_limit = self
                .rotation
                .every_ns
                .map(|n| cur.start_ktime.saturating_add(n));
            let before_limit =
                events.partition_point(|e| time_limit.is_none_or(|t| e.ktime_ns < t));
            let n = before_limit.min(SIZE_CHECK_EVERY);
            cur.writer.write(&events[..n])?;
            events = &events[n..];

            let cut_at = if self
                .rotation
                .bytes
                .is_some_and(|b| cur.writer.size_estimate() >= b)
            {
                Some(
                    events
                        .first()
                        .map_or(progress.complete_until, |e| e.ktime_ns),
                )
            } else {
                // Every event before the limit is in this file once the
                // stream is complete up to it.
                time_limit.filter(|&t| n == before_limit && t <= progress.complete_until)
            };
            match cut_at {
                Some(t) => {
                    self.cut(t, progress.lost)?;
                    self.begin(t, progress.lost)?;
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
        let span = CaptureStats {
            start_ktime_ns: cur.start_ktime,
            end_ktime_ns: end_ktime,
            lost: lost_now.saturating_sub(cur.lost_before),
            attach: self.attach.clone(),
            ..Default::default()
        };
        let meta = super::metadata(&self.cfg, &span, self.clock_offset_ns);
        let path = cur.writer.target().to_path_buf();
        let (events, gaps) = (cur.writer.events(), cur.writer.gaps());
        let size = cur
            .writer
            .finish(meta)
            .map_err(|e| super::incomplete(e, &path, events))?;
        self.events += events;
        self.gaps += gaps;
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
        }
        Ok(())
    }

    pub fn finish(&mut self, stats: &CaptureStats) -> Result<()> {
        // A stop right after a rotation leaves a last file with nothing in
        // it: drop it rather than keep an empty recording, unless it is the
        // only one (then it says the capture saw nothing).
        let empty = self
            .current
            .as_ref()
            .is_some_and(|c| c.writer.events() == 0);
        let lost_in_it = stats.lost_events() > self.current.as_ref().map_or(0, |c| c.lost_before);
        if empty && !lost_in_it && self.files > 0 {
            if let Some(cur) = self.current.take() {
                cur.writer.abandon();
            }
            return Ok(());
        }
        self.cut(stats.end_ktime_ns, stats.lost_events())
    }

    /// After a failure: the file being written cannot be completed.
    pub fn abandon(&mut self) -> Option<(PathBuf, u64)> {
        self.current.take().map(|c| c.writer.abandon())
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
        if p.is_dir() {
            out.extend(in_progress_files(&p));
        } else if e.file_name().to_string_lossy().ends_with(".inprogress") {
            out.push(p);
        }
    }
    out.sort();
    out
}
