//! Many recordings as one dataset on one timeline, streamed in time
//! order: per boot one clock, overlapping captures merged (in memory,
//! within a budget) with the events both recorded counted once.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use rustc_hash::FxHashMap;

use super::super::schema::{Metadata, SCHEMA_MINOR};
use super::conform::conform;
use super::decode::{decode_batch, Columns, Item, Row};
use super::discover::finished_instead;
use super::file::{Recording, Source};
use super::filter::RowFilter;
use crate::error::{Error, Result};
use crate::event::{Boot, CgroupNames, Change, FlowKey, Span};
use crate::time::Clock;

/// Rows that may be merged in memory (files not in time order, captures
/// that overlap): about 220 bytes each, so under 1 GB. A file can claim
/// to be unsorted whatever it holds: this is what keeps a small file of
/// many rows from taking all the memory there is.
pub(super) const MERGE_ROWS_MAX: usize = 4 << 20;

pub(super) struct Input {
    rec: Recording,
    boot: u32,
    clock: Clock,
    start_ns: u64,
    end_ns: u64,
}

/// Many recordings as one dataset on one timeline: per boot one clock
/// offset (its first file's), so that files of one boot keep exact ktime
/// order and durations.
pub struct Dataset {
    inputs: Vec<Input>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub lost_events: u64,
    /// Transitions the recorders saw arrive without an event (`gaps`).
    pub gaps: u64,
    /// Every file recorded lifecycle events.
    pub lifecycle: bool,
}

impl Dataset {
    pub fn open(paths: &[PathBuf]) -> Result<Dataset> {
        // Each recording stays open until it is read.
        crate::files::raise_open_files_limit();
        let recordings = paths
            .iter()
            .filter_map(|p| match Recording::open(p) {
                // Its recording in its place, once.
                Err(e) => match finished_instead(p, &e) {
                    Some(done) if paths.contains(&done) => None,
                    Some(done) => Some(Recording::open(&done)),
                    None => Some(Err(e)),
                },
                opened => Some(opened),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Dataset::of_recordings(recordings))
    }

    /// Rows handed over in memory (Arrow batches, every column of whole
    /// recording files) as a dataset. A `filename` column tells their
    /// files apart (DuckDB's `filename = true`, Spark's
    /// `_metadata.file_path`); without it the rows are one file's. Each
    /// file's rows are taken in the order given, or by a `file_row_number`
    /// column (DuckDB's, Spark's `_metadata.row_index`) where there is one,
    /// which restores a file's order after an engine shuffled its rows.
    pub fn from_batches(batches: Vec<RecordBatch>) -> Result<Dataset> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if batches.is_empty() {
            return Err(Error::bad_input(
                Path::new("the rows given"),
                "no rows: pass the rows of whole recording files",
            ));
        }
        let recordings = by_file(batches)?
            .into_iter()
            .map(|(path, rows)| Recording::from_batches(path, rows))
            .collect::<Result<Vec<_>>>()?;
        Ok(Dataset::of_recordings(recordings))
    }

    pub(super) fn of_recordings(recordings: Vec<Recording>) -> Dataset {
        let mut boots: HashMap<String, (u32, i64)> = HashMap::new();
        let mut inputs = Vec::new();
        for rec in recordings {
            let n = boots.len() as u32;
            let &mut (boot, offset_ns) = boots
                .entry(rec.meta.boot_id.clone())
                .or_insert((n, rec.meta.clock_offset_ns));
            let clock = Clock::new(offset_ns);
            inputs.push(Input {
                start_ns: clock.wall(rec.meta.start_ktime_ns),
                end_ns: clock.wall(rec.meta.end_ktime_ns),
                rec,
                boot,
                clock,
            });
        }
        inputs.sort_by_key(|i| (i.boot, i.start_ns));
        Dataset::of(inputs)
    }

    /// Inputs sorted by boot and start, with what they add up to.
    pub(super) fn of(inputs: Vec<Input>) -> Dataset {
        Dataset {
            start_ns: inputs.iter().map(|i| i.start_ns).min().unwrap_or(0),
            end_ns: inputs.iter().map(|i| i.end_ns).max().unwrap_or(0),
            lost_events: inputs.iter().map(|i| i.rec.meta.lost_events).sum(),
            gaps: inputs.iter().map(|i| i.rec.meta.gaps).sum(),
            lifecycle: inputs.iter().all(|i| i.rec.meta.lifecycle),
            inputs,
        }
    }

