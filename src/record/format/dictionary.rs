//! String column chunks, dictionary encoded as Parquet's own writer
//! encodes them (one PLAIN dictionary page, then RLE_DICTIONARY data pages,
//! each zstd compressed), with a cheaper lookup per row.
//!
//! Why our own: arrow-rs finds each row's dictionary entry by hashing the
//! value and comparing it (`memcmp`) with the copy it stored, and the
//! recorder's eight dictionary string columns made that a third of its CPU
//! at 1,000,000 events/s (BENCHMARKS.md, section 2). These columns' values
//! are short (kinds, states, addresses, 15-byte names): each is copied into
//! a fixed-size key, which hashes a word at a time and compares inline, and
//! a row whose value is its previous row's skips even that.

use std::hash::{Hash, Hasher};

use parquet::basic::{Compression, Encoding, EncodingMask, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use rustc_hash::FxHashMap;

/// Values up to this many bytes less one are looked up by a fixed-size key
/// (the last byte holds the length); longer ones by their bytes.
const KEY: usize = 48;

/// A short value in words: compared a word at a time, inline (an array
/// of bytes compares through a `memcmp` call, which cost as much as the
/// lookup it saves).
#[derive(Clone, Copy)]
struct ShortKey([u64; KEY / 8]);

impl ShortKey {
    fn of(value: &[u8]) -> Option<ShortKey> {
        let mut bytes = [0u8; KEY];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        bytes[KEY - 1] = u8::try_from(value.len()).ok().filter(|&n| n < KEY as u8)?;
        let mut words = [0u64; KEY / 8];
        for (w, b) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(b.try_into().unwrap_or_default());
        }
        Some(ShortKey(words))
    }
}

impl PartialEq for ShortKey {
    fn eq(&self, other: &ShortKey) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .fold(0, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl Eq for ShortKey {}

impl Hash for ShortKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for &w in &self.0 {
            state.write_u64(w);
        }
    }
}

/// One column chunk of strings (a row group's), built row by row.
pub struct StringChunk {
    descr: ColumnDescPtr,
    level: ZstdLevel,
    compressor: zstd::bulk::Compressor<'static>,
    page_rows: usize,
    /// The dictionary page, PLAIN: each entry's length (u32, little
    /// endian), then its bytes.
    dictionary: Vec<u8>,
    entries: u32,
    short: FxHashMap<ShortKey, u32>,
    long: FxHashMap<Box<[u8]>, u32>,
    /// The previous row's value and entry.
    last: Option<(ShortKey, u32)>,
    /// The current data page's entries, one per row.
    indices: Vec<u32>,
    /// The data pages written so far, each with its header.
    pages: TrackedWrite<Vec<u8>>,
    data_pages: i32,
    rows: u64,
    uncompressed: usize,
}

impl StringChunk {
    /// A chunk of `descr`'s column, compressed with zstd at `level`, a data
    /// page every `page_rows` rows.
    pub fn new(descr: ColumnDescPtr, level: ZstdLevel, page_rows: usize) -> Result<StringChunk> {
        let compressor = zstd::bulk::Compressor::new(level.compression_level())
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(StringChunk {
            descr,
            level,
            compressor,
            page_rows: page_rows.max(1),
            dictionary: Vec::new(),
            entries: 0,
            short: FxHashMap::default(),
            long: FxHashMap::default(),
            last: None,
            indices: Vec::new(),
            pages: TrackedWrite::new(Vec::new()),
            data_pages: 0,
            rows: 0,
            uncompressed: 0,
        })
    }

