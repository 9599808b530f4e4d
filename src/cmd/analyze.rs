//! `tcpcong analyze`: the seed's duration tables and histograms, recomputed
//! offline from one or many recordings. The reader streams the recordings
//! on one timeline, the engine does the arithmetic (the same engine live
//! mode feeds), the printer renders; this decides the span to report and
//! says on stderr what the numbers cannot show.

use std::io::{self, BufWriter};
use std::path::PathBuf;

use super::{open_dataset, warn_losses, ReportPlan, Selection};
use crate::analyze::engine::{Engine, EngineConfig, Summary};
use crate::analyze::report::{Boot, Printer};
use crate::analyze::sharded::Sharded;
use crate::analyze::table::TableFile;
use crate::error::{Error, Result};
use crate::messages;
use crate::record::format::reader::{Columns, Dataset, Item};

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
    pub parquet: Option<PathBuf>,
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
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
    let boots = data.boots();
    let filter = plan.select.rows();
    let lifecycle = data.lifecycle;
    let cfg = plan.report.engine(span.start_ns, span.until_ns, lifecycle);
    let (summary, duplicates) = if plan.threads > 1 && boots.len() > 1 {
        by_boot(data, plan, &cfg, span.end_ns)?
    } else {
        let mut engine = Sharded::new(cfg, plan.threads);
        let duplicates = data.scan(&filter, Columns::Analysis, &mut |item| {
            match item {
                Item::Span(boot, s) => engine.set_span(boot, s),
                Item::Row(row) => engine.push(row.t_ns, row.key, row.ev.change, &row.ev.addr),
            }
            Ok(())
        })?;
        (engine.finish(span.end_ns), duplicates)
    };
    super::tell_duplicates(duplicates);

    let boots: Vec<Boot> = boots
        .into_iter()
        .map(|b| Boot {
            host: b.host,
            boot_id: b.boot_id,
            cgroup_paths: b.cgroup_paths,
        })
        .collect();
    let limit = usize::try_from(plan.report.outputs.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let windows = summary.windows.iter().take(limit);
    let visible_rows = match &plan.parquet {
        Some(path) => super::write_replacing(path, |file| {
            let bad = |source| Error::Parquet {
                path: path.clone(),
                source,
            };
            let mut table =
                TableFile::new(BufWriter::new(file), plan.report.report, boots, lost_events)
                    .map_err(bad)?;
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
        let hint = if plan.report.report.all {
            ""
        } else {
            "; --all also shows flows without changes"
        };
        messages::say(format_args!(
            "no flow changed congestion state in the selected data ({} flows seen{hint})",
            summary.flows
        ));
    }
    warn_losses(lost_events, Some(gaps), &summary);
    super::warn_without_lifecycle(plan.report.accounting, lifecycle);
    Ok(())
}

/// Several boots on several threads: boots share no flows, so each thread
/// reads and computes its own boots with an engine of its own, and the
/// summaries merge exactly as sharded ones do.
fn by_boot(data: Dataset, plan: &Plan, cfg: &EngineConfig, end_ns: u64) -> Result<(Summary, u64)> {
    let parts = data.by_boot();
    let threads = plan.threads.min(parts.len());
    let mut shares: Vec<Vec<Dataset>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, part) in parts.into_iter().enumerate() {
        shares[i % threads].push(part);
    }
    let done: Vec<Result<(Summary, u64)>> = std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    let filter = plan.select.rows();
                    let mut engine = Engine::new(cfg.clone());
                    let mut duplicates = 0;
                    for part in share {
                        duplicates += part.scan(&filter, Columns::Analysis, &mut |item| {
                            match item {
                                Item::Span(boot, s) => engine.set_span(boot, s),
                                Item::Row(r) => {
                                    engine.push(r.t_ns, r.key, r.ev.change, || r.ev.addr.clone())
                                }
                            }
                            Ok(())
                        })?;
                    }
                    Ok((engine.finish(end_ns), duplicates))
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut summaries = Vec::new();
    let mut duplicates = 0;
    for d in done {
        let (s, n) = d?;
        summaries.push(s);
        duplicates += n;
    }
    Ok((Summary::merge(summaries), duplicates))
}
