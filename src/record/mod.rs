//! `tcpcong record`: capture every congestion-state transition (and, by
//! default, flow lifecycle) into a schema v1 Parquet file.
//!
//! The pieces, in the order data flows: `load` (checks, skeleton, filters)
//! → `buffer` (ring or perf transport) → `raw` (decoding) → `capture`
//! (ordering, the loop) → `writer` (Parquet).

pub mod buffer;
pub mod capture;
pub mod host;
pub mod load;
pub mod raw;
pub mod skel;
pub mod writer;

use std::time::{Duration, Instant};

use crate::cli::RecordArgs;
use crate::error::Result;
use crate::event::Event;
use crate::schema::{Metadata, SCHEMA_VERSION};
use capture::{CaptureStats, Sink};
use load::KernelConfig;
use writer::RecordingWriter;

struct FileSink<'a> {
    writer: &'a mut RecordingWriter,
    duration: Option<Duration>,
}

impl Sink for FileSink<'_> {
    fn started(&mut self, _start_ktime_ns: u64) {
        eprintln!(
            "Recording TCP congestion-state transitions into {}{}... Hit Ctrl-C to end.",
            self.writer.target().display(),
            self.duration
                .map(|d| format!(" for {:.1}s", d.as_secs_f64()))
                .unwrap_or_default()
        );
    }

    fn events(&mut self, events: &[Event], _complete_until: u64) -> Result<()> {
        self.writer.write(events)
    }
}

/// The metadata object of a finished capture.
pub fn metadata(cfg: &KernelConfig, stats: &CaptureStats, clock_offset_ns: i64) -> Metadata {
    let wall = |k: u64| k as i64 + clock_offset_ns;
    Metadata {
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: host::hostname(),
        kernel: host::kernel_release(),
        boot_id: host::boot_id(),
        start: host::rfc3339(wall(stats.start_ktime_ns)),
        end: host::rfc3339(wall(stats.end_ktime_ns)),
        start_ktime_ns: stats.start_ktime_ns,
        end_ktime_ns: stats.end_ktime_ns,
        clock_offset_ns,
        attach: load::ATTACH.to_string(),
        buffer: cfg.buffer.name().to_string(),
        filters: cfg.filters.clone(),
        lifecycle: cfg.lifecycle,
        lost_events: stats.lost_events(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        events: 0,
        flows: 0,
        sorted: true,
    }
}

pub fn run(args: &RecordArgs) -> Result<()> {
    let cfg = KernelConfig::from_args(&args.ports, &args.capture)?;
    load::preflight()?;
    let clock_offset_ns = host::clock_offset_ns();
    let mut writer = RecordingWriter::create(&args.output, args.force, clock_offset_ns)?;
    let deadline = args.duration.map(|d| Instant::now() + d);

    let mut sink = FileSink {
        writer: &mut writer,
        duration: args.duration,
    };
    let stats = capture::run(&cfg, deadline, &mut sink)?;
    let meta = metadata(&cfg, &stats, clock_offset_ns);
    let (events, flows, target) = (
        writer.events(),
        writer.flows(),
        writer.target().to_path_buf(),
    );
    let size = writer.finish(meta)?;
    eprintln!(
        "tcpcong: wrote {events} events of {flows} flows to {} ({size} bytes), {} lost events{}",
        target.display(),
        stats.lost_events(),
        if stats.lost_events() > 0 {
            " (the kernel could not hand them over: see lost_events in the file)"
        } else {
            ""
        }
    );
    Ok(())
}
