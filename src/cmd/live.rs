//! Live mode, `tcpcong [-L] [-R] [-T] [-d] [-u] [interval] [outputs]`: the
//! drop-in for BCC's tcpcong. It is not a second implementation: the
//! capture loop of `record` is the event source, the analyze engine does
//! the arithmetic and its printer the output, so a live run and `analyze`
//! of a recording of the same traffic print the same numbers. With `-o` the
//! same stream is also recorded (see [`Feed`]).

use std::io::{self, Write};

use super::feed::{this_boot, Feed, Output, FORGET_AFTER_NS};
use super::recording::{tell_started, Recorder};
use super::{warn_losses, ReportPlan};
use crate::analyze::engine::episodes::{Episode, Episodes};
use crate::analyze::engine::{Engine, EngineConfig, WindowReport};
use crate::analyze::render::columns::{csv_header, csv_line, json_line};
use crate::analyze::render::episodes::{table_header, EpisodeLine, EPISODE};
use crate::analyze::render::printer::{Printer, Style};
use crate::error::{Error, Result};
use crate::event::{Boot, CgroupNames, Event};
use crate::messages;
use crate::record::capture::config::CaptureConfig;
use crate::record::capture::{Progress, Started};
use crate::record::format::output::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub capture: CaptureConfig,
    /// `-o`: also record the events.
    pub output: Option<Target>,
    pub report: ReportPlan,
    pub command: String,
    /// Show libbpf's log.
    pub verbose: bool,
    /// `--episodes`: a line per episode as it completes, not the tables.
    pub episodes: bool,
}

/// Live mode's output: the printer, and how many intervals are left.
struct Tables<'p, W: Write> {
    plan: &'p Plan,
    printer: Printer<W>,
    outputs_left: u64,
    /// Standard output failed (its reader left): the capture stops, the
    /// recording is still completed, and the error is returned after.
    print_err: Option<Error>,
}

impl<W: Write> Tables<'_, W> {
    fn print(&mut self, windows: &[WindowReport]) {
        for w in windows {
            if self.outputs_left == 0 || self.print_err.is_some() {
                break;
            }
            if let Err(e) = self.printer.window(w).and_then(|()| self.printer.flush()) {
                self.print_err = Some(Error::Stdout(e));
            }
            self.outputs_left -= 1;
        }
    }
}

impl<W: Write> Output for Tables<'_, W> {
    fn started(
        &mut self,
        s: &Started,
        start_ns: u64,
        _recording: Option<&Recorder>,
    ) -> Result<EngineConfig> {
        let banner = "Tracing tcp congestion control status duration... Hit Ctrl-C to end.";
        // As the seed prints it, on stdout, unless stdout is for machines.
        if self.plan.report.for_people() {
            let mut out = io::stdout().lock();
            if let Err(e) = writeln!(out, "{banner}").and_then(|()| out.flush()) {
                self.print_err = Some(Error::Stdout(e));
            }
        } else {
            messages::raw(format_args!("{banner}"));
        }
        Ok(attached(self.plan, s, start_ns))
    }

    fn cgroups(&mut self, names: &CgroupNames) {
        self.printer.name_cgroups(0, names);
    }

    fn fed(
        &mut self,
        _engine: &mut Engine,
        _events: &[Event],
        windows: &[WindowReport],
        _now: u64,
        progress: Progress,
    ) -> Result<()> {
        self.printer.set_lost_events(progress.lost);
        self.print(windows);
        Ok(())
    }

    fn done(&self) -> bool {
        self.outputs_left == 0 || self.print_err.is_some()
    }
}

/// What either output says once the programs are attached, and the live
/// engine it runs.
fn attached(plan: &Plan, s: &Started, start_ns: u64) -> EngineConfig {
    super::show_libbpf_log(plan.verbose);
    tell_started(s);
    plan.report.engine(start_ns, None, plan.capture.lifecycle)
}

/// `--episodes`: the episode tracker on the capture's events, a line per
/// episode as it completes, in the report's format.
struct EpisodeLines<'p> {
    plan: &'p Plan,
    tracker: Episodes,
    /// Wall clock minus the capture's kernel clock.
    offset_ns: i128,
    boot: Boot,
    out: io::Stdout,
    print_err: Option<Error>,
}

impl EpisodeLines<'_> {
    fn print(&mut self, episodes: impl Iterator<Item = Episode>) {
        let mut out = self.out.lock();
        for e in episodes {
            if self.print_err.is_some() {
                return;
            }
            let line = EpisodeLine::new(&e, &self.boot);
            let written = match self.plan.report.report.style {
                Style::Json => json_line(&mut out, line.named()),
                Style::Csv => csv_line(&mut out, line.cells()),
                Style::Table => line.table(&mut out),
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                self.print_err = Some(Error::Stdout(e));
            }
        }
    }
}

