//! The commands, one file each: each takes its resolved plan, connects the
//! layers (a capture or recordings as the source, the engine, a report or
//! a recording as the output) and says what the user must know, through
//! `crate::messages`. This is the only place where sources meet outputs.
//! What the capturing commands share is beside them: `recording` (events
//! into a file or series) and `feed` (a capture into the live engine).

pub mod analyze;
pub mod compare;
pub mod doctor;
pub mod episodes;
pub mod events;
mod feed;
pub mod live;
pub mod record;
mod recording;
pub mod report;
pub mod serve;

use std::io::Write;

use crate::analyze::caveats;
use crate::analyze::engine::{Accounting, EngineConfig, Summary, Unit};
use crate::analyze::render::printer::{ReportConfig, Style};
use crate::error::{Error, Result};
use crate::event::{Filters, PortRange};
use crate::files;
use crate::messages;
use crate::record::format::reader::{CgroupSel, ContainerSel, Dataset, RowFilter};
use crate::time::rfc3339;

/// What to do, as the command line resolved it.
#[derive(Debug)]
pub enum Plan {
    Record(record::Plan),
    Live(live::Plan),
    Analyze(analyze::Plan),
    Compare(compare::Plan),
    Serve(serve::Plan),
    Events(events::Plan),
    Episodes(episodes::Plan),
    Report(report::Plan),
    Doctor {
        verbose: bool,
    },
    /// Text for standard output: help, version, completions, man page.
    Print(String),
    /// Files to write (the man pages into a folder).
    Files(Vec<(std::path::PathBuf, String)>),
}

pub fn run(plan: Plan) -> Result<()> {
    match plan {
        Plan::Record(p) => record::run(&p),
        Plan::Live(p) => live::run(&p),
        Plan::Analyze(p) => analyze::run(&p),
        Plan::Compare(p) => compare::run(&p),
        Plan::Serve(p) => serve::run(&p),
        Plan::Events(p) => events::run(&p),
        Plan::Episodes(p) => episodes::run(&p),
        Plan::Report(p) => report::run(&p),
        Plan::Doctor { verbose } => doctor::run(verbose),
        Plan::Files(files) => {
            for (path, text) in files {
                if let Some(dir) = path.parent() {
                    // A link to a folder is one (as /usr/local/man is).
                    let there = std::fs::symlink_metadata(dir).is_ok();
                    if there && !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
                        return Err(Error::Usage(format!(
                            "--dir {}: not a folder",
                            dir.display()
                        )));
                    }
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
                // Man pages and completions are for every user to read,
                // and installed again over the last version's.
                let page = NewFile {
                    path: path.clone(),
                    replace: true,
                };
                page.write(|mut f| {
                    f.write_all(text.as_bytes())
                        .and_then(|()| {
                            use std::os::unix::fs::PermissionsExt;
                            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                        })
                        .map_err(|e| Error::io(&path, e))
                })?;
            }
            Ok(())
        }
        Plan::Print(text) => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(Error::Stdout)
        }
    }
}

/// How live mode and analyze report: the look, the arithmetic, and BCC's
/// `[interval] [outputs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPlan {
    pub report: ReportConfig,
    pub accounting: Accounting,
    pub interval_ns: Option<u64>,
    pub outputs: Option<u64>,
}

impl ReportPlan {
    pub fn engine(&self, start_ns: u64, until_ns: Option<u64>, lifecycle: bool) -> EngineConfig {
        EngineConfig {
            accounting: self.accounting,
            lifecycle,
            start_ns,
            until_ns,
            interval_ns: self.interval_ns,
            align: self.report.align,
            hist_unit: if self.report.micros {
                Unit::Micros
            } else {
                Unit::Millis
            },
        }
    }

    /// Whether stdout is for people (the banner and notes go there, as the
    /// seed prints them) rather than for machines.
    pub fn for_people(&self) -> bool {
        self.report.style == Style::Table
    }
}

/// A `--since`/`--until` bound as given: an instant, or a time after the
/// recordings' start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeBound {
    /// Wall-clock ns since the epoch.
    At(u64),
    /// Nanoseconds after the start of the data.
    FromStart(u64),
    /// Nanoseconds before the end of the data ("the last minute").
    BeforeEnd(u64),
    /// A local clock time (ns since midnight) on the day the data starts,
    /// or the day before or after where that one's is in the data or
    /// nearer it.
    ClockTime(u64),
}

