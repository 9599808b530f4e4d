//! Writes events into a schema v1 Parquet file.
//!
//! The file is built without a name in the target folder (or under a
//! hidden one where the file system has no unnamed files) and renamed into
//! place only once its footer is written, so a file with the final name is
//! always complete. Meanwhile the capture's rows are also appended, about
//! once a second, to its unfinished file under a hidden name
//! (`.NAME.inprogress`, see [`super::journal`]): what a running or killed
//! capture can be read from. Rows arrive in time order and go out in
//! batches; the Parquet writer flushes a row group whenever one fills,
//! which bounds memory on long captures. Batches are encoded on a thread
//! of their own (`Encoder`), so that a capture's drain never waits for
//! zstd.
//!
//! Size matters (budget: 12 bytes per event): strings are dictionary
//! encoded (Parquet's default) but for the file's own (host, boot_id,
//! capture), the two time columns are delta encoded, and everything is
//! zstd compressed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use arrow_array::types::{TimestampMicrosecondType, UInt16Type, UInt64Type, UInt8Type};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{encode_arrow_schema, ArrowWriter, ARROW_SCHEMA_META_KEY};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rustc_hash::{FxHashMap, FxHashSet};

use super::encode::RowGroups;
use super::journal::{self, Journal};
use super::schema::{
    arrow_schema, DetailBuilders, Metadata, Numbers, Strings, CAPTURE_KIND, METADATA_KEY,
};
use crate::error::{Error, Result};
use crate::event::{CaState, Change, Detail, Event, TcpState};
use crate::files;
use crate::host;
use crate::time::Clock;

const BATCH_ROWS: usize = journal::MESSAGE_ROWS_MAX;
/// Columns that change by small steps from row to row: the clocks.
const DELTA_COLUMNS: [&str; 2] = ["time", "ktime_ns"];
/// Columns written plain, zstd finding what repeats. The first four have
/// too many values for a dictionary, and their rows interleave the flows
/// (so that deltas jump from one flow's value to another's): two recorders
/// on the same lab traffic (4 lossy flows, 10 s, 3 runs), plain took 0.69
/// to 0.83 of the bytes of a dictionary (tcp_seq, seq) or of deltas (the
/// counters), and the file 0.89 to 0.90 of its size. The others hold the
/// same value on nearly every row: arrow-rs' dictionary cost a lookup per
/// row to save nothing zstd does not; plain, the recorder took 0.92 of the
/// CPU per event, the file the same bytes (BENCHMARKS.md, section 2).
/// (The strings that hold one value per file, `host`, `boot_id` and
/// `capture`, go through our own dictionary, which finds a row's value
/// equal to the row before's without a lookup.)
const PLAIN_COLUMNS: [&str; 10] = [
    "tcp_seq",
    "seq",
    "total_retrans",
    "srtt_us",
    "family",
    "kernel_gap",
    "err",
    "backoff",
    "delivered_ce",
    "undo",
];
const ROW_GROUP_ROWS: usize = 1 << 20;
/// Events are made into rows a block at a time, each column in turn: the
/// block stays in the CPU's cache while its columns are read from it.
const BLOCK_ROWS: usize = 256;
/// What a file takes besides its rows, for its size estimate: its footer
/// (the schema, the metadata, each column's statistics: about 9 KB) and
/// its end row, which holds the metadata again. Without it a series' files
/// came out larger than --rotate-size by that much.
const OWN_BYTES: u64 = 12 << 10;
/// A row not encoded yet, for the size estimate: more than the 12 to 15
/// bytes per event a lab recording takes, so that files come out smaller
/// than their limit, not larger.
const PENDING_ROW_BYTES: u64 = 16;
/// Disk space is claimed ahead of writing in steps of this many bytes.
const RESERVE_STEP: u64 = 64 << 10;
/// The address-string cache is a speed-up, not a record of flows: clearing
/// it when large keeps memory flat under a storm of short flows.
const ADDR_CACHE_MAX: usize = 100_000;

/// The hidden name of a recording's unfinished file (its journal) while
/// its capture runs.
pub fn in_progress_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.inprogress"))
}

/// Creates `path` (see [`files::create_new`]: mode 0600, never an existing
/// file, link or FIFO) and locks it for as long as it is open, so that
/// others can tell a capture that is running from one that was killed.
fn create_locked(path: &Path) -> std::io::Result<File> {
    let file = files::create_new(path)?;
    file.try_lock().map_err(std::io::Error::from)?;
    Ok(file)
}

