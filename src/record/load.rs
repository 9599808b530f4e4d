//! Loading the capture programs: checks that explain failures in advance
//! (privileges, BTF, the tracepoint), resolution of filter arguments into
//! what the kernel compares, and the skeleton's open → configure → load →
//! attach sequence.

use std::fs;
use std::mem::MaybeUninit;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject};

use super::skel::{TcpcongSkel, TcpcongSkelBuilder};
use crate::cli::{BufferKind, CaptureArgs, PortFilter};
use crate::error::{Error, Result};
use crate::schema::Filters;

/// The hook this version attaches to, as named in the file metadata.
pub const ATTACH: &str = "tp_btf/tcp_cong_state_set";
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
/// Ring-buffer size; 32 MiB holds ~250k events, a quarter second at the
/// pipeline's budget rate, so a slow writer flush does not drop.
const RING_BYTES: u32 = 32 << 20;

/// Everything the kernel side needs to know before load.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub filters: Filters,
    pub buffer: BufferKind,
    pub lifecycle: bool,
    /// Where to pin the ring buffer for a benchmark's producer.
    pub pin_buffer: Option<std::path::PathBuf>,
}

impl KernelConfig {
    pub fn from_args(ports: &PortFilter, c: &CaptureArgs) -> Result<KernelConfig> {
        Ok(KernelConfig {
            filters: Filters {
                localport: ports.localport,
                remoteport: ports.remoteport,
                family: c.family,
                netns: c.netns.as_deref().map(resolve_netns).transpose()?,
                cgroup: c.cgroup.as_deref().map(resolve_cgroup).transpose()?,
            },
            buffer: c.buffer,
            lifecycle: !c.no_lifecycle,
            pin_buffer: c.pin_buffer.clone(),
        })
    }
}

/// A netns inode, given as a number or as a path to a namespace file.
fn resolve_netns(s: &str) -> Result<u32> {
    if let Ok(ino) = s.parse::<u32>() {
        return Ok(ino);
    }
    let meta = fs::metadata(s).map_err(|e| {
        Error::Usage(format!(
            "--netns {s}: {e}; give a namespace file (e.g. /var/run/netns/NAME, /proc/PID/ns/net) or its inode number"
        ))
    })?;
    u32::try_from(meta.ino())
        .map_err(|_| Error::Usage(format!("--netns {s}: inode {} is out of range", meta.ino())))
}

/// A cgroup v2 directory's id, which is its inode number on cgroup2fs.
fn resolve_cgroup(p: &Path) -> Result<u64> {
    let usage = |why: String| Error::Usage(format!("--cgroup {}: {why}", p.display()));
    let meta = fs::metadata(p).map_err(|e| usage(e.to_string()))?;
    if !meta.is_dir() {
        return Err(usage("not a directory".into()));
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| usage("path contains a NUL byte".into()))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path, st a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(usage(std::io::Error::last_os_error().to_string()));
    }
    if st.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return Err(usage(
            "not on a cgroup v2 file system (see the cgroup2 line of /proc/self/mountinfo)".into(),
        ));
    }
    Ok(meta.ino())
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

/// Whether the kernel's BTF describes a tracepoint (`btf_trace_<name>`).
pub fn has_tracepoint(name: &str) -> bool {
    has_btf_type(&format!("btf_trace_{name}"))
}

/// Whether the kernel's BTF has a type of this name (a struct or typedef).
pub fn has_btf_type(name: &str) -> bool {
    use libbpf_rs::btf::types::{Struct, Typedef};
    libbpf_rs::btf::Btf::from_vmlinux().is_ok_and(|btf| {
        btf.type_by_name::<Typedef<'_>>(name).is_some()
            || btf.type_by_name::<Struct<'_>>(name).is_some()
    })
}