impl Output for EpisodeLines<'_> {
    fn started(
        &mut self,
        s: &Started,
        start_ns: u64,
        _recording: Option<&Recorder>,
    ) -> Result<EngineConfig> {
        self.offset_ns = i128::from(start_ns) - i128::from(s.start_ktime_ns);
        let mut out = self.out.lock();
        let header = match self.plan.report.report.style {
            Style::Table => table_header(&mut out),
            Style::Csv => writeln!(out, "{}", csv_header(EPISODE)),
            Style::Json => Ok(()),
        };
        if let Err(e) = header.and_then(|()| out.flush()) {
            self.print_err = Some(Error::Stdout(e));
        }
        messages::raw(format_args!(
            "Tracing tcp congestion episodes... Hit Ctrl-C to end."
        ));
        Ok(attached(self.plan, s, start_ns))
    }

    fn cgroups(&mut self, names: &CgroupNames) {
        self.boot.learn(names);
    }

    fn fed(
        &mut self,
        _engine: &mut Engine,
        events: &[Event],
        _windows: &[WindowReport],
        now: u64,
        _progress: Progress,
    ) -> Result<()> {
        self.tracker.push_live(events, self.offset_ns);
        self.tracker
            .forget_closed(now.saturating_sub(FORGET_AFTER_NS));
        let done: Vec<Episode> = self.tracker.take().collect();
        self.print(done.into_iter());
        Ok(())
    }

    fn done(&self) -> bool {
        self.print_err.is_some()
    }
}

/// `--episodes`: episodes instead of tables.
fn run_episodes(plan: &Plan) -> Result<()> {
    let lines = EpisodeLines {
        plan,
        tracker: Episodes::default(),
        offset_ns: 0,
        boot: this_boot(),
        out: io::stdout(),
        print_err: None,
    };
    let mut feed = Feed::create(lines, &plan.capture, plan.output.as_ref(), &plan.command)?;
    let outcome = feed.run(&plan.capture, None);
    super::show_libbpf_log(plan.verbose);
    if let Ok(stats) = &outcome {
        // Those in progress at the end, censored there.
        let end = i128::from(stats.end_ktime_ns) + feed.out.offset_ns;
        let end = end.clamp(0, i128::from(u64::MAX)) as u64;
        let tracker = std::mem::take(&mut feed.out.tracker);
        let rest = tracker.finish(&|_| end);
        feed.out.print(rest.into_iter());
    }
    let (mut lines, stats) = feed.end(outcome);
    let stats = stats?;
    if let Some(e) = lines.print_err.take() {
        return Err(e);
    }
    if stats.lost_events() > 0 {
        messages::say(format_args!(
            "{} events were lost: the episodes of their flows may be incomplete",
            stats.lost_events()
        ));
    }
    Ok(())
}

pub fn run(plan: &Plan) -> Result<()> {
    if plan.episodes {
        return run_episodes(plan);
    }
    let mut printer = Printer::new(io::stdout(), plan.report.report);
    printer.set_boots(vec![this_boot()]);
    let tables = Tables {
        plan,
        printer,
        outputs_left: plan.report.outputs.unwrap_or(u64::MAX),
        print_err: None,
    };
    let mut feed = Feed::create(tables, &plan.capture, plan.output.as_ref(), &plan.command)?;
    super::warn_without_lifecycle(plan.report.accounting, plan.capture.lifecycle);
    // BCC's `interval outputs` without --align: the capture ends with the
    // last window, so that its recording holds those windows and no
    // stretch after them (analyze of it prints what was printed).
    let windows = match (plan.report.interval_ns, plan.report.outputs) {
        (Some(iv), Some(n)) if !plan.report.report.align => Some(iv.saturating_mul(n)),
        _ => None,
    };
    let outcome = feed.run(&plan.capture, windows.map(std::time::Duration::from_nanos));
    super::show_libbpf_log(plan.verbose);
    // At Ctrl-C, the interval in progress is printed, as the seed does.
    let summary = feed.finish(&outcome);
    if let (Some(s), Ok(stats)) = (&summary, &outcome) {
        feed.out.printer.set_lost_events(stats.lost_events());
        feed.out.print(&s.windows);
    }
    let (mut tables, stats) = feed.end(outcome);
    let stats = stats?;
    if let Some(e) = tables.print_err.take() {
        return Err(e);
    }
    if let Some(s) = &summary {
        warn_losses(stats.lost_events(), None, s);
    }
    Ok(())
}