impl TimeBound {
    /// Whether the two can be compared before the data is known: both
    /// wall-clock times, or both offsets from the start.
    pub fn same_kind(&self, other: &TimeBound) -> bool {
        matches!(
            (self, other),
            (TimeBound::At(_), TimeBound::At(_))
                | (TimeBound::FromStart(_), TimeBound::FromStart(_))
        )
    }

    fn at(self, start_ns: u64, end_ns: u64) -> u64 {
        match self {
            TimeBound::At(t) => t,
            TimeBound::FromStart(d) => start_ns.saturating_add(d),
            TimeBound::BeforeEnd(d) => end_ns.saturating_sub(d),
            // Of the day before, the first day and the day after, the one
            // in the data or nearest it (a capture across midnight: 00:30
            // is on its second day; 23:59 before a capture from 00:10, on
            // the day before). Ties go to the earlier.
            TimeBound::ClockTime(ns) => {
                let off = |t: u64| start_ns.saturating_sub(t).max(t.saturating_sub(end_ns));
                // By the calendar: a day with a daylight-saving change is
                // not 24 hours long.
                [-1, 0, 1]
                    .map(|days| crate::time::local_clock_time(start_ns, days, ns))
                    .into_iter()
                    .min_by_key(|&t| off(t))
                    .unwrap_or(start_ns)
            }
        }
    }
}

/// Which events of the recordings to use: analyze and events alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub localport: Option<PortRange>,
    pub remoteport: Option<PortRange>,
    pub flow: Option<u64>,
    pub family: Option<u8>,
    pub netns: Option<u32>,
    pub cgroup: Option<CgroupSel>,
    /// Only flows of containers each of these selects.
    pub containers: Vec<ContainerSel>,
    pub since: Option<TimeBound>,
    pub until: Option<TimeBound>,
}

/// The span of the data a selection keeps.
struct Span {
    start_ns: u64,
    end_ns: u64,
    /// `--until`, if given.
    until_ns: Option<u64>,
}

impl Selection {
    fn rows(&self) -> RowFilter {
        RowFilter::new(self.localport, self.remoteport, self.flow)
            .socket(self.family, self.netns, self.cgroup.clone())
            .containers(self.containers.clone())
    }

    /// The flags that made this selection, for messages.
    fn flags(&self) -> String {
        let mut f = socket_flags(&Filters {
            localport: self.localport,
            remoteport: self.remoteport,
            family: self.family,
            netns: self.netns,
            cgroup: None,
            containers: self.containers.clone(),
        });
        if let Some(id) = self.flow {
            f.push(format!("--flow {id}"));
        }
        match &self.cgroup {
            Some(CgroupSel::Id(id)) => f.push(format!("--cgroup {id}")),
            Some(CgroupSel::Path { path, .. }) => f.push(format!("--cgroup {path}")),
            None => {}
        }
        for (given, name) in [
            (self.since.is_some(), "--since"),
            (self.until.is_some(), "--until"),
        ] {
            if given {
                f.push(name.into());
            }
        }
        if f.is_empty() {
            NO_FILTER.into()
        } else {
            f.join(" ")
        }
    }

    /// Places the bounds on the dataset's timeline.
    fn span(&self, data: &Dataset) -> Result<Span> {
        let since = self.since.map(|b| b.at(data.start_ns, data.end_ns));
        let until = self.until.map(|b| b.at(data.start_ns, data.end_ns));
        if let (Some(s), Some(u)) = (since, until) {
            if u <= s {
                return Err(Error::Usage("--until must be later than --since".into()));
            }
        }
        if since.is_some_and(|s| s >= data.end_ns) {
            return Err(Error::Usage(format!(
                "--since is after the end of the recordings ({})",
                rfc3339(data.end_ns)
            )));
        }
        if until.is_some_and(|u| u <= data.start_ns) {
            return Err(Error::Usage(format!(
                "--until is before the start of the recordings ({})",
                rfc3339(data.start_ns)
            )));
        }
        let start_ns = since.unwrap_or(data.start_ns).max(data.start_ns);
        let end_ns = until.unwrap_or(data.end_ns).min(data.end_ns).max(start_ns);
        Ok(Span {
            start_ns,
            end_ns,
            until_ns: until,
        })
    }
}