/// The checks that turn an opaque EPERM or ENOENT from libbpf into advice.
pub fn preflight() -> Result<()> {
    if !has_privileges() {
        return Err(Error::Privilege(
            "loading BPF programs needs root or CAP_BPF + CAP_PERFMON: run with sudo".into(),
        ));
    }
    if !has_btf() {
        return Err(Error::Kernel(format!(
            "{VMLINUX_BTF} is missing: this kernel has no BTF (needs CONFIG_DEBUG_INFO_BTF=y)"
        )));
    }
    if !has_tracepoint("tcp_cong_state_set") {
        return Err(Error::Kernel(format!(
            "kernel {} has no tcp_cong_state_set tracepoint (added in Linux 5.19)",
            super::host::kernel_release()
        )));
    }
    Ok(())
}

fn bpf_err(what: &'static str) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |source| Error::Bpf { what, source }
}

/// Opens, configures, loads and attaches the capture programs. Commands
/// call [`preflight`] first, before they create files.
pub fn load<'obj>(
    obj: &'obj mut MaybeUninit<OpenObject>,
    cfg: &KernelConfig,
) -> Result<TcpcongSkel<'obj>> {
    let mut open = TcpcongSkelBuilder::default()
        .open(obj)
        .map_err(bpf_err("opening the BPF object"))?;

    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| Error::Runtime("BPF object has no read-only data section".into()))?;
    let f = &cfg.filters;
    if let Some(p) = f.localport {
        rodata.lport_lo = p.lo;
        rodata.lport_hi = p.hi;
    }
    if let Some(p) = f.remoteport {
        rodata.rport_lo = p.lo;
        rodata.rport_hi = p.hi;
    }
    rodata.port_filtered = f.localport.is_some() || f.remoteport.is_some();
    rodata.family_only = f.family.unwrap_or(0);
    rodata.netns_only = f.netns.unwrap_or(0);
    rodata.cgroup_only = f.cgroup.unwrap_or(0);
    rodata.use_ringbuf = cfg.buffer == BufferKind::Ring;
    rodata.wakeup_bytes = u64::from(RING_BYTES / 8);

    // The unused transport still exists as a map: keep it minimal.
    let page = page_size();
    let rb_size = match cfg.buffer {
        BufferKind::Ring => RING_BYTES,
        BufferKind::Perf => page,
    };
    open.maps
        .events_rb
        .set_max_entries(rb_size)
        .map_err(bpf_err("sizing the ring buffer"))?;
    open.progs
        .on_inet_sock_set_state
        .set_autoload(cfg.lifecycle);

    // Privileges were checked before: a refusal now is the verifier's (its
    // log is on stderr above) or a lockdown policy.
    let mut skel = open
        .load()
        .map_err(bpf_err("the kernel refused the BPF programs"))?;
    skel.attach()
        .map_err(bpf_err("attaching to tcp_cong_state_set"))?;
    if let Some(path) = &cfg.pin_buffer {
        skel.maps
            .events_rb
            .pin(path)
            .map_err(bpf_err("pinning the ring buffer"))?;
    }
    Ok(skel)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(p).unwrap_or(4096)
}

/// Reserve failures counted by the ring-buffer path, summed over CPUs.
pub fn kernel_lost(skel: &TcpcongSkel<'_>) -> u64 {
    skel.maps
        .lost
        .lookup_percpu(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .ok()
        .flatten()
        .map(|per_cpu| {
            per_cpu
                .iter()
                .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_ne_bytes)
                .sum()
        })
        .unwrap_or(0)
}

/// Events the kernel did not give the programs at all: a program that is
/// interrupted (by a softirq handling another socket's ACK on the same CPU)
/// and re-entered is skipped by the kernel's recursion guard for that
/// nested call, which bpf_prog_info counts as `recursion_misses`.
pub fn recursion_misses(skel: &TcpcongSkel<'_>) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    [
        skel.progs.on_cong_state_set.as_fd().as_raw_fd(),
        skel.progs.on_inet_sock_set_state.as_fd().as_raw_fd(),
    ]
    .into_iter()
    .filter(|&fd| fd >= 0)
    .map(|fd| {
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: fd is a loaded program of the skeleton; info and len are
        // valid out-pointers of the size given.
        let rc = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
        if rc == 0 {
            info.recursion_misses
        } else {
            0
        }
    })
    .sum()
}
