//! The vocabulary every layer shares: congestion states, TCP states, one
//! event as schema v1 describes it, and the capture filters.
//!
//! Names here are part of the file format (`old_state`/`new_state` hold
//! them as strings), so they never change once released.
//!
//! The per-event columns that are plain values (CPU, namespaces, cgroup,
//! congestion control, the TCP counters) are declared once, in
//! [`detail_columns!`]: the event's [`Detail`] struct, the record decoding,
//! the Arrow schema, the writer, the reader and `events --format json` are
//! all expanded from that list. A new column of that kind is one line there
//! and the same field in the BPF program's `struct event` (bpf/event.h).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The kernel's `enum tcp_ca_state`, in its numeric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaState {
    Open = 0,
    Disorder = 1,
    Cwr = 2,
    Recovery = 3,
    Loss = 4,
}

impl CaState {
    pub const ALL: [CaState; 5] = [
        CaState::Open,
        CaState::Disorder,
        CaState::Cwr,
        CaState::Recovery,
        CaState::Loss,
    ];

    pub fn from_kernel(v: u8) -> Option<CaState> {
        CaState::ALL.get(usize::from(v)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            CaState::Open => "open",
            CaState::Disorder => "disorder",
            CaState::Cwr => "cwr",
            CaState::Recovery => "recovery",
            CaState::Loss => "loss",
        }
    }

    pub fn from_name(s: &str) -> Option<CaState> {
        CaState::ALL.into_iter().find(|c| c.name() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The kernel's TCP states (`include/net/tcp_states.h`), indexed by value.
const TCP_STATE_NAMES: [&str; 13] = [
    "unknown",
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
    "new_syn_recv",
];

/// A TCP state as the kernel numbers it (1 = established ... 7 = close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpState(pub u8);

impl TcpState {
    pub const ESTABLISHED: TcpState = TcpState(1);
    pub const SYN_SENT: TcpState = TcpState(2);
    pub const SYN_RECV: TcpState = TcpState(3);
    pub const CLOSE: TcpState = TcpState(7);

    pub fn name(self) -> &'static str {
        TCP_STATE_NAMES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("unknown")
    }

    pub fn from_name(s: &str) -> Option<TcpState> {
        TCP_STATE_NAMES
            .iter()
            .position(|n| *n == s)
            .filter(|&i| i > 0)
            .map(|i| TcpState(i as u8))
    }
}

/// Why the kernel sent a segment again (`kind = retransmit`, in
/// `new_state`), as told at `tcp:tcp_retransmit_skb` (schemas/events-v1.md,
/// *Retransmissions*). Numbered as the BPF program's `enum rtx_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resend {
    /// None of the others: the kernel gave no sign of why.
    Other = 0,
    /// Marked lost by SACK, RACK or duplicate ACKs, in recovery.
    Fast = 1,
    /// Marked lost in loss state, after a timeout, as ACKs come.
    Loss = 2,
    /// The retransmission timer's own, the first after it fired.
    Rto = 3,
    /// A tail loss probe that resent the last segment.
    Tlp = 4,
    /// A SYN of a connection being opened.
    Syn = 5,
}

impl Resend {
    pub const ALL: [Resend; 6] = [
        Resend::Other,
        Resend::Fast,
        Resend::Loss,
        Resend::Rto,
        Resend::Tlp,
        Resend::Syn,
    ];

    pub fn from_kernel(v: u8) -> Option<Resend> {
        Resend::ALL.get(usize::from(v)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Resend::Other => "other",
            Resend::Fast => "fast",
            Resend::Loss => "loss",
            Resend::Rto => "rto",
            Resend::Tlp => "tlp",
            Resend::Syn => "syn",
        }
    }

