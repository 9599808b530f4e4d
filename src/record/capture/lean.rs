//! The lean records' rings: one per CPU and tracepoint program, each with a
//! single producer (see `lean_rings` in the BPF object). The records are
//! read through an mmap of the array map and the positions through the
//! mmapped .bss, so draining them costs no syscall; in exchange they never
//! wake the consumer, whose poll timeout drains them.

use std::mem::offset_of;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use libbpf_rs::MapCore;

use super::load::LEAN_PROGRAMS;
use super::skel::types::{lean_event, lean_ring};
use super::skel::TcpcongSkel;
use crate::error::{Error, Result};

const RECORD: usize = std::mem::size_of::<lean_event>();

pub struct LeanRings {
    records: NonNull<u8>,
    len: usize,
    positions: NonNull<lean_ring>,
    rings: usize,
    slots: u64,
}

impl LeanRings {
    /// None when the programs hand over no lean records.
    pub fn new(skel: &mut TcpcongSkel<'_>) -> Result<Option<LeanRings>> {
        let Some(rodata) = skel.maps.rodata_data else {
            return Ok(None);
        };
        if !rodata.lean_records {
            return Ok(None);
        }
        let slots = rodata.lean_slots as usize;
        let records = skel.maps.lean_rings.max_entries() as usize;
        let Some(bss) = skel.maps.bss_data.as_deref_mut() else {
            return Ok(None);
        };
        let positions = NonNull::from(&mut bss.lean_pos).cast::<lean_ring>();
        let rings = (records / slots).min(bss.lean_pos.len());
        let len = records * RECORD;
        // SAFETY: a shared read-only mapping of the map's own memory (an
        // mmapable array is laid out as its records back to back), of no
        // more than its size; checked for failure below.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                skel.maps.lean_rings.as_fd().as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(Error::Buffer {
                what: "mapping the lean records' rings",
                source: std::io::Error::last_os_error(),
            });
        }
        debug_assert_eq!(rings % LEAN_PROGRAMS, 0);
        Ok(Some(LeanRings {
            records: NonNull::new(at.cast()).expect("mmap succeeded"),
            len,
            positions,
            rings,
            slots: slots as u64,
        }))
    }

    /// A position of a ring (a field's offset in `struct lean_ring`).
    fn position(&self, ring: usize, offset: usize) -> &AtomicU64 {
        debug_assert!(ring < self.rings);
        // SAFETY: `ring` is below `rings`, within .bss's lean_pos, which
        // lives as long as the skeleton that outlives self; the field is an
        // aligned u64, only ever accessed atomically (by the programs, with
        // atomic adds and loads).
        unsafe {
            AtomicU64::from_ptr(
                self.positions
                    .as_ptr()
                    .add(ring)
                    .cast::<u8>()
                    .add(offset)
                    .cast::<u64>(),
            )
        }
    }

    /// How many records each ring's producers have begun.
    pub fn reserved(&self) -> Vec<u64> {
        (0..self.rings)
            .map(|r| {
                self.position(r, offset_of!(lean_ring, reserved))
                    .load(Ordering::Acquire)
            })
            .collect()
    }

    /// Hands every finished record to `take`, oldest first per ring, and
    /// returns how many each ring had finished.
    pub fn drain(&self, mut take: impl FnMut(&[u8])) -> Vec<u64> {
        (0..self.rings)
            .map(|r| {
                let committed = self.position(r, offset_of!(lean_ring, committed));
                let tail = self.position(r, offset_of!(lean_ring, tail));
                let end = committed.load(Ordering::Acquire);
                let mut at = tail.load(Ordering::Relaxed);
                while at < end {
                    let index = r * self.slots as usize + (at % self.slots) as usize;
                    // SAFETY: index < rings * slots <= the mapping's records;
                    // the producer does not write a finished record again
                    // until the tail passes it.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(
                            self.records.as_ptr().add(index * RECORD),
                            RECORD,
                        )
                    };
                    take(bytes);
                    at += 1;
                }
                tail.store(at, Ordering::Release);
                end
            })
            .collect()
    }
}

impl LeanRings {
    /// Records begun and not finished, over all rings.
    pub fn unfinished(&self) -> u64 {
        (0..self.rings)
            .map(|r| {
                let reserved = self
                    .position(r, offset_of!(lean_ring, reserved))
                    .load(Ordering::Acquire);
                let committed = self
                    .position(r, offset_of!(lean_ring, committed))
                    .load(Ordering::Acquire);
                reserved.saturating_sub(committed)
            })
            .sum()
    }
}

impl Drop for LeanRings {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, unmapped once.
        unsafe {
            libc::munmap(self.records.as_ptr().cast(), self.len);
        }
    }
}
