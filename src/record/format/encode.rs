//! A recording's row groups, column by column: the dictionary string
//! columns through our own [`StringChunk`], every other column through
//! arrow-rs' column writers, with the properties the file was opened with.
//! Rows come in batches; a row group is written whenever one fills, and
//! the last, partial one at the end.

use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::KeyValue;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::dictionary::StringChunk;

/// Boxed, as they differ in size (an arrow-rs writer is 1.5 KiB).
enum ColumnWriter {
    Arrow(Box<ArrowColumnWriter>),
    Strings(Box<StringChunk>),
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
                let own = field.data_type() == &DataType::Utf8 && props.dictionary_enabled(&path);
                Ok(if own {
                    let level = match props.compression(&path) {
                        Compression::ZSTD(level) => level,
                        _ => ZstdLevel::default(),
                    };
                    ColumnWriter::Strings(Box::new(StringChunk::new(
                        descr.column(i),
                        level,
                        props.data_page_row_count_limit(),
                    )?))
                } else {
                    ColumnWriter::Arrow(Box::new(arrow))
                })
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
                match column {
                    ColumnWriter::Arrow(w) => {
                        for leaf in compute_leaves(field, array)? {
                            w.write(&leaf)?;
                        }
                    }
                    ColumnWriter::Strings(s) => {
                        let strings = array.as_string_opt::<i32>().ok_or_else(|| {
                            ParquetError::General(format!("{} is not a string array", field.name()))
                        })?;
                        s.write((0..strings.len()).map(|i| strings.value(i)))?;
                    }
                }
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
            match column {
                ColumnWriter::Arrow(w) => w.close()?.append_to_row_group(&mut rg)?,
                ColumnWriter::Strings(s) => {
                    let (bytes, close) = s.close()?;
                    rg.append_column(&bytes, close)?;
                }
            }
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
        self.group.as_ref().map_or(0, |g| {
            g.columns
                .iter()
                .map(|c| match c {
                    ColumnWriter::Arrow(w) => w.get_estimated_total_bytes(),
                    ColumnWriter::Strings(s) => s.size(),
                })
                .sum()
        })
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
    use arrow_array::{ArrayRef, StringArray, UInt32Array};
    use arrow_schema::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Encoding;
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

    #[test]
    fn every_row_reads_back_with_the_file_s_encodings() {
        let dir = std::env::temp_dir().join(format!("tcpcong-encode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, false),
            Field::new("n", DataType::UInt32, false),
            Field::new("plain", DataType::Utf8, false),
        ]));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .set_data_page_row_count_limit(1000)
            .set_column_dictionary_enabled(ColumnPath::from("plain"), false)
            .build();
        let arrow = ArrowWriter::try_new(
            File::create(&path).unwrap(),
            Arc::clone(&schema),
            Some(props),
        )
        .unwrap();
        // Row groups of 5,000 rows from batches of 3,000: groups end inside
        // batches and the last one is partial.
        let mut groups = RowGroups::new(arrow, Arc::clone(&schema), 5000).unwrap();
        let rows = 12_000;
        let all = strings(rows);
        for start in (0..rows).step_by(3000) {
            let s: ArrayRef = Arc::new(StringArray::from_iter_values(&all[start..start + 3000]));
            let n: ArrayRef = Arc::new(UInt32Array::from_iter_values(
                start as u32..start as u32 + 3000,
            ));
            let batch =
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::clone(&s), n, s]).unwrap();
            groups.write(&batch).unwrap();
        }
        assert!(groups.in_progress_size() > 0);
        groups.into_inner().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let meta = reader.metadata().clone();
        assert_eq!(meta.num_row_groups(), 3);
        let col = meta.row_group(0).column(0);
        assert_eq!(col.dictionary_page_offset(), Some(4));
        assert!(col.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
        assert!(!meta
            .row_group(0)
            .column(2)
            .encodings()
            .any(|e| e == Encoding::RLE_DICTIONARY));
        let mut got = Vec::new();
        let mut numbers = Vec::new();
        for b in reader.build().unwrap() {
            let b = b.unwrap();
            let s = b.column(0).as_string::<i32>();
            let plain = b.column(2).as_string::<i32>();
            for i in 0..b.num_rows() {
                assert_eq!(s.value(i), plain.value(i));
                got.push(s.value(i).to_string());
            }
            numbers.extend(
                b.column(1)
                    .as_primitive::<arrow_array::types::UInt32Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        assert_eq!(got, all);
        assert_eq!(numbers, (0..rows as u32).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
