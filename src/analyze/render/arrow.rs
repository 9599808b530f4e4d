//! The per-flow (per-window) table as Arrow batches, with the columns and
//! values of the JSON rows: what the Python package returns, and what
//! `analyze --format parquet -o FILE` writes, for loading into a warehouse
//! next to other hosts' tables.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, PrimitiveBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::{UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use super::columns::{Column, FlowLine, Kind, Value, Window, FLOW};
use super::flows::{rows, HostRow};
use super::printer::{chosen, ReportConfig};
use crate::analyze::engine::WindowReport;
use crate::event::Boot;

/// The columns of [`FLOW`], as the JSON rows name them.
pub fn schema() -> SchemaRef {
    schema_of(FLOW)
}

/// A list of columns as an Arrow schema, named as the JSON rows name them.
pub fn schema_of<G>(columns: &[Column<G>]) -> SchemaRef {
    let fields: Vec<Field> = columns
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
                Kind::U64 | Kind::OptU64 => DataType::UInt64,
                Kind::OptF64 => DataType::Float64,
            };
            Field::new(c.name, kind, matches!(c.kind, Kind::OptU64 | Kind::OptF64))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Rows of a list of columns, built into one batch.
pub struct Rows {
    schema: SchemaRef,
    builders: Vec<Builder>,
    pub rows: usize,
}

impl Rows {
    pub fn new<G>(columns: &[Column<G>]) -> Rows {
        Rows {
            schema: schema_of(columns),
            builders: columns.iter().map(|c| Builder::new(c.kind)).collect(),
            rows: 0,
        }
    }

    /// One row: a value per column, in their order.
    pub fn push<'a>(&mut self, values: impl Iterator<Item = Value<'a>>) -> Result<(), ArrowError> {
        for (b, v) in self.builders.iter_mut().zip(values) {
            b.append(v)?;
        }
        self.rows += 1;
        Ok(())
    }

    pub fn batch(self) -> Result<RecordBatch, ArrowError> {
        let columns = self.builders.into_iter().map(Builder::finish).collect();
        RecordBatch::try_new(self.schema, columns)
    }
}

/// How tables are written as Parquet: zstd.
fn parquet_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// Writes one batch as a Parquet file.
pub fn write_parquet<W: Write + Send>(out: W, batch: &RecordBatch) -> Result<(), ParquetError> {
    let mut w = ArrowWriter::try_new(out, batch.schema(), Some(parquet_props()))?;
    w.write(batch)?;
    w.close().map(|_| ())
}

/// A column being built, of its [`Kind`].
enum Builder {
    Time(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    U8(PrimitiveBuilder<UInt8Type>),
    U16(PrimitiveBuilder<UInt16Type>),
    U32(PrimitiveBuilder<UInt32Type>),
    U64(PrimitiveBuilder<UInt64Type>),
    OptU64(PrimitiveBuilder<UInt64Type>),
    OptF64(Float64Builder),
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
            Kind::OptU64 => Builder::OptU64(PrimitiveBuilder::new()),
            Kind::OptF64 => Builder::OptF64(Float64Builder::new()),
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
            (Builder::U64(b) | Builder::OptU64(b), Value::Uint(n)) => b.append_value(n),
            (Builder::OptU64(b), Value::Null) => b.append_null(),
            (Builder::OptF64(b), Value::Float(x)) => b.append_value(x),
            (Builder::OptF64(b), Value::Null) => b.append_null(),
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
            Builder::U64(mut b) | Builder::OptU64(mut b) => Arc::new(b.finish()),
            Builder::OptF64(mut b) => Arc::new(b.finish()),
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
        let mut out = Rows::new(FLOW);
        for HostRow { boot, row } in rows(w, self.cfg.all, &self.boots) {
            let line = FlowLine {
                window: &window,
                boot,
                row,
            };
            out.push(FLOW.iter().map(|c| (c.get)(&line)))?;
        }
        if out.rows == 0 {
            return Ok(None);
        }
        out.batch().map(Some)
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
        Ok(TableFile {
            writer: ArrowWriter::try_new(out, table.schema(), Some(parquet_props()))?,
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
