//! The two kernel-to-user transports behind one interface: the BPF ring
//! buffer (through libbpf-rs) and the perf event array (through libbpf
//! directly, because libbpf-rs cannot set the perf buffer's wake-up period
//! and the default wakes the consumer on every event, ~0.8 us each here).
//!
//! Both decode into one [`Inbox`]; neither is ever woken per event, so the
//! caller polls with a timeout and then drains.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{RingBuffer, RingBufferBuilder};

use super::ffi::{ring_positions, PerfReader};
use super::raw::Decoder;
use super::skel::TcpcongSkel;
use crate::error::{Error, Result};
use crate::event::Event;

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

/// Where decoded events and the transports' loss counts accumulate.
#[derive(Default)]
pub struct Inbox {
    pub events: Vec<Event>,
    /// Records that did not decode (never seen; counted so it cannot hide).
    pub malformed: u64,
    /// Samples the perf buffer reported as lost.
    pub perf_lost: u64,
    pub(super) decoder: Decoder,
}

impl Inbox {
    pub(super) fn take(&mut self, data: &[u8]) {
        match self.decoder.decode(data) {
            Ok(e) => self.events.push(e),
            Err(_) => self.malformed += 1,
        }
    }
}

pub enum Consumer {
    Ring(RingBuffer<'static>),
    Perf(PerfReader),
}

impl Consumer {
    pub fn new(
        skel: &TcpcongSkel<'_>,
        kind: BufferKind,
        inbox: Rc<RefCell<Inbox>>,
    ) -> Result<Consumer> {
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
                Ok(Consumer::Ring(rb))
            }
            BufferKind::Perf => PerfReader::new(
                &skel.maps.events_perf,
                PERF_PAGES,
                PERF_WAKEUP_EVENTS,
                inbox,
            )
            .map(Consumer::Perf)
            .map_err(|source| Error::Buffer {
                what: "setting up the perf buffer",
                source,
            }),
        }
    }

    /// Waits up to `timeout` for a watermark wake-up, handling what is ready.
    pub fn poll(&self, timeout: Duration) -> Result<()> {
        let ret = match self {
            Consumer::Ring(rb) => rb.poll_raw(timeout),
            Consumer::Perf(pb) => pb.poll(timeout),
        };
        check("polling the event buffer", ret)
    }

    /// Ring buffer only: how far producers have reserved, and how far the
    /// consumer has read, in bytes. Records are consumed in reservation order, so
    /// once the consumer is past a position read before a drain, every
    /// event reserved before that moment is in hand, committed or not at
    /// the time (a program can be preempted between reserving and
    /// committing).
    pub fn producer_pos(&self) -> Option<u64> {
        self.positions().map(|(producer, _)| producer)
    }

    pub fn consumer_pos(&self) -> Option<u64> {
        self.positions().map(|(_, consumer)| consumer)
    }

    fn positions(&self) -> Option<(u64, u64)> {
        match self {
            Consumer::Ring(rb) => ring_positions(rb),
            Consumer::Perf(_) => None,
        }
    }

    /// Takes everything the buffers hold now.
    pub fn drain(&self) -> Result<()> {
        let ret = match self {
            Consumer::Ring(rb) => rb.consume_raw(),
            Consumer::Perf(pb) => pb.consume(),
        };
        check("reading the event buffer", ret)
    }
}

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
