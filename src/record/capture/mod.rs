//! The kernel side of a capture, and its loop: which hook this kernel
//! offers (`attach`), what a capture is asked to do (`config`), checks
//! and loading (`load`), the ring and perf
//! transports (`buffer`, with the raw libbpf calls in `ffi`) and the lean
//! records' rings per CPU (`lean`), decoding of the BPF records (`raw`),
//! and here the loop that `record` and live mode
//! both consume. It hands its sink events in `ktime_ns` order, together
//! with the time up to which the stream is complete. It knows nothing of
//! files or reports.
//!
//! Order needs care because the perf buffer delivers per CPU and even the
//! ring buffer orders by reservation, not by timestamp, and a program can
//! be preempted between reserving a record and committing it. The BPF side
//! stamps an event after reserving it, so with the ring buffer (and the
//! lean rings, which count records begun) the loop knows exactly when the
//! stream is complete: once the consumer has passed the producer positions
//! read at time T, every event stamped before T is in hand. Perf buffers have no such positions; there the loop waits a margin
//! and counts any event that still comes late (the file then says it is not
//! fully sorted). At the end the programs are detached first, and records
//! still in flight are waited for, or counted as lost.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

pub mod attach;
pub mod buffer;
pub mod config;
mod containers;
mod ffi;
mod inbox;
mod lean;
pub mod load;
pub mod names;
pub mod preflight;
pub mod raw;
mod select;
pub mod skel;
mod snapshot;
pub mod stats;

use buffer::{BufferKind, Consumer};
use config::{CaptureConfig, Evidence};
use inbox::Inbox;
use load::{load, object_slots};
use skel::TcpcongSkel;
use snapshot::Snapshots;
use stats::{kernel_lost, prog_stats};

use crate::error::Result;
use crate::event::{CgroupNames, Event};
use crate::time::ktime_now;

const POLL: Duration = Duration::from_millis(50);
/// Perf buffers give no positions to prove completeness: events stamped
/// more than this before a drain are taken to be all in.
const PERF_SLACK_NS: u64 = 100_000_000;
const PERF_SETTLE: Duration = Duration::from_millis(50);
/// How long the end of a capture waits for reserved records to be committed.
const SETTLE: Duration = Duration::from_secs(1);

static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// SIGINT and SIGTERM end a capture cleanly; a second one is not needed.
/// Commands call it first of all: a signal that comes while they set up
/// (a port already answering, a file already created) must end the
/// capture as soon as it starts, not kill the process mid-way.
pub fn install_stop_handler() -> Result<()> {
    let mut res = Ok(());
    HANDLER.call_once(|| {
        res = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)).map_err(Into::into);
    });
    res
}

/// What the transports and the reordering reported over the capture.
#[derive(Debug, Default, Clone)]
pub struct CaptureStats {
    pub start_ktime_ns: u64,
    pub end_ktime_ns: u64,
    /// Events the kernel could not hand over (ring full / perf lost).
    pub lost: u64,
    /// Records that did not decode.
    pub malformed: u64,
    /// Calls the kernel skipped because the program was already running on
    /// that CPU (see `stats::ProgStats`).
    pub missed: u64,
    /// Time in the programs and their runs, while bpf_stats was enabled.
    pub bpf_run_ns: u64,
    pub bpf_runs: u64,
    /// The same per program.
    pub programs: Vec<stats::ProgramCost>,
    /// Events that arrived after later ones had been released.
    pub late: u64,
    /// Events stamped after the end of a `--duration` capture (between its
    /// deadline and the detach): outside the capture, so not written.
    pub after_end: u64,
    /// What the programs attached to (metadata `attach`).
    pub attach: String,
    /// Socket snapshots taken, the rows they gave, and the longest one's
    /// time from its start to its last row read.
    pub snapshots: u64,
    pub snapshot_rows: u64,
    pub snapshot_max_ns: u64,
    /// Network namespaces a snapshot could not enter (the most in one).
    pub snapshot_unreachable: u64,
    /// Events a container filter left out because their cgroup had no
    /// name yet when they came.
    pub unnamed_left_out: u64,
}

impl CaptureStats {
    /// Everything that did not make it into the stream, for reports.
    pub fn lost_events(&self) -> u64 {
        self.lost + self.malformed + self.missed
    }

