//! `tcpcong analyze`: the seed's duration tables and histograms, recomputed
//! offline from one or many recordings.
//!
//! `reader` finds and streams recordings, `engine` does the arithmetic (the
//! same engine live mode feeds), `report` renders. This module only wires
//! them: it places every file on one timeline, decides the span to report,
//! and says on stderr what the numbers cannot show (lost events).

pub mod engine;
pub mod reader;
pub mod report;

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use crate::cli::{AnalyzeArgs, Format, ReportArgs};
use crate::error::{Error, Result};
use engine::{Engine, EngineConfig, Span, Summary, Unit, WindowReport};
use reader::{Recording, RowFilter};

/// The largest number of windows a report may have: a guard against an
/// interval far too small for the recording, which would exhaust memory.
const MAX_WINDOWS: u64 = 1_000_000;

/// Renders windows in the chosen format, to stdout.
pub struct Printer<W: Write> {
    out: W,
    args: ReportArgs,
    lost_events: u64,
    header_done: bool,
    /// Rows printed: an empty report says so instead of printing nothing.
    pub visible_rows: u64,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, args: &ReportArgs, lost_events: u64) -> Printer<W> {
        Printer {
            out,
            args: args.clone(),
            lost_events,
            header_done: false,
            visible_rows: 0,
        }
    }

    pub fn window(&mut self, w: &WindowReport) -> io::Result<()> {
        let a = &self.args;
        self.visible_rows += w.rows.iter().filter(|r| a.all || r.changes > 0).count() as u64;
        let out: &mut dyn Write = &mut self.out;
        match a.format {
            Format::Table if a.dist => report::write_hist(out, w, a.microseconds, a.timestamp),
            Format::Table => report::write_table(
                out,
                w,
                &report::TableOpts {
                    micros: a.microseconds,
                    timestamp: a.timestamp,
                    all: a.all,
                },
            ),
            Format::Json => report::write_json(out, w, a.all, self.lost_events),
            Format::Csv => {
                if !self.header_done {
                    report::write_csv_header(out)?;
                    self.header_done = true;
                }
                report::write_csv(out, w, a.all)
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Hist unit and window length as the report arguments ask.
pub fn engine_config(
    args: &ReportArgs,
    start_ns: u64,
    until_ns: Option<u64>,
    lifecycle: bool,
) -> EngineConfig {
    EngineConfig {
        accounting: args.accounting.into(),
        lifecycle,
        start_ns,
        until_ns,
        interval_ns: args
            .interval
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64),
        hist_unit: if args.microseconds {
            Unit::Micros
        } else {
            Unit::Millis
        },
    }
}

/// What stderr must say beside any report: what the numbers cannot show.
pub fn warn_losses(lost_events: u64, s: &Summary) {
    if lost_events > 0 {
        eprintln!(
            "tcpcong: WARNING: the recording lost {lost_events} events (the kernel could not hand them over); flows around them may be incomplete"
        );
    }
    if s.mismatches > 0 {
        eprintln!(
            "tcpcong: WARNING: {} transitions did not start from the state their flow was in (lost or missed events); the unknown spans are not counted",
            s.mismatches
        );
    }
}

struct Input {
    rec: Recording,
    boot: u32,
    offset_ns: i64,
    start_ns: u64,
    end_ns: u64,
}

/// Opens every input and places it on the dataset's timeline: one boot, one
/// clock offset (the first file's), so that files of one boot keep exact
/// ktime order and durations.
fn open_inputs(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut boots: HashMap<String, (u32, i64)> = HashMap::new();
    let mut inputs = Vec::new();
    for p in paths {
        let rec = Recording::open(p)?;
        let n = boots.len() as u32;
        let &mut (boot, offset_ns) = boots
            .entry(rec.meta.boot_id.clone())
            .or_insert((n, rec.meta.clock_offset_ns));
        let wall = |k: u64| (k as i64).saturating_add(offset_ns).max(0) as u64;
        inputs.push(Input {
            start_ns: wall(rec.meta.start_ktime_ns),
            end_ns: wall(rec.meta.end_ktime_ns),
            rec,
            boot,
            offset_ns,
        });
    }
    inputs.sort_by_key(|i| (i.boot, i.start_ns));
    Ok(inputs)
}

/// RFC 3339, or seconds (fractions allowed) from the dataset's start.
fn parse_time(flag: &str, s: &str, start_ns: u64) -> Result<u64> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(start_ns.saturating_add((secs * 1e9) as u64));
        }
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|d| d.timestamp_nanos_opt())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{flag} {s}: expected RFC 3339 (2026-11-26T08:00:00Z) or seconds from the recording's start"
            ))
        })
}

