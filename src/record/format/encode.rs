//! A recording's row groups, column by column: the dictionary columns
//! (strings and numbers) through our own chunks ([`StringChunk`],
//! [`NumberChunk`]), the others (delta and plain) through arrow-rs' column
//! writers, with the properties the file was opened with.
//! Rows come in batches; a row group is written whenever one fills, and
//! the last, partial one at the end.

use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::EnabledStatistics;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use super::dictionary::{ChunkOptions, NumberChunk, StringChunk};

macro_rules! column_writers {
    ($($variant:ident: $ty:ty, $arrow:ty, $dt:ident;)*) => {
        /// A column chunk's writer: ours for the dictionary columns (strings
        /// and numbers), arrow-rs' for the others. Boxed, as they differ in
        /// size (an arrow-rs writer is 1.5 KiB).
        enum ColumnWriter {
            Arrow(Box<ArrowColumnWriter>),
            Strings(Box<StringChunk>),
            $($variant(Box<NumberChunk<$ty>>),)*
        }

        impl ColumnWriter {
            /// Our own writer for a dictionary column of `data_type`, where
            /// we have one.
            fn own(data_type: &DataType, descr: ColumnDescPtr, opts: ChunkOptions) -> Result<Option<ColumnWriter>> {
                Ok(match data_type {
                    DataType::Utf8 => Some(ColumnWriter::Strings(Box::new(StringChunk::new(descr, opts)?))),
                    $(DataType::$dt => Some(ColumnWriter::$variant(Box::new(NumberChunk::new(descr, opts)?))),)*
                    _ => None,
                })
            }

            fn write(&mut self, field: &Field, array: &ArrayRef) -> Result<()> {
                let mistyped = || ParquetError::General(format!("{} is not a column of its type", field.name()));
                match self {
                    ColumnWriter::Arrow(w) => {
                        for leaf in compute_leaves(field, array)? {
                            w.write(&leaf)?;
                        }
                    }
                    ColumnWriter::Strings(s) => {
                        let strings = array.as_string_opt::<i32>().ok_or_else(mistyped)?;
                        s.write(strings.len(), |i| strings.value(i))?;
                    }
                    $(ColumnWriter::$variant(c) => {
                        c.write(array.as_primitive_opt::<$arrow>().ok_or_else(mistyped)?.values())?
                    })*
                }
                Ok(())
            }

            fn append_to(self, rg: &mut SerializedRowGroupWriter<'_, File>) -> Result<()> {
                let (bytes, close) = match self {
                    ColumnWriter::Arrow(w) => return w.close()?.append_to_row_group(rg),
                    ColumnWriter::Strings(s) => s.close()?,
                    $(ColumnWriter::$variant(c) => c.close()?,)*
                };
                rg.append_column(&bytes, close)
            }

            fn size(&self) -> usize {
                match self {
                    ColumnWriter::Arrow(w) => w.get_estimated_total_bytes(),
                    ColumnWriter::Strings(s) => s.size(),
                    $(ColumnWriter::$variant(c) => c.size(),)*
                }
            }
        }
    };
}
column_writers! {
    U8: u8, UInt8Type, UInt8;
    U16: u16, UInt16Type, UInt16;
    U32: u32, UInt32Type, UInt32;
    I32: i32, Int32Type, Int32;
    U64: u64, UInt64Type, UInt64;
}

/// The row group being filled.
struct Group {
    columns: Vec<ColumnWriter>,
    rows: usize,
}

pub struct RowGroups {
    file: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    max_rows: usize,
    group: Option<Group>,
    /// Row groups written.
    written: usize,
}

impl RowGroups {
    /// Takes over `writer` (nothing written to it yet), with row groups
    /// of `max_rows` rows.
    pub fn new(writer: ArrowWriter<File>, schema: SchemaRef, max_rows: usize) -> Result<RowGroups> {
        let (file, factory) = writer.into_serialized_writer()?;
        Ok(RowGroups {
            file,
            factory,
            schema,
            max_rows: max_rows.max(1),
            group: None,
            written: 0,
        })
    }

