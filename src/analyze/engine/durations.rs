//! The duration table of a dataset: the engine run over a dataset's scan,
//! on threads. `analyze` prints what this computes, and the Python package
//! returns it as a table. And the episodes of a dataset, the episode
//! tracker run over its scan.
//!
//! Several boots spread over threads by boot: boots share no flows, so each
//! thread reads and computes its own boots with an engine of its own, and
//! the summaries merge exactly as sharded ones do. One boot on several
//! threads deals its flows out to engines instead ([`Sharded`]).

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::episodes::{Episode, Episodes};
use super::sharded::Sharded;
use super::{Accounting, EngineConfig, Summary, Unit, WINDOWS_BUDGET};
use crate::analyze::caveats;
use crate::analyze::render::arrow::Table;
use crate::analyze::render::printer::{ReportConfig, Style};
use crate::error::{Error, Result};
use crate::event::{Event, FlowKey};
use crate::record::format::reader::{Columns, Dataset, Item, RowFilter};

/// What a dataset's scan gave: the engine's summary, and how many events
/// two overlapping captures both recorded (counted once).
pub struct Computed {
    pub summary: Summary,
    pub duplicates: u64,
}

/// The engine over `data`'s kept rows, up to `end_ns`, on `threads`.
pub fn compute(
    data: Dataset,
    filter: &RowFilter,
    cfg: &EngineConfig,
    threads: usize,
    end_ns: u64,
) -> Result<Computed> {
    let parts = data.by_boot();
    let computed = if threads <= 1 || parts.len() <= 1 {
        on_one_thread(parts, filter, cfg, threads, end_ns, WINDOWS_BUDGET)?
    } else {
        on_threads(parts, filter, cfg, threads, end_ns)?
    };
    if computed.summary.over_budget {
        return Err(Error::ReportTooLarge {
            mib: WINDOWS_BUDGET >> 20,
        });
    }
    Ok(computed)
}

/// Boots spread over `threads`, each read on one.
fn on_threads(
    parts: Vec<Dataset>,
    filter: &RowFilter,
    cfg: &EngineConfig,
    threads: usize,
    end_ns: u64,
) -> Result<Computed> {
    let threads = threads.min(parts.len());
    let mut shares: Vec<Vec<Dataset>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, part) in parts.into_iter().enumerate() {
        shares[i % threads].push(part);
    }
    let done: Vec<Result<Computed>> = std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .into_iter()
            .map(|share| {
                // The filter remembers flows' ports: one per thread.
                let filter = filter.clone();
                let budget = WINDOWS_BUDGET / threads as u64;
                scope.spawn(move || on_one_thread(share, &filter, cfg, 1, end_ns, budget))
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
        let c = d?;
        summaries.push(c.summary);
        duplicates += c.duplicates;
    }
    Ok(Computed {
        summary: Summary::merge(summaries),
        duplicates,
    })
}

/// `parts` read one after the other on this thread, into one engine
/// (sharded over `threads`).
fn on_one_thread(
    parts: Vec<Dataset>,
    filter: &RowFilter,
    cfg: &EngineConfig,
    threads: usize,
    end_ns: u64,
    budget: u64,
) -> Result<Computed> {
    let mut engine = Sharded::new(cfg.clone(), threads, budget);
    let mut duplicates = 0;
    for part in parts {
        duplicates += part.scan(filter, Columns::Analysis, &mut |item| {
            match item {
                Item::Span(boot, s) => engine.set_span(boot, s),
                Item::Row(row) => engine.push(row.t_ns, row.key, row.ev.change, &row.ev.addr),
            }
            Ok(())
        })?;
    }
    Ok(Computed {
        summary: engine.finish(end_ns),
        duplicates,
    })
}

/// A dataset's per-flow table (every row, one window) as Arrow batches,
/// and what it cannot show: what the Python package returns.
pub struct TableOf {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The lines analyze prints on stderr beside the same table.
    pub caveats: Vec<String>,
}

