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

use super::columns::{FlowLine, Kind, Value, Window, FLOW};
use super::flows::{rows, HostRow};
use super::printer::{chosen, ReportConfig};
use crate::analyze::engine::WindowReport;
use crate::event::Boot;

/// The columns of [`FLOW`], as the JSON rows name them.
pub fn schema() -> SchemaRef {
    let fields: Vec<Field> = FLOW
        .iter()
        .map(|c| {
            let kind = match c.kind {
                // Microseconds, as recordings' `time`: what Spark reads by
                // default.
                Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                Kind::Text => DataType::Utf8,
                Kind::U8 => DataType::UInt8,
                Kind::U16 => DataType::UInt16,
                Kind::U32 => DataType::UInt32,
                Kind::U64 => DataType::UInt64,
            };
            Field::new(c.name, kind, false)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A column being built, of its [`Kind`].
enum Builder {
    Time(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    U8(PrimitiveBuilder<UInt8Type>),
    U16(PrimitiveBuilder<UInt16Type>),
    U32(PrimitiveBuilder<UInt32Type>),
    U64(PrimitiveBuilder<UInt64Type>),
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        match kind {
            Kind::Time => Builder::Time(TimestampMicrosecondBuilder::new()),
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::U8 => Builder::U8(PrimitiveBuilder::new()),
            Kind::U16 => Builder::U16(PrimitiveBuilder::new()),
            Kind::U32 => Builder::U32(PrimitiveBuilder::new()),
            Kind::U64 => Builder::U64(PrimitiveBuilder::new()),
        }
    }

    /// Appends `v`; a value that does not fit the column is a broken
    /// promise of [`FLOW`]'s list.
    fn append(&mut self, v: Value<'_>) -> Result<(), ArrowError> {
        let narrow = |n: u64| ArrowError::ComputeError(format!("{n} does not fit its column"));
        match (self, v) {
            (Builder::Time(b), Value::Time(ns, _)) => {
                b.append_value(i64::try_from(ns / 1_000).map_err(|_| narrow(ns))?)
            }
            (Builder::Text(b), Value::Text(t)) => b.append_value(t),
            (Builder::U8(b), Value::Uint(n)) => {
                b.append_value(n.try_into().map_err(|_| narrow(n))?)
            }
            (Builder::U16(b), Value::Uint(n)) => {
                b.append_value(n.try_into().map_err(|_| narrow(n))?)
            }
            (Builder::U32(b), Value::Uint(n)) => {
                b.append_value(n.try_into().map_err(|_| narrow(n))?)
            }
            (Builder::U64(b), Value::Uint(n)) => b.append_value(n),
            (_, v) => {
                return Err(ArrowError::ComputeError(format!(
                    "{v:?} is not of its column's kind"
                )))
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Time(mut b) => Arc::new(b.finish().with_timezone("UTC")),
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::U8(mut b) => Arc::new(b.finish()),
            Builder::U16(mut b) => Arc::new(b.finish()),
            Builder::U32(mut b) => Arc::new(b.finish()),
            Builder::U64(mut b) => Arc::new(b.finish()),
        }
    }
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
        let window = Window::new(w.start_ns, w.end_ns, self.lost_events);
        let mut columns: Vec<Builder> = FLOW.iter().map(|c| Builder::new(c.kind)).collect();
        let mut n = 0;
        for HostRow { boot, row } in rows(w, self.cfg.all, &self.boots) {
            let line = FlowLine {
                window: &window,
                boot,
                row,
            };
            for (b, c) in columns.iter_mut().zip(FLOW) {
                b.append((c.get)(&line))?;
            }
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let columns = columns.into_iter().map(Builder::finish).collect();
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