/// Allocates disk blocks for the first `len` bytes of `file` without
/// changing its size.
fn reserve_space(file: &File, len: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
    // SAFETY: fallocate only acts on the open descriptor `file` owns.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether a running tcpcong holds `path` (an in-progress file) open.
/// Anything else planted under that name (a FIFO, a link) is not: it is
/// never opened in a way that could block or follow it.
pub fn is_being_written(path: &Path) -> bool {
    files::open_regular_nofollow(path)
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// A flow's addresses as the file writes them. A flow's addresses change
/// (an accepted socket's first event comes before its peer address is
/// set): the text is made again when they do.
struct Addresses {
    saddr: IpAddr,
    daddr: IpAddr,
    text: (Box<str>, Box<str>),
}

impl Addresses {
    fn of(e: &Event) -> Addresses {
        Addresses {
            saddr: e.addr.saddr,
            daddr: e.addr.daddr,
            text: (
                e.addr.saddr.to_string().into_boxed_str(),
                e.addr.daddr.to_string().into_boxed_str(),
            ),
        }
    }
}

/// Transitions that came without an event, counted by who saw them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Breaks {
    /// `ca_state` rows that do not start where their flow's previous row
    /// ended.
    pub gaps: u64,
    /// `ca_state` rows whose program found the socket in another state
    /// than the socket's previous call set (`kernel_gap`).
    pub kernel_gaps: u64,
}

impl std::ops::AddAssign for Breaks {
    fn add_assign(&mut self, other: Breaks) {
        self.gaps += other.gaps;
        self.kernel_gaps += other.kernel_gaps;
    }
}

pub struct RecordingWriter {
    target: PathBuf,
    /// Whether the target may be replaced when the file is complete.
    force: bool,
    /// The journal.
    tmp: PathBuf,
    /// The journal again, locked for as long as the capture writes: its
    /// lock is how others tell a running capture from a killed one.
    _lock: File,
    /// The Parquet file's name while it is written, where the file system
    /// could not leave it without one.
    named: Option<PathBuf>,
    /// When the last batch went to the journal.
    sent_at: Instant,
    encoder: Option<Encoder>,
    schema: SchemaRef,
    cols: Columns,
    /// Per flow: keyed by socket cookies (as the others are by cookies and
    /// cgroup ids), which the kernel numbers, so that the cheaper hash is
    /// safe (a peer chooses its address, not a cookie).
    addr_cache: FxHashMap<u64, Addresses>,
    flows: FxHashSet<u64>,
    /// The cgroups of the flows in the file.
    cgroups: FxHashSet<u64>,
    events: u64,
    /// Rows of kind `snapshot` (not events).
    snapshots: u64,
    last_ktime: u64,
    sorted: bool,
    /// Per open flow, the congestion state its last event left it in.
    ca_state: FxHashMap<u64, CaState>,
    breaks: Breaks,
    /// Some event carried a per-socket number (see `Metadata::numbered`).
    numbered: bool,
    /// The Parquet file again, to claim disk space through and to name.
    space: File,
    /// Bytes claimed so far.
    reserved: u64,
}

impl RecordingWriter {
    /// Creates the journal and the Parquet file (mode 0600). Refuses to
    /// overwrite an existing recording without `force`, and never reuses a
    /// leftover journal.
    pub fn create(target: &Path, force: bool, clock: Clock) -> Result<RecordingWriter> {
        if target.is_dir() {
            return Err(Error::TargetIsDir {
                path: target.to_path_buf(),
            });
        }
        // A dangling link is there too: it would be replaced as a file would.
        if fs::symlink_metadata(target).is_ok() && !force {
            return Err(Error::Exists {
                path: target.to_path_buf(),
            });
        }
        let tmp = in_progress_path(target);
        let journal = match create_locked(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if is_being_written(&tmp) {
                    return Err(Error::Busy { path: tmp });
                }
                if !force {
                    return Err(Error::Leftover { path: tmp });
                }
                // A killed capture's file: --force replaces it as it
                // would replace a finished recording.
                fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
                create_locked(&tmp)
            }
            other => other,
        }
        // Named by the recording asked for: the unfinished file's name is
        // tcpcong's (a folder where no file can be made: /proc, /sys).
        .map_err(|e| {
            let why = format!("cannot create the recording there: {e}");
            Error::io(target, std::io::Error::new(e.kind(), why))
        })?;
        // From here a failure leaves nothing behind to trip the next run.
        let gone = |named: Option<&PathBuf>| {
            let _ = fs::remove_file(&tmp);
            if let Some(p) = named {
                let _ = fs::remove_file(p);
            }
        };
        let lock = match journal.try_clone() {
            Ok(f) => f,
            Err(e) => {
                gone(None);
                return Err(Error::io(&tmp, e));
            }
        };
        let (file, named) = match files::create_unnamed_beside(target) {
            Ok(made) => made,
            Err(e) => {
                gone(None);
                return Err(Error::io(target, e));
            }
        };
        let space = match file.try_clone() {
            Ok(f) => f,
            Err(e) => {
                gone(named.as_ref());
                return Err(Error::io(&tmp, e));
            }
        };

        let schema = arrow_schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).map_err(|e| Error::parquet(&tmp, e))?,
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("tcpcong {}", env!("CARGO_PKG_VERSION")))
            // Min/max per column chunk is what readers use to skip row
            // groups; page indexes would add a footer larger than a small
            // recording's data (measured: 6 KiB on the fixtures).
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true);
        let props = DELTA_COLUMNS
            .iter()
            .map(|&c| (c, Encoding::DELTA_BINARY_PACKED))
            .chain(PLAIN_COLUMNS.iter().map(|&c| (c, Encoding::PLAIN)))
            .fold(props, |p, (c, encoding)| {
                p.set_column_dictionary_enabled(ColumnPath::from(c), false)
                    .set_column_encoding(ColumnPath::from(c), encoding)
            });
        // Except on strings: the writer finds their min/max by comparing
        // every value, which took 30 % of the recorder's CPU at 1,000,000
        // events/s (BENCHMARKS.md, section 2), and readers filter on the
        // numbers (time, flow, ports), not on names.
        let props = schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &arrow_schema::DataType::Utf8)
            .fold(props, |p, f| {
                p.set_column_statistics_enabled(
                    ColumnPath::from(f.name().as_str()),
                    EnabledStatistics::None,
                )
            })
            .build();
        // The Arrow schema goes into the footer at the end, with the final
        // metadata object, instead of the incomplete one known now.
        let opts = ArrowWriterOptions::new()
            .with_properties(props)
            .with_skip_arrow_metadata(true);
        // The writers put the files' first bytes down at once: on a full
        // disk that fails, and an empty journal would trip the next run.
        let started = ArrowWriter::try_new_with_options(file, Arc::clone(&schema), opts)
            .map_err(|e| Error::parquet(&tmp, e))
            .and_then(|w| {
                let j =
                    Journal::start(journal, &schema).map_err(|e| Error::parquet(&tmp, e.into()))?;
                let groups = RowGroups::new(w, Arc::clone(&schema), ROW_GROUP_ROWS)
                    .map_err(|e| Error::parquet(&tmp, e))?;
                Encoder::start(groups, j).map_err(|e| Error::io(&tmp, e))
            });
        let encoder = match started {
            Ok(e) => e,
            Err(e) => {
                gone(named.as_ref());
                return Err(e);
            }
        };
        Ok(RecordingWriter {
            target: target.to_path_buf(),
            force,
            tmp,
            _lock: lock,
            named,
            sent_at: Instant::now(),
            encoder: Some(encoder),
            schema,
            cols: Columns::new(clock),
            addr_cache: FxHashMap::default(),
            flows: FxHashSet::default(),
            cgroups: FxHashSet::default(),
            events: 0,
            snapshots: 0,
            last_ktime: 0,
            sorted: true,
            ca_state: FxHashMap::default(),
            breaks: Breaks::default(),
            numbered: false,
            space,
            reserved: 0,
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn flows(&self) -> u64 {
        self.flows.len() as u64
    }

    /// The distinct flows written so far.
    pub fn flow_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.flows.iter().copied()
    }

    pub fn breaks(&self) -> Breaks {
        self.breaks
    }

    /// How many more rows fit before the size estimate reaches `limit`.
    pub fn rows_until(&self, limit: u64) -> usize {
        usize::try_from(limit.saturating_sub(self.size_estimate()) / PENDING_ROW_BYTES)
            .unwrap_or(usize::MAX)
    }

    /// Bytes on disk, plus those encoded but not flushed, plus the rows not
    /// yet encoded at more than a row takes, plus the file's footer and end
    /// row (rotation by size).
    pub fn size_estimate(&self) -> u64 {
        let (encoded, pending) = self.encoder.as_ref().map_or((0, 0), Encoder::progress);
        encoded + (pending + self.cols.rows as u64) * PENDING_ROW_BYTES + OWN_BYTES
    }

    /// Counts a transition that happened without an event; forgets
    /// closed flows so that memory follows open flows.
    fn check_chain(&mut self, e: &Event) {
        self.numbered |= e.detail.seq != 0;
        match e.change {
            Change::Ca { old, new } => {
                if self
                    .ca_state
                    .insert(e.flow, new)
                    .is_some_and(|prev| prev != old)
                {
                    self.breaks.gaps += 1;
                }
                if e.detail.kernel_gap != 0 {
                    self.breaks.kernel_gaps += 1;
                }
            }
            // An observation of the state: one that differs from where the
            // flow's last row left it is a transition without an event.
            Change::Snapshot { ca, .. } => {
                if self
                    .ca_state
                    .insert(e.flow, ca)
                    .is_some_and(|prev| prev != ca)
                {
                    self.breaks.gaps += 1;
                }
            }
            Change::Tcp { new, .. } if new == TcpState::CLOSE => {
                self.ca_state.remove(&e.flow);
            }
            Change::Tcp { .. }
            | Change::Retransmit { .. }
            | Change::Drop { .. }
            | Change::Reset { .. } => {}
        }
    }

    pub fn write(&mut self, events: &[Event]) -> Result<()> {
        let mut rest = events;
        while !rest.is_empty() {
            let (block, after) =
                rest.split_at(rest.len().min(BLOCK_ROWS).min(BATCH_ROWS - self.cols.rows));
            rest = after;
            for e in block {
                if self.addr_cache.len() >= ADDR_CACHE_MAX {
                    self.addr_cache.clear();
                }
                let cached = self
                    .addr_cache
                    .entry(e.flow)
                    .or_insert_with(|| Addresses::of(e));
                if (cached.saddr, cached.daddr) != (e.addr.saddr, e.addr.daddr) {
                    *cached = Addresses::of(e);
                }
                self.cols.push_strings(e, &cached.text.0, &cached.text.1);
                self.check_chain(e);
                if self.flows.insert(e.flow) {
                    self.cgroups.insert(e.detail.cgroup);
                }
                self.sorted &= e.ktime_ns >= self.last_ktime;
                self.last_ktime = e.ktime_ns;
                match e.change {
                    Change::Snapshot { .. } => self.snapshots += 1,
                    _ => self.events += 1,
                }
            }
            self.cols.push_numbers(block);
            if self.cols.rows == BATCH_ROWS {
                self.flush()?;
            }
        }
        // What a killed capture keeps: rows wait at most this long.
        if self.sent_at.elapsed() >= journal::EVERY {
            self.flush()?;
        }
        let tmp = &self.tmp;
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.check().map_err(|e| Error::parquet(tmp, e))?;
        }
        self.reserve()
    }

    /// Claims the disk space the file will need (as far as estimated) now:
    /// rows wait in memory until their row group is complete, so without
    /// this a full disk would show only when a group or the footer is
    /// written, perhaps at the end of a long capture. The claim is released
    /// at the end where it exceeds the file.
    fn reserve(&mut self) -> Result<()> {
        let want = self.size_estimate().next_multiple_of(RESERVE_STEP);
        if want <= self.reserved {
            return Ok(());
        }
        match reserve_space(&self.space, want) {
            Ok(()) => self.reserved = want,
            // A file system without fallocate: errors show when written.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.reserved = u64::MAX,
            Err(e) => return Err(Error::io(&self.tmp, e)),
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        self.sent_at = Instant::now();
        if self.cols.rows == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), self.cols.finish())?;
        let tmp = self.tmp.clone();
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.write(batch).map_err(|e| Error::parquet(&tmp, e))?;
        }
        Ok(())
    }

    /// Writes the footer with `meta` (events, flows and order filled in
    /// here), syncs, renames the file into place and removes the journal.
    /// Returns its size.
    pub fn finish(mut self, meta: Metadata) -> Result<u64> {
        let res = self.complete(meta);
        if res
            .as_ref()
            .is_err_and(|e| !matches!(e, Error::Appeared { .. }))
        {
            // The error says how many events were lost: leave no file that
            // holds some of them.
            self.remove_files();
        }
        res
    }

    fn remove_files(&mut self) {
        let _ = fs::remove_file(&self.tmp);
        if let Some(p) = self.named.take() {
            let _ = fs::remove_file(p);
        }
    }

    /// The capture this file covers starts: its first row says so.
    pub fn begin(&mut self, meta: &Metadata) -> Result<()> {
        let json = serde_json::to_string(meta)?;
        self.cols.push_capture(meta.start_ktime_ns, "start", &json);
        self.last_ktime = meta.start_ktime_ns;
        // At once into the journal: without it, what the file holds cannot
        // be read, and the capture says it runs once this returns.
        self.flush()
    }

    fn complete(&mut self, mut meta: Metadata) -> Result<u64> {
        meta.events = self.events;
        meta.snapshots = self.snapshots;
        meta.flows = self.flows.len() as u64;
        meta.sorted = self.sorted;
        meta.gaps = self.breaks.gaps;
        meta.kernel_gaps = self.breaks.kernel_gaps;
        meta.numbered = self.numbered;
        meta.cgroup_paths.retain(|id, _| self.cgroups.contains(id));
        meta.containers.retain(|id, _| self.cgroups.contains(id));
        let json = serde_json::to_string(&meta)?;
        // No row is later than the end: the last row says where it is.
        self.cols.push_capture(meta.end_ktime_ns, "end", &json);
        self.flush()?;
        let with_meta = self
            .schema
            .as_ref()
            .clone()
            .with_metadata(HashMap::from([(METADATA_KEY.to_string(), json.clone())]));
        let tmp = self.tmp.clone();
        let mut w = self
            .encoder
            .take()
            .ok_or(Error::Internal("a recording was finished twice"))?
            .finish()
            .map_err(|e| Error::parquet(&tmp, e))?;
        w.append_key_value_metadata(KeyValue::new(
            ARROW_SCHEMA_META_KEY.to_string(),
            encode_arrow_schema(&with_meta),
        ));
        w.append_key_value_metadata(KeyValue::new(METADATA_KEY.to_string(), json));
        let file = w.into_inner().map_err(|e| Error::parquet(&tmp, e))?;
        let size = file.metadata().map_err(|e| Error::io(&tmp, e))?.len();
        // Blocks claimed beyond the end go back (truncating to the size
        // frees what was allocated past it).
        file.set_len(size).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        let named = match self.named.take() {
            Some(p) => p,
            None => {
                files::name_beside(&file, &self.target).map_err(|e| Error::io(&self.target, e))?
            }
        };
        // A named file is ours only by name: someone may have moved it, or
        // created the target, while the capture ran.
        let placed = files::rename(&named, &self.target, self.force);
        self.named = Some(named.clone());
        match placed {
            Ok(()) => {
                self.named = None;
                // The recording is complete: its journal has no more to say
                // (and its lock goes with it).
                let _ = fs::remove_file(&self.tmp);
                Ok(size)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Moved {
                tmp: named,
                target: self.target.clone(),
                events: self.events,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // The complete recording is kept: the journal has no more
                // to say.
                let _ = fs::remove_file(&self.tmp);
                Err(Error::Appeared {
                    target: self.target.clone(),
                    kept: named,
                })
            }
            Err(e) => Err(Error::io(&self.target, e)),
        }
    }
}