    /// Appends `values`, one row each.
    pub fn write<'a>(&mut self, values: impl Iterator<Item = &'a str>) -> Result<()> {
        for value in values {
            let entry = self.entry(value.as_bytes());
            self.indices.push(entry);
            self.rows += 1;
            if self.indices.len() >= self.page_rows {
                self.flush_page()?;
            }
        }
        Ok(())
    }

    /// Bytes this chunk holds so far (encoded, or as indices not yet).
    pub fn size(&self) -> usize {
        self.pages.bytes_written() + self.dictionary.len() + self.indices.len()
    }

    fn entry(&mut self, value: &[u8]) -> u32 {
        let Some(key) = ShortKey::of(value) else {
            self.last = None;
            if let Some(&e) = self.long.get(value) {
                return e;
            }
            let e = self.add(value);
            self.long.insert(value.into(), e);
            return e;
        };
        if let Some((last, e)) = self.last {
            if last == key {
                return e;
            }
        }
        let e = match self.short.get(&key) {
            Some(&e) => e,
            None => {
                let e = self.add(value);
                self.short.insert(key, e);
                e
            }
        };
        self.last = Some((key, e));
        e
    }

    fn add(&mut self, value: &[u8]) -> u32 {
        // A value is at most a row's string: an Arrow string array's
        // offsets are i32.
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.dictionary.extend_from_slice(&len.to_le_bytes());
        self.dictionary.extend_from_slice(value);
        self.entries += 1;
        self.entries - 1
    }

    fn compress(&mut self, buf: &[u8]) -> Result<Vec<u8>> {
        self.compressor
            .compress(buf)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }

    fn flush_page(&mut self) -> Result<()> {
        if self.indices.is_empty() {
            return Ok(());
        }
        let width = bit_width(self.entries.saturating_sub(1));
        let mut buf = vec![width];
        rle_hybrid(&self.indices, width, &mut buf);
        let compressed = self.compress(&buf)?;
        let page = Page::DataPage {
            buf: compressed.into(),
            num_values: u32::try_from(self.indices.len())
                .map_err(|_| ParquetError::General("a data page of too many rows".into()))?,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.pages)
            .write_page(CompressedPage::new(page, buf.len()))?;
        self.uncompressed += spec.uncompressed_size;
        self.data_pages += 1;
        self.indices.clear();
        Ok(())
    }

    /// The chunk's bytes (dictionary page first) and what the row group
    /// needs to know of them.
    pub fn close(mut self) -> Result<(bytes::Bytes, ColumnCloseResult)> {
        self.flush_page()?;
        let dictionary = std::mem::take(&mut self.dictionary);
        let compressed = self.compress(&dictionary)?;
        let page = Page::DictionaryPage {
            buf: compressed.into(),
            num_values: self.entries,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let mut out = TrackedWrite::new(Vec::new());
        let dict = SerializedPageWriter::new(&mut out)
            .write_page(CompressedPage::new(page, dictionary.len()))?;
        let data = self.pages.into_inner()?;
        let mut out = out.into_inner()?;
        let data_offset = out.len();
        out.extend_from_slice(&data);
        let total = out.len();
        let encodings = [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY];
        let metadata = ColumnChunkMetaData::builder(self.descr)
            .set_compression(Compression::ZSTD(self.level))
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(vec![
                PageEncodingStats {
                    page_type: PageType::DICTIONARY_PAGE,
                    encoding: Encoding::PLAIN,
                    count: 1,
                },
                PageEncodingStats {
                    page_type: PageType::DATA_PAGE,
                    encoding: Encoding::RLE_DICTIONARY,
                    count: self.data_pages,
                },
            ])
            .set_total_compressed_size(total as i64)
            .set_total_uncompressed_size((dict.uncompressed_size + self.uncompressed) as i64)
            .set_num_values(self.rows as i64)
            .set_dictionary_page_offset(Some(0))
            .set_data_page_offset(data_offset as i64)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: total as u64,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((out.into(), close))
    }
}

/// Bits that hold `max`.
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// A run of one value at least this long is written as a run; shorter
/// ones are bit-packed with their neighbours.
const RUN: usize = 8;

/// `values` in Parquet's RLE/bit-packing hybrid at `width` bits, without
/// the length prefix (a dictionary data page has none).
fn rle_hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let run_at = |i: usize| {
        let v = values[i];
        values[i..].iter().take_while(|&&x| x == v).count()
    };
    let mut i = 0;
    while i < values.len() {
        let run = run_at(i);
        if run >= RUN {
            uleb128((run as u64) << 1, out);
            let bytes = usize::from(width).div_ceil(8);
            out.extend_from_slice(&values[i].to_le_bytes()[..bytes]);
            i += run;
            continue;
        }
        // Groups of 8 until the data ends or a long run starts a group.
        let start = i;
        loop {
            i = (i + 8).min(values.len());
            if i == values.len() || run_at(i) >= RUN {
                break;
            }
        }
        let groups = (i - start).div_ceil(8);
        uleb128(((groups as u64) << 1) | 1, out);
        bit_pack(&values[start..i], groups * 8, width, out);
    }
}

/// `values`, padded with zeros to `count`, `width` bits each, least
/// significant bit first.
fn bit_pack(values: &[u32], count: usize, width: u8, out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for i in 0..count {
        let v = values.get(i).copied().unwrap_or(0);
        acc |= u64::from(v) << bits;
        bits += u32::from(width);
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

fn uleb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_packed_groups_are_encoded_as_the_format_says() {
        let mut out = Vec::new();
        // Ten 3s: one run (header 10 << 1), the value in one byte.
        rle_hybrid(&[3; 10], 2, &mut out);
        assert_eq!(out, [20, 3]);
        out.clear();
        // 0..5 at 3 bits: one packed group (header 1 << 1 | 1), padded to
        // 8 values with zeros, least significant bit first.
        rle_hybrid(&[0, 1, 2, 3, 4], 3, &mut out);
        assert_eq!(out, [3, 0b1000_1000, 0b0100_0110, 0]);
        out.clear();
        // A group, then a run of 8 starting at its end.
        let mut v = vec![1, 2, 1, 2, 1, 2, 1, 2];
        v.extend([0; 9]);
        rle_hybrid(&v, 2, &mut out);
        assert_eq!(out, [3, 0b1001_1001, 0b1001_1001, 18, 0]);
        out.clear();
        // A run of 300 needs two header bytes: 600 = 0b100_1011000.
        rle_hybrid(&[1; 300], 1, &mut out);
        assert_eq!(out, [0b1101_1000, 0b100, 1]);
    }

    #[test]
    fn short_keys_hold_their_length() {
        assert!(ShortKey::of(b"ab") != ShortKey::of(b"ab\0"));
        assert!(ShortKey::of(&[b'x'; KEY - 1]).is_some());
        assert!(ShortKey::of(&[b'x'; KEY]).is_none());
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
    }
}
