//! Loading the capture programs: the skeleton's open → configure → load →
//! attach sequence for the attach mode chosen by [`super::attach`] (after
//! [`super::preflight`]'s checks), and libbpf's log kept for `-v`. What
//! the programs count is read back in `stats.rs`.

use std::hash::{BuildHasher, Hasher};
use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::Mutex;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;

use super::attach::{self, AttachMode};
use super::buffer::BufferKind;
use super::config::{CaptureConfig, Evidence};
use super::preflight::{facts, modes, mount};
use super::skel::{OpenTcpcongSkel, TcpcongSkel, TcpcongSkelBuilder, LEAN_CPUS, LEAN_PROGRAMS};
use crate::error::{Error, Result};

/// Ring-buffer size; 32 MiB holds ~250k events, a quarter second at the
/// pipeline's budget rate, so a slow writer flush does not drop. The
/// programs wake the consumer when an eighth of it is full (WAKEUP_BYTES in
/// the BPF object's event.h).
const RING_BYTES: u32 = 32 << 20;

/// Where `--pin-buffer PATH` pins the ring buffer, and beside it the lean
/// records' rings and .bss (their positions), so that the benchmark's
/// synthetic producer can write into either.
pub fn pins(path: &Path) -> [std::path::PathBuf; 3] {
    let beside = |tail: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(tail);
        std::path::PathBuf::from(name)
    };
    [path.to_owned(), beside("-lean"), beside("-bss")]
}

fn bpf_err(what: &'static str) -> impl Fn(libbpf_rs::Error) -> Error {
    move |source| Error::Bpf { what, source }
}

/// Storage for the BPF object, one slot per attach mode that may be tried
/// (a failed attempt keeps its slot borrowed).
pub type ObjectSlots = [MaybeUninit<OpenObject>; AttachMode::ALL.len()];

pub fn object_slots() -> ObjectSlots {
    [const { MaybeUninit::uninit() }; AttachMode::ALL.len()]
}

/// Loaded and attached programs, and what they attached to.
pub struct Loaded<'obj> {
    pub skel: TcpcongSkel<'obj>,
    /// Read just before the programs were attached: no event is earlier.
    pub start_ktime_ns: u64,
    /// As the file's `attach` metadata names it.
    pub attach: String,
    /// What a capture tells its user about the choice (doctor does not).
    pub notes: Vec<String>,
    /// The evidence the programs record.
    pub evidence: Evidence,
}