    /// Losses so far, read from the kernel during the capture (the final
    /// figure adds records never committed at stop). Of the first
    /// tracepoint program's misses, only those [`SettledMisses`] holds are
    /// weighed against the second program's catches.
    fn losses_so_far(
        &self,
        skel: &TcpcongSkel<'_>,
        inbox: &Inbox,
        buffer: BufferKind,
        misses: &mut SettledMisses,
    ) -> u64 {
        // Tables full count in the kernel whatever the transport.
        let transport = match buffer {
            BufferKind::Ring => 0,
            BufferKind::Perf => inbox.perf_lost,
        };
        let p = prog_stats(skel);
        let others = p.recursion_misses - p.first_misses.saturating_sub(p.caught);
        let uncaught = misses
            .settled(Instant::now(), p.first_misses)
            .saturating_sub(p.caught);
        kernel_lost(skel) + transport + inbox.malformed + others + uncaught
    }
}

/// The first tracepoint program's misses as they were a while ago. The
/// second program catches a miss a moment after the kernel counts it, and
/// that moment is not bounded by a round: two rounds can follow each other
/// within microseconds, and a virtual CPU can be paused by its host between
/// the count and the catch (a live count then showed a loss that the file,
/// counted after the detach, did not have). Misses older than `SETTLE` have
/// been caught if they are going to be, so only those are weighed against
/// the catches; a real loss shows live that much later, and exactly in the
/// file.
#[derive(Debug, Default)]
struct SettledMisses {
    /// Samples (when, misses) younger than `SETTLE`, one per `EVERY` at most.
    recent: VecDeque<(Instant, u64)>,
    /// The newest sample older than `SETTLE`.
    settled: u64,
}

impl SettledMisses {
    const SETTLE: Duration = Duration::from_secs(1);
    const EVERY: Duration = Duration::from_millis(100);

    /// Takes a sample of `misses` at `now`; returns the misses as they
    /// were at least `SETTLE` ago (0 before then).
    fn settled(&mut self, now: Instant, misses: u64) -> u64 {
        if self
            .recent
            .back()
            .is_none_or(|&(t, _)| now.duration_since(t) >= Self::EVERY)
        {
            self.recent.push_back((now, misses));
        }
        while let Some(&(t, m)) = self.recent.front() {
            if now.duration_since(t) < Self::SETTLE {
                break;
            }
            self.settled = m;
            self.recent.pop_front();
        }
        self.settled
    }
}

/// Where a capture stands after a round.
#[derive(Debug, Clone)]
pub struct Progress {
    /// No event stamped before this ktime is still to come.
    pub complete_until: u64,
    /// Events lost so far, all causes (see [`CaptureStats::lost_events`]).
    pub lost: u64,
    /// TCP segments dropped so far that were no traced flow's, by reason.
    pub untraced_drops: BTreeMap<String, u64>,
}

/// What a capture attached to, once it has.
#[derive(Debug, Clone)]
pub struct Started {
    /// Events from this ktime on are captured.
    pub start_ktime_ns: u64,
    /// As the file's `attach` metadata names it.
    pub attach: String,
    /// What the user should know about the choice (a fallback mode, its
    /// blind spots), one line each.
    pub notes: Vec<String>,
    /// The evidence recorded beside the transitions.
    pub evidence: Evidence,
}

/// Receives ordered events after each round of the capture loop.
pub trait Sink {
    /// The programs are attached; an error ends the capture at once.
    fn started(&mut self, started: &Started) -> Result<()>;
    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()>;
    /// Names of cgroups that sockets of the coming events are in, each
    /// once, before the first event that names it.
    fn cgroups(&mut self, _names: &CgroupNames) -> Result<()> {
        Ok(())
    }
    /// Whether the sink has all it wants (live mode's `outputs`).
    fn done(&self) -> bool {
        false
    }
    /// Whether to take a snapshot of every socket now, when the round
    /// after this one comes by `next` (ktime). A capture takes one at its
    /// start and one at its end whatever the sink says; a file series asks
    /// for one at each file's start and end.
    fn snapshot_due(&self, _next: u64) -> bool {
        false
    }
    /// A snapshot was taken, all its rows stamped before `done` (ktime):
    /// they come with the next events.
    fn snapshot_taken(&mut self, _done: u64) {}
    /// Whether the sink's current file has had no snapshot yet (a file
    /// series' file that the last round began): a capture that stops then
    /// takes its start's before its end's.
    fn unsnapped(&self) -> bool {
        false
    }
}

