//! A capture's unfinished file (see [`crate::record::format::journal`]),
//! read up to its last complete message: the capture may still be
//! appending to it, or may have been killed in the middle of a message.
//!
//! The file may be anyone's (a folder others write to), so nothing in it
//! is taken on trust before memory is spent on it: every message's sizes
//! are checked against the file and against bounds a journal tcpcong
//! writes stays far below, before a byte of it is decompressed.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use arrow_ipc::reader::read_record_batch;
use arrow_ipc::{CompressionType, MessageHeader, MetadataVersion};
use arrow_schema::{ArrowError, SchemaRef};

use super::super::journal::MESSAGE_ROWS_MAX;
use super::super::schema::{Metadata, CAPTURE_KIND};
use super::file::{check_times, metadata_of};
use crate::error::{Error, Result};

/// Where a message starts: `0xFFFFFFFF`, then its header's length.
const CONTINUATION: u32 = 0xFFFF_FFFF;
/// The most a message's header may take: a batch's header lists two or
/// three buffers per column, a few KiB for tcpcong's columns.
const HEADER_MAX: usize = 1 << 20;
/// The most a message may hold, compressed or not: a journal's batch of
/// 65,536 rows takes about 15 MiB uncompressed.
const MESSAGE_MAX: u64 = 64 << 20;
/// Buffers in a message's body start on 8-byte boundaries and the body is
/// padded to 64: a body longer than its last buffer by more is not one
/// tcpcong wrote.
const BODY_PADDING_MAX: i64 = 64;
/// LZ4 cannot expand a block by more than this: a buffer claiming more is
/// crafted.
const LZ4_RATIO_MAX: i64 = 255;

/// One batch's message in the file.
struct Message {
    /// Its header (flatbuffer bytes).
    header: Vec<u8>,
    /// Where its body starts, and its length.
    body_at: u64,
    body_len: usize,
}

/// An unfinished file, its messages found and checked.
pub struct Journal {
    path: PathBuf,
    file: File,
    schema: SchemaRef,
    messages: Vec<Message>,
}

/// Why a journal cannot be read, in a user's words.
fn damaged(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::bad_input(path, damage(what))
}

fn damage(what: impl std::fmt::Display) -> String {
    format!("a capture's unfinished file that is damaged or not tcpcong's ({what})")
}

