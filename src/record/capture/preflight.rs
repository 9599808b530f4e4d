//! The checks that explain a capture's failures before libbpf does:
//! privileges, BTF, a hook this kernel offers for the attach mode asked,
//! and a BPF file system to pin in (mounted at its usual place if the
//! machine booted without one). Commands run them before they create
//! files.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use super::attach::{self, AttachMode, KernelFacts};
use super::config::CaptureConfig;
use crate::error::{Error, Result};

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPFFS: &str = "/sys/fs/bpf";
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The kernel's facts, read once per process (kallsyms is large).
pub fn facts() -> &'static KernelFacts {
    static FACTS: OnceLock<KernelFacts> = OnceLock::new();
    FACTS.get_or_init(KernelFacts::probe)
}

/// A folder to pin maps in must be on a BPF file system. A machine as it
/// boots often has none mounted: mount one at its usual place, as bpftool
/// does; anywhere else, say so.
fn ensure_bpffs(pin: &Path) -> Result<()> {
    if pin
        .file_name()
        .is_some_and(|n| n.as_encoded_bytes().contains(&b'.'))
    {
        return Err(Error::PinPath {
            path: pin.to_path_buf(),
            why: "a BPF file system refuses names with a dot".into(),
        });
    }
    let dir = pin.parent().unwrap_or(Path::new("/"));
    if crate::host::fs_type(dir).ok() == Some(BPF_FS_MAGIC) {
        return Ok(());
    }
    let not_bpffs = || Error::PinPath {
        path: pin.to_path_buf(),
        why: format!(
            "{} is not on a BPF file system (mount -t bpf bpf {})",
            dir.display(),
            dir.display()
        ),
    };
    if dir != Path::new(BPFFS) {
        return Err(not_bpffs());
    }
    mount(c"bpf", c"/sys/fs/bpf").map_err(|e| Error::io(dir, e))
}

/// Mounts a file system of type `kind` (and the same source name) at `at`.
pub(super) fn mount(kind: &std::ffi::CStr, at: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: every argument is a NUL-terminated string, the data pointer
    // may be NULL.
    let rc = unsafe {
        libc::mount(
            kind.as_ptr(),
            at.as_ptr(),
            kind.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Effective capabilities of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn has_privileges() -> bool {
    let caps = effective_caps();
    let has = |c: u32| caps & (1 << c) != 0;
    // Root normally holds CAP_SYS_ADMIN, which covers both on any kernel.
    has(CAP_SYS_ADMIN) || has(CAP_BPF) && has(CAP_PERFMON)
}

pub fn has_btf() -> bool {
    Path::new(VMLINUX_BTF).exists()
}

/// The checks that turn an opaque EPERM or ENOENT from libbpf into advice:
/// commands run them before they create files.
pub fn preflight(cfg: &CaptureConfig) -> Result<()> {
    if !has_privileges() {
        return Err(Error::NoPrivilege);
    }
    if let Some(pin) = &cfg.pin_buffer {
        ensure_bpffs(pin)?;
    }
    if !has_btf() {
        return Err(Error::Kernel(format!(
            "{VMLINUX_BTF} is missing: this kernel has no BTF (needs CONFIG_DEBUG_INFO_BTF=y)"
        )));
    }
    modes(cfg.attach).map(drop)
}

/// The attach modes to try for this request, as a one-line error when none fits.
pub(super) fn modes(request: Option<AttachMode>) -> Result<Vec<AttachMode>> {
    attach::plan(request, facts()).map_err(|why| {
        let kernel = crate::host::kernel_release();
        match (request, attach::plan(None, facts())) {
            (None, _) => Error::Kernel(format!(
                "kernel {kernel} offers no hook tcpcong can use ({why})"
            )),
            (_, Ok(offered)) => Error::AttachElsewhere {
                why,
                kernel,
                fallback: offered[0].name(),
            },
            (_, Err(_)) => Error::Kernel(format!(
                "{why} on kernel {kernel}, and no other mode is offered"
            )),
        }
    })
}
