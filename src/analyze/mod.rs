//! `tcpcong analyze`: the seed's duration tables and histograms, recomputed
//! offline from one or many recordings.
//!
//! `reader` finds and streams recordings, `engine` does the arithmetic (the
//! same engine live mode feeds), `report` renders. This module only wires
//! them: it places every file on one timeline, decides the span to report,
//! and says on stderr what the numbers cannot show (lost events).

pub mod engine;
pub mod hardening;
pub mod reader;
pub mod report;

use std::io::{self, BufWriter, Write};

use crate::cli::{AnalyzeArgs, Format, ReportArgs, Selection};
use crate::error::{Error, Result};
use engine::{Engine, EngineConfig, Summary, Unit, WindowReport};
use reader::{Columns, Dataset, Item, RowFilter};

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
                report::write_csv(out, w, a.all, self.lost_events)
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

/// The span `--since`/`--until` select within the dataset: start, end,
/// and the `--until` bound if given.
pub fn time_span(sel: &Selection, data: &Dataset) -> Result<(u64, u64, Option<u64>)> {
    let at = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| parse_time(flag, s, data.start_ns))
            .transpose()
    };
    let (since, until) = (at("--since", &sel.since)?, at("--until", &sel.until)?);
    if let (Some(s), Some(u)) = (since, until) {
        if u <= s {
            return Err(Error::Usage("--until must be later than --since".into()));
        }
    }
    if since.is_some_and(|s| s >= data.end_ns) {
        return Err(Error::Usage(format!(
            "--since is after the end of the recordings ({})",
            crate::record::host::rfc3339(data.end_ns as i64)
        )));
    }
    let start_ns = since.unwrap_or(data.start_ns).max(data.start_ns);
    let end_ns = until.unwrap_or(data.end_ns).min(data.end_ns).max(start_ns);
    Ok((start_ns, end_ns, until))
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
    let data = Dataset::open(&reader::discover(&args.inputs)?)?;
    let (start_ns, end_ns, until) = time_span(&args.select, &data)?;
    if args.report.dist && args.report.format != Format::Table {
        return Err(Error::Usage(
            "-d draws text histograms: use it without --format json/csv".into(),
        ));
    }
    if let Some(iv) = args.report.interval {
        let windows = (end_ns - start_ns) as u128 / iv.as_nanos().max(1);
        if windows > u128::from(MAX_WINDOWS) {
            return Err(Error::Usage(format!(
                "an interval of {:?} makes {windows} windows of this recording; choose a longer one",
                iv
            )));
        }
    }
    let lost_events = data.lost_events;
    let filter = RowFilter::from(&args.select);
    let lifecycle = data.lifecycle;
    let mut engine = Engine::new(engine_config(&args.report, start_ns, until, lifecycle));
    data.scan(&filter, Columns::Analysis, &mut |item| match item {
        Item::Span(boot, span) => {
            engine.set_span(boot, span);
            Ok(())
        }
        Item::Row(row) => {
            let addr = row.ev.addr;
            engine.push(row.t_ns, row.key, row.ev.change, move || addr);
            Ok(())
        }
    })?;
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
        let hint = if args.report.all {
            ""
        } else {
            "; --all also shows flows without changes"
        };
        eprintln!(
            "tcpcong: no flow changed congestion state in the selected data ({} flows seen{hint})",
            summary.flows
        );
    }
    warn_losses(lost_events, &summary);
    Ok(())
}

pub fn stdout_err(e: io::Error) -> Error {
    Error::io(std::path::Path::new("<stdout>"), e)
}