/// Runs a capture for `duration` from the moment it is attached (or until a
/// stop signal, or a sink error).
pub fn run(
    cfg: &CaptureConfig,
    duration: Option<Duration>,
    sink: &mut dyn Sink,
) -> Result<CaptureStats> {
    if cfg.filters.containers.is_empty() {
        return run_into(cfg, duration, sink);
    }
    let mut selected = select::Selected::new(&cfg.filters.containers, sink);
    let mut stats = run_into(cfg, duration, &mut selected)?;
    stats.unnamed_left_out = selected.unnamed();
    Ok(stats)
}

fn run_into(
    cfg: &CaptureConfig,
    duration: Option<Duration>,
    sink: &mut dyn Sink,
) -> Result<CaptureStats> {
    install_stop_handler()?;
    let mut slots = object_slots();
    let loaded = load(&mut slots, cfg)?;
    let start_ktime_ns = loaded.start_ktime_ns;
    let mut skel = loaded.skel;
    // A pinned map outlives the process: the name must go however the
    // capture ends (the map itself goes with its last user).
    let _unpin = cfg.pin_buffer.as_deref().map(load::pins).map(Unpin);
    let inbox = Rc::new(RefCell::new(Inbox::default()));
    let reasons = &preflight::facts().reasons;
    inbox.borrow_mut().decoder.reasons.clone_from(reasons);
    let consumer = Consumer::new(&mut skel, cfg.buffer, Rc::clone(&inbox))?;
    let mut stats = CaptureStats {
        start_ktime_ns,
        attach: loaded.attach.clone(),
        ..Default::default()
    };
    let mut notes = loaded.notes;
    if crate::host::cgroup2_root().is_none() {
        notes.push("note: no cgroup v2 is mounted in this mount namespace, so cgroups and containers are recorded by id only, unnamed (`ip netns exec` gives its command a /sys of its own without cgroups; `nsenter --net=` does not)".into());
    }
    sink.started(&Started {
        start_ktime_ns,
        attach: loaded.attach,
        notes,
        evidence: loaded.evidence,
    })?;
    // A --duration capture covers exactly [start, start + duration): the
    // loop wakes at the deadline, and events stamped after it (between the
    // deadline and the detach) are outside the capture.
    let deadline = duration
        .map(|d| start_ktime_ns.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));
    let until_deadline = |t: u64| deadline.map_or(t, |d| t.min(d));

    let mut order = Reorder::default();
    let mut misses = SettledMisses::default();
    // The start's snapshot: every socket's state as the capture begins.
    let mut snapshots = Snapshots::new(cfg.filters.netns)?;
    let mut snapped = snapshots.take(&skel, &inbox, &mut stats, sink)?;
    let mut ended = false;
    loop {
        let now = ktime_now();
        let stopping =
            STOP.load(Ordering::SeqCst) || sink.done() || deadline.is_some_and(|d| now >= d);
        if stopping {
            if sink.unsnapped() {
                snapped.extend(snapshots.take(&skel, &inbox, &mut stats, sink)?);
                ended = false;
            }
            break;
        }
        let wait = deadline.map_or(POLL, |d| POLL.min(Duration::from_nanos(d - now)));
        // The last round before a deadline takes the end's snapshot, so
        // that its rows are inside the capture.
        let last = deadline.is_some_and(|d| d - now <= POLL.as_nanos() as u64);
        if sink.snapshot_due(now + wait.as_nanos() as u64) || (last && !ended) {
            snapped.extend(snapshots.take(&skel, &inbox, &mut stats, sink)?);
            ended |= last;
        }
        consumer.poll(wait)?;
        let drain_start = ktime_now();
        let mark = consumer.mark();
        let caught_up = consumer.drain_past(&mark)?;
        // After the drain's events: a snapshot row follows the events
        // its socket had before it (see Reorder::release on ties).
        order.take(&mut inbox.borrow_mut().events);
        order.take(&mut snapped);
        let complete_until = match caught_up {
            // Everything begun before the drain began has been read.
            Some(true) => drain_start,
            // A record begun before the drain is not finished yet.
            Some(false) => order.released_until,
            // Perf buffer: per CPU, no positions; trust a margin.
            None => drain_start.saturating_sub(PERF_SLACK_NS),
        };
        // A parked lean record is an event still to come.
        let complete_until = inbox
            .borrow()
            .decoder
            .parked_since()
            .map_or(complete_until, |t| complete_until.min(t));
        let ready = order.release(until_deadline(complete_until), &mut stats);
        let lost = stats.losses_so_far(&skel, &inbox.borrow(), cfg.buffer, &mut misses);
        name_cgroups(&inbox, sink)?;
        sink.events(
            &ready,
            Progress {
                complete_until: order.released_until,
                lost,
                untraced_drops: stats::untraced_drops(&skel, &reasons.drop),
            },
        )?;
        order.recycle(ready);
    }

    // The end's snapshot, unless the last round before the deadline took it.
    if !ended {
        snapped.extend(snapshots.take(&skel, &inbox, &mut stats, sink)?);
    }
    // Detach first, so that nothing new arrives, then collect what is in
    // flight: a program may still be between reserving and committing.
    stats.end_ktime_ns = until_deadline(ktime_now());
    skel.links = Default::default();

    let give_up = Instant::now() + SETTLE;
    loop {
        let mark = consumer.mark();
        match consumer.drain_past(&mark)? {
            Some(false) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Never finished: counted as lost, not silently dropped.
            Some(_) => {
                stats.lost += consumer.unfinished();
                break;
            }
            // Perf: a sample is written whole; give preempted programs a moment.
            None => {
                std::thread::sleep(PERF_SETTLE);
                consumer.drain_past(&mark)?;
                stats.lost += consumer.unfinished();
                break;
            }
        }
    }
    order.take(&mut inbox.borrow_mut().events);
    order.take(&mut snapped);
    let ready = match deadline {
        Some(end) => {
            let ready = order.release(end, &mut stats);
            stats.after_end = order.pending.len() as u64;
            // Stopped before it (Ctrl-C): the events stamped while stopping
            // belong in, as without a deadline, and the capture ends with
            // them.
            if let Some(last) = ready.last() {
                stats.end_ktime_ns = stats.end_ktime_ns.max(last.ktime_ns);
            }
            ready
        }
        None => {
            // Events stamped while the stop was being seen belong in.
            order.pending.sort_by_key(|e| e.ktime_ns);
            if let Some(last) = order.pending.last() {
                stats.end_ktime_ns = stats.end_ktime_ns.max(last.ktime_ns);
            }
            order.release(u64::MAX, &mut stats)
        }
    };
    {
        let mut inbox = inbox.borrow_mut();
        // A lean record whose full record never came cannot be decoded.
        stats.malformed = inbox.malformed + inbox.decoder.abandon_parked();
        let progs = prog_stats(&skel);
        stats.missed = progs.recursion_misses;
        stats.bpf_run_ns = progs.run_time_ns;
        stats.bpf_runs = progs.run_cnt;
        stats.programs = stats::program_costs(&skel);
        stats.lost += kernel_lost(&skel)
            + match cfg.buffer {
                BufferKind::Ring => 0,
                BufferKind::Perf => inbox.perf_lost,
            };
    }
    name_cgroups(&inbox, sink)?;
    sink.events(
        &ready,
        Progress {
            complete_until: stats.end_ktime_ns,
            lost: stats.lost_events(),
            untraced_drops: stats::untraced_drops(&skel, &reasons.drop),
        },
    )?;
    Ok(stats)
}

