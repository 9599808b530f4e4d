//! Live mode, `tcpcong [-L] [-R] [-T] [-d] [-u] [interval] [outputs]`: the
//! drop-in for BCC's tcpcong. It is not a second implementation: the
//! capture loop of `record` is the event source, the analyze engine does
//! the arithmetic and its printer the output, so a live run and `analyze`
//! of a recording of the same traffic print the same numbers. With `-o` the
//! same stream is also written through record's [`Recording`].

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::record::{check_filters, tell_started, Recording};
use super::{warn_losses, ReportPlan};
use crate::analyze::engine::{Engine, Summary, WindowReport};
use crate::analyze::render::flows::Boot;
use crate::analyze::render::printer::Printer;
use crate::error::{Error, Result};
use crate::event::{Event, FlowKey};
use crate::messages;
use crate::record::capture::load::{preflight, CaptureConfig};
use crate::record::capture::{self, Progress, Sink, Started};
use crate::record::format::output::Target;
use crate::time::Clock;

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

struct LiveSink<'p, W: Write> {
    plan: &'p Plan,
    clock: Clock,
    engine: Option<Engine>,
    printer: Printer<W>,
    outputs_left: u64,
    recording: Option<Recording>,
    /// Standard output failed (its reader left): the capture stops, the
    /// recording is still completed, and the error is returned after.
    print_err: Option<Error>,
}

impl<W: Write> LiveSink<'_, W> {
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

impl<W: Write> Sink for LiveSink<'_, W> {
    fn started(&mut self, s: &Started) -> Result<()> {
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
        let start = self.clock.wall(s.start_ktime_ns);
        self.engine = Some(Engine::new(self.plan.report.engine(
            start,
            None,
            self.plan.capture.lifecycle,
        )));
        match self.recording.as_mut() {
            Some(r) => r.started(s),
            None => Ok(()),
        }
    }

    fn snapshot_due(&self, next: u64) -> bool {
        self.recording
            .as_ref()
            .is_some_and(|r| r.snapshot_due(next))
    }

    fn snapshot_taken(&mut self, done: u64) {
        if let Some(r) = self.recording.as_mut() {
            r.snapshot_taken(done);
        }
    }

    fn cgroups(&mut self, paths: &BTreeMap<u64, String>) -> Result<()> {
        if let Some(r) = self.recording.as_mut() {
            r.name_cgroups(paths);
        }
        self.printer.name_cgroups(0, paths);
        Ok(())
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        if let Some(r) = self.recording.as_mut() {
            r.write(events, progress)?;
        }
        let now = self.clock.wall(progress.complete_until);
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        for e in events {
            let key = FlowKey {
                boot: 0,
                cookie: e.flow,
            };
            engine.push(self.clock.wall(e.ktime_ns), key, e.change, || {
                e.addr.clone()
            });
        }
        let windows = engine.drain_until(now);
        self.printer.set_lost_events(progress.lost);
        self.print(&windows);
        Ok(())
    }

    fn done(&self) -> bool {
        self.outputs_left == 0 || self.print_err.is_some()
    }
}

pub fn run(plan: &Plan) -> Result<()> {
    preflight(&plan.capture)?;
    check_filters(&plan.capture);
    super::warn_without_lifecycle(plan.report.accounting, plan.capture.lifecycle);
    let recording = plan
        .output
        .as_ref()
        .map(|t| Recording::create(t, &plan.capture, &plan.command))
        .transpose()?;
    let clock = recording
        .as_ref()
        .map_or_else(Clock::of_host, Recording::clock);
    // Live flows are this boot's (boot index 0).
    let mut printer = Printer::new(io::stdout(), plan.report.report);
    printer.set_boots(vec![Boot {
        host: crate::host::hostname(),
        boot_id: crate::host::boot_id(),
        cgroup_paths: Default::default(),
    }]);
    let mut sink = LiveSink {
        plan,
        clock,
        engine: None,
        printer,
        outputs_left: plan.report.outputs.unwrap_or(u64::MAX),
        recording,
        print_err: None,
    };
    let outcome = capture::run(&plan.capture, None, &mut sink);
    super::show_libbpf_log(plan.verbose);
    let summary: Option<Summary> = match &outcome {
        Ok(stats) => sink.engine.take().map(|e| {
            let s = e.finish(clock.wall(stats.end_ktime_ns));
            // At Ctrl-C, the interval in progress is printed, as the seed does.
            sink.printer.set_lost_events(stats.lost_events());
            sink.print(&s.windows);
            s
        }),
        Err(_) => None,
    };
    let stats = match sink.recording.take() {
        Some(r) => r.end(outcome)?,
        None => outcome?,
    };
    if let Some(e) = sink.print_err.take() {
        return Err(e);
    }
    if let Some(s) = &summary {
        warn_losses(stats.lost_events(), None, s);
    }
    Ok(())
}
