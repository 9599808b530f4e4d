//! Reading recordings back: finding them (files, folders, globs), checking
//! that each is a complete schema v1 file, and streaming the few columns the
//! engine needs, in time order per flow.
//!
//! Time order is what the engine relies on. Files this version writes are
//! sorted, so each streams in constant memory; files whose metadata says
//! otherwise, and recordings of one boot that overlap in time (two captures
//! running at once), are merged in memory, which is the one case where
//! memory grows with events.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt64Type, UInt8Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::analyze::engine::FlowKey;
use crate::error::{Error, Result};
use crate::event::{CaState, Change, FlowAddr, TcpState};
use crate::schema::{self, Metadata, METADATA_KEY, SCHEMA_VERSION};

/// The columns analysis reads; the rest of a recording is never decoded.
const NEEDED: [&str; 10] = [
    "ktime_ns",
    "kind",
    "flow",
    "family",
    "saddr",
    "daddr",
    "sport",
    "dport",
    "old_state",
    "new_state",
];
const BATCH_ROWS: usize = 65_536;

/// Expands the command line's inputs into recording files, sorted by path.
/// Hidden files (in-progress captures) are skipped inside folders.
pub fn discover(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if path.is_dir() {
            let before = files.len();
            walk(path, &mut files)?;
            if files.len() == before {
                return Err(Error::bad_input(
                    path,
                    "no recordings (*.parquet) in this folder",
                ));
            }
        } else if path.exists() {
            files.push(path.to_path_buf());
        } else if input.contains(['*', '?', '[']) {
            let matches = glob::glob(input)
                .map_err(|e| Error::Usage(format!("bad pattern '{input}': {e}")))?
                .filter_map(|m| m.ok())
                .filter(|p| p.is_file())
                .collect::<Vec<_>>();
            if matches.is_empty() {
                return Err(Error::bad_input(path, "no file matches this pattern"));
            }
            files.extend(matches);
        } else {
            return Err(Error::bad_input(path, "no such file or folder"));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// An opened recording: its metadata, checked, and a reader positioned at
/// its first row.
pub struct Recording {
    pub path: PathBuf,
    pub meta: Metadata,
    builder: ParquetRecordBatchReaderBuilder<File>,
}

impl Recording {
    pub fn open(path: &Path) -> Result<Recording> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::bad_input(path, "empty file (not a recording)"));
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::bad_input(path, footer_problem(path, &e.to_string())))?;
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == METADATA_KEY))
            .and_then(|k| k.value.clone())
            .ok_or_else(|| {
                Error::bad_input(
                    path,
                    "a Parquet file but not a tcpcong recording (no tcpcong metadata)",
                )
            })?;
        let version = serde_json::from_str::<serde_json::Value>(&kv)
            .ok()
            .and_then(|v| v.get("schema_version").and_then(|s| s.as_u64()));
        match version {
            Some(v) if v > u64::from(SCHEMA_VERSION) => {
                return Err(Error::bad_input(
                    path,
                    format!(
                        "written with event schema version {v}; this tcpcong reads version {SCHEMA_VERSION}: upgrade tcpcong"
                    ),
                ))
            }
            None => return Err(Error::bad_input(path, "tcpcong metadata has no schema_version")),
            _ => {}
        }
        let meta: Metadata = serde_json::from_str(&kv)
            .map_err(|e| Error::bad_input(path, format!("unreadable tcpcong metadata: {e}")))?;
        check_columns(path, builder.schema())?;
        Ok(Recording {
            path: path.to_path_buf(),
            meta,
            builder,
        })
    }

    /// Wall clock minus ktime that this file's rows use.
    fn rows(self) -> Result<ParquetRecordBatchReader> {
        let schema = self.builder.parquet_schema();
        let indices: Vec<usize> = NEEDED
            .iter()
            .filter_map(|n| schema.columns().iter().position(|c| c.name() == *n))
            .collect();
        let mask = ProjectionMask::leaves(schema, indices);
        let path = self.path;
        self.builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::bad_input(&path, e.to_string()))
    }
}

/// Why a file has no readable footer, in the words a user needs.
fn footer_problem(path: &Path, detail: &str) -> String {
    let mut magic = [0u8; 4];
    let starts_right = File::open(path)
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

/// Every column analysis reads must be there with its schema v1 type.
fn check_columns(path: &Path, schema: &arrow_schema::Schema) -> Result<()> {
    let expected: HashMap<&str, DataType> = schema::columns().into_iter().collect();
    for name in NEEDED {
        let want = &expected[name];
        match schema.field_with_name(name) {
            Ok(f) if f.data_type() == want => {}
            Ok(f) => {
                return Err(Error::bad_input(
                    path,
                    format!("column {name} has type {}, expected {want}", f.data_type()),
                ))
            }
            Err(_) => {
                return Err(Error::bad_input(
                    path,
                    format!("column {name} is missing: not a tcpcong event file"),
                ))
            }
        }
    }
    Ok(())
}

/// One event as analysis sees it.
#[derive(Debug, Clone)]
pub struct Row {
    pub t_ns: u64,
    pub key: FlowKey,
    pub change: Change,
    pub addr: FlowAddr,
}

/// Which rows to keep.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    pub localport: Option<crate::schema::PortRange>,
    pub remoteport: Option<crate::schema::PortRange>,
    pub flow: Option<u64>,
}