/// Opens, configures, loads and attaches the capture programs, trying the
/// planned attach modes in order. Commands call [`preflight`] first, before
/// they create files.
pub fn load<'obj>(slots: &'obj mut ObjectSlots, cfg: &CaptureConfig) -> Result<Loaded<'obj>> {
    let modes = modes(cfg.attach)?;
    let tried = modes.len();
    let mut failed = Vec::new();
    // libbpf's log is kept, not printed: the error names what failed in
    // one line, and a command shows the log when asked (`-v`).
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Info, keep_libbpf_log)));
    for (mode, slot) in modes.into_iter().zip(slots.iter_mut()) {
        keep_libbpf_log(
            libbpf_rs::PrintLevel::Info,
            format!("tcpcong: loading the {} attach mode\n", mode.name()),
        );
        match load_mode(slot, cfg, mode) {
            Ok((mut skel, start_ktime_ns)) => {
                // Not a failure of the mode: no other mode would fare better.
                if let Some(path) = &cfg.pin_buffer {
                    let lean = skel.maps.rodata_data.is_some_and(|r| r.lean_records);
                    let [rb, rings, bss] = pins(path);
                    skel.maps
                        .events_rb
                        .pin(rb)
                        .map_err(bpf_err("pinning the ring buffer"))?;
                    if lean {
                        skel.maps
                            .lean_rings
                            .pin(rings)
                            .map_err(bpf_err("pinning the lean rings"))?;
                        skel.maps
                            .bss
                            .pin(bss)
                            .map_err(bpf_err("pinning the lean rings' positions"))?;
                    }
                }
                let attach = attach::describe(mode, facts());
                let mut notes: Vec<String> = attach_accept_hooks(&mut skel)
                    .into_iter()
                    .chain(attach_snapshot(&mut skel))
                    .collect();
                if mode != AttachMode::Tracepoint || !failed.is_empty() {
                    let passed: String = failed
                        .iter()
                        .map(|(m, e): &(AttachMode, Error)| format!(" ({} failed: {e})", m.name()))
                        .collect();
                    notes.push(format!("attached to {attach}{passed}"));
                }
                let evidence = recorded_evidence(cfg, mode);
                if cfg.evidence != Evidence::default() && evidence == Evidence::default() {
                    notes.push(format!(
                        "note: no retransmissions, drops or resets in the files ({})",
                        match mode {
                            AttachMode::Kprobe => "the kprobe attach mode records none: each program more widens its blind spot",
                            AttachMode::Fentry => "a fallback attach mode records them only on a kernel whose kfree_skb says why it drops, Linux 5.17+",
                            AttachMode::Tracepoint => "this kernel's kfree_skb does not say why it drops: Linux 5.17+",
                        }
                    ));
                } else if cfg.evidence.drops && !evidence.drops {
                    notes.push("note: no drops in the files (this kernel's kfree_skb does not say why: Linux 5.17+)".into());
                }
                if mode == AttachMode::Kprobe {
                    notes.push("note: the kernel skips a kprobe that fires while another BPF program runs on its CPU, and counts the skip (in lost events) only since Linux 6.7; the fentry attach mode has no such blind spot".into());
                }
                return Ok(Loaded {
                    skel,
                    start_ktime_ns,
                    attach,
                    notes,
                    evidence,
                });
            }
            Err(e) => failed.push((mode, e)),
        }
    }
    if tried == 1 {
        if let Some((mode, e)) = failed.pop() {
            // A mode asked for that the kernel refused to load or attach
            // (not a failure any mode would have): which one would do.
            let kernel_said_no = matches!(&e, Error::Bpf { what, .. }
                if *what == refused(mode) || *what == not_attached(mode));
            return Err(match attach::plan(None, facts()) {
                Ok(offered) if kernel_said_no && offered[0] != mode => Error::AttachElsewhere {
                    why: e.to_string(),
                    kernel: crate::host::kernel_release(),
                    fallback: offered[0].name(),
                },
                _ => e,
            });
        }
    }
    Err(Error::Kernel(format!(
        "no attach mode could be loaded: {}",
        failed
            .iter()
            .map(|(m, e)| format!("{}: {e}", m.name()))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

fn keep_libbpf_log(level: libbpf_rs::PrintLevel, msg: String) {
    if level != libbpf_rs::PrintLevel::Debug {
        LIBBPF_LOG.lock().map(|mut l| l.push_str(&msg)).ok();
    }
}

/// What libbpf said while loading since the last call (the verifier's log
/// when the kernel refused a program), for `-v`.
pub fn take_libbpf_log() -> String {
    LIBBPF_LOG
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

fn load_mode<'obj>(
    slot: &'obj mut MaybeUninit<OpenObject>,
    cfg: &CaptureConfig,
    mode: AttachMode,
) -> Result<(TcpcongSkel<'obj>, u64)> {
    let mut open = TcpcongSkelBuilder::default()
        .open(slot)
        .map_err(bpf_err("opening the BPF object"))?;
    let facts = facts();
    let use_cookie = mode != AttachMode::Kprobe && facts.cookie_in_tracing;
    let numbered = mode == AttachMode::Tracepoint && facts.sk_storage_in_tracing;
    configure(&mut open, cfg, mode, (use_cookie, numbered))?;
    let evidence = recorded_evidence(cfg, mode);
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.record_drops = evidence.drops;
    }
    // The lifecycle hook also learns active sockets' owners and retires
    // assigned flow ids and a fallback's call records, so it runs even when
    // its events are not wanted.
    let hooked = facts.hooked(mode);
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy();
        let wanted = match name.as_ref() {
            "on_cong_state_set" => mode == AttachMode::Tracepoint,
            // The twin that takes the calls nested in the first (see
            // on_cong_state_set in the BPF object).
            "on_cong_state_set_nested" => mode == AttachMode::Tracepoint,
            "on_inet_sock_set_state" => true,
            RETRANSMIT_PROG => evidence.retransmits,
            DROP_PROG => evidence.drops,
            SEND_RESET_PROG | RECEIVE_RESET_PROG => evidence.resets,
            // Attached apart (see attach_accept_hooks): they need tracefs.
            ACCEPT4_PROG | ACCEPT_PROG => {
                prog.set_autoattach(false);
                true
            }
            // Attached apart (see attach_snapshot), so that a kernel that
            // refuses it costs the snapshots only.
            SNAPSHOT_PROG => {
                prog.set_autoattach(false);
                facts.tcp_iter
            }
            n => fallback_program(n).is_some_and(|(m, func)| m == mode && hooked.contains(&func)),
        };
        prog.set_autoload(wanted);
    }

    // Privileges were checked before: a refusal now is the verifier's (its
    // log is on stderr above) or a lockdown policy.
    let mut skel = open.load().map_err(bpf_err(refused(mode)))?;
    // No event can be stamped before this: the capture's start.
    let attached_ktime_ns = crate::time::ktime_now();
    skel.attach().map_err(bpf_err(not_attached(mode)))?;
    Ok((skel, attached_ktime_ns))
}

/// The kernel refused a mode's programs (the verifier, a lockdown policy).
fn refused(mode: AttachMode) -> &'static str {
    match mode {
        AttachMode::Tracepoint => "the kernel refused the tracepoint programs",
        AttachMode::Fentry => "the kernel refused the fentry/fexit programs",
        AttachMode::Kprobe => "the kernel refused the kprobe programs",
    }
}

