//! Reading recordings back: finding them (files, folders, globs), checking
//! that each is a complete schema v1 file, and streaming the few columns the
//! engine needs, in time order per flow.
//!
//! Time order is what the engine relies on. Files this version writes are
//! sorted, so each streams in constant memory; files whose metadata says
//! otherwise, and recordings of one boot that overlap in time (two captures
//! running at once), are merged in memory, which is the one case where
//! memory grows with events.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use rustc_hash::FxHashMap;

use super::schema::{self, DetailArrays, Metadata, METADATA_KEY, SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::event::{
    Boot, CaState, Change, Detail, Event, FlowAddr, FlowKey, Owner, PortRange, Span, TcpState,
};
use crate::files;
use crate::time::Clock;

/// The columns analysis reads (the core but `time`); the rest of a
/// recording is never decoded.
const NEEDED: &[&str] = schema::CORE.split_at(1).1;
/// `--cgroup`: which cgroup's flows to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSel {
    Id(u64),
    /// A path as recordings name it (under the cgroup2 mount, from "/"),
    /// and the id it has on this machine, for files that name no paths
    /// (recorded before they did).
    Path {
        path: String,
        local_id: Option<u64>,
    },
}

/// What reports label a flow with besides its addresses (see [`Owner`]).
const OWNER: [&str; 3] = ["pid", "comm", "cgroup"];
const BATCH_ROWS: usize = 65_536;
/// Rows that may be merged in memory (files not in time order, captures
/// that overlap): about 220 bytes each, so under 1 GB. A file can claim
/// to be unsorted whatever it holds: this is what keeps a small file of
/// many rows from taking all the memory there is.
const MERGE_ROWS_MAX: usize = 4 << 20;
/// The most one column of one row group may take decompressed. tcpcong's
/// own take a few MiB per 2^20 rows; pyarrow, polars, DuckDB and Spark
/// write row groups of at most a million rows or 128 MiB.
const CHUNK_BYTES_MAX: i64 = 256 << 20;

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

