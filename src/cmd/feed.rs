//! What live mode and `serve` share: the capture's events are recorded as
//! `record` writes them when asked (`-o`), and go into the live engine on
//! the recording's clock; each batch's closed windows go to the command's
//! [`Output`] (live mode's printer, serve's counters). One capture sink for
//! both, so that they cannot drift apart in what they count.

use super::recording::{check_filters, Recorder};
use crate::analyze::engine::{Engine, EngineConfig, Summary, WindowReport};
use crate::error::Result;
use crate::event::{Boot, CgroupNames};
use crate::event::{Event, FlowKey};
use crate::record::capture::config::CaptureConfig;
use crate::record::capture::preflight::preflight;
use crate::record::capture::{self, CaptureStats, Progress, Sink, Started};
use crate::record::format::output::Target;
use crate::time::Clock;

/// Where a live command's windows go.
pub trait Output {
    /// The capture started at wall time `start_ns`, recording into
    /// `recording` if asked: the engine to run.
    fn started(
        &mut self,
        s: &Started,
        start_ns: u64,
        recording: Option<&Recorder>,
    ) -> Result<EngineConfig>;
    /// Names of cgroups the coming events name.
    fn cgroups(&mut self, names: &CgroupNames);
    /// A batch of `events` went into `engine`, which closed `windows` up to
    /// wall time `now`.
    fn fed(
        &mut self,
        engine: &mut Engine,
        events: &[Event],
        windows: &[WindowReport],
        now: u64,
        progress: Progress,
    ) -> Result<()>;
    /// Whether the output has all it wants (live mode's `outputs`).
    fn done(&self) -> bool {
        false
    }
}

/// A capture feeding the live engine, and a recording when asked.
pub struct Feed<O> {
    pub out: O,
    clock: Clock,
    engine: Option<Engine>,
    recording: Option<Recorder>,
}

/// This boot, the one live flows are of (boot index 0).
/// How long a closed flow is remembered by what runs unattended (see
/// `Engine::forget_closed`): memory follows the flows alive, not every
/// flow since the start.
pub const FORGET_AFTER_NS: u64 = 60_000_000_000;

pub fn this_boot() -> Boot {
    Boot {
        host: crate::host::hostname(),
        boot_id: crate::host::boot_id(),
        cgroup_paths: Default::default(),
        containers: Default::default(),
    }
}

impl<O: Output> Feed<O> {
    /// Checks that a capture can run and creates the recording (before
    /// anything is loaded, so that a bad path fails first).
    pub fn create(
        out: O,
        capture: &CaptureConfig,
        output: Option<&Target>,
        command: &str,
    ) -> Result<Feed<O>> {
        capture::install_stop_handler()?;
        preflight(capture)?;
        check_filters(capture);
        let recording = output
            .map(|t| Recorder::create(t, capture, command))
            .transpose()?;
        let clock = recording
            .as_ref()
            .map_or_else(Clock::of_host, Recorder::clock);
        Ok(Feed {
            out,
            clock,
            engine: None,
            recording,
        })
    }

    /// Runs the capture until it stops, or for `duration`; the engine is
    /// left for [`Feed::end`].
    pub fn run(
        &mut self,
        capture: &CaptureConfig,
        duration: Option<std::time::Duration>,
    ) -> Result<CaptureStats> {
        capture::run(capture, duration, self)
    }

    /// The engine's last windows, up to the capture's end, after a capture
    /// that finished.
    pub fn finish(&mut self, outcome: &Result<CaptureStats>) -> Option<Summary> {
        let end = outcome.as_ref().ok()?.end_ktime_ns;
        let engine = self.engine.take()?;
        Some(engine.finish(self.clock.wall(end)))
    }

    /// Completes the recording after a capture that finished, or gives it
    /// up (its events counted as lost) after one that failed.
    pub fn end(mut self, outcome: Result<CaptureStats>) -> (O, Result<CaptureStats>) {
        let stats = match self.recording.take() {
            Some(r) => r.end(outcome),
            None => outcome,
        };
        (self.out, stats)
    }
}

impl<O: Output> Sink for Feed<O> {
    fn started(&mut self, s: &Started) -> Result<()> {
        let start = self.clock.wall(s.start_ktime_ns);
        let cfg = self.out.started(s, start, self.recording.as_ref())?;
        self.engine = Some(Engine::new(cfg));
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

    fn unsnapped(&self) -> bool {
        self.recording.as_ref().is_some_and(|r| r.unsnapped())
    }

    fn cgroups(&mut self, names: &CgroupNames) -> Result<()> {
        if let Some(r) = self.recording.as_mut() {
            r.name_cgroups(names);
        }
        self.out.cgroups(names);
        Ok(())
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        if let Some(r) = self.recording.as_mut() {
            r.write(events, &progress)?;
        }
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
        let now = self.clock.wall(progress.complete_until);
        let windows = engine.drain_until(now);
        self.out.fed(engine, events, &windows, now, progress)
    }

    fn done(&self) -> bool {
        self.out.done()
    }
}
