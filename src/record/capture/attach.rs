//! Which hook sees the congestion-state transitions on this kernel, decided
//! from what the kernel has (its BTF and its symbols), never from its
//! version number: distributions backport, and configs differ.
//!
//! The facts are gathered once ([`KernelFacts::probe`]); the choice
//! ([`plan`]) is a pure function of them, so that it is tested here for
//! kernels this machine is not.

use std::collections::HashSet;
use std::fs;

use super::raw::Reasons;
use super::skel::REASON_OTHER;
use crate::event::SymbolName;

/// The kernel functions that call `tcp_set_ca_state()`, which is inline
/// before Linux 5.19, to change a congestion state: BCC's five, and
/// tcp_simple_retransmit (Loss after a path MTU drop). The fallback modes
/// hook their entry and exit. (tcp_disconnect's reset to Open is not a
/// transition of a live flow.)
pub const CALLERS: [&str; 6] = [
    "tcp_fastretrans_alert",
    "tcp_enter_cwr",
    "tcp_enter_loss",
    "tcp_enter_recovery",
    "tcp_process_tlp_ack",
    "tcp_simple_retransmit",
];

/// Without it the fallback would see neither recovery nor disorder.
const ESSENTIAL_CALLER: &str = "tcp_fastretrans_alert";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Tracepoint,
    Fentry,
    Kprobe,
}

impl AttachMode {
    pub const ALL: [AttachMode; 3] = [
        AttachMode::Tracepoint,
        AttachMode::Fentry,
        AttachMode::Kprobe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Tracepoint => "tracepoint",
            AttachMode::Fentry => "fentry",
            AttachMode::Kprobe => "kprobe",
        }
    }
}

/// What the running kernel offers, as far as the modes care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// `/sys/kernel/btf/vmlinux`: CO-RE, which every mode's reads rely on.
    pub btf: bool,
    /// /proc/kallsyms could be read (the facts below from it are known).
    pub symbols: bool,
    /// BTF has `btf_trace_tcp_cong_state_set`.
    pub tracepoint: bool,
    /// BTF has `btf_trace_inet_sock_set_state`: lifecycle events, and the
    /// retirement of assigned flow ids, in every mode.
    pub lifecycle_tracepoint: bool,
    /// The kernel can build BPF trampolines (fentry/fexit).
    pub trampolines: bool,
    /// The kernel was built with kprobes.
    pub kprobes: bool,
    /// Callers described in BTF as functions (fentry can attach to them).
    pub btf_callers: Vec<&'static str>,
    /// Callers with a symbol of their own (not inlined: kprobes can attach).
    pub symbol_callers: Vec<&'static str>,
    /// Tracing programs may call bpf_get_socket_cookie() (5.12+).
    pub cookie_in_tracing: bool,
    /// Tracing programs may keep socket storage (5.11+): events are
    /// numbered per socket and checked against the socket's last call.
    pub sk_storage_in_tracing: bool,
    /// The socket snapshot's iterator runs its program under each socket's
    /// lock, which makes a snapshot row exact against the socket's events:
    /// BTF has `bpf_iter__tcp` and the batching iterator's state,
    /// `bpf_tcp_iter_state` (5.15+). Before, the iterator holds a hash
    /// bucket's lock instead, and a 5.10 guest locked up with two
    /// recorders iterating at once.
    pub tcp_iter: bool,
    /// The names of the kernel's reasons for drops and resets (see
    /// [`Reasons`]).
    pub reasons: Reasons,
}

/// The names of `enum_name`'s values up to the capture's `REASON_OTHER`
/// (`other`), lower case without `prefix` (`unknown` for a value the enum
/// skips); empty where the kernel has no such enum.
fn enum_names(btf: &libbpf_rs::btf::Btf<'_>, enum_name: &str, prefix: &str) -> Vec<SymbolName> {
    use libbpf_rs::btf::types::Enum;
    let Some(e) = btf.type_by_name::<Enum<'_>>(enum_name) else {
        return Vec::new();
    };
    let mut names = vec![SymbolName::from_str_lossy("unknown"); usize::from(REASON_OTHER) + 1];
    names[usize::from(REASON_OTHER)] = SymbolName::from_str_lossy("other");
    for m in e.iter() {
        let Some(name) = m.name.and_then(|n| n.to_str()) else {
            continue;
        };
        let name = name.strip_prefix(prefix).unwrap_or(name);
        if let Some(slot) = usize::try_from(m.value)
            .ok()
            .filter(|&v| v < usize::from(REASON_OTHER))
            .and_then(|v| names.get_mut(v))
        {
            *slot = SymbolName::from_str_lossy(&name.to_ascii_lowercase());
        }
    }
    names
}

/// The reasons in `btf` (see [`Reasons`]).
fn reasons(btf: &libbpf_rs::btf::Btf<'_>) -> Reasons {
    let mut reset = enum_names(btf, "sk_rst_reason", "SK_RST_REASON_");
    if reset.is_empty() {
        reset.push(SymbolName::from_str_lossy("not_specified"));
    }
    Reasons {
        drop: enum_names(btf, "skb_drop_reason", "SKB_DROP_REASON_"),
        reset,
    }
}

