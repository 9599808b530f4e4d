//! The two kernel-to-user transports behind one interface: the BPF ring
//! buffer (through libbpf-rs) and the perf event array (through libbpf
//! directly, because libbpf-rs cannot set the perf buffer's wake-up period
//! and the default wakes the consumer on every event, ~0.8 us each here).
//!
//! Both decode into one [`Inbox`]; neither is ever woken per event, so the
//! caller polls with a timeout and then drains.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{AsRawLibbpf, RingBuffer, RingBufferBuilder};

use super::raw::decode;
use super::skel::TcpcongSkel;
use crate::cli::BufferKind;
use crate::error::{Error, Result};
use crate::event::Event;

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
}

impl Inbox {
    fn take(&mut self, data: &[u8]) {
        match decode(data) {
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
            BufferKind::Perf => Ok(Consumer::Perf(PerfReader::new(
                skel.maps.events_perf.as_fd().as_raw_fd(),
                inbox,
            )?)),
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

    /// Ring buffer only: how far producers have reserved, in bytes.
    /// Records are consumed in reservation order, so once the consumer is
    /// past a position read before a drain, every event reserved before
    /// that moment is in hand, committed or not at the time (a program can
    /// be preempted between reserving and committing).
    pub fn producer_pos(&self) -> Option<u64> {
        self.ring()
            .map(|r| unsafe { libbpf_rs::libbpf_sys::ring__producer_pos(r) } as u64)
    }

    pub fn consumer_pos(&self) -> Option<u64> {
        self.ring()
            .map(|r| unsafe { libbpf_rs::libbpf_sys::ring__consumer_pos(r) } as u64)
    }

    fn ring(&self) -> Option<*const libbpf_rs::libbpf_sys::ring> {
        match self {
            // SAFETY: the ring buffer has exactly one ring (one map added),
            // valid as long as `rb`; the position reads are atomic loads.
            Consumer::Ring(rb) => {
                let r = unsafe {
                    libbpf_rs::libbpf_sys::ring_buffer__ring(rb.as_libbpf_object().as_ptr(), 0)
                };
                (!r.is_null()).then_some(r.cast_const())
            }
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

fn check(what: &str, ret: i32) -> Result<()> {
    // A signal (Ctrl-C) interrupting the wait is how a capture ends.
    if ret >= 0 || ret == -libc::EINTR {
        Ok(())
    } else {
        Err(Error::Runtime(format!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(-ret)
        )))
    }
}

/// libbpf's perf buffer, opened with a wake-up period.
pub struct PerfReader {
    pb: *mut libbpf_rs::libbpf_sys::perf_buffer,
    // Owned here and handed to libbpf as the callbacks' context: it must
    // outlive `pb`, which Drop guarantees by freeing `pb` first.
    ctx: *mut Rc<RefCell<Inbox>>,
}

unsafe extern "C" fn on_sample(ctx: *mut c_void, _cpu: c_int, data: *mut c_void, size: u32) {
    // SAFETY: ctx is the Box-allocated inbox of a live PerfReader, and
    // libbpf passes a sample of `size` readable bytes.
    let inbox = unsafe { &*(ctx as *const Rc<RefCell<Inbox>>) };
    let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, size as usize) };
    inbox.borrow_mut().take(bytes);
}

unsafe extern "C" fn on_lost(ctx: *mut c_void, _cpu: c_int, count: u64) {
    // SAFETY: as in on_sample.
    let inbox = unsafe { &*(ctx as *const Rc<RefCell<Inbox>>) };
    inbox.borrow_mut().perf_lost += count;
}

impl PerfReader {
    fn new(map_fd: i32, inbox: Rc<RefCell<Inbox>>) -> Result<PerfReader> {
        let ctx = Box::into_raw(Box::new(inbox));
        let opts = libbpf_rs::libbpf_sys::perf_buffer_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::perf_buffer_opts>() as _,
            sample_period: PERF_WAKEUP_EVENTS,
            ..Default::default()
        };
        // SAFETY: map_fd is a perf event array of the loaded skeleton, the
        // callbacks match libbpf's signatures, ctx stays valid until Drop.
        let pb = unsafe {
            libbpf_rs::libbpf_sys::perf_buffer__new(
                map_fd,
                PERF_PAGES as _,
                Some(on_sample),
                Some(on_lost),
                ctx.cast(),
                &opts,
            )
        };
        let err = unsafe { libbpf_rs::libbpf_sys::libbpf_get_error(pb.cast()) };
        if pb.is_null() || err != 0 {
            // SAFETY: ctx came from Box::into_raw above and libbpf kept no copy.
            drop(unsafe { Box::from_raw(ctx) });
            let errno = if err != 0 { -err as i32 } else { libc::ENOMEM };
            return Err(Error::Runtime(format!(
                "setting up the perf buffer: {}",
                std::io::Error::from_raw_os_error(errno)
            )));
        }
        Ok(PerfReader { pb, ctx })
    }

    fn poll(&self, timeout: Duration) -> i32 {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: pb is valid for the lifetime of self.
        unsafe { libbpf_rs::libbpf_sys::perf_buffer__poll(self.pb, ms) }
    }

    fn consume(&self) -> i32 {
        // SAFETY: pb is valid for the lifetime of self.
        unsafe { libbpf_rs::libbpf_sys::perf_buffer__consume(self.pb) }
    }
}

impl Drop for PerfReader {
    fn drop(&mut self) {
        // SAFETY: pb and ctx were created in new() and are freed once, pb first.
        unsafe {
            libbpf_rs::libbpf_sys::perf_buffer__free(self.pb);
            drop(Box::from_raw(self.ctx));
        }
    }
}