fn name_cgroups(inbox: &RefCell<Inbox>, sink: &mut dyn Sink) -> Result<()> {
    let paths = inbox.borrow_mut().decoder.names.take_new_cgroups();
    if paths.is_empty() {
        return Ok(());
    }
    // Once per cgroup, as its path: a new container's files are there
    // before its first socket.
    let containers = paths
        .iter()
        .filter_map(|(id, path)| Some((*id, containers::resolve(path, &containers::Host)?)))
        .collect();
    sink.cgroups(&CgroupNames { paths, containers })
}

/// Removes a pinned map's name when dropped.
struct Unpin([std::path::PathBuf; 3]);

impl Drop for Unpin {
    fn drop(&mut self) {
        for pin in &self.0 {
            let _ = std::fs::remove_file(pin);
        }
    }
}

/// Events waiting until the stream is known complete up to their time.
#[derive(Default)]
struct Reorder {
    pending: Vec<Event>,
    released_until: u64,
    /// The last round's released vector, emptied, with its room: the next
    /// round's pending events go there instead of a vector grown anew
    /// (each growth faults in fresh pages).
    spare: Vec<Event>,
}

impl Reorder {
    fn take(&mut self, events: &mut Vec<Event>) {
        if self.pending.is_empty() {
            // Without a copy (and `events` keeps the empty one's room).
            std::mem::swap(&mut self.pending, events);
        } else {
            self.pending.append(events);
        }
    }