    pub fn from_name(s: &str) -> Option<Resend> {
        Resend::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// What an event's `old_state`/`new_state` pair describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `kind = ca_state`: a call of `tcp_set_ca_state()`.
    Ca { old: CaState, new: CaState },
    /// `kind = tcp_state`: the socket's TCP state machine moved.
    Tcp { old: TcpState, new: TcpState },
    /// `kind = snapshot`: the socket's states as a snapshot found them, an
    /// observation rather than an event (`old_state` holds the TCP state,
    /// `new_state` the congestion state).
    Snapshot { tcp: TcpState, ca: CaState },
    /// `kind = retransmit`: the socket sent a segment again (`old_state`
    /// holds its congestion state then, `new_state` why). Evidence, not a
    /// change: it moves no state.
    Retransmit { ca: CaState, why: Resend },
    /// `kind = drop`: this host dropped a segment of the flow, arriving
    /// (`rx`) or its own (`old_state` `rx` or `tx`), for the kernel's
    /// `reason` (`new_state`). Evidence, not a change.
    Drop { rx: bool, reason: SymbolName },
    /// `kind = reset`: the flow was reset, by this host (`old_state` `tx`,
    /// `new_state` the kernel's reason) or by its peer (`rx`, `peer`).
    /// Evidence of how the flow ended; its close follows.
    Reset { rx: bool, reason: SymbolName },
}

/// The name of an evidence row's direction (`old_state` of drops and resets).
fn direction(rx: bool) -> &'static str {
    if rx {
        "rx"
    } else {
        "tx"
    }
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Ca { .. } => "ca_state",
            Change::Tcp { .. } => "tcp_state",
            Change::Snapshot { .. } => "snapshot",
            Change::Retransmit { .. } => "retransmit",
            Change::Drop { .. } => "drop",
            Change::Reset { .. } => "reset",
        }
    }

    pub fn names(&self) -> (&str, &str) {
        match self {
            Change::Ca { old, new } => (old.name(), new.name()),
            Change::Tcp { old, new } => (old.name(), new.name()),
            Change::Snapshot { tcp, ca } => (tcp.name(), ca.name()),
            Change::Retransmit { ca, why } => (ca.name(), why.name()),
            Change::Drop { rx, reason } | Change::Reset { rx, reason } => {
                (direction(*rx), reason.as_str())
            }
        }
    }
}

/// Which flow: socket cookies are unique per boot only, so the boot (its
/// index in a dataset) is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub boot: u32,
    pub cookie: u64,
}

/// Where a row's flow lived: what makes `flow` unique across recordings of
/// several hosts and boots, so that rows of many runs can be united; and
/// the names of that boot's cgroups, and of the containers they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    pub host: String,
    pub boot_id: String,
    pub cgroup_paths: BTreeMap<u64, String>,
    pub containers: BTreeMap<u64, Container>,
}

/// The container a cgroup was made for, as the host's runtimes named it
/// when it was recorded. Empty strings where the host did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// `docker`, `podman`, `containerd`, `cri-o`, or `cri` (a Kubernetes
    /// pod's, whose cgroups do not say which runtime).
    pub runtime: String,
    /// The runtime's id for it (64 hex digits).
    pub id: String,
    /// Its name: the runtime's, or in a pod the container's name there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Kubernetes: its pod's name and namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// A container filter: the flows of cgroups made for a container, or for a
/// pod's containers, as the recorder named them (a flow of no container is
/// never kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerSel {
    /// Its name, or its id: whole, or its first 12 digits or more (as
    /// `docker ps` and `podman ps` show it).
    Container(String),
    /// A pod's name, or its namespace and name as `NAMESPACE/NAME`.
    Pod(String),
}

impl ContainerSel {
    fn matches(&self, c: &Container) -> bool {
        match self {
            ContainerSel::Container(v) => {
                c.name == *v || (v.len() >= 12 && !c.id.is_empty() && c.id.starts_with(v.as_str()))
            }
            ContainerSel::Pod(v) => match v.split_once('/') {
                Some((ns, pod)) => c.namespace == ns && c.pod == pod,
                None => c.pod == *v,
            },
        }
    }

    /// Whether every one of `sels` keeps the flows of a cgroup made for
    /// `container` (`None`: for none).
    pub fn keep(sels: &[ContainerSel], container: Option<&Container>) -> bool {
        sels.is_empty() || container.is_some_and(|c| sels.iter().all(|s| s.matches(c)))
    }
}

/// What the recorder learnt of some cgroups: their paths and, for those
/// made for a container, the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupNames {
    pub paths: BTreeMap<u64, String>,
    pub containers: BTreeMap<u64, Container>,
}

