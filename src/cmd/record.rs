//! `tcpcong record`: capture every congestion-state transition (and, by
//! default, flow lifecycle) into a schema v1 recording, one file or a
//! rotated series, with a status line on a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::recording::{check_filters, tell_started, Recorder};
use crate::error::Result;
use crate::event::{CgroupNames, Event};
use crate::messages;
use crate::record::capture::config::CaptureConfig;
use crate::record::capture::preflight::preflight;
use crate::record::capture::{self, Progress, Sink, Started};
use crate::record::format::output::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub capture: CaptureConfig,
    pub target: Target,
    /// From the moment the programs are attached; `None`: until Ctrl-C.
    pub duration: Option<Duration>,
    /// The command line, for the files' metadata.
    pub command: String,
    /// Show libbpf's log.
    pub verbose: bool,
    /// No banner, no status line.
    pub quiet: bool,
}

/// How often the status line changes: often enough to see it move.
const STATUS_EVERY: Duration = Duration::from_secs(1);

struct RecordSink {
    rec: Recorder,
    duration: Option<Duration>,
    verbose: bool,
    quiet: bool,
    /// The status line, on a terminal only, and when it was last redrawn.
    status: Option<(ProgressBar, Instant)>,
}

impl Sink for RecordSink {
    fn started(&mut self, s: &Started) -> Result<()> {
        super::show_libbpf_log(self.verbose);
        // The file can be read from the moment the banner says so.
        self.rec.started(s)?;
        tell_started(s);
        if !self.quiet {
            messages::raw(format_args!(
                "Recording TCP congestion-state transitions into {}{}... Hit Ctrl-C to end.",
                self.rec.describe(),
                self.duration
                    .map(|d| format!(" for {:.1}s", d.as_secs_f64()))
                    .unwrap_or_default()
            ));
            if std::io::stderr().is_terminal() {
                let bar =
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(1));
                bar.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                self.status = Some((bar, Instant::now() - STATUS_EVERY));
            }
        }
        Ok(())
    }

    fn cgroups(&mut self, names: &CgroupNames) -> Result<()> {
        self.rec.name_cgroups(names);
        Ok(())
    }

    fn snapshot_due(&self, next: u64) -> bool {
        self.rec.snapshot_due(next)
    }

    fn snapshot_taken(&mut self, done: u64) {
        self.rec.snapshot_taken(done);
    }

    fn unsnapped(&self) -> bool {
        self.rec.unsnapped()
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        self.rec.write(events, &progress)?;
        if let Some((bar, last)) = &mut self.status {
            if last.elapsed() >= STATUS_EVERY {
                bar.set_message(self.rec.status(progress.lost));
                *last = Instant::now();
            }
        }
        Ok(())
    }
}

pub fn run(plan: &Plan) -> Result<()> {
    capture::install_stop_handler()?;
    preflight(&plan.capture)?;
    check_filters(&plan.capture);
    let rec = Recorder::create(&plan.target, &plan.capture, &plan.command)?;
    let mut sink = RecordSink {
        rec,
        duration: plan.duration,
        verbose: plan.verbose,
        quiet: plan.quiet,
        status: None,
    };
    let outcome = capture::run(&plan.capture, plan.duration, &mut sink);
    if let Some((bar, _)) = sink.status.take() {
        bar.finish_and_clear();
    }
    super::show_libbpf_log(plan.verbose);
    let stats = sink.rec.end(outcome)?;
    if plan.verbose {
        messages::say(format_args!(
            "socket snapshots: {} taken, {} rows, the longest {:.1} ms",
            stats.snapshots,
            stats.snapshot_rows,
            stats.snapshot_max_ns as f64 / 1e6
        ));
    }
    Ok(())
}
