//! What the loaded programs counted, read back: events they could not
//! hand over, calls the nested program took over, and the kernel's own
//! run counts and times per program.

use libbpf_rs::skel::Skel;
use libbpf_rs::MapCore;

use super::ffi;
use super::load::SNAPSHOT_PROG;
use super::skel::{TcpcongSkel, LOST_SLOTS};

/// Events the programs could not hand over, summed over CPUs. Read from
/// the mmapped .bss: a bpf() syscall here would make kprobes skip events
/// (see `lost` in bpf/tcpcong.bpf.c).
/// TCP segments the host dropped that were no traced flow's, so far, by
/// the kernel's reason (`reasons`, by value), from the mmapped .bss, as
/// [`kernel_lost`]; none where it cannot be mapped.
pub fn untraced_drops(
    skel: &TcpcongSkel<'_>,
    reasons: &[crate::event::SymbolName],
) -> std::collections::BTreeMap<String, u64> {
    skel.maps
        .bss_data
        .as_deref()
        .map_or_else(Default::default, |bss| {
            bss.untraced_drops
                .iter()
                .zip(reasons)
                .map(|(n, name)| (name.as_str().to_string(), ffi::read_shared(n)))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
}

pub fn kernel_lost(skel: &TcpcongSkel<'_>) -> u64 {
    match skel.maps.bss_data.as_deref() {
        Some(bss) => bss.lost.iter().map(|slot| ffi::read_shared(&slot.n)).sum(),
        // Kernels before 5.5 cannot mmap global data: the one syscall way.
        None => skel
            .maps
            .bss
            .lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .ok()
            .flatten()
            .map_or(0, |bytes| {
                // `lost` comes first in .bss; other counters follow it.
                let slot = std::mem::size_of::<super::skel::types::lost_slot>();
                bytes
                    .chunks_exact(slot)
                    .take(LOST_SLOTS)
                    .filter_map(|slot| slot.get(..8)?.try_into().ok())
                    .map(u64::from_ne_bytes)
                    .sum()
            }),
    }
}

/// What the kernel counts about the loaded programs, summed over them.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgStats {
    /// Time spent in the programs and how often they ran: counted only
    /// while `kernel.bpf_stats_enabled` is 1.
    pub run_time_ns: u64,
    pub run_cnt: u64,
    /// Calls the kernel did not give the programs at all: a program that
    /// is interrupted (by a softirq handling another socket's ACK on the
    /// same CPU) and re-entered is skipped by the kernel's recursion guard
    /// for that nested call.
    pub recursion_misses: u64,
    /// The first tracepoint program's own misses, and the calls the second
    /// caught of them (recursion_misses has the difference). In the
    /// fallback modes, which have no second, nothing is caught.
    pub first_misses: u64,
    pub caught: u64,
}

/// One loaded program's cost, while `kernel.bpf_stats_enabled` was 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

pub fn program_costs(skel: &TcpcongSkel<'_>) -> Vec<ProgramCost> {
    skel.object()
        .progs()
        .filter(|p| p.autoload())
        .filter_map(|p| {
            let info = ffi::prog_info(&p)?;
            Some(ProgramCost {
                name: p.name().to_string_lossy().into_owned(),
                runs: info.run_cnt,
                run_time_ns: info.run_time_ns,
            })
        })
        .collect()
}

pub fn prog_stats(skel: &TcpcongSkel<'_>) -> ProgStats {
    let mut sum = ProgStats::default();
    let mut first_misses = 0;
    for p in skel.object().progs().filter(|p| p.autoload()) {
        // The snapshot's runs are per socket, at file boundaries, not per event.
        if p.name().as_encoded_bytes() == SNAPSHOT_PROG.as_bytes() {
            continue;
        }
        let Some(info) = ffi::prog_info(&p) else {
            continue;
        };
        sum.run_time_ns += info.run_time_ns;
        sum.run_cnt += info.run_cnt;
        match p.name().as_encoded_bytes() {
            // Its misses are calls the first of the pair ran for.
            b"on_cong_state_set_nested" => {}
            b"on_cong_state_set" => first_misses = info.recursion_misses,
            _ => sum.recursion_misses += info.recursion_misses,
        }
    }
    // The first's misses that the second did not catch (see cong_cpus in
    // bpf/tcpcong.bpf.c).
    sum.caught = nested_caught(skel);
    sum.first_misses = first_misses;
    sum.recursion_misses += first_misses.saturating_sub(sum.caught);
    sum
}

/// Calls on_cong_state_set_nested took over, summed over CPUs (from the
/// mmapped .bss, as [`kernel_lost`]).
fn nested_caught(skel: &TcpcongSkel<'_>) -> u64 {
    skel.maps.bss_data.as_deref().map_or(0, |bss| {
        bss.cong_cpus
            .iter()
            .map(|slot| ffi::read_shared(&slot.caught))
            .sum()
    })
}