/// The table of `data`; `all`: also flows without changes.
pub fn table(data: Dataset, accounting: Accounting, all: bool, threads: usize) -> Result<TableOf> {
    let cfg = EngineConfig {
        accounting,
        lifecycle: data.lifecycle,
        start_ns: data.start_ns,
        until_ns: None,
        interval_ns: None,
        align: false,
        hist_unit: Unit::Millis,
    };
    let report = ReportConfig {
        style: Style::Json,
        histogram: false,
        micros: false,
        timestamp: false,
        all,
        sort: None,
        top: None,
        by: None,
        wide: false,
        align: false,
    };
    let table = Table::new(report, data.boots(), data.lost_events);
    let (end_ns, lost_events, gaps, lifecycle) =
        (data.end_ns, data.lost_events, data.gaps, data.lifecycle);
    let computed = compute(data, &RowFilter::default(), &cfg, threads, end_ns)?;
    let batches = computed
        .summary
        .windows
        .iter()
        .filter_map(|w| table.batch(w).transpose())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut notes: Vec<String> = caveats::duplicates(computed.duplicates)
        .into_iter()
        .collect();
    notes.extend(caveats::losses(lost_events, Some(gaps), &computed.summary));
    notes.extend(caveats::without_lifecycle(accounting, lifecycle));
    Ok(TableOf {
        schema: table.schema(),
        batches,
        caveats: notes,
    })
}

/// The episodes of `data`'s rows that `filter` keeps in `[start_ns,
/// end_ns)`, handed to `each` as they complete (memory stays the flows'),
/// those in progress at the end censored where their boot's recordings
/// end. Returns how many events two overlapping captures both recorded.
pub fn episodes(
    data: Dataset,
    filter: &RowFilter,
    range: (u64, u64),
    each: &mut dyn FnMut(Episode) -> Result<()>,
) -> Result<u64> {
    let mut scan = EpisodeScan::new(range);
    let duplicates = data.scan(filter, Columns::Episodes, &mut |item| {
        scan.item(&item, each)
    })?;
    scan.finish(each)?;
    Ok(duplicates)
}

/// The episode tracker over a scan's items, for a scan that does more
/// (the report's): what [`episodes`] runs.
pub struct EpisodeScan {
    tracker: Episodes,
    /// Where each boot's recordings end, within the range.
    ends: BTreeMap<u32, u64>,
    range: (u64, u64),
}

impl EpisodeScan {
    /// Rows in `[start_ns, end_ns)` count.
    pub fn new(range: (u64, u64)) -> EpisodeScan {
        EpisodeScan {
            tracker: Episodes::default(),
            ends: BTreeMap::new(),
            range,
        }
    }

    /// One item of a scan that reads at least [`Columns::Episodes`]; the
    /// episodes it completes go to `each`.
    pub fn item(
        &mut self,
        item: &Item<'_>,
        each: &mut dyn FnMut(Episode) -> Result<()>,
    ) -> Result<()> {
        let (start_ns, end_ns) = self.range;
        match item {
            Item::Span(boot, s) => {
                let end = self.ends.entry(*boot).or_default();
                *end = (*end).max(s.end_ns.min(end_ns));
            }
            Item::Row(r) if r.t_ns >= start_ns && r.t_ns < end_ns => {
                self.tracker.push(r.t_ns, r.key, &r.ev);
                for e in self.tracker.take() {
                    each(e)?;
                }
            }
            Item::Row(_) => {}
        }
        Ok(())
    }

    /// The flow a row is evidence of (see [`Episodes::credited`]).
    pub fn credited(&self, key: FlowKey, ev: &Event) -> FlowKey {
        self.tracker.credited(key, ev)
    }

    /// The episodes still in progress, censored at their boot's end.
    pub fn finish(self, each: &mut dyn FnMut(Episode) -> Result<()>) -> Result<()> {
        let (ends, end_ns) = (self.ends, self.range.1);
        for e in self
            .tracker
            .finish(&|boot| ends.get(&boot).copied().unwrap_or(end_ns))
        {
            each(e)?;
        }
        Ok(())
    }
}