impl RecordingWriter {
    /// Gives up on an incomplete recording after a failure (a full disk,
    /// a capture that broke): removes its files and says which recording
    /// and how many events that was.
    pub fn abandon(mut self) -> (PathBuf, u64) {
        self.encoder = None;
        self.remove_files();
        (self.target.clone(), self.events)
    }
}

impl Drop for RecordingWriter {
    /// A writer dropped before `finish` failed early (nothing worth keeping
    /// was written): do not leave an in-progress file to trip the next run.
    fn drop(&mut self) {
        if self.encoder.is_some() && self.events == 0 {
            self.remove_files();
        }
    }
}

/// The file's Parquet writer on a thread of its own, fed whole batches.
/// Each batch goes to the journal first, on the caller's thread, as it is
/// handed over: what a killed capture keeps never waits behind a batch
/// being encoded (under load that wait outlasted half a second).
/// Encoding a batch can take longer than a capture round may (a tenth of a
/// second for 65,536 rows here, in which one CPU's lean ring fills at a few
/// hundred thousand events/s); on a second core it runs beside the drain.
/// One batch waits while one is encoded, and a third waits for them, which
/// bounds memory. A write that fails ends the thread, and the next write
/// or `finish` returns its error.
struct Encoder {
    journal: Journal,
    batches: Option<SyncSender<RecordBatch>>,
    thread: Option<JoinHandle<parquet::errors::Result<RowGroups>>>,
    /// Rows handed to the thread.
    sent: u64,
    done: Arc<Encoded>,
}