fn walk(dir: &Path, out: &mut Vec<PathBuf>, unfinished: &mut Vec<PathBuf>) -> Result<()> {
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

/// The metadata a file's capture end row holds (see
/// [`schema::CAPTURE_KIND`]), for a file without the footer's.
fn in_band_metadata(path: &Path) -> Result<Option<String>> {
    let file = files::open_regular(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: parquet::errors::ParquetError| Error::bad_input(path, e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(bad)?;
    let parquet = builder.parquet_schema();
    let Some(indices) = CAPTURE_COLUMNS
        .iter()
        .map(|n| parquet.columns().iter().position(|c| c.name() == *n))
        .collect::<Option<Vec<usize>>>()
    else {
        return Ok(None);
    };
    let mask = ProjectionMask::leaves(parquet, indices);
    let batches = builder.with_projection(mask).build().map_err(bad)?;
    let mut ends =
        capture_ends(batches.map(|b| b.map_err(|e| Error::bad_input(path, e.to_string()))))?;
    ends.dedup();
    match ends.len() {
        0 | 1 => Ok(ends.pop()),
        n => Err(Error::bad_input(
            path,
            format!(
                "no tcpcong footer, and the rows of {n} captures (files merged by a rewrite): tcpcong reads one capture per file; write one file per capture (GROUP BY the capture rows' metadata) or keep the footer"
            ),
        )),
    }
}

/// The columns a capture row is told by.
const CAPTURE_COLUMNS: [&str; 3] = ["kind", "new_state", "capture"];

/// The metadata objects of the capture end rows among `batches`, in row
/// order; none if the rows have no capture columns.
fn capture_ends(batches: impl Iterator<Item = Result<RecordBatch>>) -> Result<Vec<String>> {
    let mut ends = Vec::new();
    for batch in batches {
        let batch = batch?;
        let text = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| arrow_cast::cast(c, &DataType::Utf8).ok())
        };
        let [Some(kind), Some(state), Some(meta)] = CAPTURE_COLUMNS.map(text) else {
            return Ok(Vec::new());
        };
        let (kind, state, meta) = (
            kind.as_string::<i32>(),
            state.as_string::<i32>(),
            meta.as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            if kind.value(i) == schema::CAPTURE_KIND && state.value(i) == "end" {
                ends.push(meta.value(i).to_string());
            }
        }
    }
    Ok(ends)
}

/// The metadata object a footer or capture row holds, checked.
fn metadata_of(path: &Path, kv: &str) -> Result<Metadata> {
    let version = serde_json::from_str::<serde_json::Value>(kv)
        .ok()
        .and_then(|v| v.get("schema_version").and_then(|s| s.as_u64()));
    match version {
        Some(v) if v > u64::from(SCHEMA_VERSION) => Err(Error::bad_input(
            path,
            format!(
                "written with event schema version {v}; this tcpcong reads version {SCHEMA_VERSION}: upgrade tcpcong"
            ),
        )),
        None => Err(Error::bad_input(path, "tcpcong metadata has no schema_version")),
        _ => serde_json::from_str(kv)
            .map_err(|e| Error::bad_input(path, format!("unreadable tcpcong metadata: {e}"))),
    }
}

/// An opened recording: its metadata, checked, and where its rows come
/// from.
pub struct Recording {
    /// The file, or the name its rows were handed over with.
    pub path: PathBuf,
    pub meta: Metadata,
    source: Source,
}

/// A recording's rows: in its file, or Arrow batches in memory, in the
/// file's order (the Python package's tables).
enum Source {
    File(ParquetRecordBatchReaderBuilder<File>),
    Batches(Vec<RecordBatch>),
}

impl Recording {
    pub fn open(path: &Path) -> Result<Recording> {
        let file = files::open_regular(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::bad_input(path, "empty file (not a recording)"));
        }
        let footer = |e: parquet::errors::ParquetError| {
            Error::bad_input(path, footer_problem(path, &e.to_string()))
        };
        let plain = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(footer)?;
        check_chunk_sizes(path, plain.metadata())?;
        let hinted = ArrowReaderOptions::new().with_schema(dictionary_hint(plain.schema()));
        let arrow_meta =
            ArrowReaderMetadata::try_new(Arc::clone(plain.metadata()), hinted).map_err(footer)?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, arrow_meta);
        let footer_kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == METADATA_KEY))
            .and_then(|k| k.value.clone());
        // A file another engine rewrote has lost the footer, not the rows.
        let kv = match footer_kv {
            Some(kv) => Some(kv),
            None => in_band_metadata(path)?,
        };
        let kv = kv
            .ok_or_else(|| {
                let has_columns = NEEDED
                    .iter()
                    .all(|n| builder.schema().field_with_name(n).is_ok());
                Error::bad_input(
                    path,
                    if has_columns {
                        "tcpcong's columns but not its metadata (nor the capture rows newer recordings also hold it in), which holds the capture's span, clock and losses (DuckDB's COPY and Spark drop it): filter with tcpcong's own selection (time span, addresses, ports, flow), or write the file with its schema metadata (pyarrow keeps it; DuckDB: COPY ... (KV_METADATA {tcpcong: '...'}))"
                    } else {
                        "a Parquet file but not a tcpcong recording (no tcpcong metadata)"
                    },
                )
            })?;
        let meta = metadata_of(path, &kv)?;
        check_columns(path, builder.schema())?;
        Ok(Recording {
            path: path.to_path_buf(),
            meta,
            source: Source::File(builder),
        })
    }

    /// The rows of one recording file, handed over as Arrow batches in the
    /// file's order: its metadata is its capture end row's.
    pub fn from_batches(path: PathBuf, batches: Vec<RecordBatch>) -> Result<Recording> {
        let Some(first) = batches.first() else {
            return Err(Error::bad_input(&path, "no rows"));
        };
        check_columns(&path, &first.schema())?;
        let mut ends = capture_ends(batches.iter().cloned().map(Ok))?;
        let given = ends.len();
        ends.dedup();
        if ends.len() == 1 && given > 1 {
            return Err(Error::bad_input(
                &path,
                format!("this file's rows are given {given} times (inputs that overlap?): pass each file's rows once"),
            ));
        }
        let kv = match ends.len() {
            1 => ends.remove(0),
            0 => return Err(Error::bad_input(
                &path,
                "no capture end row (kind 'capture', new_state 'end', in the column 'capture'): pass every row and column of whole recordings (older recordings hold their capture's facts only in the file's footer: pass their paths instead)",
            )),
            n => return Err(Error::bad_input(
                &path,
                format!("the rows of {n} captures: pass each row's file name in a filename column (DuckDB: read_parquet(..., filename = true); Spark: _metadata.file_path AS filename)"),
            )),
        };
        Ok(Recording {
            meta: metadata_of(&path, &kv)?,
            path,
            source: Source::Batches(batches),
        })
    }

    fn rows(self, columns: Columns, extra: &[&str]) -> Result<Batches> {
        let builder = match self.source {
            Source::File(builder) => builder,
            // Only schema v1's columns: what else the rows carry
            // (`filename`, an engine's own) is not ours to check.
            Source::Batches(b) => {
                let ours: Vec<&str> = schema::columns().into_iter().map(|(n, _)| n).collect();
                return Ok(Box::new(b.into_iter().map(move |batch| {
                    let kept: Vec<usize> = ours
                        .iter()
                        .filter_map(|n| batch.schema().index_of(n).ok())
                        .collect();
                    batch.project(&kept)
                })));
            }
        };
        let schema = builder.parquet_schema();
        let mut wanted: Vec<&str> = match columns {
            Columns::Analysis => NEEDED.iter().chain(&OWNER).copied().collect(),
            Columns::All => schema::columns().into_iter().map(|(n, _)| n).collect(),
        };
        wanted.extend(extra);
        let indices: Vec<usize> = wanted
            .iter()
            .filter_map(|n| schema.columns().iter().position(|c| c.name() == *n))
            .collect();
        let mask = ProjectionMask::leaves(schema, indices);
        let path = self.path;
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::bad_input(&path, e.to_string()))?;
        Ok(Box::new(reader))
    }
}

/// A recording's batches as its reader hands them out.
type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>>;

