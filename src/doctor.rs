//! `tcpcong doctor`: what this kernel and this process allow, one line per
//! check, each with what to do when it is missing. It needs no privilege
//! beyond what it checks for: unprivileged, it says what it cannot see.
//! Exit status 0 when `record` can work here, 1 otherwise.

use std::mem::MaybeUninit;
use std::path::Path;

use crate::cli::BufferKind;
use crate::error::{Error, Result};
use crate::record::host;
use crate::record::load::{self, KernelConfig};
use crate::schema::Filters;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Missing,
    Unknown,
}

struct Report {
    fatal: bool,
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
        println!("{tag:<8} {what:<26} {detail}");
    }
}

fn status(ok: bool) -> Status {
    if ok {
        Status::Ok
    } else {
        Status::Missing
    }
}

pub fn run() -> Result<()> {
    let mut r = Report { fatal: false };
    r.line(Status::Ok, "kernel", &host::kernel_release(), false);

    let btf = load::has_btf();
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
    let tp = btf && load::has_tracepoint("tcp_cong_state_set");
    r.line(
        if btf { status(tp) } else { Status::Unknown },
        "tcp_cong_state_set",
        if tp {
            "tracepoint present (tp_btf attach)"
        } else {
            "no tracepoint: it arrived in Linux 5.19; older kernels are not supported yet"
        },
        true,
    );
    let life = btf && load::has_tracepoint("inet_sock_set_state");
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
    let ring = btf && load::has_btf_type("bpf_ringbuf");
    r.line(
        if btf { status(ring) } else { Status::Unknown },
        "BPF ring buffer",
        if ring {
            "available (--buffer ring, the default)"
        } else {
            "not in this kernel (< 5.8): use --buffer perf"
        },
        false,
    );
    let privileged = load::has_privileges();
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

    let buffer = if ring { "ring" } else { "perf" };
    if privileged && tp {
        let loaded = try_load(if ring {
            BufferKind::Ring
        } else {
            BufferKind::Perf
        });
        r.line(
            status(loaded.is_ok()),
            "load test",
            &match loaded {
                Ok(()) => format!(
                    "programs loaded and attached: record would use {} with the {buffer} buffer",
                    load::ATTACH
                ),
                Err(e) => format!("loading failed: {e}"),
            },
            true,
        );
    } else {
        r.line(
            Status::Unknown,
            "load test",
            &format!("not tried (needs privileges and the tracepoint); record would use {} with the {buffer} buffer", load::ATTACH),
            false,
        );
    }
    if r.fatal {
        Err(Error::Runtime(
            "recording cannot work here: see the lines above".into(),
        ))
    } else {
        Ok(())
    }
}

/// Loads and attaches the programs, then drops them at once.
fn try_load(buffer: BufferKind) -> Result<()> {
    let cfg = KernelConfig {
        filters: Filters::default(),
        buffer,
        lifecycle: true,
        pin_buffer: None,
    };
    let mut obj = MaybeUninit::uninit();
    load::load(&mut obj, &cfg).map(drop)
}