    fn start(&self) -> Result<Group> {
        let props = self.file.properties();
        let descr = self.file.schema_descr();
        let columns = self
            .factory
            .create_column_writers(self.written)?
            .into_iter()
            .zip(self.schema.fields())
            .enumerate()
            .map(|(i, (arrow, field))| {
                let path = ColumnPath::from(field.name().as_str());
                let column = descr.column(i);
                // Ours write no levels: a required column, not nested.
                let flat = column.max_def_level() == 0 && column.max_rep_level() == 0;
                if !props.dictionary_enabled(&path) || !flat {
                    return Ok(ColumnWriter::Arrow(Box::new(arrow)));
                }
                let opts = ChunkOptions {
                    level: match props.compression(&path) {
                        Compression::ZSTD(level) => level,
                        _ => ZstdLevel::default(),
                    },
                    page_rows: props.column_data_page_row_count_limit(&path),
                    dictionary_limit: props.column_dictionary_page_size_limit(&path),
                    statistics: props.statistics_enabled(&path) != EnabledStatistics::None,
                };
                let own = ColumnWriter::own(field.data_type(), column, opts)?;
                Ok(own.unwrap_or_else(|| ColumnWriter::Arrow(Box::new(arrow))))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Group { columns, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let mut group = match self.group.take() {
                Some(g) => g,
                None => self.start()?,
            };
            let n = (self.max_rows - group.rows).min(batch.num_rows() - offset);
            let part = batch.slice(offset, n);
            let columns = group.columns.iter_mut().zip(self.schema.fields());
            for ((column, field), array) in columns.zip(part.columns()) {
                column.write(field, array)?;
            }
            group.rows += n;
            offset += n;
            self.group = Some(group);
            if self.group.as_ref().is_some_and(|g| g.rows == self.max_rows) {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the row group being filled, if it has rows.
    fn flush(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let mut rg = self.file.next_row_group()?;
        for column in group.columns {
            column.append_to(&mut rg)?;
        }
        rg.close()?;
        self.written += 1;
        Ok(())
    }

    /// Bytes in the file so far.
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Bytes of the row group being filled, as far as encoded.
    pub fn in_progress_size(&self) -> usize {
        self.group
            .as_ref()
            .map_or(0, |g| g.columns.iter().map(ColumnWriter::size).sum())
    }

    pub fn append_key_value_metadata(&mut self, kv: KeyValue) {
        self.file.append_key_value_metadata(kv);
    }

    /// Writes the last row group and the footer; returns the file.
    pub fn into_inner(mut self) -> Result<File> {
        self.flush()?;
        self.file.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray, UInt32Array, UInt64Array};
    use arrow_schema::Schema;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Encoding;
    use parquet::file::metadata::ParquetMetaData;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    /// Strings of every shape the lookup tells apart: empty, short,
    /// the longest short key and longer, many distinct (so that the
    /// dictionary's bit width grows from page to page), runs and repeats.
    fn strings(rows: usize) -> Vec<String> {
        (0..rows)
            .map(|i| match i % 7 {
                0 => String::new(),
                1 => "ca_state".into(),
                2 => format!("10.0.{}.{}", i / 256 % 256, i % 256),
                3 => "x".repeat(47),
                4 => format!("{}{i}", "y".repeat(60)),
                5 => if i % 3 == 0 { "open" } else { "recovery" }.into(),
                _ => "ca_state".into(),
            })
            .collect()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(
            [
                ("s", DataType::Utf8),
                ("n", DataType::UInt32),
                ("plain", DataType::Utf8),
                ("big", DataType::UInt64),
                ("neg", DataType::Int32),
                ("ends", DataType::Utf8),
                ("ends_n", DataType::UInt32),
            ]
            .map(|(name, ty)| Field::new(name, ty, false))
            .to_vec(),
        ))
    }

    /// Rows `start..start + n`: each column's values, numbers on both
    /// sides of the signed/unsigned boundary.
    fn batch(schema: &SchemaRef, all: &[String], start: usize, n: usize) -> RecordBatch {
        let s: ArrayRef = Arc::new(StringArray::from_iter_values(&all[start..start + n]));
        let rows = start as u32..(start + n) as u32;
        let cols: Vec<ArrayRef> = vec![
            Arc::clone(&s),
            Arc::new(UInt32Array::from_iter_values(
                rows.clone().map(|i| i % 300 * 7),
            )),
            Arc::clone(&s),
            Arc::new(UInt64Array::from_iter_values(
                rows.clone().map(|i| u64::from(i % 5) << 62),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.clone().map(|i| (i % 11) as i32 - 5),
            )),
            s,
            Arc::new(UInt32Array::from_iter_values(
                rows.map(|i| i.wrapping_mul(2_654_435_761)),
            )),
        ];
        RecordBatch::try_new(Arc::clone(schema), cols).unwrap()
    }

    fn props() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .set_data_page_row_count_limit(1000)
            .set_max_row_group_row_count(Some(5000))
            .set_column_dictionary_enabled(ColumnPath::from("plain"), false)
            .set_column_dictionary_page_size_limit(ColumnPath::from("ends"), 300)
            .set_column_dictionary_page_size_limit(ColumnPath::from("ends_n"), 300)
            .build()
    }

    fn metadata(path: &std::path::Path) -> Arc<ParquetMetaData> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        Arc::clone(reader.metadata())
    }

    #[test]
    fn every_row_reads_back_with_the_statistics_arrow_rs_gives() {
        let dir = std::env::temp_dir().join(format!("tcpcong-encode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ours, theirs) = (dir.join("ours.parquet"), dir.join("theirs.parquet"));
        let schema = schema();
        let open = |p: &std::path::Path| {
            ArrowWriter::try_new(File::create(p).unwrap(), Arc::clone(&schema), Some(props()))
                .unwrap()
        };
        // Row groups of 5,000 rows from batches of 3,000: groups end inside
        // batches and the last one is partial.
        let mut groups = RowGroups::new(open(&ours), Arc::clone(&schema), 5000).unwrap();
        let mut reference = open(&theirs);
        let rows = 12_000;
        let all = strings(rows);
        for start in (0..rows).step_by(3000) {
            let b = batch(&schema, &all, start, 3000);
            groups.write(&b).unwrap();
            reference.write(&b).unwrap();
        }
        assert!(groups.in_progress_size() > 0);
        groups.into_inner().unwrap();
        reference.close().unwrap();

        let read = ParquetRecordBatchReaderBuilder::try_new(File::open(&ours).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let want = batch(&schema, &all, 0, rows);
        let got = arrow_select::concat::concat_batches(
            &schema,
            &read.map(Result::unwrap).collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(got, want);

        let meta = metadata(&ours);
        assert_eq!(meta.num_row_groups(), 3);
        let rg = meta.row_group(0);
        assert_eq!(rg.column(0).dictionary_page_offset(), Some(4));
        // Which encodings each chunk's data pages have: the chunk of a
        // column without a dictionary has none of its own.
        let pages = |c: usize| *rg.column(c).page_encoding_stats_mask().unwrap();
        assert!(pages(0).is_only(Encoding::RLE_DICTIONARY));
        assert!(pages(1).is_only(Encoding::RLE_DICTIONARY));
        assert!(pages(2).is_only(Encoding::PLAIN));
        assert_eq!(rg.column(2).dictionary_page_offset(), None);
        // A dictionary past its limit ends, and the rows after it are PLAIN.
        for c in [5, 6] {
            assert!(pages(c).is_set(Encoding::RLE_DICTIONARY) && pages(c).is_set(Encoding::PLAIN));
        }

        // Min and max per chunk, where arrow-rs writes them, as it does:
        // the independent source is arrow-rs' writer on the same rows.
        let theirs = metadata(&theirs);
        assert_eq!(theirs.num_row_groups(), 3);
        for g in 0..3 {
            for c in [1, 3, 4, 6] {
                let (a, b) = (meta.row_group(g).column(c), theirs.row_group(g).column(c));
                assert_eq!(a.num_values(), b.num_values());
                let (a, b) = (a.statistics().unwrap(), b.statistics().unwrap());
                assert_eq!(a.min_bytes_opt(), b.min_bytes_opt(), "group {g} column {c}");
                assert_eq!(a.max_bytes_opt(), b.max_bytes_opt(), "group {g} column {c}");
                assert_eq!(a.null_count_opt(), b.null_count_opt());
                assert_eq!(
                    a.is_min_max_backwards_compatible(),
                    b.is_min_max_backwards_compatible()
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
