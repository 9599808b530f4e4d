//! The vocabulary shared by capture and analysis: congestion states, TCP
//! states, and one event as schema v1 describes it.
//!
//! Names here are part of the file format (`old_state`/`new_state` hold
//! them as strings), so they never change once released.

use std::net::IpAddr;

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

/// What an event's `old_state`/`new_state` pair describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `kind = ca_state`: a call of `tcp_set_ca_state()`.
    Ca { old: CaState, new: CaState },
    /// `kind = tcp_state`: the socket's TCP state machine moved.
    Tcp { old: TcpState, new: TcpState },
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Ca { .. } => "ca_state",
            Change::Tcp { .. } => "tcp_state",
        }
    }

    pub fn names(&self) -> (&'static str, &'static str) {
        match *self {
            Change::Ca { old, new } => (old.name(), new.name()),
            Change::Tcp { old, new } => (old.name(), new.name()),
        }
    }
}

/// The flow identity columns: what a report row is labelled with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowAddr {
    pub family: u8,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

/// The TCP snapshot a `ca_state` event carries (schema v1's uint32 columns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub snd_cwnd: u32,
    pub snd_ssthresh: u32,
    pub srtt_us: u32,
    pub mss: u32,
    pub packets_out: u32,
    pub retrans_out: u32,
    pub lost_out: u32,
    pub sacked_out: u32,
    pub total_retrans: u32,
}

/// One row of a recording: every schema v1 column except `time`, which is
/// `ktime_ns` plus the recording's clock offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ktime_ns: u64,
    pub flow: u64,
    pub addr: FlowAddr,
    pub change: Change,
    pub cpu: u16,
    pub netns: u32,
    pub cgroup: u64,
    pub cong_algo: AlgoName,
    pub tcp: TcpInfo,
}

/// A congestion-control name as the kernel stores it (`TCP_CA_NAME_MAX`
/// bytes, NUL-padded): fixed size so that an event never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AlgoName(pub [u8; 16]);

impl AlgoName {
    /// From a recording's string column; longer names are cut at 16 bytes.
    pub fn from_str_lossy(name: &str) -> AlgoName {
        let mut b = [0u8; 16];
        let n = name.len().min(16);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        AlgoName(b)
    }

    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        std::str::from_utf8(&self.0[..end]).unwrap_or("?")
    }
}

impl std::fmt::Debug for AlgoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    }

    #[test]
    fn algo_names_are_nul_padded() {
        assert_eq!(AlgoName(*b"cubic\0\0\0\0\0\0\0\0\0\0\0").as_str(), "cubic");
        assert_eq!(AlgoName([0; 16]).as_str(), "");
        assert_eq!(AlgoName([b'a'; 16]).as_str(), "a".repeat(16));
    }
}