impl Boot {
    /// Takes in what a capture learnt of its cgroups.
    pub fn learn(&mut self, names: &CgroupNames) {
        self.cgroup_paths
            .extend(names.paths.iter().map(|(k, v)| (*k, v.clone())));
        self.containers
            .extend(names.containers.iter().map(|(k, v)| (*k, v.clone())));
    }

    /// One field of the container a cgroup was made for: "" where it was
    /// none's, or the host did not say.
    pub fn container_field(&self, cgroup: u64, field: fn(&Container) -> &str) -> &str {
        self.containers.get(&cgroup).map_or("", field)
    }

    /// A cgroup's path, or its id where the recording did not name it.
    pub fn cgroup_path(&self, id: u64) -> String {
        self.cgroup_paths
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// A capture (one recording, or overlapping ones) that a boot's events
/// come from, in wall-clock ns: it bounds the timelines of the flows seen
/// in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Whether it recorded `tcp_state` events.
    pub lifecycle: bool,
}

/// The flow identity columns: what a report row is labelled with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowAddr {
    pub family: u8,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub owner: Owner,
    /// The socket's network namespace (its inode number).
    pub netns: u32,
    /// Its congestion control: as its row says; a flow's label is that of
    /// its first transition or snapshot, and of its close (see the engine).
    pub cc: KernelName,
}

/// Whose flow it is: the owning process (`pid` 0 while not known, e.g.
/// an accepted socket before its accept) and the socket's cgroup id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Owner {
    pub pid: u32,
    pub comm: KernelName,
    pub cgroup: u64,
}

impl Owner {
    pub fn of(d: &Detail) -> Owner {
        Owner {
            pid: d.pid,
            comm: d.comm,
            cgroup: d.cgroup,
        }
    }
}

/// The per-event columns after the flow's identity and states, in file
/// order, each `name: type` as the BPF record (`struct event`) names it.
/// The list is handed to a macro `$m` that expands it (the "X macro"
/// pattern), so that every place that deals with columns follows it.
macro_rules! detail_columns {
    ($m:ident) => {
        $m! {
            cpu: u16,
            netns: u32,
            cgroup: u64,
            cong_algo: KernelName,
            snd_cwnd: u32,
            snd_ssthresh: u32,
            srtt_us: u32,
            mss: u32,
            packets_out: u32,
            retrans_out: u32,
            lost_out: u32,
            sacked_out: u32,
            total_retrans: u32,
            seq: u32,
            kernel_gap: u8,
            pid: u32,
            comm: KernelName,
            segs: u32,
            tcp_seq: u32,
            err: i32,
            location: SymbolName,
            rto_us: u32,
            backoff: u8,
            delivered_ce: u32,
            dsack_dups: u32,
            reord_seen: u32,
            undo: u8,
        }
    };
}
pub(crate) use detail_columns;

/// `snd_ssthresh` while no threshold is set: the kernel's
/// `TCP_INFINITE_SSTHRESH` (slow start until the first reduction; BBR's
/// until it leaves startup).
pub const NO_SSTHRESH: u32 = 0x7fff_ffff;

macro_rules! detail_struct {
    ($($name:ident: $ty:ty,)*) => {
        /// What an event carries besides its flow and states: the CPU it
        /// ran on, the socket's namespace, cgroup and congestion control,
        /// and the TCP counters at the event (`srtt_us` in microseconds).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Detail {
            $(pub $name: $ty,)*
        }

        impl Detail {
            /// Column names, in file order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// The values as CSV fields, each after a comma.
            pub fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
                $(CsvField::write_csv(&self.$name, out)?;)*
                Ok(())
            }
        }
    };
}
detail_columns!(detail_struct);

/// A detail value as a CSV field, after its comma.
trait CsvField {
    fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
}

macro_rules! csv_number {
    ($($t:ty),*) => {$(
        impl CsvField for $t {
            fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
                write!(out, ",{self}")
            }
        }
    )*};
}
csv_number!(u8, u16, u32, u64, i32);

/// A task may name itself anything: quoted where it needs to be.
impl<const N: usize> CsvField for Name<N> {
    fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        write!(out, ",{}", crate::escape::csv(self.as_str()))
    }
}

