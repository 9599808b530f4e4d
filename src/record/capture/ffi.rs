//! The few libbpf calls that libbpf-rs does not offer yet, in one place:
//! the perf buffer with a wake-up period, the ring buffer's positions, a
//! program's run statistics, and maps' memory shared with the programs
//! ([`Mapping`]). Everything `unsafe` about libbpf and about memory the
//! programs write lives here, each block with the reason it is sound; the
//! plain system calls elsewhere (statfs, mount, setns) carry their own.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use libbpf_rs::libbpf_sys as sys;
use libbpf_rs::{AsRawLibbpf, RingBuffer};

use super::inbox::Inbox;

/// The reservation and consumption positions of a ring buffer with one
/// ring, in bytes since its creation.
pub fn ring_positions(rb: &RingBuffer<'_>) -> Option<(u64, u64)> {
    // SAFETY: the pointer is libbpf's live ring_buffer owned by `rb`, and
    // index 0 is its only ring (one map was added); libbpf returns NULL
    // for an index out of range.
    let ring = unsafe { sys::ring_buffer__ring(rb.as_libbpf_object().as_ptr(), 0) };
    if ring.is_null() {
        return None;
    }
    // SAFETY: `ring` is valid while `rb` lives; both reads are atomic loads.
    let positions = unsafe { (sys::ring__producer_pos(ring), sys::ring__consumer_pos(ring)) };
    Some((positions.0 as u64, positions.1 as u64))
}

/// What the kernel counts about one loaded program (`bpf_prog_info`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgInfo {
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
}

pub fn prog_info(prog: &impl AsFd) -> Option<ProgInfo> {
    let mut info = sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: the fd belongs to a loaded program and stays open for the
    // call; info and len are valid out-pointers of the size given.
    let rc = unsafe { sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len) };
    (rc == 0).then_some(ProgInfo {
        run_time_ns: info.run_time_ns,
        run_cnt: info.run_cnt,
        recursion_misses: info.recursion_misses,
    })
}

/// libbpf's perf buffer, opened with a wake-up period (libbpf-rs's
/// builder cannot set one, and the default wakes the consumer per event).
pub struct PerfReader {
    pb: *mut sys::perf_buffer,
    // Owned here and handed to libbpf as the callbacks' context: it must
    // outlive `pb`, which Drop guarantees by freeing `pb` first.
    ctx: *mut Rc<RefCell<Inbox>>,
}

unsafe extern "C" fn on_sample(ctx: *mut c_void, _cpu: c_int, data: *mut c_void, size: u32) {
    // SAFETY: ctx is the Box-allocated inbox of a live PerfReader (libbpf
    // calls back only from poll/consume on it).
    let inbox = unsafe { &*(ctx as *const Rc<RefCell<Inbox>>) };
    // SAFETY: libbpf passes a sample of `size` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, size as usize) };
    inbox.borrow_mut().take(bytes);
}

unsafe extern "C" fn on_lost(ctx: *mut c_void, _cpu: c_int, count: u64) {
    // SAFETY: as in on_sample.
    let inbox = unsafe { &*(ctx as *const Rc<RefCell<Inbox>>) };
    inbox.borrow_mut().perf_lost += count;
}