    /// The dataset as one dataset per boot (each keeping the boot's index):
    /// boots share no flows and no timeline, so they can be scanned apart.
    pub fn by_boot(self) -> Vec<Dataset> {
        let mut parts: Vec<Vec<Input>> = Vec::new();
        for i in self.inputs {
            match parts.last_mut() {
                // Inputs are sorted by boot.
                Some(p) if p[0].boot == i.boot => p.push(i),
                _ => parts.push(vec![i]),
            }
        }
        parts.into_iter().map(Dataset::of).collect()
    }

    /// Per boot index (the `boot` of the flow keys a scan hands out): the
    /// host and boot id, as its first file names them.
    pub fn boots(&self) -> Vec<Boot> {
        let mut out: Vec<Boot> = Vec::new();
        for i in &self.inputs {
            let b = i.boot as usize;
            if out.len() <= b {
                out.resize(b + 1, Default::default());
            }
            let m = &i.rec.meta;
            if out[b].boot_id.is_empty() {
                out[b].host = m.hostname.clone();
                out[b].boot_id = m.boot_id.clone();
            }
            out[b]
                .cgroup_paths
                .extend(m.cgroup_paths.iter().map(|(k, v)| (*k, v.clone())));
            out[b]
                .containers
                .extend(m.containers.iter().map(|(k, v)| (*k, v.clone())));
        }
        out
    }

    /// Each recording and its metadata, by boot and start.
    pub fn recordings(&self) -> impl Iterator<Item = (&Path, &Metadata)> {
        self.inputs
            .iter()
            .map(|i| (i.rec.path.as_path(), &i.rec.meta))
    }

    /// Hands out every kept row, in time order within each boot. A sorted
    /// file that overlaps no other streams; overlapping or unsorted files
    /// are merged in memory (stable: ties keep file order), and an event
    /// that two overlapping captures both recorded is handed out once.
    /// Returns how many such duplicates were dropped.
    pub fn scan(
        self,
        filter: &RowFilter,
        columns: Columns,
        on: &mut dyn FnMut(Item<'_>) -> Result<()>,
    ) -> Result<u64> {
        let mut duplicates = 0;
        // A capture is a run of files where each starts no later than the
        // files before it end: overlapping (concurrent recorders) or
        // touching (one recorder's rotation). Touching files stream one
        // after the other; only overlapping ones need merging.
        for capture in runs(self.inputs, |start, end| start <= end) {
            let span = Span {
                start_ns: capture
                    .iter()
                    .map(|i| i.start_ns)
                    .min()
                    .unwrap_or(self.start_ns),
                end_ns: capture
                    .iter()
                    .map(|i| i.end_ns)
                    .max()
                    .unwrap_or(self.end_ns),
                lifecycle: capture.iter().all(|i| i.rec.meta.lifecycle),
            };
            if let Some(first) = capture.first() {
                on(Item::Span(first.boot, span))?;
            }
            for mut group in runs(capture, |start, end| start < end) {
                if group.len() == 1 && group[0].rec.meta.sorted {
                    let i = group.remove(0);
                    scan_file(i, filter, columns, &mut |r| on(Item::Row(r)))?;
                    continue;
                }
                let mut rows = Vec::new();
                for (file, i) in group.into_iter().enumerate() {
                    let path = i.rec.path.clone();
                    scan_file(i, filter, columns, &mut |r| {
                        if rows.len() >= MERGE_ROWS_MAX {
                            return Err(Error::bad_input(&path, format!(
                                "its rows must be put in time order in memory (the file says it is not sorted, or another capture overlaps it), and more than {MERGE_ROWS_MAX} rows do not fit the budget: select fewer (a time span or a filter) or sort the file by ktime_ns first"
                            )));
                        }
                        rows.push((file, r.clone()));
                        Ok(())
                    })?;
                }
                rows.sort_by_key(|(_, r)| r.t_ns);
                let mut seen = Seen::default();
                for (file, r) in rows {
                    if seen.duplicate(file, &r) {
                        duplicates += 1;
                    } else {
                        on(Item::Row(&r))?;
                    }
                }
            }
        }
        Ok(duplicates)
    }
}

/// What names the rows' file, and their place in it (see
/// [`Dataset::from_batches`]).
pub(super) const FILENAME: &str = "filename";
pub(super) const FILE_ROW_NUMBER: &str = "file_row_number";

/// Rows handed over in memory, as (file name, its rows in file order).
/// Files are ordered by path, as [`discover`] orders them, so that boots
/// are numbered alike either way.
pub(super) fn by_file(batches: Vec<RecordBatch>) -> Result<Vec<(PathBuf, Vec<RecordBatch>)>> {
    let given = Path::new("the rows given");
    let bad = |e: arrow_schema::ArrowError| Error::bad_input(given, e.to_string());
    let mut files: BTreeMap<PathBuf, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        let Some(names) = b.column_by_name(FILENAME) else {
            files.entry(given.to_path_buf()).or_default().push(b);
            continue;
        };
        let names = arrow_cast::cast(names, &DataType::Utf8).map_err(bad)?;
        let names = names.as_string::<i32>();
        let mut rows: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for i in 0..b.num_rows() {
            rows.entry(names.value(i)).or_default().push(i as u32);
        }
        for (name, rows) in rows {
            let part =
                arrow_select::take::take_record_batch(&b, &arrow_array::UInt32Array::from(rows))
                    .map_err(bad)?;
            files.entry(PathBuf::from(name)).or_default().push(part);
        }
    }
    files
        .into_iter()
        .map(|(name, rows)| {
            let Some(first) = rows.first() else {
                return Ok((name, rows));
            };
            if first.column_by_name(FILE_ROW_NUMBER).is_none() {
                return Ok((name, rows));
            }
            let all = arrow_select::concat::concat_batches(&first.schema(), &rows).map_err(bad)?;
            let place = all.column_by_name(FILE_ROW_NUMBER).map(Arc::clone);
            let order = place
                .map(|p| arrow_ord::sort::sort_to_indices(&p, None, None))
                .transpose()
                .map_err(bad)?;
            let sorted = match order {
                Some(o) => arrow_select::take::take_record_batch(&all, &o).map_err(bad)?,
                None => all,
            };
            Ok((name, vec![sorted]))
        })
        .collect()
}

