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

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use ahash::RandomState;

use parquet::basic::{Compression, Encoding, EncodingMask, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::statistics::{Statistics, ValueStatistics};
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
    /// Read a word at a time from the value itself: bytes copied into a
    /// buffer on the stack and read back as words stall each read on the
    /// copy's narrower stores (the lookup's largest cost, measured).
    fn of(value: &[u8]) -> Option<ShortKey> {
        let n = value.len();
        if n >= KEY {
            return None;
        }
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let mut words = [0u64; KEY / 8];
        let full = n / 8;
        for (w, b) in words.iter_mut().zip(value.chunks_exact(8)) {
            *w = word(b);
        }
        let rest = n % 8;
        if rest > 0 {
            words[full] = if n >= 8 {
                // The last 8 bytes, shifted down past those already read.
                word(&value[n - 8..]) >> ((8 - rest) * 8)
            } else {
                value
                    .iter()
                    .rev()
                    .fold(0, |acc, &b| (acc << 8) | u64::from(b))
            };
        }
        // The length in the last byte, which no short value reaches.
        words[KEY / 8 - 1] |= (n as u64) << 56;
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

/// What a dictionary chunk's pages share: the dictionary page's bytes,
/// each row's entry, the data pages written so far; and the chunk's close.
struct Pages {
    descr: ColumnDescPtr,
    level: ZstdLevel,
    compressor: zstd::bulk::Compressor<'static>,
    page_rows: usize,
    /// The dictionary page, PLAIN.
    dictionary: Vec<u8>,
    entries: u32,
    /// A dictionary page larger than this ends the dictionary: later rows
    /// are written PLAIN, as arrow-rs' writer does, which bounds the
    /// lookup's memory whatever values come.
    limit: usize,
    /// The current data page's entries, one per row.
    indices: Vec<u32>,
    /// Once the dictionary ended: the current data page's values, PLAIN.
    plain: Option<Vec<u8>>,
    plain_rows: usize,
    plain_pages: i32,
    /// The data pages written so far, each with its header.
    pages: TrackedWrite<Vec<u8>>,
    data_pages: i32,
    rows: u64,
    uncompressed: usize,
}

impl Pages {
    fn new(descr: ColumnDescPtr, opts: ChunkOptions) -> Result<Pages> {
        let ChunkOptions {
            level,
            page_rows,
            dictionary_limit,
            ..
        } = opts;
        let compressor = zstd::bulk::Compressor::new(level.compression_level())
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(Pages {
            descr,
            level,
            compressor,
            page_rows: page_rows.max(1),
            dictionary: Vec::new(),
            entries: 0,
            limit: dictionary_limit,
            indices: Vec::with_capacity(page_rows.min(1 << 16)),
            plain: None,
            plain_rows: 0,
            plain_pages: 0,
            pages: TrackedWrite::new(Vec::new()),
            data_pages: 0,
            rows: 0,
            uncompressed: 0,
        })
    }

    /// A new entry, whose PLAIN bytes the caller has put in `dictionary`.
    fn added(&mut self) -> u32 {
        self.entries += 1;
        self.entries - 1
    }

    /// Rows that fit in the current data page.
    fn room(&self) -> usize {
        self.page_rows.saturating_sub(self.indices.len()).max(1)
    }

    /// `n` rows' entries were pushed onto `indices` (at most `room`): the
    /// checks are made once per run of rows, not per row. The dictionary
    /// ends after the run that took it past its limit (a run adds at most
    /// a page of rows' values to it).
    fn pushed(&mut self, n: usize) -> Result<()> {
        self.rows += n as u64;
        if self.indices.len() >= self.page_rows {
            self.flush_page()?;
        }
        if self.dictionary.len() > self.limit {
            self.flush_page()?;
            self.plain = Some(Vec::new());
        }
        Ok(())
    }

    /// Where a row's PLAIN bytes go once the dictionary ended.
    fn plain_mut(&mut self) -> Option<&mut Vec<u8>> {
        self.plain.as_mut()
    }

    /// A row whose bytes went to `plain_mut`.
    fn push_plain(&mut self) -> Result<()> {
        self.plain_rows += 1;
        self.rows += 1;
        if self.plain_rows >= self.page_rows {
            self.flush_plain()?;
        }
        Ok(())
    }

    fn size(&self) -> usize {
        let plain = self.plain.as_ref().map_or(0, Vec::len);
        self.pages.bytes_written() + self.dictionary.len() + self.indices.len() + plain
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
        let rows = self.indices.len();
        self.write_data_page(&buf, rows, Encoding::RLE_DICTIONARY)?;
        self.data_pages += 1;
        self.indices.clear();
        Ok(())
    }

    fn flush_plain(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.plain_rows);
        let Some(mut buf) = self.plain.take() else {
            return Ok(());
        };
        if rows > 0 {
            self.write_data_page(&buf, rows, Encoding::PLAIN)?;
            self.plain_pages += 1;
        }
        buf.clear();
        self.plain = Some(buf);
        Ok(())
    }

    fn write_data_page(&mut self, buf: &[u8], rows: usize, encoding: Encoding) -> Result<()> {
        let compressed = self.compress(buf)?;
        let page = Page::DataPage {
            buf: compressed.into(),
            num_values: u32::try_from(rows)
                .map_err(|_| ParquetError::General("a data page of too many rows".into()))?,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.pages)
            .write_page(CompressedPage::new(page, buf.len()))?;
        self.uncompressed += spec.uncompressed_size;
        Ok(())
    }

    /// The chunk's bytes (dictionary page first) and what the row group
    /// needs to know of them.
    fn close(
        mut self,
        statistics: Option<Statistics>,
    ) -> Result<(bytes::Bytes, ColumnCloseResult)> {
        self.flush_page()?;
        self.flush_plain()?;
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
        let stats = |page_type, encoding, count| PageEncodingStats {
            page_type,
            encoding,
            count,
        };
        let pages = [
            stats(PageType::DICTIONARY_PAGE, Encoding::PLAIN, 1),
            stats(
                PageType::DATA_PAGE,
                Encoding::RLE_DICTIONARY,
                self.data_pages,
            ),
            stats(PageType::DATA_PAGE, Encoding::PLAIN, self.plain_pages),
        ];
        let mut metadata = ColumnChunkMetaData::builder(self.descr)
            .set_compression(Compression::ZSTD(self.level))
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(pages.into_iter().filter(|p| p.count > 0).collect())
            .set_total_compressed_size(total as i64)
            .set_total_uncompressed_size((dict.uncompressed_size + self.uncompressed) as i64)
            .set_num_values(self.rows as i64)
            .set_dictionary_page_offset(Some(0))
            .set_data_page_offset(data_offset as i64);
        if let Some(s) = statistics {
            metadata = metadata.set_statistics(s);
        }
        let close = ColumnCloseResult {
            bytes_written: total as u64,
            rows_written: self.rows,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((out.into(), close))
    }
}

/// One column chunk of strings (a row group's), built row by row.
pub struct StringChunk {
    pages: Pages,
    /// Seeded at random: a peer chooses its address, a process its name,
    /// and an unseeded hash lets chosen values collide.
    short: HashMap<ShortKey, u32, RandomState>,
    long: HashMap<Box<[u8]>, u32, RandomState>,
    /// The previous row's value and entry.
    last: Option<(ShortKey, u32)>,
}

impl StringChunk {
    /// A chunk of `descr`'s column, compressed with zstd at `level`, a data
    /// page every `page_rows` rows.
    pub fn new(descr: ColumnDescPtr, opts: ChunkOptions) -> Result<StringChunk> {
        Ok(StringChunk {
            pages: Pages::new(descr, opts)?,
            short: HashMap::default(),
            long: HashMap::default(),
            last: None,
        })
    }

    /// Appends `n` rows, row `i` holding `value(i)`.
    pub fn write<'a>(&mut self, n: usize, value: impl Fn(usize) -> &'a str) -> Result<()> {
        let mut i = 0;
        while i < n {
            if let Some(plain) = self.pages.plain_mut() {
                plain_bytes(value(i).as_bytes(), plain);
                self.pages.push_plain()?;
                i += 1;
                continue;
            }
            let end = n.min(i + self.pages.room());
            for j in i..end {
                let entry = self.entry(value(j).as_bytes());
                self.pages.indices.push(entry);
            }
            self.pages.pushed(end - i)?;
            i = end;
            if self.pages.plain.is_some() {
                // The dictionary ended: its lookup is no longer needed.
                self.short = HashMap::default();
                self.long = HashMap::default();
            }
        }
        Ok(())
    }

    /// Bytes this chunk holds so far (encoded, or as indices not yet).
    pub fn size(&self) -> usize {
        self.pages.size()
    }

    fn entry(&mut self, value: &[u8]) -> u32 {
        let Some(key) = ShortKey::of(value) else {
            self.last = None;
            if let Some(&e) = self.long.get(value) {
                return e;
            }
            let e = add(&mut self.pages, value);
            self.long.insert(value.into(), e);
            return e;
        };
        let pages = &mut self.pages;
        entry_of(&mut self.last, &mut self.short, key, || add(pages, value))
    }

    /// The chunk's bytes and metadata. No statistics: readers filter on
    /// numbers, not names.
    pub fn close(self) -> Result<(bytes::Bytes, ColumnCloseResult)> {
        self.pages.close(None)
    }
}

/// A number type our dictionary writes: how Parquet stores it (INT32 for
/// 32 bits and fewer, INT64) and its statistics, min and max in its own
/// order (unsigned for the unsigned types, as their logical type says).
pub trait DictNumber: Copy + Eq + Ord + Hash {
    /// The value as the dictionary page's PLAIN bytes hold it.
    fn plain(self, out: &mut Vec<u8>);
    fn statistics(min: Self, max: Self) -> Statistics;
}

macro_rules! dict_number {
    ($($ty:ty => $physical:ty, $stat:ident, $signed:expr;)*) => {$(
        impl DictNumber for $ty {
            fn plain(self, out: &mut Vec<u8>) {
                // The bits as Parquet's physical type holds them: an
                // unsigned value is its logical type's reading of them.
                out.extend_from_slice(&(self as $physical).to_le_bytes());
            }
            fn statistics(min: Self, max: Self) -> Statistics {
                Statistics::$stat(
                    ValueStatistics::new(
                        Some(min as $physical),
                        Some(max as $physical),
                        None,
                        Some(0),
                        false,
                    )
                    .with_backwards_compatible_min_max($signed),
                )
            }
        }
    )*};
}
dict_number! {
    u8 => i32, Int32, false;
    u16 => i32, Int32, false;
    u32 => i32, Int32, false;
    i32 => i32, Int32, true;
    u64 => i64, Int64, false;
}

/// One column chunk of numbers (a row group's), built row by row, with
/// its statistics.
/// Its map's hash is unseeded: a value's hash is the value times an odd
/// constant, so distinct numbers below the table's size never share a
/// bucket, and the table is bounded by the dictionary's limit.
pub struct NumberChunk<T: DictNumber> {
    pages: Pages,
    statistics: bool,
    table: FxHashMap<T, u32>,
    last: Option<(T, u32)>,
    range: Option<(T, T)>,
}

impl<T: DictNumber> NumberChunk<T> {
    pub fn new(descr: ColumnDescPtr, opts: ChunkOptions) -> Result<NumberChunk<T>> {
        Ok(NumberChunk {
            pages: Pages::new(descr, opts)?,
            statistics: opts.statistics,
            table: FxHashMap::default(),
            last: None,
            range: None,
        })
    }

    pub fn write(&mut self, values: &[T]) -> Result<()> {
        let mut i = 0;
        while i < values.len() {
            if let Some(plain) = self.pages.plain_mut() {
                values[i].plain(plain);
                widen(&mut self.range, values[i]);
                self.pages.push_plain()?;
                i += 1;
                continue;
            }
            let end = values.len().min(i + self.pages.room());
            for &v in &values[i..end] {
                let e = self.entry(v);
                self.pages.indices.push(e);
            }
            self.pages.pushed(end - i)?;
            i = end;
            if self.pages.plain.is_some() {
                self.table = FxHashMap::default();
            }
        }
        Ok(())
    }

    fn entry(&mut self, v: T) -> u32 {
        let (pages, range) = (&mut self.pages, &mut self.range);
        entry_of(&mut self.last, &mut self.table, v, || {
            v.plain(&mut pages.dictionary);
            widen(range, v);
            pages.added()
        })
    }

    pub fn size(&self) -> usize {
        self.pages.size()
    }

    /// The chunk's bytes and metadata, with min and max: what readers
    /// skip row groups by.
    pub fn close(self) -> Result<(bytes::Bytes, ColumnCloseResult)> {
        let statistics = self
            .range
            .filter(|_| self.statistics)
            .map(|(lo, hi)| T::statistics(lo, hi));
        self.pages.close(statistics)
    }
}

/// How a chunk is written, from the file's properties.
#[derive(Clone, Copy)]
pub struct ChunkOptions {
    pub level: ZstdLevel,
    /// Rows per data page.
    pub page_rows: usize,
    /// Bytes of dictionary page after which values are written PLAIN.
    pub dictionary_limit: usize,
    /// Min and max per chunk (numbers only).
    pub statistics: bool,
}

/// A string added to the dictionary: its index.
fn add(pages: &mut Pages, value: &[u8]) -> u32 {
    plain_bytes(value, &mut pages.dictionary);
    pages.added()
}

/// The smallest and largest number written so far, with `v`.
fn widen<T: Copy + Ord>(range: &mut Option<(T, T)>, v: T) {
    *range = Some(match *range {
        Some((lo, hi)) => (lo.min(v), hi.max(v)),
        None => (v, v),
    });
}

/// A value's dictionary index: the row before's again without a lookup
/// (runs of one value are the common case), else from `table`, else
/// `add`ed to the dictionary.
fn entry_of<K: Copy + Eq + Hash, S: std::hash::BuildHasher>(
    last: &mut Option<(K, u32)>,
    table: &mut HashMap<K, u32, S>,
    key: K,
    add: impl FnOnce() -> u32,
) -> u32 {
    if let Some((k, e)) = *last {
        if k == key {
            return e;
        }
    }
    let e = *table.entry(key).or_insert_with(add);
    *last = Some((key, e));
    e
}

/// A string as PLAIN holds it: its length (u32, little endian), then its
/// bytes.
fn plain_bytes(value: &[u8], out: &mut Vec<u8>) {
    // A value is at most a row's string: an Arrow string array's offsets
    // are i32.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
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
        // Every length, each byte in its place: equal values make equal
        // keys, a value that differs anywhere a different one.
        let value: Vec<u8> = (1..KEY as u8).collect();
        for n in 0..KEY {
            let v = &value[..n];
            let copy = v.to_vec();
            assert!(ShortKey::of(v) == ShortKey::of(&copy));
            for i in 0..n {
                let mut w = v.to_vec();
                w[i] ^= 0x80;
                assert!(ShortKey::of(v) != ShortKey::of(&w), "{n} {i}");
            }
        }
        assert!(ShortKey::of(&[b'x'; KEY - 1]).is_some());
        assert!(ShortKey::of(&[b'x'; KEY]).is_none());
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
    }
}