/// Kernel symbols whose presence answers a question.
const SYM_TRAMPOLINE: &str = "arch_prepare_bpf_trampoline";
const SYM_KPROBES: &str = "register_kprobe";
const SYM_COOKIE: &str = "bpf_get_socket_ptr_cookie";
const SYM_SK_STORAGE: &str = "bpf_sk_storage_get_tracing";

impl KernelFacts {
    /// Reads BTF and /proc/kallsyms (symbol names are visible without
    /// privileges; only their addresses are hidden).
    pub fn probe() -> KernelFacts {
        let btf = libbpf_rs::btf::Btf::from_vmlinux().ok();
        let has_type = |name: &str| {
            use libbpf_rs::btf::types::{Func, Struct, Typedef};
            btf.as_ref().is_some_and(|b| {
                b.type_by_name::<Typedef<'_>>(name).is_some()
                    || b.type_by_name::<Struct<'_>>(name).is_some()
                    || b.type_by_name::<Func<'_>>(name).is_some()
            })
        };
        let mut wanted: HashSet<&str> = CALLERS.into_iter().collect();
        wanted.extend([SYM_TRAMPOLINE, SYM_KPROBES, SYM_COOKIE, SYM_SK_STORAGE]);
        let syms = kallsyms(&wanted);
        let has_sym = |name: &str| syms.as_ref().is_some_and(|s| s.contains(name));
        KernelFacts {
            btf: btf.is_some(),
            symbols: syms.is_some(),
            tracepoint: has_type("btf_trace_tcp_cong_state_set"),
            lifecycle_tracepoint: has_type("btf_trace_inet_sock_set_state"),
            trampolines: has_sym(SYM_TRAMPOLINE),
            kprobes: has_sym(SYM_KPROBES),
            btf_callers: CALLERS.into_iter().filter(|f| has_type(f)).collect(),
            symbol_callers: CALLERS.into_iter().filter(|f| has_sym(f)).collect(),
            cookie_in_tracing: has_sym(SYM_COOKIE),
            sk_storage_in_tracing: has_sym(SYM_SK_STORAGE),
            tcp_iter: has_type("bpf_iter__tcp") && has_type("bpf_tcp_iter_state"),
            reasons: btf.as_ref().map(reasons).unwrap_or_default(),
        }
    }

    /// Why `mode` cannot run here, or None when it can.
    pub fn unavailable(&self, mode: AttachMode) -> Option<String> {
        if !self.btf {
            return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
        }
        if mode != AttachMode::Tracepoint && !self.symbols {
            return Some("/proc/kallsyms cannot be read, so its functions are unknown".into());
        }
        match mode {
            AttachMode::Tracepoint if !self.tracepoint => {
                Some("no tcp_cong_state_set tracepoint (it arrived in Linux 5.19)".into())
            }
            AttachMode::Fentry if !self.trampolines => {
                Some("the kernel cannot build BPF trampolines".into())
            }
            AttachMode::Fentry | AttachMode::Kprobe if !self.lifecycle_tracepoint => {
                Some("no inet_sock_set_state tracepoint in BTF".into())
            }
            AttachMode::Fentry if !self.btf_callers.contains(&ESSENTIAL_CALLER) => {
                Some(format!("{ESSENTIAL_CALLER} is not in the kernel's BTF"))
            }
            AttachMode::Kprobe if !self.kprobes => {
                Some("the kernel has no kprobes (CONFIG_KPROBES)".into())
            }
            AttachMode::Kprobe if !self.symbol_callers.contains(&ESSENTIAL_CALLER) => {
                Some(format!("{ESSENTIAL_CALLER} has no symbol (inlined)"))
            }
            _ => None,
        }
    }

    /// The callers a fallback mode hooks (the others are inlined here).
    pub fn hooked(&self, mode: AttachMode) -> &[&'static str] {
        match mode {
            AttachMode::Tracepoint => &[],
            AttachMode::Fentry => &self.btf_callers,
            AttachMode::Kprobe => &self.symbol_callers,
        }
    }
}

/// The symbols of /proc/kallsyms that are in `wanted`, if it can be read.
fn kallsyms(wanted: &HashSet<&str>) -> Option<HashSet<String>> {
    let text = fs::read_to_string("/proc/kallsyms").ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .filter(|s| wanted.contains(s))
            .map(str::to_string)
            .collect(),
    )
}

/// The modes to try, best first: the one requested, or (`None`, auto)
/// every available one, a later one being used if an earlier one fails to
/// load. An error says why nothing fits.
pub fn plan(request: Option<AttachMode>, facts: &KernelFacts) -> Result<Vec<AttachMode>, String> {
    let wanted: &[AttachMode] = match &request {
        None => &AttachMode::ALL,
        Some(one) => std::slice::from_ref(one),
    };
    let mut why = Vec::new();
    let mut modes = Vec::new();
    for &m in wanted {
        match facts.unavailable(m) {
            None => modes.push(m),
            Some(reason) => why.push(format!("{}: {reason}", m.name())),
        }
    }
    if modes.is_empty() {
        return Err(why.join("; "));
    }
    Ok(modes)
}

