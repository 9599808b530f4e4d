//! What a column chunk decodes to, read from its pages' own headers.
//!
//! The Parquet reader sizes each page's buffer from the page header's
//! `uncompressed_page_size`, not from the footer's totals, so a file whose
//! footer understates its chunks (a few bytes patched) would pass a check
//! of the footer and still make a 300 MiB page out of a few KiB of zstd.
//! The headers are what the reader trusts, so they are what is checked:
//! each chunk's pages are walked over the same bytes the reader will
//! decode, and their sizes added up before any page is decompressed.
//!
//! A page header is a Thrift compact-protocol struct; the walk reads its
//! fields 2 (`uncompressed_page_size`) and 3 (`compressed_page_size`) and
//! skips the rest, with its nesting bounded.

use std::fs::File;
use std::os::unix::fs::FileExt;

use parquet::file::metadata::ParquetMetaData;

/// Why a chunk's pages could not be walked, or how large they are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Walk {
    /// The column (by leaf index) decodes to `bytes` in one row group.
    TooLarge { column: usize, bytes: u64 },
    /// A page header that no writer writes.
    Malformed,
}

/// The largest page header read: statistics make them grow, not to this.
const HEADER_MAX: usize = 16 << 20;
/// Thrift structs nest a few levels in a page header.
const DEPTH_MAX: u32 = 16;