/// What [`Selection::flags`] says of a selection of everything.
const NO_FILTER: &str = "no filter";

/// The flags that keep the sockets `f` keeps.
fn socket_flags(f: &Filters) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(p) = f.localport {
        flags.push(format!("-L {p}"));
    }
    if let Some(p) = f.remoteport {
        flags.push(format!("-R {p}"));
    }
    if let Some(fam) = f.family {
        flags.push(format!("--family {fam}"));
    }
    if let Some(ino) = f.netns {
        flags.push(format!("--netns {ino}"));
    }
    if let Some(id) = f.cgroup {
        flags.push(format!("--cgroup {id}"));
    }
    for c in &f.containers {
        flags.push(match c {
            ContainerSel::Container(v) => format!("--container {v}"),
            ContainerSel::Pod(v) => format!("--pod {v}"),
        });
    }
    flags
}

/// A file a command writes whole when its work is done (a page, a table,
/// a man page): created new unless `replace` (`--force`), never one of the
/// recordings it reads, and written through a temporary file in the same
/// folder (new, 0600, named unpredictably: see
/// [`files::create_temp_beside`]) renamed into place when complete, so
/// that `path` is the old file or the whole new one, never half of one.
/// Renaming replaces a link at `path`, never what it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub path: std::path::PathBuf,
    pub replace: bool,
}

impl NewFile {
    /// Before the work, so that a long one does not end in a refusal:
    /// `path` must be a file name in a folder that exists, must not exist
    /// (as anything, a link or a FIFO included) unless it may be replaced,
    /// and must not be one of the recordings `reading`, even then.
    fn check<'a>(&self, reading: impl IntoIterator<Item = &'a std::path::Path>) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = &self.path;
        if path.file_name().is_none() {
            return Err(Error::Usage(format!(
                "-o {}: not a file name",
                path.display()
            )));
        }
        output_folder(path)?;
        let there = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(path, e)),
        };
        if there.is_dir() {
            return Err(Error::Usage(format!(
                "-o {}: a folder; name a file in it",
                path.display()
            )));
        }
        if !self.replace {
            return Err(Error::Exists { path: path.clone() });
        }
        // The name, and what it leads to: a link to a recording read is
        // refused as the recording is.
        let ids = [Some(&there), std::fs::metadata(path).ok().as_ref()]
            .into_iter()
            .flatten()
            .map(|m| (m.dev(), m.ino()))
            .collect::<Vec<_>>();
        let same = |r: &std::path::Path| {
            std::fs::metadata(r).is_ok_and(|m| ids.contains(&(m.dev(), m.ino())))
        };
        if reading.into_iter().any(same) {
            return Err(Error::Usage(format!(
                "-o {}: that is a recording this command reads; write elsewhere",
                path.display()
            )));
        }
        Ok(())
    }

    /// Writes the file: `write` fills it, and it is named `path` if that
    /// succeeds. Without `replace`, a file someone made at `path` since
    /// [`NewFile::check`] is kept, and this one refused.
    fn write<T>(&self, write: impl FnOnce(std::fs::File) -> Result<T>) -> Result<T> {
        let path = &self.path;
        let (tmp, file) = files::create_temp_beside(path).map_err(|e| Error::io(path, e))?;
        let done = write(file).and_then(|v| {
            files::rename(&tmp, path, self.replace)
                .map(|()| v)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Error::Exists { path: path.clone() },
                    _ => Error::io(path, e),
                })
        });
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done
    }
}

