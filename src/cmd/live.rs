//! Live mode, `tcpcong [-L] [-R] [-T] [-d] [-u] [interval] [outputs]`: the
//! drop-in for BCC's tcpcong. It is not a second implementation: the
//! capture loop of `record` is the event source, the analyze engine does
//! the arithmetic and its printer the output, so a live run and `analyze`
//! of a recording of the same traffic print the same numbers. With `-o` the
//! same stream is also recorded (see [`Feed`]).

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::feed::{this_boot, Feed, Output};
use super::recording::{tell_started, Recorder};
use super::{warn_losses, ReportPlan};
use crate::analyze::engine::{Engine, EngineConfig, WindowReport};
use crate::analyze::render::printer::Printer;
use crate::error::{Error, Result};
use crate::event::Event;
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
        super::show_libbpf_log(self.plan.verbose);
        tell_started(s);
        Ok(self
            .plan
            .report
            .engine(start_ns, None, self.plan.capture.lifecycle))
    }

    fn cgroups(&mut self, paths: &BTreeMap<u64, String>) {
        self.printer.name_cgroups(0, paths);
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

pub fn run(plan: &Plan) -> Result<()> {
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
    let outcome = feed.run(&plan.capture);
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