/// What the encoder has done so far, for size estimates while it works.
#[derive(Default)]
struct Encoded {
    rows: AtomicU64,
    /// Bytes written, plus those encoded and not yet written.
    bytes: AtomicU64,
}

impl Encoder {
    fn start(mut writer: RowGroups, journal: Journal) -> std::io::Result<Encoder> {
        let (batches, incoming) = sync_channel::<RecordBatch>(1);
        let done = Arc::new(Encoded::default());
        let progress = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("tcpcong-encode".into())
            .spawn(move || {
                for batch in incoming {
                    writer.write(&batch)?;
                    let bytes = writer.bytes_written() + writer.in_progress_size();
                    progress.bytes.store(bytes as u64, Ordering::Relaxed);
                    progress
                        .rows
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                }
                Ok(writer)
            })?;
        Ok(Encoder {
            journal,
            batches: Some(batches),
            thread: Some(thread),
            sent: 0,
            done,
        })
    }

    fn write(&mut self, batch: RecordBatch) -> parquet::errors::Result<()> {
        self.journal.append(&batch)?;
        let rows = batch.num_rows() as u64;
        let sent = self.batches.as_ref().is_some_and(|b| b.send(batch).is_ok());
        if !sent {
            // The thread ended on an error, which is this write's.
            return self.finish().map(drop);
        }
        self.sent += rows;
        Ok(())
    }