/// A file `-o` names must be in a folder that exists (a runtime error:
/// the command line itself is fine), and not be `-`, which a user means
/// as standard output (a usage error: every -o of tcpcong is a file).
pub fn output_folder(path: &std::path::Path) -> Result<()> {
    if path.as_os_str() == "-" {
        return Err(Error::Usage(
            "-o -: tcpcong writes this to a file, not to standard output; name the file".into(),
        ));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if folder.is_dir() {
        return Ok(());
    }
    let why = format!("no such folder for -o {}", path.display());
    Err(Error::io(
        folder,
        std::io::Error::new(std::io::ErrorKind::NotFound, why),
    ))
}

/// The recordings the inputs name, saying which are the unfinished files
/// of captures. A command that reads them twice opens this one
/// list twice: a second discovery would say it all again, and could find
/// files the first did not.
fn find_recordings(inputs: &[String]) -> Result<Vec<std::path::PathBuf>> {
    let found = crate::record::format::reader::discover(inputs)?;
    for line in caveats::discovered(&found) {
        messages::say(line);
    }
    Ok(found.files)
}

/// Opens the recordings the inputs name (see [`find_recordings`]).
fn open_dataset(inputs: &[String]) -> Result<Dataset> {
    open_files(&find_recordings(inputs)?)
}

/// Opens recordings found before, saying which a later version wrote.
fn open_files(files: &[std::path::PathBuf]) -> Result<Dataset> {
    let data = Dataset::open(files)?;
    for line in caveats::opened(&data) {
        messages::say(line);
    }
    Ok(data)
}

/// libbpf's log of the loads so far, for `-v`.
fn show_libbpf_log(verbose: bool) {
    let log = crate::record::capture::load::take_libbpf_log();
    if verbose && !log.is_empty() {
        messages::raw(format_args!("{}", log.trim_end()));
    }
}

/// Why `what` (an input, the recordings) gives no flow: it has none, or
/// the selection keeps none.
fn tell_no_flow(what: &str, select: &Selection) {
    let why = match select.flags() {
        f if f == NO_FILTER => "it holds no flow".to_string(),
        f => format!("the selection ({f}) keeps no flow of it"),
    };
    // (messages escape what they print.)
    messages::say(format_args!("{what}: {why}"));
}

/// Overlapping captures (two recorders at once) recorded some events twice.
fn tell_duplicates(n: u64) {
    if let Some(line) = caveats::duplicates(n) {
        messages::say(line);
    }
}

fn warn_without_lifecycle(accounting: Accounting, lifecycle: bool) {
    if let Some(line) = caveats::without_lifecycle(accounting, lifecycle) {
        messages::warn(line);
    }
}

/// What stderr must say beside any report (see [`caveats::losses`]).
fn warn_losses(lost_events: u64, gaps: Option<u64>, s: &Summary) {
    for line in caveats::losses(lost_events, gaps, s) {
        messages::warn(line);
    }
}

/// The recordings' own losses and gaps, for a listing (see
/// [`caveats::recorded_losses`]).
fn warn_recorded_losses(data: &Dataset, missing: &str) {
    for line in caveats::recorded_losses(data, missing) {
        messages::warn(line);
    }
}

/// `1 event`, `2 events`.
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const DAY_NS: u64 = 86_400 * S;

    /// A local clock time on the data's first day, in a January (no
    /// daylight-saving change near).
    fn local(h: u64, m: u64, s: u64) -> u64 {
        crate::time::local_clock_time(1_800_000_000 * S, 0, ((h * 60 + m) * 60 + s) * S)
    }

    /// A clock time is the day's that falls in the data or nearest it: a
    /// time just before the start means the start to a reader (not the
    /// next day), and a capture across midnight has two days.
    #[test]
    fn a_clock_time_is_the_day_nearest_the_data() {
        let clock = |h: u64, m: u64, s: u64| TimeBound::ClockTime(((h * 60 + m) * 60 + s) * S);
        let (start, end) = (local(12, 0, 10), local(12, 0, 20));
        assert_eq!(clock(12, 0, 15).at(start, end), local(12, 0, 15));
        assert_eq!(clock(12, 0, 5).at(start, end), local(12, 0, 5));
        assert_eq!(clock(13, 0, 0).at(start, end), local(13, 0, 0));
        // Twelve hours either way, less the data's 10 s: the next day's.
        assert_eq!(clock(0, 0, 0).at(start, end), local(0, 0, 0) + DAY_NS);
        // Across midnight, 23:59:50 to 00:00:20.
        let (start, end) = (local(23, 59, 50), local(23, 59, 50) + 30 * S);
        assert_eq!(clock(0, 0, 10).at(start, end), start + 20 * S);
        assert_eq!(clock(23, 59, 55).at(start, end), start + 5 * S);
        assert_eq!(clock(23, 59, 40).at(start, end), start - 10 * S);
        // After the end, on the second day: not the first day's.
        assert_eq!(clock(0, 0, 45).at(start, end), start + 55 * S);
        // Before a capture that starts after midnight: the day before.
        let (start, end) = (local(0, 0, 10), local(0, 0, 20));
        assert_eq!(clock(23, 59, 0).at(start, end), start - 70 * S);
    }
}