/// Checks that no column chunk of `meta` decodes to more than `max` bytes,
/// by its page headers in `file`.
pub(super) fn check(file: &File, meta: &ParquetMetaData, max: u64) -> Result<(), Walk> {
    let len = file.metadata().map_err(|_| Walk::Malformed)?.len();
    let mut window = Window {
        file,
        start: 0,
        bytes: Vec::new(),
    };
    for rg in meta.row_groups() {
        for (column, c) in rg.columns().iter().enumerate() {
            let (start, size) = c.byte_range();
            let end = start.saturating_add(size).min(len);
            let mut pos = start;
            let mut bytes = 0u64;
            while pos < end {
                let h = window.header_at(pos, end)?;
                bytes = bytes.saturating_add(h.uncompressed);
                if bytes > max {
                    return Err(Walk::TooLarge { column, bytes });
                }
                pos = pos.saturating_add(h.len).saturating_add(h.compressed);
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
struct Header {
    /// The header's own length.
    len: u64,
    uncompressed: u64,
    compressed: u64,
}

/// The file's bytes last read: pages of a few hundred bytes (clocks and
/// counters compress that well) have many headers in one read.
struct Window<'f> {
    file: &'f File,
    start: u64,
    bytes: Vec<u8>,
}

/// One read's length, unless a header needs more.
const READ: usize = 4 << 10;

impl Window<'_> {
    /// The page header at `pos` (before `end`), read in growing pieces
    /// until it parses.
    fn header_at(&mut self, pos: u64, end: u64) -> Result<Header, Walk> {
        let mut want = READ;
        loop {
            let have = pos
                .checked_sub(self.start)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| self.bytes.get(o..));
            let cut = usize::try_from(end - pos).unwrap_or(usize::MAX);
            if let Some(h) = have.and_then(|b| parse(&b[..b.len().min(cut)]).ok()) {
                return Ok(h);
            }
            if have.is_some_and(|b| b.len() >= cut) || want > HEADER_MAX {
                return Err(Walk::Malformed);
            }
            let n = cut.min(want);
            self.bytes.resize(n, 0);
            self.file
                .read_exact_at(&mut self.bytes, pos)
                .map_err(|_| Walk::Malformed)?;
            self.start = pos;
            want *= 8;
        }
    }
}

/// The bytes ran out before the header ended (or it is not one).
#[derive(Debug)]
struct Short;

struct Compact<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, Short> {
        let b = *self.buf.get(self.at).ok_or(Short)?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Short> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Short)
    }

    fn zigzag(&mut self) -> Result<i64, Short> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip(&mut self, n: u64) -> Result<(), Short> {
        let n = usize::try_from(n).map_err(|_| Short)?;
        self.at = self
            .at
            .checked_add(n)
            .filter(|&a| a <= self.buf.len())
            .ok_or(Short)?;
        Ok(())
    }

    /// Skips a value of compact type `t`.
    fn value(&mut self, t: u8, depth: u32) -> Result<(), Short> {
        if depth > DEPTH_MAX {
            return Err(Short);
        }
        match t {
            1 | 2 => Ok(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..n {
                    // A bool in a list takes a byte.
                    match h & 0x0f {
                        1 | 2 => self.skip(1)?,
                        e => self.value(e, depth + 1)?,
                    }
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.value(kv >> 4, depth + 1)?;
                    self.value(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.fields(depth + 1, |_, _, _| Ok(false)),
            _ => Err(Short),
        }
    }

    /// Walks a struct's fields; `take` reads the ones it wants (returning
    /// true), the rest are skipped.
    fn fields(
        &mut self,
        depth: u32,
        mut take: impl FnMut(&mut Self, i16, u8) -> Result<bool, Short>,
    ) -> Result<(), Short> {
        let mut id = 0i16;
        loop {
            let h = self.byte()?;
            let t = h & 0x0f;
            if t == 0 {
                return Ok(());
            }
            id = match h >> 4 {
                0 => i16::try_from(self.zigzag()?).map_err(|_| Short)?,
                d => id.checked_add(i16::from(d)).ok_or(Short)?,
            };
            if !take(self, id, t)? {
                self.value(t, depth)?;
            }
        }
    }
}

/// A page header: its length and its two sizes (both required, and not
/// negative).
fn parse(buf: &[u8]) -> Result<Header, Short> {
    let mut c = Compact { buf, at: 0 };
    let (mut uncompressed, mut compressed) = (None, None);
    c.fields(0, |c, id, t| match (id, t) {
        (2, 5) => {
            uncompressed = u64::try_from(c.zigzag()?).ok();
            Ok(true)
        }
        (3, 5) => {
            compressed = u64::try_from(c.zigzag()?).ok();
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(Header {
        len: c.at as u64,
        uncompressed: uncompressed.ok_or(Short)?,
        compressed: compressed.ok_or(Short)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data page header as writers write it: type, both sizes, and a
    /// data page header struct (num_values, encodings, statistics).
    fn header(uncompressed: u8, compressed: u8) -> Vec<u8> {
        vec![
            0x15,
            0x00, // 1: type = DATA_PAGE (i32 0)
            0x15,
            uncompressed * 2, // 2: uncompressed_page_size
            0x15,
            compressed * 2, // 3: compressed_page_size
            0x2c,           // 5: data_page_header (struct, delta 2)
            0x15,
            0x14, // 1: num_values = 10
            0x15,
            0x00,
            0x15,
            0x06,
            0x15,
            0x06, // 2, 3, 4: encodings
            0x1c, // 5: statistics (struct)
            0x18,
            0x02,
            b'a',
            b'b', // 1: max = "ab" (binary)
            0x00, // end of statistics
            0x00, // end of data_page_header
            0x00, // end of the page header
        ]
    }

    #[test]
    fn a_page_header_gives_its_length_and_sizes() {
        let h = header(40, 12);
        assert_eq!(
            parse(&h).unwrap(),
            Header {
                len: h.len() as u64,
                uncompressed: 40,
                compressed: 12
            }
        );
        // Cut anywhere, it asks for more bytes.
        for cut in 0..h.len() {
            assert!(parse(&h[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn headers_without_sizes_or_nested_without_end_are_refused() {
        assert!(parse(&[0x15, 0x00, 0x00]).is_err(), "no sizes");
        // Structs in structs, lists in lists, deeper than any header:
        // refused, with no stack overflow.
        for nest in [[0x1c, 0x1c], [0x19, 0x19]] {
            let mut deep = vec![0x15, 0x02, 0x15, 0x02];
            for _ in 0..10_000 {
                deep.extend(nest);
            }
            assert!(parse(&deep).is_err());
        }
    }
}
