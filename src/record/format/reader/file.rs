//! One recording opened: its footer (or its capture rows') metadata
//! checked, its column chunks' sizes bounded, and its batches read with
//! the core strings as dictionaries.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;

use super::super::schema::{self, Metadata, METADATA_KEY, SCHEMA_VERSION};
use super::conform::{check_columns, NEEDED};
use super::decode::Columns;
use super::journal::Journal;
use super::pages::{self, Walk};
use crate::error::{Error, Result};
use crate::files;

/// What reports label a flow with besides its addresses (see [`crate::event::FlowAddr`]).
pub(super) const LABELS: [&str; 5] = ["pid", "comm", "cgroup", "netns", "cong_algo"];
pub(super) const BATCH_ROWS: usize = 65_536;
/// The most one column of one row group may take decompressed. tcpcong's
/// own take a few MiB per 2^20 rows; pyarrow, polars, DuckDB and Spark
/// write row groups of at most a million rows or 128 MiB.
pub(super) const CHUNK_BYTES_MAX: u64 = 256 << 20;

/// The metadata a file's capture end row holds (see
/// [`schema::CAPTURE_KIND`]), for a file without the footer's.
/// `file` is the one opened (and checked) as `path`.
pub(super) fn in_band_metadata(path: &Path, file: &File) -> Result<Option<String>> {
    let file = file.try_clone().map_err(|e| Error::io(path, e))?;
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
pub(super) const CAPTURE_COLUMNS: [&str; 3] = ["kind", "new_state", "capture"];

/// The metadata objects of the capture end rows among `batches`, in row
/// order; none if the rows have no capture columns.
pub(super) fn capture_ends(
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> Result<Vec<String>> {
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
pub(super) fn metadata_of(path: &Path, kv: &str) -> Result<Metadata> {
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
        _ => {
            let meta: Metadata = serde_json::from_str(kv)
                .map_err(|e| Error::bad_input(path, format!("unreadable tcpcong metadata: {e}")))?;
            check_times(path, &meta)?;
            Ok(meta)
        }
    }
}

/// A capture ends after it starts, between the epoch and 2262 (the
/// readers' nanosecond timestamps are signed 64-bit): times past that are
/// no recording's, and every sum of times downstream can rely on it.
pub(super) fn check_times(path: &Path, meta: &Metadata) -> Result<()> {
    let wall = |k: u64| i128::from(k) + i128::from(meta.clock_offset_ns);
    let fits = |k: u64| (0..=i128::from(i64::MAX)).contains(&wall(k));
    if meta.start_ktime_ns <= meta.end_ktime_ns
        && fits(meta.start_ktime_ns)
        && fits(meta.end_ktime_ns)
    {
        return Ok(());
    }
    Err(Error::bad_input(
        path,
        format!(
            "its capture times are out of range (kernel times {} to {}, clock offset {}): not a recording tcpcong wrote",
            meta.start_ktime_ns, meta.end_ktime_ns, meta.clock_offset_ns
        ),
    ))
}

/// An opened recording: its metadata, checked, and where its rows come
/// from.
pub struct Recording {
    /// The file, or the name its rows were handed over with.
    pub path: PathBuf,
    pub meta: Metadata,
    pub(super) source: Source,
}

/// A recording's rows: in its file, in a capture's unfinished file, or
/// Arrow batches in memory, in the file's order (the Python package's
/// tables).
pub(super) enum Source {
    File(ParquetRecordBatchReaderBuilder<File>),
    Journal(Journal),
    Batches(Vec<RecordBatch>),
}

impl Recording {
    pub fn open(path: &Path) -> Result<Recording> {
        // tcpcong never makes its unfinished files links.
        let open = if is_unfinished(path) {
            files::open_regular_nofollow
        } else {
            files::open_regular
        };
        let file = open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::Unreadable {
                path: path.to_path_buf(),
                // Its folder may be readable where the file is not.
                whose: std::fs::metadata(path).map_or(String::new(), |m| {
                    format!(
                        "it belongs to uid {}, and ",
                        std::os::unix::fs::MetadataExt::uid(&m)
                    )
                }),
            },
            _ => Error::io(path, e),
        })?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        // A capture's unfinished file: being written, or left by one that
        // was killed.
        if is_unfinished(path) {
            return Recording::unfinished(path, file);
        }
        if len == 0 {
            return Err(Error::bad_input(path, "empty file (not a recording)"));
        }
        let footer = |e: parquet::errors::ParquetError| {
            Error::bad_input(path, footer_problem(path, &e.to_string()))
        };
        let plain = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(footer)?;
        check_chunk_sizes(path, &file, plain.metadata())?;
        let hinted = ArrowReaderOptions::new().with_schema(dictionary_hint(plain.schema()));
        let arrow_meta =
            ArrowReaderMetadata::try_new(Arc::clone(plain.metadata()), hinted).map_err(footer)?;
        let again = file.try_clone().map_err(|e| Error::io(path, e))?;
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
            None => in_band_metadata(path, &again)?,
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
        // A file whose rows were filtered since (and written back with its
        // metadata) would give other numbers in silence. Its rows are its
        // events, snapshots and (since they were added) two capture rows.
        let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        if !rows_match(&meta, rows) {
            return Err(Error::bad_input(
                path,
                format!("{rows} rows where its metadata counts {} events and {} snapshots: rows were removed or added since it was recorded (as a filter does), which gives other numbers; analyze the recording as it was written", meta.events, meta.snapshots),
            ));
        }
        Ok(Recording {
            path: path.to_path_buf(),
            meta,
            source: Source::File(builder),
        })
    }

    /// A capture's unfinished file, read up to its last complete batch.
    fn unfinished(path: &Path, file: File) -> Result<Recording> {
        let mut magic = [0u8; 4];
        if std::os::unix::fs::FileExt::read_exact_at(&file, &mut magic, 0).is_ok()
            && &magic == b"PAR1"
        {
            return Err(Error::bad_input(path, super::discover::EARLIER));
        }
        let (journal, meta) = Journal::open(path, file)?;
        check_columns(path, journal.schema())?;
        Ok(Recording {
            path: path.to_path_buf(),
            meta,
            source: Source::Journal(journal),
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
        let meta = metadata_of(&path, &kv)?;
        // Rows of part of a file (a filter left them) give other numbers,
        // without a word: every row is its events, snapshots and the two
        // capture rows.
        let given: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if !rows_match(&meta, given as u64) {
            return Err(Error::bad_input(
                &path,
                format!("{given} rows where this recording holds {} events, {} snapshots and its capture rows (part of a file, as a filter leaves it, gives other numbers): pass every row of whole recordings", meta.events, meta.snapshots),
            ));
        }
        Ok(Recording {
            meta,
            path,
            source: Source::Batches(batches),
        })
    }

    pub(super) fn rows(self, columns: Columns, extra: &[&str]) -> Result<Batches> {
        let mut wanted: Vec<&str> = match columns {
            Columns::Analysis => NEEDED.iter().chain(&LABELS).copied().collect(),
            Columns::Episodes => NEEDED
                .iter()
                .chain(&LABELS)
                .chain(schema::EPISODE_COUNTERS)
                .copied()
                .collect(),
            Columns::All => schema::columns().into_iter().map(|(n, _)| n).collect(),
        };
        wanted.extend(extra);
        let builder = match self.source {
            Source::File(builder) => builder,
            Source::Journal(j) => return Ok(Box::new(j.into_batches(&wanted))),
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

/// Whether `rows` are what a recording's metadata counts: its events and
/// snapshots, and its two capture rows (files from before they were added,
/// and files made by hand, have none); false where the counts overflow (a
/// crafted file).
fn rows_match(meta: &Metadata, rows: u64) -> bool {
    meta.events
        .checked_add(meta.snapshots)
        .is_some_and(|counted| rows == counted || counted.checked_add(2) == Some(rows))
}

/// A recording's batches as its reader hands them out.
type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>>;

/// The file's Arrow schema with the core string columns read as
/// dictionaries: the writer dictionary-encodes them, so the decoder hands
/// out each distinct value once per batch instead of copying every row's
/// string, and states are parsed per distinct value. Columns other tools
/// wrote in other layouts keep theirs (see [`conform`]).
pub(super) fn dictionary_hint(schema: &arrow_schema::SchemaRef) -> arrow_schema::SchemaRef {
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
/// repeated byte, and a chunk is decoded whole page by page. The sizes are
/// the pages' own (see [`pages`]): the footer's totals are not what the
/// decoder allocates by.
pub(super) fn check_chunk_sizes(
    path: &Path,
    file: &File,
    meta: &parquet::file::metadata::ParquetMetaData,
) -> Result<()> {
    pages::check(file, meta, CHUNK_BYTES_MAX).map_err(|w| match w {
        Walk::TooLarge { column, bytes } => Error::bad_input(
            path,
            format!(
                "column {} holds more than {} MiB in one row group once decompressed, more than the {} MiB a recording's column may (tcpcong's own hold a few): refused, to keep memory bounded",
                meta.file_metadata().schema_descr().column(column).path(),
                bytes >> 20,
                CHUNK_BYTES_MAX >> 20
            ),
        ),
        Walk::Malformed => Error::bad_input(
            path,
            "a page header that no Parquet writer writes (the file is damaged or crafted)",
        ),
    })
}

/// Whether `path` is named as a capture's unfinished file is.
pub(super) fn is_unfinished(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".inprogress"))
}

/// Why a file has no readable footer, in the words a user needs: a file
/// that ends before its footer (a copy cut short, an older tcpcong's killed capture), or
/// one whose footer is there and does not decode (damaged since).
pub(super) fn footer_problem(path: &Path, detail: &str) -> String {
    use std::os::unix::fs::FileExt;
    let ends = |f: &std::fs::File| -> std::io::Result<([u8; 4], [u8; 4])> {
        let (mut first, mut last) = ([0u8; 4], [0u8; 4]);
        f.read_exact_at(&mut first, 0)?;
        let len = f.metadata()?.len();
        f.read_exact_at(&mut last, len.saturating_sub(4))?;
        Ok((first, last))
    };
    match files::open_regular(path).and_then(|f| ends(&f)) {
        Ok((first, last)) if &first == b"PAR1" && &last == b"PAR1" => {
            format!("damaged recording: its Parquet footer is there but does not decode ({detail})")
        }
        Ok((first, _)) if &first == b"PAR1" => format!(
            "truncated recording: no Parquet footer ({detail}): a copy cut short, or a file a tcpcong older than this one left when its capture was killed (captures now leave their unfinished file .NAME.inprogress instead)"
        ),
        Ok(_) => "not a Parquet file".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "not a Parquet file".to_string()
        }
        // The reader's own failure (out of file descriptors, say), not the
        // file's.
        Err(e) => format!("cannot be read: {e}"),
    }
}