impl RowFilter {
    fn keeps(&self, flow: u64, sport: u16, dport: u16) -> bool {
        self.flow.is_none_or(|f| f == flow)
            && self.localport.is_none_or(|p| p.contains(sport))
            && self.remoteport.is_none_or(|p| p.contains(dport))
    }
}

/// Calls `f` for each kept row of `rec`, in file order. `boot` and
/// `offset_ns` place the file on the dataset's timeline.
pub fn for_each_row(
    rec: Recording,
    boot: u32,
    offset_ns: i64,
    filter: &RowFilter,
    f: &mut dyn FnMut(Row),
) -> Result<u64> {
    let path = rec.path.clone();
    let mut rows = 0u64;
    let mut addrs = HashMap::new();
    for batch in rec.rows()? {
        let batch = batch.map_err(|e| Error::bad_input(&path, format!("reading rows: {e}")))?;
        rows += decode_batch(&path, &batch, (boot, offset_ns), filter, &mut addrs, f)?;
    }
    Ok(rows)
}

fn decode_batch(
    path: &Path,
    b: &RecordBatch,
    (boot, offset_ns): (u32, i64),
    filter: &RowFilter,
    addrs: &mut HashMap<u64, FlowAddr>,
    f: &mut dyn FnMut(Row),
) -> Result<u64> {
    let col = |name: &str| {
        b.column_by_name(name)
            .ok_or_else(|| Error::bad_input(path, format!("column {name} is missing")))
    };
    let ktime = col("ktime_ns")?.as_primitive::<UInt64Type>();
    let kind = col("kind")?.as_string::<i32>();
    let flow = col("flow")?.as_primitive::<UInt64Type>();
    let family = col("family")?.as_primitive::<UInt8Type>();
    let saddr = col("saddr")?.as_string::<i32>();
    let daddr = col("daddr")?.as_string::<i32>();
    let sport = col("sport")?.as_primitive::<UInt16Type>();
    let dport = col("dport")?.as_primitive::<UInt16Type>();
    let old = col("old_state")?.as_string::<i32>();
    let new = col("new_state")?.as_string::<i32>();
    if [ktime.null_count(), flow.null_count(), kind.null_count()]
        .iter()
        .any(|&n| n > 0)
    {
        return Err(Error::bad_input(path, "null values in required columns"));
    }

    for i in 0..b.num_rows() {
        let (fl, sp, dp) = (flow.value(i), sport.value(i), dport.value(i));
        if !filter.keeps(fl, sp, dp) {
            continue;
        }
        let bad = |what: &str| Error::bad_input(path, format!("row with {what}"));
        let change = match kind.value(i) {
            "ca_state" => Change::Ca {
                old: CaState::from_name(old.value(i)).ok_or_else(|| bad("an unknown ca state"))?,
                new: CaState::from_name(new.value(i)).ok_or_else(|| bad("an unknown ca state"))?,
            },
            "tcp_state" => Change::Tcp {
                old: TcpState::from_name(old.value(i)).unwrap_or(TcpState(0)),
                new: TcpState::from_name(new.value(i)).unwrap_or(TcpState(0)),
            },
            // Kinds added by later schema versions are not ours to judge.
            _ => continue,
        };
        let t_ns = (ktime.value(i) as i64).saturating_add(offset_ns).max(0) as u64;
        // Parsing addresses is the costly part of a row: once per flow. A
        // socket's local port can change once (bound after `syn_sent`).
        let addr = match addrs.get(&fl) {
            Some(a) if a.sport == sp && a.dport == dp => a.clone(),
            _ => {
                let a = FlowAddr {
                    family: family.value(i),
                    saddr: saddr.value(i).parse().map_err(|_| bad("a bad saddr"))?,
                    sport: sp,
                    daddr: daddr.value(i).parse().map_err(|_| bad("a bad daddr"))?,
                    dport: dp,
                };
                addrs.insert(fl, a.clone());
                a
            }
        };
        f(Row {
            t_ns,
            key: FlowKey { boot, cookie: fl },
            change,
            addr,
        });
    }
    Ok(b.num_rows() as u64)
}