impl PerfReader {
    /// Opens `pages` pages per CPU on the perf event array `map`, waking
    /// the consumer once per `wakeup_events` events on a CPU. The error is
    /// the errno libbpf gave.
    pub fn new(
        map: &impl AsFd,
        pages: usize,
        wakeup_events: u32,
        inbox: Rc<RefCell<Inbox>>,
    ) -> Result<PerfReader, std::io::Error> {
        let ctx = Box::into_raw(Box::new(inbox));
        let opts = sys::perf_buffer_opts {
            sz: std::mem::size_of::<sys::perf_buffer_opts>() as _,
            sample_period: wakeup_events,
            ..Default::default()
        };
        // SAFETY: the fd is a perf event array of the loaded skeleton, the
        // callbacks match libbpf's signatures, ctx stays valid until Drop.
        let pb = unsafe {
            sys::perf_buffer__new(
                map.as_fd().as_raw_fd(),
                pages as _,
                Some(on_sample),
                Some(on_lost),
                ctx.cast(),
                &opts,
            )
        };
        // SAFETY: libbpf_get_error only inspects the pointer value.
        let err = unsafe { sys::libbpf_get_error(pb.cast()) };
        if pb.is_null() || err != 0 {
            // SAFETY: ctx came from Box::into_raw above and libbpf kept no copy.
            drop(unsafe { Box::from_raw(ctx) });
            let errno = if err != 0 { -err as i32 } else { libc::ENOMEM };
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        Ok(PerfReader { pb, ctx })
    }

    /// libbpf's return: events handled, or a negative errno.
    pub fn poll(&self, timeout: Duration) -> i32 {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: pb is valid for the lifetime of self.
        unsafe { sys::perf_buffer__poll(self.pb, ms) }
    }

    pub fn consume(&self) -> i32 {
        // SAFETY: pb is valid for the lifetime of self.
        unsafe { sys::perf_buffer__consume(self.pb) }
    }
}

impl Drop for PerfReader {
    fn drop(&mut self) {
        // SAFETY: pb and ctx were created in new() and are freed once, pb
        // first, so that no callback can see a freed ctx.
        unsafe {
            sys::perf_buffer__free(self.pb);
            drop(Box::from_raw(self.ctx));
        }
    }
}

/// The value at `r`, in memory the programs write (libbpf's mapping of the
/// `.bss`), read afresh on every call.
pub fn read_shared(r: &u64) -> u64 {
    // SAFETY: an aligned u64 behind a valid reference, which the programs
    // only add to; volatile, so that the compiler does not reuse an
    // earlier read.
    unsafe { std::ptr::read_volatile(r) }
}

/// A shared mapping of a BPF array map's memory (an mmapable array, or a
/// loaded object's `.bss`), unmapped when dropped. The mapping holds its
/// own reference to the map, so it stays valid whatever becomes of the
/// skeleton it came from: nothing rests on the order things are dropped.
pub struct Mapping {
    at: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// The first `len` bytes of `map`'s memory; `writable` to also store
    /// (the consumer's positions), else read only.
    pub fn new(map: &impl AsFd, len: usize, writable: bool) -> std::io::Result<Mapping> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new shared mapping of the map's own memory (an mmapable
        // array is laid out as its values back to back), of no more than
        // its size (the kernel refuses more); checked for failure below.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let at = NonNull::new(at.cast()).ok_or(std::io::ErrorKind::InvalidData)?;
        Ok(Mapping { at, len })
    }

    /// The u64 at `offset`, which the programs too access only atomically
    /// (atomic adds and loads). Panics on an offset outside the mapping or
    /// not aligned: a broken promise of the caller's layout.
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "u64 at {offset}"
        );
        // SAFETY: in bounds and aligned (checked above; the mapping is page
        // aligned), valid while self lives, and only accessed atomically.
        unsafe { AtomicU64::from_ptr(self.at.as_ptr().add(offset).cast()) }
    }

    /// A copy of the `N` bytes at `offset`, which no one writes meanwhile
    /// (a finished record the producer does not reuse until the consumer
    /// has passed it). Panics outside the mapping.
    pub fn read<const N: usize>(&self, offset: usize) -> [u8; N] {
        assert!(offset + N <= self.len, "{N} bytes at {offset}");
        // SAFETY: in bounds (checked above), valid while self lives; any
        // bytes are a valid [u8; N].
        unsafe { std::ptr::read_unaligned(self.at.as_ptr().add(offset).cast()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, unmapped once; no reference
        // handed out outlives self.
        unsafe {
            libc::munmap(self.at.as_ptr().cast(), self.len);
        }
    }
}
