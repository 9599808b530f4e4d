//! A capture's unfinished file: its rows as an Arrow IPC stream, appended
//! about once a second, so that a capture that is killed (or crashes, or
//! is still running) can be read up to its last second.
//!
//! The Parquet file a capture ends with cannot be read until its footer
//! is written, and its rows stay in memory until their row group (2^20
//! rows) is complete. So every batch the Parquet file gets is first
//! appended here, whole, as one IPC message: each complete message is
//! readable without the ones after it (`analyze` reads them, see
//! `reader::journal`, and so does `pyarrow.ipc.open_stream`). When the
//! Parquet file is complete it takes the journal's place and the journal
//! goes. LZ4 (the IPC format's fast codec) keeps the journal's CPU small
//! beside the Parquet encoding; its size matters less, as it is deleted.

use std::fs::File;
use std::io::{BufWriter, Write};

use arrow_array::RecordBatch;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
use arrow_schema::{ArrowError, Schema};

/// How often the rows in memory are appended (also when few): what a
/// killed capture may lose.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The most rows one message holds (the writer's batch).
pub const MESSAGE_ROWS_MAX: usize = 65_536;

pub struct Journal {
    stream: StreamWriter<BufWriter<File>>,
}

impl Journal {
    /// Writes the stream's schema message at the start of `file`.
    pub fn start(file: File, schema: &Schema) -> Result<Journal, ArrowError> {
        let opts =
            IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
        let mut stream = StreamWriter::try_new_with_options(BufWriter::new(file), schema, opts)?;
        stream.get_mut().flush()?;
        Ok(Journal { stream })
    }

    /// Appends `batch` as one message and hands it to the kernel, so that
    /// it outlives this process (not a power cut: that takes what the
    /// kernel has not yet written back).
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.stream.write(batch)?;
        self.stream.get_mut().flush()?;
        Ok(())
    }
}
