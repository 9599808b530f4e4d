//! The two kernel-to-user transports behind one interface: the BPF ring
//! buffer (through libbpf-rs) and the perf event array (through libbpf
//! directly, because libbpf-rs cannot set the perf buffer's wake-up period
//! and the default wakes the consumer on every event, ~0.8 us each here).
//!
//! Both decode into one [`Inbox`] (`inbox`); neither is ever woken per event, so the
//! caller polls with a timeout and then drains.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{RingBuffer, RingBufferBuilder};

use super::ffi::{ring_positions, PerfReader};
use super::inbox::Inbox;
use super::lean::LeanRings;
use super::raw::RAW_EVENT_SIZE;
use super::skel::TcpcongSkel;
use crate::error::{Error, Result};

/// The kernel-to-user transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    /// The BPF ring buffer, one for all CPUs (Linux 5.8+).
    Ring,
    /// The perf event array: a buffer per CPU (any kernel).
    Perf,
}

impl BufferKind {
    /// As the file's `buffer` metadata names it.
    pub fn name(self) -> &'static str {
        match self {
            BufferKind::Ring => "ring",
            BufferKind::Perf => "perf",
        }
    }

    /// The ring buffer wherever the kernel can create one.
    pub fn best() -> BufferKind {
        // Unprivileged, the probe cannot tell; the preflight refuses anyway.
        match libbpf_rs::MapType::RingBuf.is_supported() {
            Ok(false) => BufferKind::Perf,
            Ok(true) | Err(_) => BufferKind::Ring,
        }
    }
}

/// Perf-buffer pages per CPU (must be a power of two): 2 MiB per CPU.
const PERF_PAGES: usize = 512;
/// Wake the perf consumer once per this many events on a CPU.
const PERF_WAKEUP_EVENTS: u32 = 256;

enum Transport {
    Ring(RingBuffer<'static>),
    Perf(PerfReader),
}

/// The transport of full records, and the lean records' rings beside it.
pub struct Consumer {
    transport: Transport,
    lean: Option<LeanRings>,
    inbox: Rc<RefCell<Inbox>>,
}

/// How far producers had gone at a moment (see [`Consumer::drain_past`]).
pub struct Mark {
    ring: Option<u64>,
    lean: Vec<u64>,
}

impl Consumer {
    pub fn new(
        skel: &mut TcpcongSkel<'_>,
        kind: BufferKind,
        inbox: Rc<RefCell<Inbox>>,
    ) -> Result<Consumer> {
        let lean = LeanRings::new(skel)?;
        inbox.borrow_mut().decoder.full_records_only = lean.is_none();
        let transport = Consumer::transport(skel, kind, Rc::clone(&inbox))?;
        Ok(Consumer {
            transport,
            lean,
            inbox,
        })
    }

    fn transport(
        skel: &TcpcongSkel<'_>,
        kind: BufferKind,
        inbox: Rc<RefCell<Inbox>>,
    ) -> Result<Transport> {
        match kind {
            BufferKind::Ring => {
                let mut b = RingBufferBuilder::new();
                b.add(&skel.maps.events_rb, move |data: &[u8]| {
                    inbox.borrow_mut().take(data);
                    0
                })
                .map_err(|source| Error::Bpf {
                    what: "setting up the ring buffer",
                    source,
                })?;
                let rb = b.build().map_err(|source| Error::Bpf {
                    what: "setting up the ring buffer",
                    source,
                })?;
                Ok(Transport::Ring(rb))
            }
            BufferKind::Perf => PerfReader::new(
                &skel.maps.events_perf,
                PERF_PAGES,
                PERF_WAKEUP_EVENTS,
                inbox,
            )
            .map(Transport::Perf)
            .map_err(|source| Error::Buffer {
                what: "setting up the perf buffer",
                source,
            }),
        }
    }

    /// Waits up to `timeout` for a watermark wake-up, handling what is ready.
    pub fn poll(&self, timeout: Duration) -> Result<()> {
        let ret = match &self.transport {
            Transport::Ring(rb) => rb.poll_raw(timeout),
            Transport::Perf(pb) => pb.poll(timeout),
        };
        check("polling the event buffer", ret)
    }

    /// How far producers have gone: the ring buffer's reservations (in
    /// bytes) and the lean rings' records begun. Records are consumed in
    /// that order, so once the reads are past a mark taken at time T, every
    /// event stamped before T is in hand, finished or not at T (a program
    /// can be preempted between beginning a record and finishing it).
    pub fn mark(&self) -> Mark {
        Mark {
            ring: self.ring_positions().map(|(producer, _)| producer),
            lean: self
                .lean
                .as_ref()
                .map(LeanRings::reserved)
                .unwrap_or_default(),
        }
    }

    fn ring_positions(&self) -> Option<(u64, u64)> {
        match &self.transport {
            Transport::Ring(rb) => ring_positions(rb),
            Transport::Perf(_) => None,
        }
    }

    /// Takes everything the buffers hold now (the lean rings first: a lean
    /// record's full record was finished before it began), and says
    /// whether that is everything begun before `mark`; None for perf
    /// buffers, which cannot tell.
    pub fn drain_past(&self, mark: &Mark) -> Result<Option<bool>> {
        let lean_done = match &self.lean {
            Some(rings) => {
                let inbox = &self.inbox;
                let finished = rings.drain(|bytes| inbox.borrow_mut().take(bytes));
                finished.iter().zip(&mark.lean).all(|(f, r)| f >= r)
            }
            None => true,
        };
        let ret = match &self.transport {
            Transport::Ring(rb) => rb.consume_raw(),
            Transport::Perf(pb) => pb.consume(),
        };
        check("reading the event buffer", ret)?;
        self.inbox.borrow_mut().retry();
        Ok(match (mark.ring, self.ring_positions()) {
            (Some(p), Some((_, c))) => Some(c >= p && lean_done),
            _ => None,
        })
    }

    /// Records begun and never finished, now: counted as lost at the end.
    pub fn unfinished(&self) -> u64 {
        let ring = self
            .ring_positions()
            .map_or(0, |(p, c)| p.saturating_sub(c).div_ceil(RING_RECORD_BYTES));
        let lean = self.lean.as_ref().map_or(0, LeanRings::unfinished);
        ring + lean
    }
}

/// A ring-buffer record: the event and libbpf's 8-byte header.
const RING_RECORD_BYTES: u64 = RAW_EVENT_SIZE as u64 + 8;

fn check(what: &'static str, ret: i32) -> Result<()> {
    // A signal (Ctrl-C) interrupting the wait is how a capture ends.
    if ret >= 0 || ret == -libc::EINTR {
        Ok(())
    } else {
        Err(Error::Buffer {
            what,
            source: std::io::Error::from_raw_os_error(-ret),
        })
    }
}
