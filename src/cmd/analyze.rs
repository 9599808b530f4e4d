//! `tcpcong analyze`: the seed's duration tables and histograms, recomputed
//! offline from one or many recordings. The reader streams the recordings
//! on one timeline, the engine does the arithmetic (the same engine live
//! mode feeds), the printer renders; this decides the span to report and
//! says on stderr what the numbers cannot show.

use std::io::{self, BufWriter};

use super::{open_dataset, warn_losses, ReportPlan, Selection, NO_FILTER};
use crate::analyze::engine::durations::{self, Computed};
use crate::analyze::render::arrow::{Table, TableFile};
use crate::analyze::render::printer::Printer;
use crate::error::{Error, Result};
use crate::messages;
use crate::record::format::reader::Dataset;

/// The largest number of windows a report may have: a guard against an
/// interval far too small for the recording, which would exhaust memory.
const MAX_WINDOWS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Files, folders and globs.
    pub inputs: Vec<String>,
    pub select: Selection,
    pub report: ReportPlan,
    /// The reading thread and the engines' (see [`Sharded`]).
    pub threads: usize,
    /// `--format parquet -o FILE`: the table goes to this file.
    pub parquet: Option<super::NewFile>,
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
    if let Some(out) = &plan.parquet {
        out.check(data.recordings().map(|(path, _)| path))?;
    }
    let span = plan.select.span(&data)?;
    if let Some(iv) = plan.report.interval_ns {
        let windows = (span.end_ns - span.start_ns) / iv.max(1);
        if windows > MAX_WINDOWS {
            return Err(Error::Usage(format!(
                "an interval of {:?} makes {windows} windows of this recording; choose a longer one",
                std::time::Duration::from_nanos(iv)
            )));
        }
    }
    let (lost_events, gaps) = (data.lost_events, data.gaps);
    let recorded = Recorded::of(&data);
    let boots = data.boots();
    let filter = plan.select.rows();
    let lifecycle = data.lifecycle;
    let cfg = plan.report.engine(span.start_ns, span.until_ns, lifecycle);
    let Computed {
        summary,
        duplicates,
    } = durations::compute(data, &filter, &cfg, plan.threads, span.end_ns)?;
    super::tell_duplicates(duplicates);

    let limit = usize::try_from(plan.report.outputs.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let windows = summary.windows.iter().take(limit);
    let visible_rows = match &plan.parquet {
        Some(out) => out.write(|file| {
            let bad = |source| Error::Parquet {
                path: out.path.clone(),
                source,
            };
            let rows = Table::new(plan.report.report, boots, lost_events);
            let mut table = TableFile::new(BufWriter::new(file), rows).map_err(bad)?;
            for w in windows {
                table.window(w).map_err(bad)?;
            }
            let rows = table.rows;
            table.finish().map_err(bad)?;
            Ok(rows)
        })?,
        None => {
            let mut printer = Printer::new(BufWriter::new(io::stdout().lock()), plan.report.report);
            printer.set_lost_events(lost_events);
            printer.set_boots(boots);
            for w in windows {
                printer.window(w).map_err(Error::Stdout)?;
            }
            printer.flush().map_err(Error::Stdout)?;
            printer.visible_rows
        }
    };
    if visible_rows == 0 && !plan.report.report.histogram {
        // The flows timed, as compare and report count them (a listening
        // socket's close, or a flow's events before --since, time none).
        // In the windows shown (`outputs` may stop before the data does).
        let timed = crate::analyze::engine::timed_flows(summary.windows.iter().take(limit));
        if timed == 0 {
            recorded.explain_nothing(&plan.select, lost_events);
        } else {
            let hint = if plan.report.report.all {
                ""
            } else {
                "; --all also shows the flows that were only in open"
            };
            messages::say(format_args!(
                "no flow changed congestion state in the selected data ({} timed{hint})",
                super::plural(timed, "flow")
            ));
        }
    }
    warn_losses(lost_events, Some(gaps), &summary);
    super::warn_without_lifecycle(plan.report.accounting, lifecycle);
    Ok(())
}

/// What the recordings hold, for saying why a report is empty.
struct Recorded {
    events: u64,
    /// The sockets each distinct capture kept, as its flags.
    kept: Vec<String>,
}

impl Recorded {
    fn of(data: &Dataset) -> Recorded {
        let mut kept: Vec<String> = data
            .recordings()
            .map(|(_, m)| super::recording::kept_by(&m.filters))
            .collect();
        kept.sort();
        kept.dedup();
        Recorded {
            events: data.recordings().map(|(_, m)| m.events).sum(),
            kept,
        }
    }

    /// Why no flow is in the report: none was recorded, every event was
    /// lost, the events name no flow's congestion state, or the selection
    /// left none. `lost`: the recordings' lost events.
    fn explain_nothing(&self, select: &Selection, lost: u64) {
        let flags = select.flags();
        if self.events == 0 && lost > 0 {
            messages::say(format_args!(
                "the recordings hold no events: the capture lost all it had ({lost}, see the warning)"
            ));
        } else if self.events == 0 {
            messages::say(format_args!(
                "the recordings hold no events: no TCP socket {} changed state while they were recorded (was the traffic in that namespace, on those ports, at that time?)",
                self.kept.join(", or ")
            ));
        } else if flags == NO_FILTER {
            messages::say(format_args!(
                "the recordings' {} events time no flow (births, closes or listening sockets only); `tcpcong events` lists them",
                self.events
            ));
        } else {
            messages::say(format_args!(
                "the selection ({flags}) keeps none of the recordings' {} events; `tcpcong events` without it lists them",
                self.events
            ));
        }
    }
}
