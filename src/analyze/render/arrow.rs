//! The per-flow (per-window) table as Arrow batches, with the columns and
//! values of the JSON rows: what the Python package returns, and what
//! `analyze --format parquet -o FILE` writes, for loading into a warehouse
//! next to other hosts' tables.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{PrimitiveBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::types::{UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use super::flows::{rows, Boot, Row};
use super::printer::{chosen, ReportConfig};
use crate::analyze::engine::WindowReport;

/// The columns, as the JSON rows name them.
pub fn schema() -> SchemaRef {
    // Microseconds, as recordings' `time`: what Spark reads by default.
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut f = vec![
        Field::new("window_start", time.clone(), false),
        Field::new("window_end", time, false),
        Field::new("host", DataType::Utf8, false),
        Field::new("boot_id", DataType::Utf8, false),
        Field::new("flow", DataType::UInt64, false),
        Field::new("family", DataType::UInt8, false),
        Field::new("saddr", DataType::Utf8, false),
        Field::new("sport", DataType::UInt16, false),
        Field::new("daddr", DataType::Utf8, false),
        Field::new("dport", DataType::UInt16, false),
        Field::new("pid", DataType::UInt32, false),
        Field::new("comm", DataType::Utf8, false),
        Field::new("cgroup", DataType::UInt64, false),
        Field::new("cgroup_path", DataType::Utf8, false),
    ];
    for name in [
        "open_ns",
        "disorder_ns",
        "cwr_ns",
        "recovery_ns",
        "loss_ns",
        "changes",
        "mismatches",
        "lost_events",
    ] {
        f.push(Field::new(name, DataType::UInt64, false));
    }
    Arc::new(Schema::new(f))
}

/// Makes each window's rows into a batch of the table.
pub struct Table {
    schema: SchemaRef,
    boots: Vec<Boot>,
    lost_events: u64,
    /// Which rows, in which order: `--all`, `--sort`, `--top`.
    cfg: ReportConfig,
}

impl Table {
    pub fn new(cfg: ReportConfig, boots: Vec<Boot>, lost_events: u64) -> Table {
        Table {
            schema: schema(),
            boots,
            lost_events,
            cfg,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The window's rows; `None` if it has none to show.
    pub fn batch(&self, w: &WindowReport) -> Result<Option<RecordBatch>, ArrowError> {
        let picked = chosen(w, &self.cfg);
        let w = picked.as_ref().unwrap_or(w);
        let (mut start, mut end) = (
            TimestampMicrosecondBuilder::new(),
            TimestampMicrosecondBuilder::new(),
        );
        let mut text: [StringBuilder; 6] = Default::default();
        let mut pid = PrimitiveBuilder::<UInt32Type>::new();
        let mut cgroup = PrimitiveBuilder::<UInt64Type>::new();
        let mut family = PrimitiveBuilder::<UInt8Type>::new();
        let mut ports: [PrimitiveBuilder<UInt16Type>; 2] = Default::default();
        let mut numbers: [PrimitiveBuilder<UInt64Type>; 9] = Default::default();
        let mut n = 0;
        for r in rows(w, self.cfg.all, &self.boots) {
            let Row { boot, row } = r;
            start.append_value((w.start_ns / 1_000) as i64);
            end.append_value((w.end_ns / 1_000) as i64);
            text[0].append_value(&boot.host);
            text[1].append_value(&boot.boot_id);
            text[2].append_value(row.addr.saddr.to_string());
            text[3].append_value(row.addr.daddr.to_string());
            let owner = &row.addr.owner;
            pid.append_value(owner.pid);
            text[4].append_value(owner.comm.as_str());
            cgroup.append_value(owner.cgroup);
            text[5].append_value(
                boot.cgroup_paths
                    .get(&owner.cgroup)
                    .map_or("", String::as_str),
            );
            family.append_value(row.addr.family);
            ports[0].append_value(row.addr.sport);
            ports[1].append_value(row.addr.dport);
            let values = [
                row.key.cookie,
                row.ns[0],
                row.ns[1],
                row.ns[2],
                row.ns[3],
                row.ns[4],
                row.changes,
                row.mismatches,
                self.lost_events,
            ];
            for (b, v) in numbers.iter_mut().zip(values) {
                b.append_value(v);
            }
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let [host, boot_id, saddr, daddr, comm, cgroup_path] =
            text.map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let [sport, dport] = ports.map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let [flow, rest @ ..] = numbers.map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let tz = |mut b: TimestampMicrosecondBuilder| {
            Arc::new(b.finish().with_timezone("UTC")) as ArrayRef
        };
        let mut columns = vec![
            tz(start),
            tz(end),
            host,
            boot_id,
            flow,
            Arc::new(family.finish()),
            saddr,
            sport,
            daddr,
            dport,
            Arc::new(pid.finish()),
            comm,
            Arc::new(cgroup.finish()),
            cgroup_path,
        ];
        columns.extend(rest);
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map(Some)
    }
}

/// Writes windows' rows as they come; `finish` completes the file.
pub struct TableFile<W: Write + Send> {
    writer: ArrowWriter<W>,
    table: Table,
    pub rows: u64,
}

impl<W: Write + Send> TableFile<W> {
    pub fn new(out: W, table: Table) -> Result<Self, ParquetError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        Ok(TableFile {
            writer: ArrowWriter::try_new(out, table.schema(), Some(props))?,
            table,
            rows: 0,
        })
    }

    pub fn window(&mut self, w: &WindowReport) -> Result<(), ParquetError> {
        let batch = self
            .table
            .batch(w)
            .map_err(|e| ParquetError::ArrowError(e.to_string()))?;
        match batch {
            Some(b) => {
                self.rows += b.num_rows() as u64;
                self.writer.write(&b)
            }
            None => Ok(()),
        }
    }

    pub fn finish(self) -> Result<(), ParquetError> {
        self.writer.close().map(|_| ())
    }
}