pub fn run(args: &AnalyzeArgs) -> Result<()> {
    let paths = reader::discover(&args.inputs)?;
    let mut inputs = open_inputs(&paths)?;
    let data_start = inputs.iter().map(|i| i.start_ns).min().unwrap_or(0);
    let data_end = inputs.iter().map(|i| i.end_ns).max().unwrap_or(0);
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time("--since", s, data_start))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time("--until", s, data_start))
        .transpose()?;
    let start_ns = since.unwrap_or(data_start).max(data_start);
    let end_ns = until.unwrap_or(data_end).min(data_end).max(start_ns);
    if let Some(iv) = args.report.interval {
        let windows = (end_ns - start_ns) as u128 / iv.as_nanos().max(1);
        if windows > u128::from(MAX_WINDOWS) {
            return Err(Error::Usage(format!(
                "an interval of {:?} makes {windows} windows of this recording; choose a longer one",
                iv
            )));
        }
    }
    let lifecycle = inputs.iter().all(|i| i.rec.meta.lifecycle);
    let lost_events: u64 = inputs.iter().map(|i| i.rec.meta.lost_events).sum();
    let filter = RowFilter {
        localport: args.ports.localport,
        remoteport: args.ports.remoteport,
        flow: args.flow,
    };

    let mut engine = Engine::new(engine_config(&args.report, start_ns, until, lifecycle));
    let feed = |engine: &mut Engine, row: reader::Row| {
        let addr = row.addr;
        engine.push(row.t_ns, row.key, row.change, move || addr);
    };
    for mut group in overlapping_groups(&mut inputs) {
        let span = Span {
            start_ns: group.iter().map(|i| i.start_ns).min().unwrap_or(start_ns),
            end_ns: group.iter().map(|i| i.end_ns).max().unwrap_or(end_ns),
            lifecycle: group.iter().all(|i| i.rec.meta.lifecycle),
        };
        if let Some(first) = group.first() {
            engine.set_span(first.boot, span);
        }
        if group.len() == 1 && group[0].rec.meta.sorted {
            let i = group.remove(0);
            reader::for_each_row(i.rec, i.boot, i.offset_ns, &filter, &mut |r| {
                feed(&mut engine, r)
            })?;
        } else {
            // Out of order: merge in memory, stable so that ties keep file order.
            let mut rows = Vec::new();
            for i in group.drain(..) {
                reader::for_each_row(i.rec, i.boot, i.offset_ns, &filter, &mut |r| rows.push(r))?;
            }
            rows.sort_by_key(|r| r.t_ns);
            for r in rows {
                feed(&mut engine, r);
            }
        }
    }
    let summary = engine.finish(end_ns);

    let stdout = io::stdout().lock();
    let mut printer = Printer::new(BufWriter::new(stdout), &args.report, lost_events);
    let limit = args.report.outputs.unwrap_or(u64::MAX);
    for w in summary
        .windows
        .iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
    {
        printer.window(w).map_err(stdout_err)?;
    }
    printer.flush().map_err(stdout_err)?;
    if printer.visible_rows == 0 && !args.report.dist {
        eprintln!(
            "tcpcong: no flow changed congestion state in the selected data ({} flows seen; --all also shows flows without changes)",
            summary.flows
        );
    }
    warn_losses(lost_events, &summary);
    Ok(())
}

pub fn stdout_err(e: io::Error) -> Error {
    Error::io(std::path::Path::new("<stdout>"), e)
}

/// Splits inputs (sorted by boot and start) into runs that must be merged:
/// files of one boot whose capture spans overlap.
fn overlapping_groups(inputs: &mut Vec<Input>) -> Vec<Vec<Input>> {
    let mut groups: Vec<Vec<Input>> = Vec::new();
    let mut group_end = 0u64;
    for i in inputs.drain(..) {
        let joins = groups
            .last()
            .and_then(|g| g.last())
            .is_some_and(|last| last.boot == i.boot && i.start_ns < group_end);
        if joins {
            group_end = group_end.max(i.end_ns);
            if let Some(g) = groups.last_mut() {
                g.push(i);
            }
        } else {
            group_end = i.end_ns;
            groups.push(vec![i]);
        }
    }
    groups
}