/// The kernel loaded a mode's programs but would not attach them.
fn not_attached(mode: AttachMode) -> &'static str {
    match mode {
        AttachMode::Tracepoint => "attaching to tcp_cong_state_set",
        AttachMode::Fentry => "attaching fentry/fexit to the callers of tcp_set_ca_state",
        AttachMode::Kprobe => "attaching kprobes to the callers of tcp_set_ca_state",
    }
}

/// Evidence: each kind's program is loaded only when the kind is asked for.
const RETRANSMIT_PROG: &str = "on_retransmit";
const DROP_PROG: &str = "on_drop";
const SEND_RESET_PROG: &str = "on_send_reset";
const RECEIVE_RESET_PROG: &str = "on_receive_reset";
const ACCEPT4_PROG: &str = "on_accept4_exit";

/// The evidence asked for that this kernel and mode can give. Drops need
/// the kernel's reasons (5.17+). The fentry mode records the evidence only
/// on such a kernel: before, 5.10 under emulation locked up once in four
/// runs with its hooks and the retransmission program loaded together (not
/// explained). The kprobe mode records none: the kernel skips a kprobe
/// that fires while any BPF program runs on its CPU (uncounted before
/// 6.7), so every program more there costs it transitions.
pub fn recorded_evidence(cfg: &CaptureConfig, mode: AttachMode) -> Evidence {
    let reasons = !facts().reasons.drop.is_empty();
    match mode {
        AttachMode::Kprobe => Evidence::default(),
        AttachMode::Fentry if !reasons => Evidence::default(),
        _ => Evidence {
            drops: cfg.evidence.drops && reasons,
            ..cfg.evidence
        },
    }
}
const ACCEPT_PROG: &str = "on_accept_exit";
const TRACEFS: &str = "/sys/kernel/tracing";

/// Attaches the accept exits, which name passive sockets' owners. They are
/// classic tracepoints, found through tracefs: it is mounted for the
/// attach if it is not (and unmounted after, leaving the machine as it
/// was). Without them owners still come from /proc, so a failure is a
/// note, not an error.
fn attach_accept_hooks(skel: &mut TcpcongSkel<'_>) -> Option<String> {
    let mounted = !Path::new(TRACEFS).join("events").exists()
        && mount(c"tracefs", c"/sys/kernel/tracing").is_ok();
    let attached = skel
        .progs
        .on_accept4_exit
        .attach()
        .and_then(|a4| Ok((a4, skel.progs.on_accept_exit.attach()?)));
    if mounted {
        // SAFETY: a NUL-terminated string literal. A failure (someone else
        // started using it) leaves it mounted, which harms nothing.
        unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH) };
    }
    match attached {
        Ok((a4, a)) => {
            skel.links.on_accept4_exit = Some(a4);
            skel.links.on_accept_exit = Some(a);
            None
        }
        Err(e) => Some(format!(
            "note: the owners of accepted sockets come from /proc only (the accept tracepoints did not attach: {e})"
        )),
    }
}

