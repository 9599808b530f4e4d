//! The capture loop: the live event source that both `record` and live
//! mode consume. It hands its sink events in `ktime_ns` order, together
//! with the time up to which the stream is complete.
//!
//! Order needs care because the perf buffer delivers per CPU and even the
//! ring buffer orders by reservation, not by timestamp. An event's
//! timestamp is taken a few microseconds before it is committed (BPF
//! programs do not sleep), so after a full drain that started at time T,
//! every event stamped before T - SLACK is in hand: those are sorted and
//! released, the rest wait for the next round.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::buffer::{Consumer, Inbox};
use super::host::ktime_now;
use super::load::{kernel_lost, load, KernelConfig};
use crate::cli::BufferKind;
use crate::error::{Error, Result};
use crate::event::Event;

const POLL: Duration = Duration::from_millis(50);
const SLACK_NS: u64 = 20_000_000;

static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// SIGINT and SIGTERM end a capture cleanly; a second one is not needed.
fn install_stop_handler() -> Result<()> {
    let mut res = Ok(());
    HANDLER.call_once(|| {
        res = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst))
            .map_err(|e| Error::Runtime(format!("installing the Ctrl-C handler: {e}")));
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
    /// Events that arrived after later ones had been released.
    pub late: u64,
}

impl CaptureStats {
    /// Everything that did not make it into the stream, for reports.
    pub fn lost_events(&self) -> u64 {
        self.lost + self.malformed
    }
}

/// Receives ordered events; `complete_until` is the ktime before which no
/// further event will come.
pub trait Sink {
    /// The programs are attached: events from `start_ktime_ns` on are captured.
    fn started(&mut self, start_ktime_ns: u64);
    fn events(&mut self, events: &[Event], complete_until: u64) -> Result<()>;
    /// Whether the sink has all it wants (live mode's `outputs`).
    fn done(&self) -> bool {
        false
    }
}

/// Runs a capture until `deadline`, a stop signal, or a sink error.
pub fn run(
    cfg: &KernelConfig,
    deadline: Option<Instant>,
    sink: &mut dyn Sink,
) -> Result<CaptureStats> {
    install_stop_handler()?;
    let mut obj = MaybeUninit::uninit();
    let skel = load(&mut obj, cfg)?;
    let inbox = Rc::new(RefCell::new(Inbox::default()));
    let consumer = Consumer::new(&skel, cfg.buffer, Rc::clone(&inbox))?;
    let mut stats = CaptureStats {
        start_ktime_ns: ktime_now(),
        ..Default::default()
    };
    sink.started(stats.start_ktime_ns);

    let mut pending: Vec<Event> = Vec::new();
    let mut released_until = 0u64;
    loop {
        let stopping = STOP.load(Ordering::SeqCst)
            || sink.done()
            || deadline.is_some_and(|d| Instant::now() >= d);
        if !stopping {
            consumer.poll(POLL)?;
        }
        let drain_start = ktime_now();
        consumer.drain()?;
        pending.append(&mut inbox.borrow_mut().events);
        pending.sort_by_key(|e| e.ktime_ns);

        let cutoff = if stopping {
            u64::MAX
        } else {
            drain_start.saturating_sub(SLACK_NS)
        };
        let n = pending.partition_point(|e| e.ktime_ns < cutoff);
        stats.late += pending[..n]
            .iter()
            .filter(|e| e.ktime_ns < released_until)
            .count() as u64;
        if stopping {
            // Events stamped while the last drain ran belong to the capture.
            stats.end_ktime_ns = pending
                .last()
                .map_or(drain_start, |e| e.ktime_ns.max(drain_start));
            released_until = stats.end_ktime_ns;
        } else {
            released_until = released_until.max(cutoff);
        }
        sink.events(&pending[..n], released_until)?;
        pending.drain(..n);
        if stopping {
            break;
        }
    }

    let inbox = inbox.borrow();
    stats.malformed = inbox.malformed;
    stats.lost = match cfg.buffer {
        BufferKind::Ring => kernel_lost(&skel),
        BufferKind::Perf => inbox.perf_lost,
    };
    Ok(stats)
}