/// Two recorders attached at once stamp the same kernel call each with its
/// own clock read, microseconds apart: events of one flow with the same
/// change, from different files, this close together are one event. (One
/// flow cannot make the same change twice this fast: the change in between
/// would be closer still.)
pub(super) const DUPLICATE_WITHIN_NS: u64 = 1_000_000;
/// Recent events kept per flow to match duplicates against: enough for the
/// few a flow can make within the window above.
pub(super) const DUPLICATE_MEMORY: usize = 4;

/// The latest events handed out per flow of an overlapping group.
#[derive(Default)]
pub(super) struct Seen {
    recent: FxHashMap<FlowKey, std::collections::VecDeque<(usize, u64, Change)>>,
}

impl Seen {
    /// Whether `r` (from `file`) repeats an event another file gave;
    /// remembers it if not.
    pub(super) fn duplicate(&mut self, file: usize, r: &Row) -> bool {
        // Each recorder's snapshots are its own observations, never a
        // repeat of an event.
        if matches!(r.ev.change, Change::Snapshot { .. }) {
            return false;
        }
        let recent = self.recent.entry(r.key).or_default();
        let dup = recent.iter().any(|&(f, t, change)| {
            f != file && change == r.ev.change && r.t_ns.saturating_sub(t) <= DUPLICATE_WITHIN_NS
        });
        if !dup {
            if recent.len() == DUPLICATE_MEMORY {
                recent.pop_front();
            }
            recent.push_back((file, r.t_ns, r.ev.change));
        }
        dup
    }
}

/// Splits inputs (sorted by boot and start) into runs of files of one
/// boot: a file joins the run when `joins(its start, the run's end)`.
pub(super) fn runs(inputs: Vec<Input>, joins: impl Fn(u64, u64) -> bool) -> Vec<Vec<Input>> {
    let mut groups: Vec<Vec<Input>> = Vec::new();
    let mut group_end = 0u64;
    for i in inputs {
        match groups.last_mut() {
            Some(g)
                if g.last().is_some_and(|l| l.boot == i.boot) && joins(i.start_ns, group_end) =>
            {
                group_end = group_end.max(i.end_ns);
                g.push(i);
            }
            _ => {
                group_end = i.end_ns;
                groups.push(vec![i]);
            }
        }
    }
    groups
}