/// One row of a recording: every schema v1 column except `time`, which is
/// `ktime_ns` plus the recording's clock offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ktime_ns: u64,
    pub flow: u64,
    pub addr: FlowAddr,
    pub change: Change,
    pub detail: Detail,
}

#[cfg(test)]
impl Event {
    /// A loopback flow's `open -> disorder` at `ktime_ns`, its socket's
    /// `seq`th event: what unit tests feed a capture or a file.
    pub fn example(ktime_ns: u64, flow: u64, seq: u32) -> Event {
        use std::net::{IpAddr, Ipv4Addr};
        Event {
            ktime_ns,
            flow,
            addr: FlowAddr {
                family: 4,
                saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                sport: 40000,
                daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                dport: 5201,
                owner: Default::default(),
                netns: 0,
                cc: Default::default(),
            },
            change: Change::Ca {
                old: CaState::Open,
                new: CaState::Disorder,
            },
            detail: Detail {
                seq,
                ..Detail::default()
            },
        }
    }
}

/// A name as the kernel stores it, in `N` NUL-padded bytes: fixed size so
/// that an event never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name<const N: usize>(pub [u8; N]);

/// A congestion control's (`TCP_CA_NAME_MAX`) or a task's
/// (`TASK_COMM_LEN`) name: 16 bytes.
pub type KernelName = Name<16>;

/// A kernel function's or a drop reason's name, cut at 32 bytes.
pub type SymbolName = Name<32>;

impl<const N: usize> Default for Name<N> {
    fn default() -> Self {
        Name([0; N])
    }
}

impl<const N: usize> Name<N> {
    /// From a recording's string column; longer names are cut at `N` bytes.
    pub fn from_str_lossy(name: &str) -> Name<N> {
        let mut b = [0u8; N];
        let n = name.len().min(N);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        Name(b)
    }

    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        std::str::from_utf8(&self.0[..end]).unwrap_or("?")
    }
}

/// The kernel's `char name[N]`, as the skeleton types it.
impl<const N: usize> From<[i8; N]> for Name<N> {
    fn from(c: [i8; N]) -> Name<N> {
        Name(c.map(|b| b as u8))
    }
}

impl<const N: usize> std::fmt::Debug for Name<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Display for Name<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> Serialize for Name<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A port filter as the user gave it, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// The capture filters in force, as the metadata stores them: all but
/// `containers` applied in the kernel (netns and cgroup resolved to their
/// ids), `containers` in user space, by the names the cgroups were given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    pub localport: Option<PortRange>,
    pub remoteport: Option<PortRange>,
    pub family: Option<u8>,
    pub netns: Option<u32>,
    pub cgroup: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerSel>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for s in CaState::ALL {
            assert_eq!(CaState::from_name(s.name()), Some(s));
            assert_eq!(CaState::from_kernel(s as u8), Some(s));
        }
        assert_eq!(CaState::from_kernel(5), None);
        assert_eq!(TcpState::from_name("close"), Some(TcpState::CLOSE));
        assert_eq!(TcpState(10).name(), "listen");
        assert_eq!(TcpState(99).name(), "unknown");
        assert_eq!(TcpState::from_name("unknown"), None);
        for r in Resend::ALL {
            assert_eq!(Resend::from_name(r.name()), Some(r));
            assert_eq!(Resend::from_kernel(r as u8), Some(r));
        }
        assert_eq!(Resend::from_kernel(6), None);
    }

    #[test]
    fn port_ranges_print_as_given() {
        assert_eq!(PortRange { lo: 80, hi: 80 }.to_string(), "80");
        assert_eq!(PortRange { lo: 1, hi: 9 }.to_string(), "1-9");
    }

    #[test]
    fn algo_names_are_nul_padded() {
        assert_eq!(KernelName::from_str_lossy("cubic").as_str(), "cubic");
        assert_eq!(Name([0; 16]).as_str(), "");
        assert_eq!(Name([b'a'; 16]).as_str(), "a".repeat(16));
        assert_eq!(
            KernelName::from(b"cubic\0\0\0\0\0\0\0\0\0\0\0".map(|b| b as i8)).as_str(),
            "cubic"
        );
        assert_eq!(
            SymbolName::from_str_lossy(&"x".repeat(40)).as_str(),
            "x".repeat(32)
        );
    }
}