impl Journal {
    /// Finds the file's complete messages (a message the capture has not
    /// finished writing ends the file) and the capture's metadata: its
    /// start row's, ending at its last row. What is not known until a
    /// capture ends (its losses, its cgroups' names) is left out.
    pub fn open(path: &Path, file: File) -> Result<(Journal, Metadata)> {
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut at = 0u64;
        let nothing = || {
            Error::bad_input(
                path,
                "a capture's unfinished file with nothing in it yet: the capture was killed as it started, or is starting",
            )
        };
        let Some(first) = next_header(path, &file, len, &mut at)? else {
            return Err(nothing());
        };
        let schema = arrow_ipc::convert::try_schema_from_flatbuffer_bytes(&first.0)
            .map_err(|e| damaged(path, e))?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            schema: Arc::new(schema),
            messages: Vec::new(),
        };
        while let Some((header, body_len)) = next_header(path, &journal.file, len, &mut at)? {
            if at + body_len as u64 > len {
                // The capture is writing it, or was killed as it did.
                break;
            }
            check_header(&header, body_len).map_err(|e| damaged(path, e))?;
            journal.messages.push(Message {
                header,
                body_at: at,
                body_len,
            });
            at += body_len as u64;
        }
        if journal.messages.is_empty() {
            return Err(nothing());
        }
        let meta = journal.metadata()?;
        Ok((journal, meta))
    }

    /// The start row's metadata, with the end and order the rows show.
    fn metadata(&self) -> Result<Metadata> {
        let mut start = None;
        let (mut last, mut end, mut sorted, mut events) = (0u64, 0u64, true, 0u64);
        let projection = self.projection(&["ktime_ns", "kind", "new_state", "capture"]);
        for m in &self.messages {
            let batch = self
                .read(m, &projection)
                .map_err(|e| damaged(&self.path, e))?;
            let [Some(t), Some(kind), Some(state), Some(capture)] =
                ["ktime_ns", "kind", "new_state", "capture"].map(|n| batch.column_by_name(n))
            else {
                return Err(damaged(&self.path, "columns missing"));
            };
            let (Some(t), Some(kind), Some(state), Some(capture)) = (
                t.as_primitive_opt::<UInt64Type>(),
                kind.as_string_opt::<i32>(),
                state.as_string_opt::<i32>(),
                capture.as_string_opt::<i32>(),
            ) else {
                return Err(damaged(&self.path, "columns of other types"));
            };
            for i in 0..batch.num_rows() {
                let k = t.value(i);
                sorted &= k >= last;
                (last, end) = (k, end.max(k));
                match kind.value(i) {
                    CAPTURE_KIND if state.value(i) == "start" => match &start {
                        None => start = Some(capture.value(i).to_string()),
                        Some(s) if s != capture.value(i) => {
                            return Err(damaged(&self.path, "the rows of two captures"));
                        }
                        Some(_) => {}
                    },
                    CAPTURE_KIND | "snapshot" => {}
                    _ => events += 1,
                }
            }
        }
        let Some(start) = start else {
            return Err(damaged(&self.path, "no capture start row"));
        };
        let mut meta = metadata_of(&self.path, &start)?;
        meta.end_ktime_ns = meta.end_ktime_ns.max(end);
        meta.sorted = sorted;
        meta.events = events;
        check_times(&self.path, &meta)?;
        Ok(meta)
    }

    /// The rows, batch by batch, with the columns named (those the file
    /// has).
    pub fn into_batches(
        self,
        columns: &[&str],
    ) -> impl Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + 'static {
        let projection = self.projection(columns);
        (0..self.messages.len()).map(move |i| {
            self.read(&self.messages[i], &projection)
                .map_err(|e| ArrowError::IpcError(damage(e)))
        })
    }

    fn projection(&self, columns: &[&str]) -> Vec<usize> {
        columns
            .iter()
            .filter_map(|n| self.schema.index_of(n).ok())
            .collect()
    }

    /// One batch, read once from the file: its sizes are checked on the
    /// bytes it is decoded from (the file may change meanwhile).
    fn read(&self, m: &Message, projection: &[usize]) -> std::result::Result<RecordBatch, String> {
        let mut body = vec![0u8; m.body_len];
        self.file
            .read_exact_at(&mut body, m.body_at)
            .map_err(|e| e.to_string())?;
        let message = arrow_ipc::root_as_message(&m.header).map_err(|e| e.to_string())?;
        let batch = message.header_as_record_batch().ok_or("not a batch")?;
        check_sizes(batch, &body)?;
        let body = arrow_buffer::Buffer::from_vec(body);
        // The decoder asserts where it should return errors on some
        // malformed input: an input error, not a crash.
        crate::error::guarded(|| {
            read_record_batch(
                &body,
                batch,
                Arc::clone(&self.schema),
                &HashMap::new(),
                Some(projection),
                &message.version(),
            )
        })?
        .map_err(|e| e.to_string())
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// The header of the message at `*at` and its body's length, with `*at`
/// moved to the body; None at the stream's end or where the capture has
/// not finished writing the header.
fn next_header(
    path: &Path,
    file: &File,
    len: u64,
    at: &mut u64,
) -> Result<Option<(Vec<u8>, usize)>> {
    let mut prefix = [0u8; 8];
    if *at + 8 > len {
        return Ok(None);
    }
    file.read_exact_at(&mut prefix, *at)
        .map_err(|e| Error::io(path, e))?;
    // A power cut can leave blocks the kernel allocated but never wrote:
    // zeros, where the next message would have been.
    if prefix == [0; 8] && *at > 0 {
        return Ok(None);
    }
    let [c0, c1, c2, c3, l0, l1, l2, l3] = prefix;
    if u32::from_le_bytes([c0, c1, c2, c3]) != CONTINUATION {
        return Err(damaged(path, format!("no message at byte {at}")));
    }
    let header_len = i32::from_le_bytes([l0, l1, l2, l3]);
    // The end-of-stream marker: the capture finished writing the stream.
    if header_len == 0 {
        return Ok(None);
    }
    let header_len = usize::try_from(header_len)
        .ok()
        .filter(|&n| n <= HEADER_MAX)
        .ok_or_else(|| damaged(path, format!("a message header of {header_len} bytes")))?;
    if *at + 8 + header_len as u64 > len {
        return Ok(None);
    }
    let mut header = vec![0u8; header_len];
    file.read_exact_at(&mut header, *at + 8)
        .map_err(|e| Error::io(path, e))?;
    let message = arrow_ipc::root_as_message(&header).map_err(|e| damaged(path, e))?;
    if message.version() != MetadataVersion::V5 {
        return Err(damaged(path, "an IPC version tcpcong does not write"));
    }
    let body_len = u64::try_from(message.bodyLength())
        .ok()
        .filter(|&n| n <= MESSAGE_MAX)
        .ok_or_else(|| {
            damaged(
                path,
                format!("a message body of {} bytes", message.bodyLength()),
            )
        })?;
    let expected = if *at == 0 {
        MessageHeader::Schema
    } else {
        MessageHeader::RecordBatch
    };
    if message.header_type() != expected {
        return Err(damaged(path, "a message of a kind tcpcong does not write"));
    }
    *at += 8 + header_len as u64;
    Ok(Some((header, body_len as usize)))
}

/// Checks what a batch's header says before its body is read: its rows,
/// its codec, its buffers inside its body and the body no longer than
/// they need.
fn check_header(header: &[u8], body_len: usize) -> std::result::Result<(), String> {
    let message = arrow_ipc::root_as_message(header).map_err(|e| e.to_string())?;
    let batch = message.header_as_record_batch().ok_or("not a batch")?;
    if !(0..=MESSAGE_ROWS_MAX as i64).contains(&batch.length()) {
        return Err(format!("a batch of {} rows", batch.length()));
    }
    match batch.compression().map(|c| c.codec()) {
        None | Some(CompressionType::LZ4_FRAME) => {}
        Some(_) => return Err("a compression tcpcong does not write".into()),
    }
    let buffers = batch.buffers().ok_or("a batch without buffers")?;
    let mut used = 0i64;
    for b in buffers.iter() {
        let (offset, len) = (b.offset(), b.length());
        if offset < 0 || len < 0 || offset.saturating_add(len) > body_len as i64 {
            return Err("a buffer outside its message".into());
        }
        used = used.max(offset + len);
    }
    if body_len as i64 > used + BODY_PADDING_MAX {
        return Err(format!(
            "a message body of {body_len} bytes for {used} bytes of buffers"
        ));
    }
    Ok(())
}

/// Checks what a batch's buffers decompress to, on the bytes they will be
/// decompressed from, before any is: LZ4 cannot expand a buffer by more
/// than [`LZ4_RATIO_MAX`], and a message holds at most [`MESSAGE_MAX`].
fn check_sizes(batch: arrow_ipc::RecordBatch, body: &[u8]) -> std::result::Result<(), String> {
    let compressed = batch.compression().is_some();
    let mut decoded = 0i64;
    for b in batch.buffers().into_iter().flatten() {
        let (offset, len) = (b.offset() as usize, b.length());
        if !compressed || len == 0 {
            decoded = decoded.saturating_add(len);
            continue;
        }
        let size: [u8; 8] = body
            .get(offset..offset + 8)
            .filter(|_| len >= 8)
            .and_then(|b| b.try_into().ok())
            .ok_or("a compressed buffer without its length")?;
        let size = i64::from_le_bytes(size);
        // -1: stored uncompressed.
        let size = if size == -1 { len - 8 } else { size };
        if !(0..=len.saturating_mul(LZ4_RATIO_MAX)).contains(&size) {
            return Err(format!("a buffer said to decompress to {size} bytes"));
        }
        decoded = decoded.saturating_add(size);
    }
    if decoded > MESSAGE_MAX as i64 {
        return Err(format!(
            "a batch of {} MiB decompressed, more than a journal's batches take",
            decoded >> 20
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::record::format::schema::CaptureInfo;
    use crate::record::format::writer::{in_progress_path, RecordingWriter};
    use crate::time::Clock;

    /// A folder of its own for a test.
    fn folder(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tcpcong-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The bytes of a running capture's journal: its start row, then three
    /// batches of 100 events (ktime 1,001 to 1,300).
    fn journal_bytes(dir: &Path) -> Vec<u8> {
        let target = dir.join("run.parquet");
        let mut w = RecordingWriter::create(&target, false, Clock::new(0)).unwrap();
        let info = CaptureInfo::example();
        w.begin(&Metadata::new(&info, 1_000, 1_000, 0)).unwrap();
        for b in 0..3 {
            let events: Vec<Event> = (1..=100)
                .map(|i| Event::example(1_000 + b * 100 + i, 7, 0))
                .collect();
            w.write(&events).unwrap();
            w.flush().unwrap();
        }
        let bytes = std::fs::read(in_progress_path(&target)).unwrap();
        w.abandon();
        bytes
    }

    /// Opens `bytes` as a journal: its metadata and the ktimes of its rows.
    fn read(dir: &Path, bytes: &[u8]) -> Result<(Metadata, Vec<u64>)> {
        let path = dir.join(".read.parquet.inprogress");
        std::fs::write(&path, bytes).unwrap();
        let (j, meta) = Journal::open(&path, File::open(&path).unwrap())?;
        let mut ktimes = Vec::new();
        for b in j.into_batches(&["ktime_ns"]) {
            let b = b.unwrap();
            ktimes.extend(b.column(0).as_primitive::<UInt64Type>().values().iter());
        }
        Ok((meta, ktimes))
    }

    #[test]
    fn a_journal_is_read_up_to_its_last_complete_batch_wherever_it_was_cut() {
        let dir = folder("cut");
        let bytes = journal_bytes(&dir);
        let (meta, all) = read(&dir, &bytes).unwrap();
        let want: Vec<u64> = std::iter::once(1_000).chain(1_001..=1_300).collect();
        assert_eq!(all, want);
        assert_eq!((meta.start_ktime_ns, meta.end_ktime_ns), (1_000, 1_300));
        assert!(meta.sorted);
        assert_eq!(meta.events, 300, "the start row is no event");
        // Zeros after the last message (blocks a power cut left unwritten)
        // end it as its end does.
        let zeroed = [&bytes[..], &[0u8; 4096][..]].concat();
        assert_eq!(read(&dir, &zeroed).unwrap().1, want);
        // Cut anywhere, as a kill leaves it: whole batches of the rows
        // before, never an error once the start row's batch is complete.
        let mut seen = std::collections::BTreeSet::new();
        let mut unreadable_below = None;
        for len in (0..bytes.len()).rev().step_by(7) {
            match read(&dir, &bytes[..len]) {
                Ok((meta, rows)) => {
                    assert_eq!(rows[..], want[..rows.len()], "cut at {len}");
                    assert_eq!(meta.end_ktime_ns, *rows.last().unwrap());
                    assert!(rows.len() < want.len(), "cut at {len}");
                    assert_eq!(unreadable_below, None, "cut at {len}");
                    seen.insert(rows.len());
                }
                Err(e) => {
                    assert!(
                        e.to_string().contains("nothing in it yet"),
                        "cut at {len}: {e}"
                    );
                    unreadable_below.get_or_insert(len);
                }
            }
        }
        // The start row alone, then one, two whole batches.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 101, 201]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Where the header of the journal's last batch starts, and its body.
    fn last_batch(bytes: &[u8]) -> (usize, usize) {
        let (mut at, mut last) = (0, (0, 0));
        while at + 8 <= bytes.len() {
            let len = i32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            let m = arrow_ipc::root_as_message(&bytes[at + 8..at + 8 + len]).unwrap();
            last = (at + 8, at + 8 + len);
            at += 8 + len + m.bodyLength() as usize;
        }
        last
    }

    #[test]
    fn a_batch_claiming_more_than_a_journal_holds_is_refused_before_it_is_read() {
        let dir = folder("crafted");
        let bytes = journal_bytes(&dir);
        let (header, body) = last_batch(&bytes);
        let m = arrow_ipc::root_as_message(&bytes[header..body]).unwrap();
        let buffers = m.header_as_record_batch().unwrap().buffers().unwrap();
        // A compressed buffer that says it holds 1 TiB: refused, not
        // allocated.
        let b = buffers.iter().find(|b| b.length() >= 8).unwrap();
        let mut crafted = bytes.clone();
        let at = body + b.offset() as usize;
        crafted[at..at + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        let err = read(&dir, &crafted).unwrap_err().to_string();
        assert!(
            err.contains("a buffer said to decompress to 1099511627776 bytes"),
            "{err}"
        );
        // Not a journal at all.
        let err = read(&dir, b"PAR1 and then some bytes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no message at byte 0"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
