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
        gaps: 0,
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
    let (events, flows, gaps) = (writer.events(), writer.flows(), writer.gaps());
    let target = writer.target().to_path_buf();
    let size = writer.finish(meta)?;
    if gaps > 0 {
        eprintln!(
            "tcpcong: {gaps} transitions happened without an event (a ca_state event did not start where its flow's previous one ended); analyze counts them as mismatches"
        );
    }
    if stats.late > 0 {
        eprintln!(
            "tcpcong: {} events arrived after later ones were written (a preempted program, perf buffer); the file is marked unsorted and analyze sorts it",
            stats.late
        );
    }
    eprintln!(
        "tcpcong: wrote {events} events of {flows} flows to {} ({size} bytes), {} lost events{}",
        target.display(),
        stats.lost_events(),
        loss_detail(&stats)
    );
    Ok(())
}

/// Why events were lost, for the one summary line.
pub fn loss_detail(stats: &CaptureStats) -> String {
    if stats.lost_events() == 0 {
        return String::new();
    }
    let parts: Vec<String> = [
        (stats.lost, "buffer full or never committed"),
        (
            stats.missed,
            "skipped by the kernel: program re-entered on one CPU",
        ),
        (stats.malformed, "undecodable"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    format!(" ({}; see lost_events in the file)", parts.join(", "))
}
