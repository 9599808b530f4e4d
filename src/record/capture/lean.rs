//! The lean records' rings: one per CPU and tracepoint program, each with a
//! single producer (see `lean_rings` in the BPF object). The records are
//! read through an mmap of the array map and the positions through the
//! mmapped .bss, so draining them costs no syscall. They have no wake-up
//! of their own: the poll's timeout drains them, and a ring a quarter full
//! rings a doorbell through the ring or perf buffer (`lean_doorbell`).

use std::os::fd::{AsFd, AsRawFd};
use std::ptr::{addr_of_mut, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

use libbpf_rs::MapCore;

use super::skel::types::{cong_cpu, lean_event, lean_tail};
use super::skel::{TcpcongSkel, LEAN_PROGRAMS};
use crate::error::{Error, Result};

const RECORD: usize = std::mem::size_of::<lean_event>();

// The BPF object's per-CPU positions have one ring per program.
const _: fn(&cong_cpu) -> [u64; LEAN_PROGRAMS] = |c| c.reserved;

pub struct LeanRings {
    records: NonNull<u8>,
    len: usize,
    /// .bss's cong_cpus and lean_tails: the producers' positions and the
    /// consumer's.
    cpus: NonNull<cong_cpu>,
    tails: NonNull<lean_tail>,
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
        let records = skel.maps.lean_rings.max_entries() as usize;
        let Some(bss) = skel.maps.bss_data.as_deref_mut() else {
            return Ok(None);
        };
        // Set before load, the same on every CPU (see configure in load.rs).
        let slots = bss.cong_cpus[0].slots as usize;
        if slots == 0 {
            return Err(Error::Internal("lean records without lean rings"));
        }
        let rings = (records / slots).min(bss.cong_cpus.len() * LEAN_PROGRAMS);
        let cpus = NonNull::from(&mut bss.cong_cpus).cast::<cong_cpu>();
        let tails = NonNull::from(&mut bss.lean_tails).cast::<lean_tail>();
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
            cpus,
            tails,
            rings,
            slots: slots as u64,
        }))
    }

    /// Ring `ring`'s records begun, records finished, and how far user
    /// space has read.
    fn positions(&self, ring: usize) -> [&AtomicU64; 3] {
        debug_assert!(ring < self.rings);
        let (cpu, program) = (ring / LEAN_PROGRAMS, ring % LEAN_PROGRAMS);
        // SAFETY: `ring` is below `rings`, so `cpu` is within .bss's
        // cong_cpus and lean_tails, which live as long as the skeleton that
        // outlives self; each field is an aligned u64 only ever accessed
        // atomically (by the programs, with atomic adds and loads).
        unsafe {
            let c = self.cpus.as_ptr().add(cpu);
            let t = self.tails.as_ptr().add(cpu);
            [
                AtomicU64::from_ptr(addr_of_mut!((*c).reserved[program])),
                AtomicU64::from_ptr(addr_of_mut!((*c).committed[program])),
                AtomicU64::from_ptr(addr_of_mut!((*t).tail[program])),
            ]
        }
    }

    /// How many records each ring's producers have begun.
    pub fn reserved(&self) -> Vec<u64> {
        (0..self.rings)
            .map(|r| self.positions(r)[0].load(Ordering::Acquire))
            .collect()
    }

    /// Hands every finished record to `take`, oldest first per ring, and
    /// returns how many each ring had finished.
    pub fn drain(&self, mut take: impl FnMut(&[u8])) -> Vec<u64> {
        (0..self.rings)
            .map(|r| {
                let [_, committed, tail] = self.positions(r);
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

    /// Records begun and not finished, over all rings.
    pub fn unfinished(&self) -> u64 {
        (0..self.rings)
            .map(|r| {
                let [reserved, committed, _] = self.positions(r);
                let reserved = reserved.load(Ordering::Acquire);
                reserved.saturating_sub(committed.load(Ordering::Acquire))
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
