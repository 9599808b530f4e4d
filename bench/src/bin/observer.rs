//! Test helper: an independent observer of the kernel's congestion-state
//! calls (bench/observer.bpf.c, on the classic tracepoint). It prints
//! `ready` once attached, then one line per transition the kernel made
//! without a call of the tracepoint (`break KTIME_NS COOKIE FOUND SET
//! LAST`: the socket, the state a call found, the one it set, the one the
//! socket's previous call set), and at the end, when its standard input
//! closes, one line per socket that retransmitted (`retransmits COOKIE
//! CALLS SEGS`: calls of tcp:tcp_retransmit_skb, segments resent), one per
//! network namespace and reason of dropped TCP packets (`drops NETNS REASON
//! COUNT`, the reason as `enum skb_drop_reason` names it, in lower case
//! without its prefix), one per socket whose congestion state was set
//! (`causes COOKIE CALLS DELIVERED_CE DSACK_DUPS REORD_SEEN BACKOFF RTO_US
//! UNDO`: over its calls, the sums of what tcpcong's ca_state rows carry
//! of those names, and the calls out of recovery or loss that found the
//! undo marker cleared), and
//! `calls N unreported N misses N resent_unrecorded N resent_misses N drop_misses N`
//! (breaks the ring could not take, and calls the kernel skipped running
//! the observer for; the same for retransmissions).
//!
//! Classic tracepoints are attached through tracefs, which the observer
//! mounts in a mount namespace of its own: a capture under test beside it
//! mounts and unmounts the host's as it attaches, and took it away from
//! under the observer's attach (a test failed so, with tests in parallel).
//! Nothing is left mounted.

use std::io::Read;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::RingBufferBuilder;

mod observer {
    #![allow(clippy::all, clippy::undocumented_unsafe_blocks, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/observer.skel.rs"));
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("observer: {what}: {e}");
    std::process::exit(1);
}

fn own_tracefs() {
    // SAFETY: plain system calls on NUL-terminated literals; the new mount
    // namespace is this process's alone, and made private so that no
    // mount or unmount crosses between it and the host's.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
        {
            fail("a mount namespace", std::io::Error::last_os_error());
        }
        if libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            fail("mounting tracefs", std::io::Error::last_os_error());
        }
    }
}

/// `enum skb_drop_reason`'s names by value, as tcpcong writes them.
fn drop_reasons() -> std::collections::HashMap<u32, String> {
    use libbpf_rs::btf::types::Enum;
    let Ok(btf) = libbpf_rs::btf::Btf::from_vmlinux() else {
        return Default::default();
    };
    let Some(e) = btf.type_by_name::<Enum<'_>>("skb_drop_reason") else {
        return Default::default();
    };
    e.iter()
        .filter_map(|m| {
            let name = m.name?.to_str()?;
            let name = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
            Some((u32::try_from(m.value).ok()?, name.to_ascii_lowercase()))
        })
        .collect()
}

/// The kernel's jiffy in nanoseconds: its coarse clocks' resolution.
fn jiffy_ns() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into; the clock always exists.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    u32::try_from(ts.tv_nsec).unwrap_or(0)
}

fn main() {
    own_tracefs();
    let mut obj = MaybeUninit::uninit();
    let skel = observer::ObserverSkelBuilder::default()
        .open(&mut obj)
        .and_then(|mut o| {
            if let Some(r) = o.maps.rodata_data.as_deref_mut() {
                r.jiffy_ns = jiffy_ns();
            }
            o.load()
        })
        .unwrap_or_else(|e| fail("load", e));
    let links = [
        skel.progs.observe_cong_state.attach(),
        skel.progs.observe_sock_state.attach(),
        skel.progs.observe_retransmit.attach(),
        skel.progs.observe_drop.attach(),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .unwrap_or_else(|e| fail("attach", e));
    let mut rb = RingBufferBuilder::new();
    rb.add(&skel.maps.breaks, |data: &[u8]| {
        if data.len() >= 19 {
            let word =
                |at: usize| u64::from_ne_bytes(data[at..at + 8].try_into().unwrap_or_default());
            println!(
                "break {} {} {} {} {}",
                word(0),
                word(8),
                data[16],
                data[17],
                data[18]
            );
        }
        0
    })
    .unwrap_or_else(|e| fail("ring buffer", e));
    let rb = rb.build().unwrap_or_else(|e| fail("ring buffer", e));
    println!("ready");

    let done = Arc::new(AtomicBool::new(false));
    let stdin_closed = Arc::clone(&done);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stdin_closed.store(true, Ordering::Relaxed);
    });
    while !done.load(Ordering::Relaxed) {
        let _ = rb.poll(Duration::from_millis(100));
    }
    let _ = rb.consume();
    drop(links);
    let misses = |prefix: &str| -> u64 {
        libbpf_rs::query::ProgInfoIter::default()
            .filter(|p| p.name.to_string_lossy().starts_with(prefix))
            .map(|p| p.recursion_misses)
            .sum()
    };
    use libbpf_rs::MapCore;
    for key in skel.maps.resent.keys() {
        if let Ok(Some(v)) = skel.maps.resent.lookup(&key, libbpf_rs::MapFlags::ANY) {
            let word = |at: usize| u64::from_ne_bytes(v[at..at + 8].try_into().unwrap_or_default());
            let cookie = u64::from_ne_bytes(key[..8].try_into().unwrap_or_default());
            println!("retransmits {cookie} {} {}", word(0), word(8));
        }
    }
    for key in skel.maps.causes.keys() {
        if let Ok(Some(v)) = skel.maps.causes.lookup(&key, libbpf_rs::MapFlags::ANY) {
            let words: Vec<String> = v
                .chunks_exact(8)
                .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()).to_string())
                .collect();
            let cookie = u64::from_ne_bytes(key[..8].try_into().unwrap_or_default());
            println!("causes {cookie} {}", words.join(" "));
        }
    }
    let reasons = drop_reasons();
    for key in skel.maps.dropped.keys() {
        if let Ok(Some(v)) = skel.maps.dropped.lookup(&key, libbpf_rs::MapFlags::ANY) {
            let half =
                |at: usize| u32::from_ne_bytes(key[at..at + 4].try_into().unwrap_or_default());
            let count = u64::from_ne_bytes(v[..8].try_into().unwrap_or_default());
            let reason = reasons
                .get(&half(4))
                .cloned()
                .unwrap_or_else(|| half(4).to_string());
            println!("drops {} {reason} {count}", half(0));
        }
    }
    let bss = skel.maps.bss_data.as_deref();
    let (calls, unreported, unrecorded) = bss.map_or((0, 0, 0), |b| {
        (
            b.calls,
            b.unreported,
            b.resent_unrecorded + b.dropped_unrecorded + b.causes_unrecorded,
        )
    });
    println!(
        "calls {calls} unreported {unreported} misses {} resent_unrecorded {unrecorded} resent_misses {} drop_misses {}",
        misses("observe_cong"),
        misses("observe_retransmit"),
        misses("observe_drop")
    );
}