    /// The thread ends early only on an error. Checked each round, not
    /// only at the next batch: a capture whose events stop after its row
    /// group failed would otherwise learn of it at its end.
    fn check(&mut self) -> parquet::errors::Result<()> {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return self.finish().map(drop);
        }
        Ok(())
    }

    /// (bytes encoded, rows sent and not yet encoded).
    fn progress(&self) -> (u64, u64) {
        let encoded = self.done.rows.load(Ordering::Relaxed);
        (
            self.done.bytes.load(Ordering::Relaxed),
            self.sent.saturating_sub(encoded),
        )
    }

    /// Waits until every batch sent is encoded; returns the writer, for
    /// the footer.
    fn finish(&mut self) -> parquet::errors::Result<RowGroups> {
        use parquet::errors::ParquetError::General;
        self.batches = None;
        let thread = self
            .thread
            .take()
            .ok_or_else(|| General("the file's encoder has stopped".into()))?;
        thread
            .join()
            .unwrap_or_else(|_| Err(General("the file's encoder failed".into())))
    }
}

impl Drop for Encoder {
    /// An abandoned file: the thread ends once the channel is gone.
    fn drop(&mut self) {
        self.batches = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `value` on each of `rows` rows, built in bulk: appended row by row,
/// the per-file columns were a tenth of the drain's work.
fn repeated(value: &str, rows: usize) -> StringArray {
    let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
    let offsets = (0..=rows).map(|i| len.saturating_mul(i32::try_from(i).unwrap_or(i32::MAX)));
    StringArray::new(
        OffsetBuffer::new(offsets.collect::<Vec<i32>>().into()),
        value.repeat(rows).into_bytes().into(),
        None,
    )
}

/// One Arrow builder per schema column, in schema order.
struct Columns {
    clock: Clock,
    rows: usize,
    time: Numbers<TimestampMicrosecondType>,
    ktime: Numbers<UInt64Type>,
    kind: Strings,
    flow: Numbers<UInt64Type>,
    family: Numbers<UInt8Type>,
    saddr: Strings,
    daddr: Strings,
    sport: Numbers<UInt16Type>,
    dport: Numbers<UInt16Type>,
    old_state: Strings,
    new_state: Strings,
    detail: DetailBuilders,
    /// The per-file columns' values (host, boot_id): one per row, built
    /// at once when a batch is.
    file: [String; 2],
    /// `capture`: the metadata on capture rows, empty on the others.
    capture: Strings,
}

impl Columns {
    fn new(clock: Clock) -> Columns {
        Columns {
            clock,
            rows: 0,
            time: Numbers::default(),
            ktime: Numbers::default(),
            kind: Strings::default(),
            flow: Numbers::default(),
            family: Numbers::default(),
            saddr: Strings::default(),
            daddr: Strings::default(),
            sport: Numbers::default(),
            dport: Numbers::default(),
            old_state: Strings::default(),
            new_state: Strings::default(),
            detail: DetailBuilders::default(),
            file: [host::hostname(), host::boot_id()],
            capture: Strings::default(),
        }
    }

    /// A capture row at `ktime`: `which` is `start` or `end`, `meta` the
    /// metadata as JSON.
    fn push_capture(&mut self, ktime: u64, which: &str, meta: &str) {
        self.time
            .append_value(self.clock.wall_i64(ktime).div_euclid(1_000));
        self.ktime.append_value(ktime);
        self.kind.append_value(CAPTURE_KIND);
        self.flow.append_value(0);
        self.family.append_value(0);
        self.saddr.append_value("");
        self.daddr.append_value("");
        self.sport.append_value(0);
        self.dport.append_value(0);
        self.old_state.append_value("");
        self.new_state.append_value(which);
        self.detail.push(&Detail::default());
        self.push_file_columns(meta);
    }

    fn push_file_columns(&mut self, capture: &str) {
        self.capture.append_value(capture);
        self.rows += 1;
    }

    /// An event's row, but for its numbers (see `push_numbers`).
    fn push_strings(&mut self, e: &Event, saddr: &str, daddr: &str) {
        self.kind.append_value(e.change.kind());
        self.saddr.append_value(saddr);
        self.daddr.append_value(daddr);
        let (old, new) = e.change.names();
        self.old_state.append_value(old);
        self.new_state.append_value(new);
        self.push_file_columns("");
    }

    /// The numbers (and the details' names) of a block of events whose
    /// rows `push_strings` began, a column at a time.
    fn push_numbers(&mut self, block: &[Event]) {
        let clock = self.clock;
        self.time.extend(
            block
                .iter()
                .map(|e| clock.wall_i64(e.ktime_ns).div_euclid(1_000)),
        );
        self.ktime.extend(block.iter().map(|e| e.ktime_ns));
        self.flow.extend(block.iter().map(|e| e.flow));
        self.family.extend(block.iter().map(|e| e.addr.family));
        self.sport.extend(block.iter().map(|e| e.addr.sport));
        self.dport.extend(block.iter().map(|e| e.addr.dport));
        self.detail.push_all(block);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        let rows = std::mem::take(&mut self.rows);
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.ktime.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.flow.finish()),
            Arc::new(self.family.finish()),
            Arc::new(self.saddr.finish()),
            Arc::new(self.daddr.finish()),
            Arc::new(self.sport.finish()),
            Arc::new(self.dport.finish()),
            Arc::new(self.old_state.finish()),
            Arc::new(self.new_state.finish()),
        ];
        self.detail.finish(&mut cols);
        for v in &self.file {
            cols.push(Arc::new(repeated(v, rows)));
        }
        cols.push(Arc::new(self.capture.finish()));
        cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::UInt64Array;
    use arrow_schema::{DataType, Field, Schema};

    fn numbers(schema: &SchemaRef, from: u64) -> RecordBatch {
        let values = UInt64Array::from_iter_values(from..from + 4096);
        RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(values)]).unwrap()
    }

    fn encoder(file: File, schema: &SchemaRef) -> Encoder {
        // Row groups of one batch, so that each batch reaches the file.
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(4096))
            .set_dictionary_enabled(false)
            .build();
        let journal = Journal::start(File::create("/dev/null").unwrap(), schema).unwrap();
        let arrow = ArrowWriter::try_new(file, Arc::clone(schema), Some(props)).unwrap();
        Encoder::start(
            RowGroups::new(arrow, Arc::clone(schema), 4096).unwrap(),
            journal,
        )
        .unwrap()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, false)]))
    }

    #[test]
    fn the_encoder_writes_every_batch_in_order_and_counts_them() {
        let dir = std::env::temp_dir().join(format!("tcpcong-encoder-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.parquet");
        let schema = schema();
        let mut enc = encoder(File::create(&path).unwrap(), &schema);
        for i in 0..5 {
            enc.write(numbers(&schema, i * 4096)).unwrap();
        }
        let writer = enc.finish().unwrap();
        assert_eq!(enc.progress().1, 0, "every row sent was encoded");
        assert!(enc.progress().0 > 0);
        writer.into_inner().unwrap();
        let read = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            File::open(&path).unwrap(),
            8192,
        )
        .unwrap();
        let got: Vec<u64> = read
            .flat_map(|b| {
                let b = b.unwrap();
                let col = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
                col.values().to_vec()
            })
            .collect();
        assert_eq!(got, (0..5 * 4096).collect::<Vec<u64>>());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Rows are made a block of events at a time, a column at a time:
    /// every row still holds its own event's values, whatever the sizes of
    /// the writes and wherever a batch ends.
    #[test]
    fn every_row_holds_its_events_values_whatever_the_writes() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::UInt32Type;
        let dir = std::env::temp_dir().join(format!("tcpcong-rows-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("run.parquet");
        let info = crate::record::format::schema::CaptureInfo::example();
        let events: Vec<Event> = (0..70_000u32)
            .map(|i| {
                let mut e = Event::example(2_000 + u64::from(i), u64::from(i % 7), i + 1);
                e.addr.sport = (i % 1_000) as u16;
                e.detail.snd_cwnd = i * 3;
                e.detail.comm = crate::event::Name::from_str_lossy(["a", "bb"][i as usize % 2]);
                e
            })
            .collect();
        let mut w = RecordingWriter::create(&target, false, Clock::new(0)).unwrap();
        w.begin(&Metadata::new(&info, 1_000, 1_000, 0)).unwrap();
        let mut at = 0;
        for n in [1, 255, 256, 257, 65_000, 4_231] {
            w.write(&events[at..at + n]).unwrap();
            at += n;
        }
        assert_eq!(at, events.len());
        w.finish(Metadata::new(&info, 1_000, 80_000, 0)).unwrap();
        let read = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            File::open(&target).unwrap(),
            8192,
        )
        .unwrap();
        let mut rows = Vec::new();
        for b in read {
            let b = b.unwrap();
            let col = |name: &str| b.column_by_name(name).unwrap().clone();
            let (kind, ktime, flow) = (col("kind"), col("ktime_ns"), col("flow"));
            let (sport, cwnd, seq, comm) = (col("sport"), col("snd_cwnd"), col("seq"), col("comm"));
            for i in 0..b.num_rows() {
                if kind.as_string::<i32>().value(i) == CAPTURE_KIND {
                    continue;
                }
                rows.push((
                    ktime.as_primitive::<UInt64Type>().value(i),
                    flow.as_primitive::<UInt64Type>().value(i),
                    sport.as_primitive::<UInt16Type>().value(i),
                    cwnd.as_primitive::<UInt32Type>().value(i),
                    seq.as_primitive::<UInt32Type>().value(i),
                    comm.as_string::<i32>().value(i).to_string(),
                ));
            }
        }
        let want: Vec<_> = events
            .iter()
            .map(|e| {
                let d = &e.detail;
                (
                    e.ktime_ns,
                    e.flow,
                    e.addr.sport,
                    d.snd_cwnd,
                    d.seq,
                    d.comm.as_str().to_string(),
                )
            })
            .collect();
        assert_eq!(rows, want);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_the_thread_failed_is_a_later_writes_error() {
        let schema = schema();
        let mut enc = encoder(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
            &schema,
        );
        // Each batch is a row group of 32 KiB: the file's buffer overflows
        // into /dev/full within a few, and the thread stops on that error.
        let failed = (0..1000).find_map(|i| enc.write(numbers(&schema, i * 4096)).err());
        let err = failed
            .expect("a write into a full device failed")
            .to_string();
        assert!(err.contains("No space left"), "{err}");
        assert!(enc.finish().is_err(), "the stopped encoder stays stopped");
    }

    #[test]
    fn a_failure_shows_without_a_further_batch() {
        let schema = schema();
        let mut enc = encoder(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
            &schema,
        );
        // Each batch waits for its encoding, so that the one whose row
        // group failed is the last one sent.
        for i in 0..1000 {
            enc.write(numbers(&schema, i * 4096)).unwrap();
            while enc.progress().1 > 0 && !enc.thread.as_ref().unwrap().is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if enc.thread.as_ref().unwrap().is_finished() {
                break;
            }
        }
        let err = enc.check().expect_err("the thread stopped").to_string();
        assert!(err.contains("No space left"), "{err}");
    }
}
