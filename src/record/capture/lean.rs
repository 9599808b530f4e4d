//! The lean records' rings: one per CPU and tracepoint program, each with a
//! single producer (see `lean_rings` in the BPF object). The records are
//! read through an mmap of the array map and the positions through the
//! mmapped .bss, so draining them costs no syscall. They have no wake-up
//! of their own: the poll's timeout drains them, and a ring a quarter full
//! rings a doorbell through the ring or perf buffer (`lean_doorbell`).

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU64, Ordering};

use libbpf_rs::MapCore;

use super::ffi::Mapping;
use super::skel::types::{bss, cong_cpu, lean_event, lean_tail};
use super::skel::{TcpcongSkel, LEAN_PROGRAMS};
use crate::error::{Error, Result};

const RECORD: usize = size_of::<lean_event>();

// The BPF object's per-CPU positions have one ring per program.
const _: fn(&cong_cpu) -> [u64; LEAN_PROGRAMS] = |c| c.reserved;

/// The rings, read through mappings of their own: they stay valid however
/// long the skeleton lives.
pub struct LeanRings {
    records: Mapping,
    /// .bss, for cong_cpus and lean_tails: the producers' positions and the
    /// consumer's.
    bss: Mapping,
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
        let Some(data) = skel.maps.bss_data.as_deref() else {
            return Ok(None);
        };
        // Set before load, the same on every CPU (see configure in load.rs).
        let slots = data.cong_cpus[0].slots as usize;
        if slots == 0 {
            return Err(Error::Internal("lean records without lean rings"));
        }
        let rings = (records / slots).min(data.cong_cpus.len() * LEAN_PROGRAMS);
        let mapping = |what, map: &libbpf_rs::MapMut<'_>, len, writable| {
            Mapping::new(map, len, writable).map_err(|source| Error::Buffer { what, source })
        };
        let records = mapping(
            "mapping the lean records' rings",
            &skel.maps.lean_rings,
            records * RECORD,
            false,
        )?;
        let bss = mapping(
            "mapping the lean rings' positions",
            &skel.maps.bss,
            size_of::<bss>(),
            true,
        )?;
        debug_assert_eq!(rings % LEAN_PROGRAMS, 0);
        Ok(Some(LeanRings {
            records,
            bss,
            rings,
            slots: slots as u64,
        }))
    }

    /// Ring `ring`'s records begun, records finished, and how far user
    /// space has read.
    fn positions(&self, ring: usize) -> [&AtomicU64; 3] {
        debug_assert!(ring < self.rings);
        let (cpu, program) = (ring / LEAN_PROGRAMS, ring % LEAN_PROGRAMS);
        let c = offset_of!(bss, cong_cpus) + cpu * size_of::<cong_cpu>();
        let t = offset_of!(bss, lean_tails) + cpu * size_of::<lean_tail>();
        let at = |base: usize, field: usize| self.bss.atomic_u64(base + field + program * 8);
        [
            at(c, offset_of!(cong_cpu, reserved)),
            at(c, offset_of!(cong_cpu, committed)),
            at(t, offset_of!(lean_tail, tail)),
        ]
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
                    // The producer does not write a finished record again
                    // until the tail passes it.
                    take(&self.records.read::<RECORD>(index * RECORD));
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
