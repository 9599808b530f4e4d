//! A capture's events on their way into a recording, one file or a rotated
//! series, as `record`, live mode's `-o` and `serve -o` write them: so that
//! all three create, finish, give up on and report files alike. And what
//! the three say about a capture as it starts.

use std::collections::BTreeMap;

use indicatif::HumanBytes;

use super::plural;
use crate::error::Result;
use crate::event::{CgroupNames, Event, Filters};
use crate::host::netns_in_use;
use crate::messages;
use crate::record::capture::config::CaptureConfig;
use crate::record::capture::{CaptureStats, Progress, Started};
use crate::record::format::output::{Output, Target};
use crate::record::format::schema::CaptureInfo;
use crate::time::Clock;

/// A capture's events on their way into an [`Output`].
pub struct Recorder {
    out: Output,
    clock: Clock,
    info: CaptureInfo,
}

impl Recorder {
    /// Creates the output before anything is loaded, so that a bad path
    /// fails first, and says what an earlier capture left in its folder.
    pub fn create(target: &Target, cfg: &CaptureConfig, command: &str) -> Result<Recorder> {
        let clock = Clock::of_host();
        let (out, leftovers) = Output::create(target, clock)?;
        if let Some(first) = leftovers.first() {
            messages::say(format_args!(
                "{} unfinished file(s) from an earlier capture left in the output folder (e.g. {}): not complete recordings; inspect or remove them",
                leftovers.len(),
                first.display()
            ));
        }
        Ok(Recorder {
            out,
            clock,
            info: CaptureInfo {
                attach: String::new(),
                buffer: cfg.buffer.name().to_string(),
                filters: cfg.filters.clone(),
                lifecycle: cfg.lifecycle,
                evidence: cfg.evidence.kinds(),
                untraced_drops: BTreeMap::new(),
                command: command.to_string(),
                clock,
                cgroup_paths: BTreeMap::new(),
                containers: BTreeMap::new(),
            },
        })
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn describe(&self) -> String {
        self.out.describe()
    }

    /// One line on how far the recording has got.
    pub(super) fn status(&self, lost: u64) -> String {
        let (events, flows, bytes, files) = self.out.progress();
        let files = if files > 1 {
            format!(", {}", plural(files, "file"))
        } else {
            String::new()
        };
        format!(
            // The estimate --rotate-size cuts files by: an upper bound (a
            // file comes out smaller once its rows are encoded).
            "recording: {} of {}, {lost} lost, at most {}{files}",
            plural(events, "event"),
            plural(flows, "flow"),
            HumanBytes(bytes)
        )
    }

    pub fn started(&mut self, s: &Started) -> Result<()> {
        self.info.attach = s.attach.clone();
        self.info.evidence = s.evidence.kinds();
        self.out.start(self.info.clone(), s.start_ktime_ns)
    }

    pub fn write(&mut self, events: &[Event], p: &Progress) -> Result<()> {
        self.out.count_untraced(&p.untraced_drops);
        self.out.write(events, p.complete_until, p.lost)
    }

    pub fn name_cgroups(&mut self, names: &CgroupNames) {
        self.out.name_cgroups(names);
    }

    pub fn snapshot_due(&self, next: u64) -> bool {
        self.out.snapshot_due(next)
    }

    pub fn snapshot_taken(&mut self, done: u64) {
        self.out.snapshot_taken(done);
    }

    pub fn unsnapped(&self) -> bool {
        self.out.unsnapped()
    }

    /// Ends the recording with the capture's outcome: its files are
    /// completed after a capture that finished, given up on (and their
    /// events counted as lost) after one that failed.
    pub fn end(self, outcome: Result<CaptureStats>) -> Result<CaptureStats> {
        let out = self.out;
        let stats = match outcome {
            Ok(stats) => stats,
            Err(e) => return Err(out.abandon(e)),
        };
        let w = out.finish(stats.end_ktime_ns, stats.lost_events())?;
        let summary = if w.series {
            let deleted = match w.deleted {
                0 => String::new(),
                n => format!(
                    ", {} deleted to keep within --max-total",
                    plural(n, "old file")
                ),
            };
            format!(
                "wrote {} of {} in {} to {} ({} bytes{deleted})",
                plural(w.events, "event"),
                plural(w.flows, "flow"),
                plural(w.files, "file"),
                w.place.display(),
                w.bytes
            )
        } else {
            format!(
                "wrote {} of {} to {} ({} bytes)",
                plural(w.events, "event"),
                plural(w.flows, "flow"),
                w.place.display(),
                w.bytes
            )
        };
        if w.breaks.gaps > 0 {
            messages::say(format_args!(
                "{} happened without an event (a ca_state event did not start where its flow's previous one ended); analyze counts them as mismatches",
                plural(w.breaks.gaps, "transition")
            ));
        }
        if w.breaks.kernel_gaps > 0 {
            messages::say(format_args!(
                "the kernel side saw {} find a socket in another state than its previous call set: calls the kernel did not run the programs for, or changes it made without calling the tracepoint",
                plural(w.breaks.kernel_gaps, "call")
            ));
        }
        if stats.after_end > 0 {
            messages::say(format_args!(
                "{} events stamped after the capture's set end (while detaching) are outside it and were not written",
                stats.after_end
            ));
        }
        if stats.late > 0 {
            messages::say(format_args!(
                "{} events arrived after later ones were written (a preempted program, perf buffer); the file is marked unsorted and analyze sorts it",
                stats.late
            ));
        }
        messages::say(format_args!(
            "{summary}, {} lost events{}",
            stats.lost_events(),
            loss_detail(&stats)
        ));
        if w.events == 0 && stats.lost_events() == 0 {
            messages::say(format_args!(
                "nothing was recorded: no TCP socket {} changed state while the capture ran; check that the traffic ran then{}, and what `tcpcong doctor` says this kernel shows",
                kept_by(&self.info.filters),
                if self.info.filters == Filters::default() {
                    ""
                } else {
                    " and matches the filters"
                }
            ));
        }
        if stats.unnamed_left_out > 0 {
            messages::say(format_args!(
                "{} events of cgroups not yet named when they came were left out by --container/--pod (a cgroup is named from its process at its first event, or else by a scan at most once a second)",
                stats.unnamed_left_out
            ));
        }
        if stats.snapshot_unreachable > 0 {
            messages::say(format_args!(
                "the socket snapshots left out {} network namespace(s) that record could not enter (setns needs CAP_SYS_ADMIN): their sockets' events are recorded, their idle sockets are not",
                stats.snapshot_unreachable
            ));
        }
        if stats.bpf_run_ns > 0 && stats.bpf_runs > 0 {
            messages::say(cost_line(&stats, w.events));
        }
        Ok(stats)
    }
}

/// Warns about filters that can match nothing (before loading anything).
pub fn check_filters(cfg: &CaptureConfig) {
    if let Some(ino) = cfg.filters.netns {
        if !netns_in_use(ino) {
            messages::warn(format_args!(
                "--netns {ino}: no process is in a network namespace with this inode and none is bound under /run/netns; the capture may see nothing"
            ));
        }
    }
}

/// Says what the capture attached to, when it is worth knowing.
pub fn tell_started(s: &Started) {
    for note in &s.notes {
        messages::say(note);
    }
}

/// The programs' in-kernel cost per run (all events divided by those
/// written would charge the filtered-out runs to the written ones).
fn cost_line(stats: &CaptureStats, events: u64) -> String {
    let per = |ns: u64, runs: u64| ns.checked_div(runs).unwrap_or(0);
    let programs: Vec<String> = stats
        .programs
        .iter()
        .filter(|p| p.runs > 0)
        .map(|p| format!("{} {} ns x {}", p.name, per(p.run_time_ns, p.runs), p.runs))
        .collect();
    format!(
        "in-kernel cost {} ns per program run ({} ns in {} runs: {}); {} written, {} runs wrote none (filtered out, or the entry half of a fallback's pair); kernel.bpf_stats_enabled is on",
        per(stats.bpf_run_ns, stats.bpf_runs),
        stats.bpf_run_ns,
        stats.bpf_runs,
        programs.join(", "),
        plural(events, "event"),
        stats.bpf_runs.saturating_sub(events)
    )
}

/// Why events were lost, for the one summary line.
fn loss_detail(stats: &CaptureStats) -> String {
    if stats.lost_events() == 0 {
        return String::new();
    }
    let parts: Vec<String> = [
        (stats.lost, "buffer or table full, or never committed"),
        (
            stats.missed,
            "skipped by the kernel: program re-entered on one CPU",
        ),
        (stats.malformed, "undecodable"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    format!(" ({}; see lost_events in the file)", parts.join(", "))
}

/// The sockets a capture's filters keep, in the flags that set them.
pub fn kept_by(f: &Filters) -> String {
    let flags = super::socket_flags(f);
    if flags.is_empty() {
        "of this host".into()
    } else {
        format!("kept by {}", flags.join(" "))
    }
}