    /// Sorts, and hands out the events stamped before `until`. An event
    /// older than what was already handed out (possible only with the perf
    /// buffer) is still handed out, and counted. Ties in time go by the
    /// socket's event number (a snapshot row carries its socket's last
    /// one), then by arrival: a snapshot row arrives after the events
    /// the ring held when it was taken.
    fn release(&mut self, until: u64, stats: &mut CaptureStats) -> Vec<Event> {
        self.pending.sort_by_key(|e| (e.ktime_ns, e.detail.seq));
        let n = self.pending.partition_point(|e| e.ktime_ns < until);
        let before = self.released_until;
        stats.late += self.pending[..n]
            .iter()
            .filter(|e| e.ktime_ns < before)
            .count() as u64;
        if until != u64::MAX {
            self.released_until = self.released_until.max(until);
        }
        // When most of a round is released, only what stays is copied;
        // else what goes is (nothing while a parked record holds all back).
        let mut ready = std::mem::take(&mut self.spare);
        if n >= self.pending.len() / 2 {
            std::mem::swap(&mut ready, &mut self.pending);
            self.pending.extend(ready.drain(n..));
        } else {
            ready.extend(self.pending.drain(..n));
        }
        ready
    }

    /// Gives back a vector `release` returned, once its events are written.
    fn recycle(&mut self, mut done: Vec<Event>) {
        done.clear();
        self.spare = done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of flow `flow` at `ktime_ns`, the socket's `seq`th.
    fn ev(ktime_ns: u64, flow: u64, seq: u32) -> Event {
        Event::example(ktime_ns, flow, seq)
    }

    fn keys(events: &[Event]) -> Vec<(u64, u64, u32)> {
        events
            .iter()
            .map(|e| (e.ktime_ns, e.flow, e.detail.seq))
            .collect()
    }

    #[test]
    fn reorder_hands_out_in_time_then_number_order_and_counts_late_ones() {
        let mut r = Reorder::default();
        let mut stats = CaptureStats::default();
        // Two CPUs' events, interleaved as the transports hand them over;
        // at 20 a tie, told apart by the socket's event number.
        r.take(&mut vec![ev(30, 1, 3), ev(10, 1, 1), ev(20, 2, 7)]);
        r.take(&mut vec![ev(20, 1, 2), ev(40, 2, 8)]);
        let out = r.release(25, &mut stats);
        assert_eq!(keys(&out), [(10, 1, 1), (20, 1, 2), (20, 2, 7)]);
        assert_eq!(stats.late, 0);
        // Nothing stamped at or after the bound left, nor was anything lost.
        assert_eq!(r.pending.len(), 2);
        // A perf buffer's straggler, older than what went out: handed out
        // all the same, and counted.
        r.take(&mut vec![ev(15, 3, 1)]);
        let out = r.release(35, &mut stats);
        assert_eq!(keys(&out), [(15, 3, 1), (30, 1, 3)]);
        assert_eq!(stats.late, 1);
        // The end hands out the rest without moving the bound to MAX.
        let out = r.release(u64::MAX, &mut stats);
        assert_eq!(keys(&out), [(40, 2, 8)]);
        assert_eq!(r.released_until, 35);
        assert!(r.pending.is_empty());
    }

    #[test]
    fn only_misses_a_second_old_are_settled() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = SettledMisses::default();
        // A miss counted at 0 ms and more at 50 and 950 ms: none settled
        // before a second has passed.
        assert_eq!(m.settled(at(0), 1), 0);
        assert_eq!(m.settled(at(50), 2), 0);
        assert_eq!(m.settled(at(950), 5), 0);
        // At 1 s the sample of 0 ms settles. Samples are 100 ms apart at
        // least: 50 ms and 1 s were not taken, 1.05 s was.
        assert_eq!(m.settled(at(1000), 6), 1);
        assert_eq!(m.settled(at(1050), 6), 1);
        assert_eq!(m.settled(at(1949), 7), 1);
        assert_eq!(m.settled(at(1950), 7), 5);
        assert_eq!(m.settled(at(2049), 7), 5);
        assert_eq!(m.settled(at(2050), 7), 6);
        // Rounds within microseconds keep the memory to one sample per 100 ms.
        for us in 0..10_000 {
            m.settled(at(3000) + Duration::from_micros(us), 8);
        }
        assert!(m.recent.len() <= 11, "{}", m.recent.len());
    }
}