pub(super) fn scan_file(
    i: Input,
    filter: &RowFilter,
    columns: Columns,
    f: &mut dyn FnMut(&Row) -> Result<()>,
) -> Result<()> {
    let path = i.rec.path.clone();
    let claims_sorted = i.rec.meta.sorted;
    let in_memory = matches!(i.rec.source, Source::Batches(_));
    let end_ktime = i.rec.meta.end_ktime_ns;
    let mut last = 0u64;
    let mut in_order = |r: &Row| {
        // The engine relies on what the metadata promises: rows in time
        // order when it says sorted, and none after the capture's end (the
        // recorder extends the end to its last event). Hold files to it.
        if claims_sorted && r.t_ns < last {
            return Err(Error::bad_input(
                &path,
                if in_memory {
                    "rows are not in their file's order: pass them in the order they were read, or with each row's place in its file as a file_row_number column"
                } else {
                    "rows are not in time order although the file's metadata says they are"
                },
            ));
        }
        if r.ev.ktime_ns > end_ktime {
            return Err(Error::bad_input(
                &path,
                format!(
                    "a row at ktime {} is after the recording's end ({end_ktime}) in its metadata",
                    r.ev.ktime_ns
                ),
            ));
        }
        last = r.t_ns;
        f(r)
    };
    let cgroup_names = CgroupNames {
        paths: i.rec.meta.cgroup_paths.clone(),
        containers: i.rec.meta.containers.clone(),
    };
    // A file of a later schema minor may have kinds this version does not
    // know (see decode_batch).
    let later = i.rec.meta.schema_minor > SCHEMA_MINOR;
    let mut batches = i.rec.rows(columns, &filter.columns())?;
    loop {
        // The decoder panics on some malformed pages: an input error.
        let next = crate::error::guarded(|| batches.next())
            .map_err(|why| Error::bad_input(&path, format!("malformed Parquet data ({why})")))?;
        let Some(batch) = next else {
            break;
        };
        let batch = batch.map_err(|e| Error::bad_input(&path, format!("reading rows: {e}")))?;
        let batch = conform(&path, batch)?;
        let file = (i.boot, i.clock, &cgroup_names, later);
        decode_batch(&path, &batch, file, (filter, columns), &mut in_order)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CaState, Change, Detail, Event, FlowAddr};
    use std::net::{IpAddr, Ipv4Addr};

    /// A capture's unfinished file found, then finished before it is
    /// opened (a series rotating while it is read): its recording is read.
    #[test]
    fn an_unfinished_file_finished_since_it_was_found_is_read_as_its_recording() {
        let dir = std::env::temp_dir().join(format!("tcpcong-finished-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ipv4-loss.parquet");
        let found = dir.join(".run.parquet.inprogress");
        let gone = Dataset::open(std::slice::from_ref(&found)).err().unwrap();
        assert!(gone.to_string().contains("No such file"), "{gone}");
        std::fs::copy(&fixture, dir.join("run.parquet")).unwrap();
        let data = Dataset::open(std::slice::from_ref(&found)).unwrap();
        let whole = Dataset::open(&[fixture]).unwrap();
        let events = |d: &Dataset| {
            d.recordings()
                .map(|(p, m)| (p.file_name().map(|n| n.to_os_string()), m.events))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            events(&data),
            vec![(Some("run.parquet".into()), events(&whole)[0].1)]
        );
        // Found as both (the walk passed each at another moment): read once.
        let both = Dataset::open(&[found.clone(), dir.join("run.parquet")]).unwrap();
        assert_eq!(events(&both), events(&data));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn row(cookie: u64, t_ns: u64, old: CaState, new: CaState) -> Row {
        let addr = FlowAddr {
            family: 4,
            saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sport: 1,
            daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dport: 2,
            owner: Default::default(),
            netns: 0,
            cc: Default::default(),
        };
        Row {
            t_ns,
            key: FlowKey { boot: 0, cookie },
            ev: Event {
                ktime_ns: t_ns,
                flow: cookie,
                addr,
                change: Change::Ca { old, new },
                detail: Detail::default(),
            },
        }
    }

    #[test]
    fn an_event_two_captures_recorded_is_one_event() {
        use CaState::*;
        let mut seen = Seen::default();
        // File 0 and file 1 saw the same three changes, 2 us apart; file 0
        // alone saw a fourth. Merged by time, as the scan does.
        let merged = [
            (0, row(7, 1_000, Open, Disorder)),
            (1, row(7, 3_000, Open, Disorder)),
            (0, row(7, 50_000, Disorder, Open)),
            (0, row(7, 51_000, Open, Disorder)),
            (1, row(7, 52_000, Disorder, Open)),
            (1, row(7, 53_000, Open, Disorder)),
            (0, row(8, 53_000, Open, Disorder)),
            (0, row(7, 900_000_000, Disorder, Open)),
        ];
        let kept: Vec<(usize, u64)> = merged
            .iter()
            .filter(|(f, r)| !seen.duplicate(*f, r))
            .map(|(f, r)| (*f, r.t_ns))
            .collect();
        assert_eq!(
            kept,
            vec![
                (0, 1_000),
                (0, 50_000),
                (0, 51_000),
                (0, 53_000),
                (0, 900_000_000)
            ]
        );
        // The same change in one file is never a duplicate, nor far apart.
        let mut seen = Seen::default();
        assert!(!seen.duplicate(0, &row(7, 0, Open, Loss)));
        assert!(!seen.duplicate(0, &row(7, 10, Open, Loss)));
        assert!(!seen.duplicate(1, &row(7, 5_000_000, Open, Loss)));
    }
}
