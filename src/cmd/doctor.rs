//! `tcpcong doctor`: what this kernel and this process allow, one line per
//! check, each with what to do when it is missing. It needs no privilege
//! beyond what it checks for: unprivileged, it says what it cannot see.
//! Exit status 0 when `record` can work here, 1 otherwise.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::event::Filters;
use crate::host;
use crate::record::capture::attach::{self, AttachMode};
use crate::record::capture::buffer::BufferKind;
use crate::record::capture::config::{CaptureConfig, Evidence};
use crate::record::capture::{load, preflight};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Missing,
    Unknown,
}

struct Report {
    fatal: bool,
    /// The first line that could not be written: said at the end, as the
    /// other commands say theirs.
    unwritten: Option<std::io::Error>,
}

impl Report {
    /// `needed`: recording cannot work without it.
    fn line(&mut self, status: Status, what: &str, detail: &str, needed: bool) {
        let tag = match status {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Unknown => "unknown",
        };
        if status != Status::Ok && needed {
            self.fatal = true;
        }
        if self.unwritten.is_none() {
            let mut out = std::io::stdout().lock();
            self.unwritten = writeln!(out, "{tag:<8} {what:<26} {detail}").err();
        }
    }
}

fn status(ok: bool) -> Status {
    if ok {
        Status::Ok
    } else {
        Status::Missing
    }
}

pub fn run(verbose: bool) -> Result<()> {
    let mut r = Report {
        fatal: false,
        unwritten: None,
    };
    r.line(Status::Ok, "kernel", &host::kernel_release(), false);

    let btf = preflight::has_btf();
    r.line(
        status(btf),
        "BTF",
        if btf {
            "/sys/kernel/btf/vmlinux (CO-RE works)"
        } else {
            "/sys/kernel/btf/vmlinux is missing: needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        },
        true,
    );
    let life = preflight::facts().lifecycle_tracepoint;
    r.line(
        if btf { status(life) } else { Status::Unknown },
        "sock:inet_sock_set_state",
        if life {
            "tracepoint present (flow lifecycle events)"
        } else {
            "no tracepoint: record with --no-lifecycle"
        },
        false,
    );
    let reasons = !preflight::facts().reasons.drop.is_empty();
    r.line(
        if btf {
            status(reasons)
        } else {
            Status::Unknown
        },
        "skb:kfree_skb reasons",
        if reasons {
            "the kernel says why it drops (drop evidence)"
        } else {
            "no drop reasons (Linux 5.17+): recordings have no drop rows, and with a fallback attach mode no evidence"
        },
        false,
    );
    let privileged = preflight::has_privileges();
    // The probe that record --buffer auto uses: without privileges its
    // answer is no answer, so it is not asked.
    let ring = if privileged {
        libbpf_rs::MapType::RingBuf.is_supported().ok()
    } else {
        None
    };
    r.line(
        match ring {
            Some(true) => Status::Ok,
            Some(false) => Status::Missing,
            None => Status::Unknown,
        },
        "BPF ring buffer",
        match ring {
            Some(true) => "available (--buffer auto uses it)",
            Some(false) => "not in this kernel (< 5.8): --buffer auto uses the perf buffer",
            None => "unknown (probing needs CAP_BPF)",
        },
        false,
    );
    r.line(
        status(privileged),
        "privileges",
        if privileged {
            "CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) held"
        } else {
            "need root or CAP_BPF + CAP_PERFMON: run with sudo"
        },
        true,
    );
    let stats = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let stats_on = std::fs::read_to_string(stats).map(|s| s.trim() == "1");
    r.line(
        status(stats_on.is_ok()),
        "bpf_stats",
        match stats_on {
            Ok(true) => "enabled (per-program run time is being counted)",
            Ok(false) => "available: sysctl kernel.bpf_stats_enabled=1 to measure per-event cost",
            Err(_) => "not available on this kernel",
        },
        false,
    );

    let buffer = match ring {
        Some(false) => BufferKind::Perf,
        _ => BufferKind::Ring,
    };
    modes(&mut r, privileged, ring.map(|_| buffer), verbose);
    if let Some(e) = r.unwritten {
        Err(Error::Stdout(e))
    } else if r.fatal {
        Err(Error::NotReady)
    } else {
        Ok(())
    }
}

/// One line per attach mode: what the kernel offers, and (privileged) a
/// real load of each, since a kernel can offer a hook that policy refuses.
/// Fatal only when no mode works.
/// `buffer`: the transport record would use, if known.
fn modes(r: &mut Report, privileged: bool, buffer: Option<BufferKind>, verbose: bool) {
    let facts = preflight::facts();
    // What auto would pick: the first mode that works.
    let mut auto = None;
    for mode in AttachMode::ALL {
        let what = format!("--attach {}", mode.name());
        let hook = attach::describe(mode, facts);
        let missing: Vec<_> = attach::CALLERS
            .iter()
            .filter(|c| mode != AttachMode::Tracepoint && !facts.hooked(mode).contains(c))
            .copied()
            .collect();
        let inlined = if missing.is_empty() {
            String::new()
        } else {
            format!(" (inlined here, not hooked: {})", missing.join(", "))
        };
        if let Some(why) = facts.unavailable(mode) {
            r.line(Status::Missing, &what, &format!("out: {why}"), false);
        } else if !privileged {
            r.line(
                Status::Unknown,
                &what,
                &format!("offered: {hook}{inlined}; load not tried without privileges"),
                false,
            );
            auto = auto.or(Some(mode));
        } else {
            match try_load(mode, buffer.unwrap_or(BufferKind::Ring)) {
                Ok(()) => {
                    auto = auto.or(Some(mode));
                    r.line(
                        Status::Ok,
                        &what,
                        &format!("loads and attaches: {hook}{inlined}"),
                        false,
                    );
                }
                Err(e) => {
                    r.line(
                        Status::Missing,
                        &what,
                        &format!("out: offered, but {e}"),
                        false,
                    );
                    super::show_libbpf_log(verbose);
                }
            }
        }
    }
    // Without privileges nothing loads: what would, once they are held.
    r.line(
        match auto {
            Some(_) if !privileged => Status::Unknown,
            found => status(found.is_some()),
        },
        "record would use",
        &match auto {
            None => "nothing: no attach mode works here".to_string(),
            Some(mode) => match buffer {
                Some(b) => format!("--attach {} with the {} buffer", mode.name(), b.name()),
                None => format!(
                    "--attach {} with privileges (the buffer cannot be probed without them)",
                    mode.name()
                ),
            },
        },
        true,
    );
}

/// Loads and attaches the programs of one mode, then drops them at once.
fn try_load(mode: AttachMode, buffer: BufferKind) -> Result<()> {
    let cfg = CaptureConfig {
        filters: Filters::default(),
        buffer,
        attach: Some(mode),
        lifecycle: true,
        evidence: Evidence::ALL,
        pin_buffer: None,
    };
    let mut slots = load::object_slots();
    // The log of this load only.
    drop(load::take_libbpf_log());
    load::load(&mut slots, &cfg).map(drop)
}