pub(super) const SNAPSHOT_PROG: &str = "snapshot_tcp";

/// Attaches the socket snapshot's iterator; without it files have no
/// snapshot rows, which a note says.
fn attach_snapshot(skel: &mut TcpcongSkel<'_>) -> Option<String> {
    if !facts().tcp_iter {
        return Some(
            "note: no socket snapshots in the files (this kernel's TCP iterator does not hold each socket's lock: Linux 5.15+)"
                .into(),
        );
    }
    match skel.progs.snapshot_tcp.attach() {
        Ok(link) => {
            skel.links.snapshot_tcp = Some(link);
            None
        }
        Err(e) => Some(format!(
            "note: no socket snapshots in the files (the iter/tcp program did not attach: {e})"
        )),
    }
}

/// A fallback program's mode and hooked function, from its name
/// (`fentry_tcp_enter_cwr`, `kretprobe_tcp_enter_loss`, ...).
fn fallback_program(name: &str) -> Option<(AttachMode, &'static str)> {
    let (prefix, func) = name.split_once('_')?;
    let mode = match prefix {
        "fentry" | "fexit" => AttachMode::Fentry,
        "kprobe" | "kretprobe" => AttachMode::Kprobe,
        _ => return None,
    };
    attach::CALLERS
        .into_iter()
        .find(|c| *c == func)
        .map(|c| (mode, c))
}

/// Filters, transport, flow naming and numbering (`numbered`: events get
/// per-socket numbers and the kernel-side chain check), fixed in read-only
/// data before load.
fn configure(
    open: &mut OpenTcpcongSkel<'_>,
    cfg: &CaptureConfig,
    mode: AttachMode,
    (use_cookie, numbered): (bool, bool),
) -> Result<()> {
    let rodata = open.maps.rodata_data.as_deref_mut().ok_or(Error::Internal(
        "the BPF object has no read-only data section",
    ))?;
    let f = &cfg.filters;
    if let Some(p) = f.localport {
        rodata.lport_lo = p.lo;
        rodata.lport_hi = p.hi;
    }
    if let Some(p) = f.remoteport {
        rodata.rport_lo = p.lo;
        rodata.rport_hi = p.hi;
    }
    let port_filtered = f.localport.is_some() || f.remoteport.is_some();
    rodata.port_filtered = port_filtered;
    rodata.family_only = f.family.unwrap_or(0);
    rodata.netns_only = f.netns.unwrap_or(0);
    rodata.cgroup_only = f.cgroup.unwrap_or(0);
    rodata.use_ringbuf = cfg.buffer == BufferKind::Ring;
    rodata.use_cookie = use_cookie;
    rodata.emit_lifecycle = cfg.lifecycle;
    rodata.track_calls = mode != AttachMode::Tracepoint;
    rodata.use_sk_storage = numbered;
    rodata.nsec_per_jiffy = crate::time::jiffy_ns();
    // Lean rings are one per CPU and program (see lean_rings in the BPF
    // object), for as many CPUs as it has positions for.
    let cpus = libbpf_rs::num_possible_cpus().map_err(bpf_err("counting the CPUs"))?;
    let slots = lean_slots(cpus);
    rodata.lean_records = numbered && slots.is_some();
    rodata.flow_id_base = flow_id_base();

    // Maps this configuration never touches still exist: keep them minimal.
    let rb_size = match cfg.buffer {
        BufferKind::Ring => RING_BYTES,
        BufferKind::Perf => page_size(),
    };
    let sizing = bpf_err("sizing the BPF maps");
    open.maps
        .events_rb
        .set_max_entries(rb_size)
        .map_err(&sizing)?;
    if let (true, Some(slots)) = (numbered, slots) {
        let records = u32::try_from(cpus * LEAN_PROGRAMS).unwrap_or(u32::MAX) * slots;
        open.maps
            .lean_rings
            .set_max_entries(records)
            .map_err(&sizing)?;
        // Each CPU's own line, which a lean record reads anyway (see
        // cong_cpus in the BPF object).
        let bss = open
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or(Error::Internal("the BPF object has no zeroed data section"))?;
        for cpu in &mut bss.cong_cpus {
            cpu.slots = slots;
        }
    }
    // Numbered sockets keep the port filter's memory in their storage.
    if !port_filtered || numbered {
        open.maps.port_matched.set_max_entries(1).map_err(&sizing)?;
    }
    if use_cookie {
        open.maps.flow_ids.set_max_entries(1).map_err(&sizing)?;
    }
    if mode == AttachMode::Tracepoint {
        open.maps.calls.set_max_entries(1).map_err(&sizing)?;
    }
    if mode != AttachMode::Kprobe {
        open.maps.task_frames.set_max_entries(1).map_err(&sizing)?;
    }
    Ok(())
}