/// What a capture attached to, as the file's `attach` metadata says it:
/// the tracepoint keeps the name older files carry; a fallback names the
/// functions it hooks, so that a reader sees what it may have missed.
pub fn describe(mode: AttachMode, facts: &KernelFacts) -> String {
    match mode {
        AttachMode::Tracepoint => "tp_btf/tcp_cong_state_set".into(),
        AttachMode::Fentry => format!("fentry+fexit/{}", facts.hooked(mode).join(",")),
        AttachMode::Kprobe => format!("kprobe+kretprobe/{}", facts.hooked(mode).join(",")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6.x kernel with everything.
    fn modern() -> KernelFacts {
        KernelFacts {
            btf: true,
            symbols: true,
            tracepoint: true,
            lifecycle_tracepoint: true,
            trampolines: true,
            kprobes: true,
            btf_callers: CALLERS.to_vec(),
            symbol_callers: CALLERS.to_vec(),
            cookie_in_tracing: true,
            sk_storage_in_tracing: true,
            tcp_iter: true,
            reasons: Reasons {
                drop: vec![SymbolName::from_str_lossy("netfilter_drop")],
                reset: vec![SymbolName::from_str_lossy("not_specified")],
            },
        }
    }

    /// Debian 11's 5.10: no tracepoint, no cookie or socket storage in
    /// tracing programs.
    fn bullseye() -> KernelFacts {
        KernelFacts {
            tracepoint: false,
            cookie_in_tracing: false,
            sk_storage_in_tracing: false,
            tcp_iter: false,
            reasons: Reasons {
                drop: Vec::new(),
                reset: vec![SymbolName::from_str_lossy("not_specified")],
            },
            ..modern()
        }
    }

    #[test]
    fn auto_prefers_the_tracepoint_then_fentry_then_kprobes() {
        use AttachMode::*;
        assert_eq!(plan(None, &modern()), Ok(vec![Tracepoint, Fentry, Kprobe]));
        assert_eq!(plan(None, &bullseye()), Ok(vec![Fentry, Kprobe]));
        let no_trampolines = KernelFacts {
            trampolines: false,
            ..bullseye()
        };
        assert_eq!(plan(None, &no_trampolines), Ok(vec![Kprobe]));
    }

    #[test]
    fn an_explicit_mode_is_tried_alone_or_refused_with_the_reason() {
        assert_eq!(
            plan(Some(AttachMode::Kprobe), &modern()),
            Ok(vec![AttachMode::Kprobe])
        );
        assert_eq!(
            plan(Some(AttachMode::Tracepoint), &bullseye()),
            Err("tracepoint: no tcp_cong_state_set tracepoint (it arrived in Linux 5.19)".into())
        );
        let no_kprobes = KernelFacts {
            kprobes: false,
            ..modern()
        };
        assert_eq!(
            plan(Some(AttachMode::Kprobe), &no_kprobes),
            Err("kprobe: the kernel has no kprobes (CONFIG_KPROBES)".into())
        );
    }

    #[test]
    fn without_btf_nothing_can_run_and_every_mode_says_so() {
        let err = plan(None, &KernelFacts::default()).unwrap_err();
        assert_eq!(err.matches("no BTF").count(), 3, "{err}");
    }

    #[test]
    fn without_kallsyms_only_the_tracepoint_can_be_chosen() {
        let blind = KernelFacts {
            symbols: false,
            ..modern()
        };
        assert_eq!(plan(None, &blind), Ok(vec![AttachMode::Tracepoint]));
        assert!(plan(Some(AttachMode::Fentry), &blind)
            .unwrap_err()
            .contains("/proc/kallsyms"));
    }

    #[test]
    fn an_inlined_caller_is_left_out_and_named_in_the_description() {
        let partly_inlined = KernelFacts {
            symbol_callers: vec!["tcp_fastretrans_alert", "tcp_enter_cwr", "tcp_enter_loss"],
            ..bullseye()
        };
        assert_eq!(
            describe(AttachMode::Kprobe, &partly_inlined),
            "kprobe+kretprobe/tcp_fastretrans_alert,tcp_enter_cwr,tcp_enter_loss"
        );
        let essential_inlined = KernelFacts {
            symbol_callers: vec!["tcp_enter_cwr"],
            ..bullseye()
        };
        assert_eq!(
            plan(Some(AttachMode::Kprobe), &essential_inlined),
            Err("kprobe: tcp_fastretrans_alert has no symbol (inlined)".into())
        );
        assert_eq!(
            describe(AttachMode::Tracepoint, &modern()),
            "tp_btf/tcp_cong_state_set"
        );
    }
}