/// The file's Arrow schema with the core string columns read as
/// dictionaries: the writer dictionary-encodes them, so the decoder hands
/// out each distinct value once per batch instead of copying every row's
/// string, and states are parsed per distinct value. Columns other tools
/// wrote in other layouts keep theirs (see [`conform`]).
fn dictionary_hint(schema: &arrow_schema::SchemaRef) -> arrow_schema::SchemaRef {
    let fields: Vec<arrow_schema::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 if schema::CORE.contains(&f.name().as_str()) => {
                let dict =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                Arc::new(f.as_ref().clone().with_data_type(dict))
            }
            _ => Arc::clone(f),
        })
        .collect();
    Arc::new(arrow_schema::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// Refuses a file with a column chunk that would decompress to more than
/// [`CHUNK_BYTES_MAX`]: a few KiB of zstd can hold hundreds of MiB of one
/// repeated byte, and a chunk is decoded whole page by page.
fn check_chunk_sizes(path: &Path, meta: &parquet::file::metadata::ParquetMetaData) -> Result<()> {
    for rg in meta.row_groups() {
        for c in rg.columns() {
            if c.uncompressed_size() > CHUNK_BYTES_MAX {
                return Err(Error::bad_input(
                    path,
                    format!(
                        "column {} holds {} MiB in one row group once decompressed, more than the {} MiB a recording's column may (tcpcong's own hold a few): refused, to keep memory bounded",
                        c.column_path(),
                        c.uncompressed_size() >> 20,
                        CHUNK_BYTES_MAX >> 20
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Why a file has no readable footer, in the words a user needs.
fn footer_problem(path: &Path, detail: &str) -> String {
    let mut magic = [0u8; 4];
    let starts_right = files::open_regular(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .map(|_| &magic == b"PAR1")
        .unwrap_or(false);
    if starts_right {
        format!(
            "truncated recording: no Parquet footer ({detail}); a capture killed before it finished leaves such a file"
        )
    } else {
        "not a Parquet file".to_string()
    }
}

/// Whether a column written as `found` holds what schema v1 keeps as
/// `want`: the same kind of value in any layout other tools write (large,
/// view and dictionary strings; any integer width, checked per value).
fn compatible(found: &DataType, want: &DataType) -> bool {
    let string = |t: &DataType| match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => matches!(
            **v,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        _ => false,
    };
    match want {
        DataType::Utf8 => string(found),
        DataType::Timestamp(..) => matches!(found, DataType::Timestamp(..)),
        // Spark writes unsigned 64-bit integers back as decimal(20,0).
        w if w.is_integer() => found.is_integer() || matches!(found, DataType::Decimal128(_, 0)),
        w => found == w,
    }
}

/// A batch with every column in its schema v1 type: other tools' layouts
/// are converted, and a value that does not fit (a negative port, say) is
/// an input error.
fn conform(path: &Path, batch: RecordBatch) -> Result<RecordBatch> {
    let want: HashMap<&str, DataType> = schema::columns().into_iter().collect();
    let needs = |f: &arrow_schema::Field| {
        want.get(f.name().as_str())
            .is_some_and(|w| !same_layout(f.name(), f.data_type(), w))
    };
    if !batch.schema().fields().iter().any(|f| needs(f)) {
        return Ok(batch);
    }
    let strict = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match want.get(f.name().as_str()) {
            Some(w) if !same_layout(f.name(), f.data_type(), w) => {
                let cast = arrow_cast::cast_with_options(c, w, &strict)
                    .map_err(|e| Error::bad_input(path, format!("column {}: {e}", f.name())))?;
                fields.push(arrow_schema::Field::new(
                    f.name(),
                    w.clone(),
                    f.is_nullable(),
                ));
                columns.push(cast);
            }
            _ => {
                fields.push(f.as_ref().clone());
                columns.push(Arc::clone(c));
            }
        }
    }
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
        .map_err(|e| Error::bad_input(path, e.to_string()))
}

/// Whether a column needs no conversion: its schema v1 type, or a core
/// column's strings as the dictionary the reader asks the decoder for
/// (the detail columns' decoders take plain strings only).
fn same_layout(name: &str, found: &DataType, want: &DataType) -> bool {
    match (found, want) {
        (DataType::Dictionary(_, v), DataType::Utf8) => {
            **v == DataType::Utf8 && schema::CORE.contains(&name)
        }
        _ => found == want,
    }
}

/// Every column analysis reads must be there, and every schema v1 column
/// that is there must hold its schema v1 kind of value.
fn check_columns(path: &Path, schema: &arrow_schema::Schema) -> Result<()> {
    for (name, want) in schema::columns() {
        match schema.field_with_name(name) {
            Ok(f) if compatible(f.data_type(), &want) => {}
            Ok(f) => {
                return Err(Error::bad_input(
                    path,
                    format!("column {name} has type {}, expected {want}", f.data_type()),
                ))
            }
            Err(_) if NEEDED.contains(&name) => {
                return Err(Error::bad_input(
                    path,
                    format!("column {name} is missing: not a tcpcong event file"),
                ))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Which columns to decode: analysis needs ten, `events` shows them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    Analysis,
    All,
}

/// One event placed on the dataset's timeline. With [`Columns::Analysis`]
/// the columns analysis does not read are left at their defaults.
#[derive(Debug, Clone)]
pub struct Row {
    pub t_ns: u64,
    pub key: FlowKey,
    pub ev: Event,
}

/// What a scan hands out: rows, and before each run of files the capture
/// span their flows are timed in.
pub enum Item<'a> {
    Span(u32, Span),
    Row(&'a Row),
}

/// Which rows to keep. Port filters select flows, not single rows: a
/// socket's local port reads 0 before it is bound (`syn_sent`) and after
/// the kernel released it (`close`), and those rows belong to the flow.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    localport: Option<PortRange>,
    remoteport: Option<PortRange>,
    flow: Option<u64>,
    family: Option<u8>,
    netns: Option<u32>,
    cgroup: Option<CgroupSel>,
    /// Per flow, whether its ports matched, once seen with a local port.
    matched: std::cell::RefCell<FxHashMap<u64, bool>>,
}

impl RowFilter {
    pub fn new(
        localport: Option<PortRange>,
        remoteport: Option<PortRange>,
        flow: Option<u64>,
    ) -> RowFilter {
        RowFilter {
            localport,
            remoteport,
            flow,
            ..Default::default()
        }
    }

    /// Also only flows of this family, network namespace and cgroup.
    pub fn socket(
        mut self,
        family: Option<u8>,
        netns: Option<u32>,
        cgroup: Option<CgroupSel>,
    ) -> RowFilter {
        self.family = family;
        self.netns = netns;
        self.cgroup = cgroup;
        self
    }

    /// The columns beyond analysis's that the filter reads.
    fn columns(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.netns.is_some() {
            c.push("netns");
        }
        if self.cgroup.is_some() {
            c.push("cgroup");
        }
        c
    }

    /// `paths`: the cgroup paths the row's file names.
    fn keeps_socket(&self, d: &Detail, paths: &BTreeMap<u64, String>) -> bool {
        self.netns.is_none_or(|n| n == d.netns)
            && self.cgroup.as_ref().is_none_or(|c| match c {
                CgroupSel::Id(id) => *id == d.cgroup,
                CgroupSel::Path { path, .. } if !paths.is_empty() => {
                    paths.get(&d.cgroup) == Some(path)
                }
                CgroupSel::Path { local_id, .. } => *local_id == Some(d.cgroup),
            })
    }

    fn keeps(&self, flow: u64, sport: u16, dport: u16) -> bool {
        if self.flow.is_some_and(|f| f != flow) {
            return false;
        }
        if self.localport.is_none() && self.remoteport.is_none() {
            return true;
        }
        let mut matched = self.matched.borrow_mut();
        if sport == 0 {
            return matched.get(&flow).copied().unwrap_or(false);
        }
        let ok = self.localport.is_none_or(|p| p.contains(sport))
            && self.remoteport.is_none_or(|p| p.contains(dport));
        matched.insert(flow, ok);
        ok
    }
}

struct Input {
    rec: Recording,
    boot: u32,
    clock: Clock,
    start_ns: u64,
    end_ns: u64,
}

/// Many recordings as one dataset on one timeline: per boot one clock
/// offset (its first file's), so that files of one boot keep exact ktime
/// order and durations.
pub struct Dataset {
    inputs: Vec<Input>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub lost_events: u64,
    /// Transitions the recorders saw arrive without an event (`gaps`).
    pub gaps: u64,
    /// Every file recorded lifecycle events.
    pub lifecycle: bool,
}

impl Dataset {
    pub fn open(paths: &[PathBuf]) -> Result<Dataset> {
        let recordings = paths
            .iter()
            .map(|p| Recording::open(p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Dataset::of_recordings(recordings))
    }

    /// Rows handed over in memory (Arrow batches, every column of whole
    /// recording files) as a dataset. A `filename` column tells their
    /// files apart (DuckDB's `filename = true`, Spark's
    /// `_metadata.file_path`); without it the rows are one file's. Each
    /// file's rows are taken in the order given, or by a `file_row_number`
    /// column (DuckDB's, Spark's `_metadata.row_index`) where there is one,
    /// which restores a file's order after an engine shuffled its rows.
    pub fn from_batches(batches: Vec<RecordBatch>) -> Result<Dataset> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if batches.is_empty() {
            return Err(Error::bad_input(
                Path::new("the rows given"),
                "no rows: pass the rows of whole recording files",
            ));
        }
        let recordings = by_file(batches)?
            .into_iter()
            .map(|(path, rows)| Recording::from_batches(path, rows))
            .collect::<Result<Vec<_>>>()?;
        Ok(Dataset::of_recordings(recordings))
    }

    fn of_recordings(recordings: Vec<Recording>) -> Dataset {
        let mut boots: HashMap<String, (u32, i64)> = HashMap::new();
        let mut inputs = Vec::new();
        for rec in recordings {
            let n = boots.len() as u32;
            let &mut (boot, offset_ns) = boots
                .entry(rec.meta.boot_id.clone())
                .or_insert((n, rec.meta.clock_offset_ns));
            let clock = Clock::new(offset_ns);
            inputs.push(Input {
                start_ns: clock.wall(rec.meta.start_ktime_ns),
                end_ns: clock.wall(rec.meta.end_ktime_ns),
                rec,
                boot,
                clock,
            });
        }
        inputs.sort_by_key(|i| (i.boot, i.start_ns));
        Dataset::of(inputs)
    }

    /// Inputs sorted by boot and start, with what they add up to.
    fn of(inputs: Vec<Input>) -> Dataset {
        Dataset {
            start_ns: inputs.iter().map(|i| i.start_ns).min().unwrap_or(0),
            end_ns: inputs.iter().map(|i| i.end_ns).max().unwrap_or(0),
            lost_events: inputs.iter().map(|i| i.rec.meta.lost_events).sum(),
            gaps: inputs.iter().map(|i| i.rec.meta.gaps).sum(),
            lifecycle: inputs.iter().all(|i| i.rec.meta.lifecycle),
            inputs,
        }
    }

    /// The dataset as one dataset per boot (each keeping the boot's index):
    /// boots share no flows and no timeline, so they can be scanned apart.
    pub fn by_boot(self) -> Vec<Dataset> {
        let mut parts: Vec<Vec<Input>> = Vec::new();
        for i in self.inputs {
            match parts.last_mut() {
                // Inputs are sorted by boot.
                Some(p) if p[0].boot == i.boot => p.push(i),
                _ => parts.push(vec![i]),
            }
        }
        parts.into_iter().map(Dataset::of).collect()
    }

    /// Per boot index (the `boot` of the flow keys a scan hands out): the
    /// host and boot id, as its first file names them.
    pub fn boots(&self) -> Vec<Boot> {
        let mut out: Vec<Boot> = Vec::new();
        for i in &self.inputs {
            let b = i.boot as usize;
            if out.len() <= b {
                out.resize(b + 1, Default::default());
            }
            let m = &i.rec.meta;
            if out[b].boot_id.is_empty() {
                out[b].host = m.hostname.clone();
                out[b].boot_id = m.boot_id.clone();
            }
            out[b]
                .cgroup_paths
                .extend(m.cgroup_paths.iter().map(|(k, v)| (*k, v.clone())));
        }
        out
    }

    /// Each recording and its metadata, by boot and start.
    pub fn recordings(&self) -> impl Iterator<Item = (&Path, &Metadata)> {
        self.inputs
            .iter()
            .map(|i| (i.rec.path.as_path(), &i.rec.meta))
    }

    /// Hands out every kept row, in time order within each boot. A sorted
    /// file that overlaps no other streams; overlapping or unsorted files
    /// are merged in memory (stable: ties keep file order), and an event
    /// that two overlapping captures both recorded is handed out once.
    /// Returns how many such duplicates were dropped.
    pub fn scan(
        self,
        filter: &RowFilter,
        columns: Columns,
        on: &mut dyn FnMut(Item<'_>) -> Result<()>,
    ) -> Result<u64> {
        let mut duplicates = 0;
        // A capture is a run of files where each starts no later than the
        // files before it end: overlapping (concurrent recorders) or
        // touching (one recorder's rotation). Touching files stream one
        // after the other; only overlapping ones need merging.
        for capture in runs(self.inputs, |start, end| start <= end) {
            let span = Span {
                start_ns: capture
                    .iter()
                    .map(|i| i.start_ns)
                    .min()
                    .unwrap_or(self.start_ns),
                end_ns: capture
                    .iter()
                    .map(|i| i.end_ns)
                    .max()
                    .unwrap_or(self.end_ns),
                lifecycle: capture.iter().all(|i| i.rec.meta.lifecycle),
            };
            if let Some(first) = capture.first() {
                on(Item::Span(first.boot, span))?;
            }
            for mut group in runs(capture, |start, end| start < end) {
                if group.len() == 1 && group[0].rec.meta.sorted {
                    let i = group.remove(0);
                    scan_file(i, filter, columns, &mut |r| on(Item::Row(r)))?;
                    continue;
                }
                let mut rows = Vec::new();
                for (file, i) in group.into_iter().enumerate() {
                    let path = i.rec.path.clone();
                    scan_file(i, filter, columns, &mut |r| {
                        if rows.len() >= MERGE_ROWS_MAX {
                            return Err(Error::bad_input(&path, format!(
                                "its rows must be put in time order in memory (the file says it is not sorted, or another capture overlaps it), and more than {MERGE_ROWS_MAX} rows do not fit the budget: select fewer (a time span or a filter) or sort the file by ktime_ns first"
                            )));
                        }
                        rows.push((file, r.clone()));
                        Ok(())
                    })?;
                }
                rows.sort_by_key(|(_, r)| r.t_ns);
                let mut seen = Seen::default();
                for (file, r) in rows {
                    if seen.duplicate(file, &r) {
                        duplicates += 1;
                    } else {
                        on(Item::Row(&r))?;
                    }
                }
            }
        }
        Ok(duplicates)
    }
}

/// What names the rows' file, and their place in it (see
/// [`Dataset::from_batches`]).
const FILENAME: &str = "filename";
const FILE_ROW_NUMBER: &str = "file_row_number";

/// Rows handed over in memory, as (file name, its rows in file order).
/// Files are ordered by path, as [`discover`] orders them, so that boots
/// are numbered alike either way.
fn by_file(batches: Vec<RecordBatch>) -> Result<Vec<(PathBuf, Vec<RecordBatch>)>> {
    let given = Path::new("the rows given");
    let bad = |e: arrow_schema::ArrowError| Error::bad_input(given, e.to_string());
    let mut files: BTreeMap<PathBuf, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        let Some(names) = b.column_by_name(FILENAME) else {
            files.entry(given.to_path_buf()).or_default().push(b);
            continue;
        };
        let names = arrow_cast::cast(names, &DataType::Utf8).map_err(bad)?;
        let names = names.as_string::<i32>();
        let mut rows: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for i in 0..b.num_rows() {
            rows.entry(names.value(i)).or_default().push(i as u32);
        }
        for (name, rows) in rows {
            let part =
                arrow_select::take::take_record_batch(&b, &arrow_array::UInt32Array::from(rows))
                    .map_err(bad)?;
            files.entry(PathBuf::from(name)).or_default().push(part);
        }
    }
    files
        .into_iter()
        .map(|(name, rows)| {
            let Some(first) = rows.first() else {
                return Ok((name, rows));
            };
            if first.column_by_name(FILE_ROW_NUMBER).is_none() {
                return Ok((name, rows));
            }
            let all = arrow_select::concat::concat_batches(&first.schema(), &rows).map_err(bad)?;
            let place = all.column_by_name(FILE_ROW_NUMBER).map(Arc::clone);
            let order = place
                .map(|p| arrow_ord::sort::sort_to_indices(&p, None, None))
                .transpose()
                .map_err(bad)?;
            let sorted = match order {
                Some(o) => arrow_select::take::take_record_batch(&all, &o).map_err(bad)?,
                None => all,
            };
            Ok((name, vec![sorted]))
        })
        .collect()
}

/// Two recorders attached at once stamp the same kernel call each with its
/// own clock read, microseconds apart: events of one flow with the same
/// change, from different files, this close together are one event. (One
/// flow cannot make the same change twice this fast: the change in between
/// would be closer still.)
const DUPLICATE_WITHIN_NS: u64 = 1_000_000;
/// Recent events kept per flow to match duplicates against: enough for the
/// few a flow can make within the window above.
const DUPLICATE_MEMORY: usize = 4;

/// The latest events handed out per flow of an overlapping group.
#[derive(Default)]
struct Seen {
    recent: FxHashMap<FlowKey, std::collections::VecDeque<(usize, u64, Change)>>,
}

impl Seen {
    /// Whether `r` (from `file`) repeats an event another file gave;
    /// remembers it if not.
    fn duplicate(&mut self, file: usize, r: &Row) -> bool {
        // Each recorder's snapshots are its own observations, never a
        // repeat of an event.
        if matches!(r.ev.change, Change::Snapshot { .. }) {
            return false;
        }
        let recent = self.recent.entry(r.key).or_default();
        let dup = recent.iter().any(|&(f, t, change)| {
            f != file && change == r.ev.change && r.t_ns.saturating_sub(t) <= DUPLICATE_WITHIN_NS
        });
        if !dup {
            if recent.len() == DUPLICATE_MEMORY {
                recent.pop_front();
            }
            recent.push_back((file, r.t_ns, r.ev.change));
        }
        dup
    }
}

/// Splits inputs (sorted by boot and start) into runs of files of one
/// boot: a file joins the run when `joins(its start, the run's end)`.
fn runs(inputs: Vec<Input>, joins: impl Fn(u64, u64) -> bool) -> Vec<Vec<Input>> {
    let mut groups: Vec<Vec<Input>> = Vec::new();
    let mut group_end = 0u64;
    for i in inputs {
        match groups.last_mut() {
            Some(g)
                if g.last().is_some_and(|l| l.boot == i.boot) && joins(i.start_ns, group_end) =>
            {
                group_end = group_end.max(i.end_ns);
                g.push(i);
            }
            _ => {
                group_end = i.end_ns;
                groups.push(vec![i]);
            }
        }
    }
    groups
}

fn scan_file(
    i: Input,
    filter: &RowFilter,
    columns: Columns,
    f: &mut dyn FnMut(&Row) -> Result<()>,
) -> Result<()> {
    let path = i.rec.path.clone();
    let claims_sorted = i.rec.meta.sorted;
    let in_memory = matches!(i.rec.source, Source::Batches(_));
    let end_ktime = i.rec.meta.end_ktime_ns;
    let mut last = 0u64;
    let mut in_order = |r: &Row| {
        // The engine relies on what the metadata promises: rows in time
        // order when it says sorted, and none after the capture's end (the
        // recorder extends the end to its last event). Hold files to it.
        if claims_sorted && r.t_ns < last {
            return Err(Error::bad_input(
                &path,
                if in_memory {
                    "rows are not in their file's order: pass them in the order they were read, or with each row's place in its file as a file_row_number column"
                } else {
                    "rows are not in time order although the file's metadata says they are"
                },
            ));
        }
        if r.ev.ktime_ns > end_ktime {
            return Err(Error::bad_input(
                &path,
                format!(
                    "a row at ktime {} is after the recording's end ({end_ktime}) in its metadata",
                    r.ev.ktime_ns
                ),
            ));
        }
        last = r.t_ns;
        f(r)
    };
    let cgroup_paths = i.rec.meta.cgroup_paths.clone();
    let mut batches = i.rec.rows(columns, &filter.columns())?;
    loop {
        // The decoder panics on some malformed pages: an input error.
        let next = crate::error::guarded(|| batches.next())
            .map_err(|why| Error::bad_input(&path, format!("malformed Parquet data ({why})")))?;
        let Some(batch) = next else {
            break;
        };
        let batch = batch.map_err(|e| Error::bad_input(&path, format!("reading rows: {e}")))?;
        let batch = conform(&path, batch)?;
        let file = (i.boot, i.clock, &cgroup_paths);
        decode_batch(&path, &batch, file, (filter, columns), &mut in_order)?;
    }
    Ok(())
}

fn column<'a>(b: &'a RecordBatch, path: &Path, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| Error::bad_input(path, format!("column {name} is missing")))
}

/// A string column as decoded: a dictionary (what [`dictionary_hint`] asks
/// for, with `Int32` keys), or what another tool's layout gave.
enum Strings<'a> {
    Plain(&'a StringArray),
    Dict(&'a [i32], &'a StringArray),
    OtherDict(Vec<usize>, &'a StringArray),
}

impl<'a> Strings<'a> {
    fn of(path: &Path, b: &'a RecordBatch, name: &str) -> Result<Strings<'a>> {
        let a = column(b, path, name)?;
        if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
            if let Some(values) = d.values().as_string_opt::<i32>() {
                return Ok(Strings::Dict(d.keys().values(), values));
            }
        }
        if let Some(d) = a.as_any_dictionary_opt() {
            if let Some(values) = d.values().as_string_opt::<i32>() {
                return Ok(Strings::OtherDict(d.normalized_keys(), values));
            }
        }
        a.as_string_opt::<i32>()
            .map(Strings::Plain)
            .ok_or_else(|| Error::bad_input(path, format!("column {name} does not hold strings")))
    }

    /// Every row's value through `f`, which sees each distinct value of a
    /// dictionary once; `None` if a key is outside its dictionary.
    fn map<T: Copy>(&self, f: impl Fn(&str) -> T) -> Option<Vec<T>> {
        let distinct = |values: &StringArray| -> Vec<T> {
            (0..values.len()).map(|i| f(values.value(i))).collect()
        };
        match self {
            Strings::Plain(a) => Some((0..a.len()).map(|i| f(a.value(i))).collect()),
            Strings::Dict(keys, values) => {
                let mapped = distinct(values);
                let at = |k: i32| usize::try_from(k).ok().and_then(|k| mapped.get(k).copied());
                keys.iter().map(|&k| at(k)).collect()
            }
            Strings::OtherDict(keys, values) => {
                let mapped = distinct(values);
                keys.iter().map(|&k| mapped.get(k).copied()).collect()
            }
        }
    }
}

/// A string column's values per row, through `f` (see [`Strings::map`]).
fn per_row<T: Copy>(
    path: &Path,
    b: &RecordBatch,
    name: &str,
    f: impl Fn(&str) -> T,
) -> Result<Vec<T>> {
    Strings::of(path, b, name)?.map(f).ok_or_else(|| {
        Error::bad_input(path, format!("column {name}: a key outside its dictionary"))
    })
}

/// The kinds of row that carry a flow's states.
#[derive(Clone, Copy)]
enum Kind {
    Ca,
    Tcp,
    Snapshot,
}

/// A state column's value read both ways; the row's kind says which holds.
#[derive(Clone, Copy)]
struct StateName {
    ca: Option<CaState>,
    tcp: TcpState,
}

impl StateName {
    fn parse(s: &str) -> StateName {
        StateName {
            ca: CaState::from_name(s),
            tcp: TcpState::from_name(s).unwrap_or(TcpState(0)),
        }
    }
}

fn decode_batch(
    path: &Path,
    b: &RecordBatch,
    (boot, clock, cgroup_paths): (u32, Clock, &BTreeMap<u64, String>),
    (filter, columns): (&RowFilter, Columns),
    f: &mut dyn FnMut(&Row) -> Result<()>,
) -> Result<()> {
    let c = |name| column(b, path, name);
    let ktime = c("ktime_ns")?.as_primitive::<UInt64Type>();
    let flow = c("flow")?.as_primitive::<UInt64Type>();
    let family = c("family")?.as_primitive::<UInt8Type>();
    let sport = c("sport")?.as_primitive::<UInt16Type>();
    let dport = c("dport")?.as_primitive::<UInt16Type>();

    // Parsing an address is the costly part of a row: once per distinct
    // address in a batch.
    let address = |s: &str| s.parse::<std::net::IpAddr>().ok();
    let saddrs = per_row(path, b, "saddr", address)?;
    let daddrs = per_row(path, b, "daddr", address)?;
    let kinds = per_row(path, b, "kind", |s| match s {
        "ca_state" => Some(Kind::Ca),
        "tcp_state" => Some(Kind::Tcp),
        "snapshot" => Some(Kind::Snapshot),
        // Kinds added by later schema versions are not ours to judge.
        _ => None,
    })?;
    let olds = per_row(path, b, "old_state", StateName::parse)?;
    let news = per_row(path, b, "new_state", StateName::parse)?;
    let detail = DetailArrays::of(b);
    let with_detail = b.num_columns() > NEEDED.len();
    let schema = b.schema();
    if let Some((f, _)) = schema
        .fields()
        .iter()
        .zip(b.columns())
        .find(|(_, a)| a.null_count() > 0)
    {
        return Err(Error::bad_input(
            path,
            format!(
                "null values in column {}, which has none in schema v1",
                f.name()
            ),
        ));
    }

    for i in 0..b.num_rows() {
        let (fl, sp, dp) = (flow.value(i), sport.value(i), dport.value(i));
        if !filter.keeps(fl, sp, dp) || filter.family.is_some_and(|f| f != family.value(i)) {
            continue;
        }
        let detail = match (with_detail, columns) {
            (false, _) => Detail::default(),
            (true, Columns::All) => detail.at(i),
            (true, Columns::Analysis) => detail.analysis_at(i),
        };
        if !filter.keeps_socket(&detail, cgroup_paths) {
            continue;
        }
        let bad = |what: &str| Error::bad_input(path, format!("row with {what}"));
        let ca = |s: StateName| s.ca.ok_or_else(|| bad("an unknown ca state"));
        let change = match kinds[i] {
            Some(Kind::Ca) => Change::Ca {
                old: ca(olds[i])?,
                new: ca(news[i])?,
            },
            Some(Kind::Tcp) => Change::Tcp {
                old: olds[i].tcp,
                new: news[i].tcp,
            },
            Some(Kind::Snapshot) => Change::Snapshot {
                tcp: olds[i].tcp,
                ca: ca(news[i])?,
            },
            None => continue,
        };
        let addr = FlowAddr {
            family: family.value(i),
            saddr: saddrs[i].ok_or_else(|| bad("a bad saddr"))?,
            sport: sp,
            daddr: daddrs[i].ok_or_else(|| bad("a bad daddr"))?,
            dport: dp,
            owner: Owner::of(&detail),
        };
        f(&Row {
            t_ns: clock.wall(ktime.value(i)),
            key: FlowKey { boot, cookie: fl },
            ev: Event {
                ktime_ns: ktime.value(i),
                flow: fl,
                addr,
                change,
                detail,
            },
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CaState, Detail};
    use std::net::{IpAddr, Ipv4Addr};

    fn row(cookie: u64, t_ns: u64, old: CaState, new: CaState) -> Row {
        let addr = FlowAddr {
            family: 4,
            saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sport: 1,
            daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dport: 2,
            owner: Default::default(),
        };
        Row {
            t_ns,
            key: FlowKey { boot: 0, cookie },
            ev: Event {
                ktime_ns: t_ns,
                flow: cookie,
                addr,
                change: Change::Ca { old, new },
                detail: Detail::default(),
            },
        }
    }

    #[test]
    fn an_event_two_captures_recorded_is_one_event() {
        use CaState::*;
        let mut seen = Seen::default();
        // File 0 and file 1 saw the same three changes, 2 us apart; file 0
        // alone saw a fourth. Merged by time, as the scan does.
        let merged = [
            (0, row(7, 1_000, Open, Disorder)),
            (1, row(7, 3_000, Open, Disorder)),
            (0, row(7, 50_000, Disorder, Open)),
            (0, row(7, 51_000, Open, Disorder)),
            (1, row(7, 52_000, Disorder, Open)),
            (1, row(7, 53_000, Open, Disorder)),
            (0, row(8, 53_000, Open, Disorder)),
            (0, row(7, 900_000_000, Disorder, Open)),
        ];
        let kept: Vec<(usize, u64)> = merged
            .iter()
            .filter(|(f, r)| !seen.duplicate(*f, r))
            .map(|(f, r)| (*f, r.t_ns))
            .collect();
        assert_eq!(
            kept,
            vec![
                (0, 1_000),
                (0, 50_000),
                (0, 51_000),
                (0, 53_000),
                (0, 900_000_000)
            ]
        );
        // The same change in one file is never a duplicate, nor far apart.
        let mut seen = Seen::default();
        assert!(!seen.duplicate(0, &row(7, 0, Open, Loss)));
        assert!(!seen.duplicate(0, &row(7, 10, Open, Loss)));
        assert!(!seen.duplicate(1, &row(7, 5_000_000, Open, Loss)));
    }

    #[test]
    fn port_filters_choose_flows_and_keep_their_portless_rows() {
        let f = RowFilter::new(Some(PortRange { lo: 5201, hi: 5201 }), None, None);
        assert!(!f.keeps(1, 0, 5201), "unknown flow without a port");
        assert!(f.keeps(1, 5201, 40000));
        assert!(
            f.keeps(1, 0, 40000),
            "its close, after the port was released"
        );
        assert!(!f.keeps(2, 40000, 5201));
        assert!(!f.keeps(2, 0, 5201));
        let by_flow = RowFilter::new(None, None, Some(2));
        assert!(by_flow.keeps(2, 0, 0) && !by_flow.keeps(1, 5201, 1));
    }
}