/// Top bit set, then 21 random bits that keep two recordings of one boot
/// from naming different flows alike (see schemas/events-v1.md, `flow`).
fn flow_id_base() -> u64 {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    1 << 63 | (random & 0x1f_ffff) << 42
}

/// The lean rings' memory, all CPUs together: what a ring holds is how
/// long a round may keep the consumer from draining it (a round that
/// encodes a batch of rows, or takes a snapshot); at 2 MiB, 65 ms of a
/// CPU's events at 500,000 per second.
const LEAN_BYTES: usize = 32 << 20;

/// Records per lean ring (a power of two, 1,024 to 32,768), or None where
/// the BPF object has no positions for every CPU.
fn lean_slots(cpus: usize) -> Option<u32> {
    if cpus == 0 || cpus > LEAN_CPUS {
        return None;
    }
    let record = std::mem::size_of::<super::skel::types::lean_event>();
    let fit = LEAN_BYTES / (cpus * LEAN_PROGRAMS * record);
    let pow2 = 1usize << (usize::BITS - 1 - fit.max(1).leading_zeros());
    u32::try_from(pow2.clamp(1024, 32768)).ok()
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(p).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lean_rings_share_32_mib_in_powers_of_two_within_bounds() {
        // 2 CPUs: capped at 32,768 records (2 MiB) per ring.
        assert_eq!(lean_slots(2), Some(32768));
        // 32 MiB / (64 CPUs x 2 programs x 64 B) = 4,096.
        assert_eq!(lean_slots(64), Some(4096));
        // 100 CPUs: 2,621 fit, rounded down to 2,048.
        assert_eq!(lean_slots(100), Some(2048));
        assert_eq!(lean_slots(1024), Some(1024));
        assert_eq!(lean_slots(1025), None, "more CPUs than positions");
        assert_eq!(lean_slots(0), None);
    }

    /// The programs in the BPF object and the planner's list of callers
    /// name the same functions: a caller without its programs, or a
    /// program the planner does not know, would never be loaded.
    #[test]
    fn every_caller_has_its_programs_and_every_program_a_mode() {
        let mut slot = MaybeUninit::uninit();
        let open = TcpcongSkelBuilder::default()
            .open(&mut slot)
            .expect("opening the BPF object needs no privileges");
        let names: Vec<String> = open
            .open_object()
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect();
        for name in &names {
            assert!(
                fallback_program(name).is_some()
                    || [
                        "on_cong_state_set",
                        "on_cong_state_set_nested",
                        "on_inet_sock_set_state",
                        RETRANSMIT_PROG,
                        DROP_PROG,
                        SEND_RESET_PROG,
                        RECEIVE_RESET_PROG,
                        ACCEPT4_PROG,
                        ACCEPT_PROG,
                        SNAPSHOT_PROG,
                    ]
                    .contains(&name.as_str()),
                "{name} belongs to no attach mode"
            );
        }
        for caller in attach::CALLERS {
            for prefix in ["fentry", "fexit", "kprobe", "kretprobe"] {
                let want = format!("{prefix}_{caller}");
                assert!(names.contains(&want), "{want} is missing from {names:?}");
            }
        }
    }
}
