//! `tcpcong record`: capture every congestion-state transition (and, by
//! default, flow lifecycle) into a schema v1 Parquet file.
//!
//! The pieces, in the order data flows: `attach` (which hook this kernel
//! offers) → `load` (checks, skeleton, filters)
//! → `buffer` (ring or perf transport) → `raw` (decoding) → `capture`
//! (ordering, the loop) → `writer` (Parquet).

pub mod attach;
pub mod buffer;
pub mod capture;
pub mod host;
pub mod load;
pub mod raw;
pub mod series;
pub mod skel;
pub mod writer;

use std::time::Duration;

use crate::cli::RecordArgs;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::schema::{Metadata, SCHEMA_VERSION};
use capture::{CaptureStats, Progress, Sink};
use load::KernelConfig;
use series::{Rotation, Series};
use writer::RecordingWriter;

/// Where a capture goes: one file, or a rotated series in a directory.
enum Output {
    File(Box<RecordingWriter>),
    Series(Box<Series>),
}

struct RecordSink {
    out: Output,
    duration: Option<Duration>,
    /// The series' first file could not be created: reported at the first
    /// write, so that no event is dropped unnoticed.
    failed: Option<Error>,
}

impl Sink for RecordSink {
    fn started(&mut self, start_ktime_ns: u64, attach: &str) {
        let target = match &mut self.out {
            Output::File(w) => w.target().display().to_string(),
            Output::Series(s) => {
                s.set_attach(attach);
                self.failed = s.begin(start_ktime_ns, 0).err();
                format!("a series of files in {}", s.root().display())
            }
        };
        eprintln!(
            "Recording TCP congestion-state transitions into {target}{}... Hit Ctrl-C to end.",
            self.duration
                .map(|d| format!(" for {:.1}s", d.as_secs_f64()))
                .unwrap_or_default()
        );
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match &mut self.out {
            Output::File(w) => w.write(events),
            Output::Series(s) => s.write(events, progress),
        }
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
        attach: stats.attach.clone(),
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

/// A directory (existing, or named with a trailing slash) means a series.
fn wants_series(path: &std::path::Path) -> bool {
    path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/')
}

pub fn run(args: &RecordArgs) -> Result<()> {
    let cfg = KernelConfig::from_args(&args.ports, &args.capture)?;
    let series = wants_series(&args.output);
    let rotation = Rotation {
        every_ns: args
            .rotate_seconds
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64),
        bytes: args.rotate_size,
        max_total: args.max_total,
    };
    if !series
        && (rotation.every_ns.is_some() || rotation.bytes.is_some() || rotation.max_total.is_some())
    {
        return Err(Error::Usage(format!(
            "--rotate-seconds, --rotate-size and --max-total need a directory: -o {}/",
            args.output.display()
        )));
    }
    load::preflight(cfg.attach)?;
    let clock_offset_ns = host::clock_offset_ns();
    let out = if series {
        let s = Series::open(&args.output, rotation, &cfg, clock_offset_ns)?;
        Output::Series(Box::new(s))
    } else {
        let w = RecordingWriter::create(&args.output, args.force, clock_offset_ns)?;
        Output::File(Box::new(w))
    };
    let mut sink = RecordSink {
        out,
        duration: args.duration,
        failed: None,
    };
    let stats = match capture::run(&cfg, args.duration, &mut sink) {
        Ok(stats) => stats,
        Err(e) => return Err(abandon(sink.out, e)),
    };

    let (summary, events, gaps) = match sink.out {
        Output::File(w) => {
            let (events, flows, gaps) = (w.events(), w.flows(), w.gaps());
            let target = w.target().to_path_buf();
            let size = w.finish(metadata(&cfg, &stats, clock_offset_ns))?;
            let summary = format!(
                "wrote {events} events of {flows} flows to {} ({size} bytes)",
                target.display()
            );
            (summary, events, gaps)
        }
        Output::Series(mut s) => {
            if let Err(e) = s.finish(&stats) {
                return Err(abandon(Output::Series(s), e));
            }
            let summary = format!(
                "wrote {} events in {} files to {} ({} bytes)",
                s.events,
                s.files,
                s.root().display(),
                s.bytes
            );
            (summary, s.events, s.gaps)
        }
    };
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
        "tcpcong: {summary}, {} lost events{}",
        stats.lost_events(),
        loss_detail(&stats)
    );
    if stats.bpf_run_ns > 0 && events > 0 {
        eprintln!(
            "tcpcong: in-kernel cost {} ns per event ({} ns in {} program runs; kernel.bpf_stats_enabled is on)",
            stats.bpf_run_ns / events,
            stats.bpf_run_ns,
            stats.bpf_runs
        );
    }
    Ok(())
}

/// After a failure (a full disk, say): the file being written cannot get
/// its footer, so it is removed and its events are counted as lost; files
/// completed before stay valid.
fn abandon(out: Output, err: Error) -> Error {
    let lost = match out {
        Output::File(w) => Some((*w).abandon()),
        Output::Series(mut s) => s.abandon(),
    };
    match lost {
        // Nothing was lost (e.g. the programs never loaded): the error alone.
        Some((path, events)) if events > 0 => incomplete(err, &path, events),
        _ => err,
    }
}

/// The error for a recording file that could not be completed.
pub fn incomplete(err: Error, path: &std::path::Path, events: u64) -> Error {
    Error::Runtime(format!(
        "{err}; {} could not be completed: its {events} events are lost (earlier files are complete)",
        path.display()
    ))
}

/// Why events were lost, for the one summary line.
pub fn loss_detail(stats: &CaptureStats) -> String {
    if stats.lost_events() == 0 {
        return String::new();
    }
    let parts: Vec<String> = [
        (stats.lost, "buffer or table full, or never committed"),
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
