//! Decoding of the records the BPF programs emit (`struct event` in
//! bpf/event.h) into [`Event`]s, through the skeleton's generated copy of
//! that struct: the layout is never written down twice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxHashMap;

use super::names::{Names, Process};
use super::skel::types::{event as RawEvent, lean_event as LeanEvent};
use crate::event::{detail_columns, CaState, Change, Detail, Event, FlowAddr, Owner, TcpState};

pub const RAW_EVENT_SIZE: usize = std::mem::size_of::<RawEvent>();
const LEAN_EVENT_SIZE: usize = std::mem::size_of::<LeanEvent>();

const KIND_CA_STATE: u8 = 0;
const KIND_TCP_STATE: u8 = 1;
const KIND_SNAPSHOT: u8 = 2;

/// A record that does not decode: counted by the caller, never dropped silently.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

macro_rules! detail_from_raw {
    ($($name:ident: $ty:ty,)*) => {
        fn detail(r: &RawEvent) -> Detail {
            Detail {
                $($name: r.$name.into(),)*
            }
        }
    };
}
detail_columns!(detail_from_raw);

/// A full record's event, and its socket's inode where the programs did
/// not know the socket's owner (else 0).
fn decode(bytes: &[u8]) -> Result<(Event, u64), Malformed> {
    // The perf buffer pads samples to 8 bytes, so only a short record is wrong.
    if bytes.len() < RAW_EVENT_SIZE {
        return Err(Malformed);
    }
    // SAFETY: the length is checked above, the generated struct is plain
    // old data for which every bit pattern is valid, and read_unaligned
    // needs no alignment.
    let r: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };

    let (saddr, daddr) = match r.family {
        4 => (v4(&r.saddr), v4(&r.daddr)),
        6 => (
            IpAddr::V6(Ipv6Addr::from(r.saddr)),
            IpAddr::V6(Ipv6Addr::from(r.daddr)),
        ),
        _ => return Err(Malformed),
    };
    let change = match r.kind {
        KIND_CA_STATE => Change::Ca {
            old: CaState::from_kernel(r.old_state).ok_or(Malformed)?,
            new: CaState::from_kernel(r.new_state).ok_or(Malformed)?,
        },
        KIND_TCP_STATE => Change::Tcp {
            old: TcpState(r.old_state),
            new: TcpState(r.new_state),
        },
        KIND_SNAPSHOT => Change::Snapshot {
            tcp: TcpState(r.old_state),
            ca: CaState::from_kernel(r.new_state).ok_or(Malformed)?,
        },
        _ => return Err(Malformed),
    };
    let detail = detail(&r);
    let event = Event {
        ktime_ns: r.ktime_ns,
        flow: r.cookie,
        addr: FlowAddr {
            family: r.family,
            saddr,
            sport: r.sport,
            daddr,
            dport: r.dport,
            owner: Owner::of(&detail),
        },
        change,
        detail,
    };
    Ok((event, r.sock_ino))
}

/// Decodes both records the programs hand over: a full one, which also
/// describes its flow, and a lean one (`struct lean_event`), which takes
/// what is fixed about its flow from the flow's last full record. A full
/// record without an owner gets one from user space where it can be found,
/// and so do its flow's lean records.
#[derive(Default)]
pub struct Decoder {
    /// Per flow, its last full record.
    described: FxHashMap<u64, Event>,
    /// Flows whose owner user space found, until they close: their later
    /// records (after the process closed its descriptor) keep it.
    found: FxHashMap<u64, Process>,
    pub names: Names,
}

impl Decoder {
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Event, Malformed> {
        // Ring records have their exact size; perf samples (full records
        // only) are padded to 8 bytes.
        if bytes.len() == LEAN_EVENT_SIZE {
            return self.lean(bytes);
        }
        let (mut e, sock_ino) = decode(bytes)?;
        if e.detail.pid == 0 {
            let found = match self.found.get(&e.flow) {
                Some(p) => Some(*p),
                None if sock_ino != 0 => self.names.owner(sock_ino),
                None => None,
            };
            if let Some(p) = found {
                self.found.insert(e.flow, p);
                e.detail.pid = p.pid;
                e.detail.comm = p.comm;
                e.addr.owner = Owner::of(&e.detail);
            }
        }
        self.names.cgroup(e.detail.cgroup);
        match e.change {
            Change::Tcp { new, .. } if new == TcpState::CLOSE => {
                self.described.remove(&e.flow);
                self.found.remove(&e.flow);
            }
            // A snapshot's fields are the socket's now, but its flow's lean
            // records follow the flow's last full record of an event.
            Change::Tcp { .. } | Change::Snapshot { .. } => {}
            Change::Ca { .. } => {
                self.described.insert(e.flow, e.clone());
            }
        }
        Ok(e)
    }

    fn lean(&self, bytes: &[u8]) -> Result<Event, Malformed> {
        // SAFETY: the length is the struct's, the generated struct is plain
        // old data for which every bit pattern is valid, and read_unaligned
        // needs no alignment.
        let r: LeanEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        // The kernel hands a flow's full record over before its first lean one.
        let mut e = self.described.get(&r.cookie).ok_or(Malformed)?.clone();
        e.ktime_ns = r.ktime_ns;
        e.change = Change::Ca {
            old: CaState::from_kernel(r.old_state).ok_or(Malformed)?,
            new: CaState::from_kernel(r.new_state).ok_or(Malformed)?,
        };
        // What a lean record carries, by the names both sides share.
        macro_rules! per_event {
            ($($f:ident),*) => { $(e.detail.$f = r.$f;)* };
        }
        per_event!(
            snd_cwnd,
            snd_ssthresh,
            srtt_us,
            mss,
            packets_out,
            retrans_out,
            lost_out,
            sacked_out,
            total_retrans,
            seq,
            cpu,
            kernel_gap
        );
        Ok(e)
    }
}

fn v4(b: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the kernel would write it, through the same generated type.
    fn raw(family: u8, kind: u8, old: u8, new: u8) -> Vec<u8> {
        let mut r = RawEvent {
            ktime_ns: 42,
            cookie: 7,
            sport: 5201,
            dport: 80,
            family,
            kind,
            old_state: old,
            new_state: new,
            snd_cwnd: 10,
            total_retrans: 3,
            pid: 31,
            ..Default::default()
        };
        for (d, s) in r.comm.iter_mut().zip(b"curl") {
            *d = *s as i8;
        }
        r.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        r.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        for (d, s) in r.cong_algo.iter_mut().zip(b"cubic") {
            *d = *s as i8;
        }
        // SAFETY: RawEvent is plain old data; the slice covers exactly it.
        unsafe { std::slice::from_raw_parts((&r as *const RawEvent).cast::<u8>(), RAW_EVENT_SIZE) }
            .to_vec()
    }

    #[test]
    fn decodes_a_congestion_event() {
        let (e, _) = decode(&raw(4, 0, 1, 3)).unwrap();
        assert_eq!(e.ktime_ns, 42);
        assert_eq!(e.flow, 7);
        assert_eq!(e.addr.saddr.to_string(), "127.0.0.1");
        assert_eq!(e.addr.daddr.to_string(), "10.0.0.2");
        assert_eq!((e.addr.sport, e.addr.dport), (5201, 80));
        assert_eq!(e.detail.cong_algo.as_str(), "cubic");
        assert_eq!((e.detail.snd_cwnd, e.detail.total_retrans), (10, 3));
        assert_eq!(
            e.change,
            Change::Ca {
                old: CaState::Disorder,
                new: CaState::Recovery
            }
        );
    }

    #[test]
    fn rejects_what_the_kernel_never_sends() {
        assert_eq!(decode(&raw(5, 0, 0, 0)), Err(Malformed));
        assert_eq!(decode(&raw(4, 9, 0, 0)), Err(Malformed));
        assert_eq!(decode(&raw(4, 0, 0, 5)), Err(Malformed));
        assert_eq!(decode(&raw(4, 0, 0, 0)[..100]), Err(Malformed));
    }

    fn lean(cookie: u64, old: u8, new: u8, seq: u32) -> Vec<u8> {
        let r = LeanEvent {
            ktime_ns: 99,
            cookie,
            snd_cwnd: 20,
            total_retrans: 4,
            seq,
            cpu: 1,
            old_state: old,
            new_state: new,
            kernel_gap: 1,
            ..Default::default()
        };
        // SAFETY: LeanEvent is plain old data; the slice covers exactly it.
        unsafe {
            std::slice::from_raw_parts((&r as *const LeanEvent).cast::<u8>(), LEAN_EVENT_SIZE)
        }
        .to_vec()
    }

    #[test]
    fn a_lean_record_takes_its_flow_from_the_flows_full_record() {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode(&lean(7, 1, 3, 2)),
            Err(Malformed),
            "no full record yet"
        );
        d.decode(&raw(4, 0, 0, 1)).unwrap();
        let e = d.decode(&lean(7, 1, 3, 2)).unwrap();
        assert_eq!((e.ktime_ns, e.flow), (99, 7));
        assert_eq!(
            e.change,
            Change::Ca {
                old: CaState::Disorder,
                new: CaState::Recovery
            }
        );
        assert_eq!(e.addr.saddr.to_string(), "127.0.0.1");
        assert_eq!((e.addr.sport, e.addr.dport), (5201, 80));
        assert_eq!(e.detail.cong_algo.as_str(), "cubic");
        assert_eq!((e.detail.pid, e.detail.comm.as_str()), (31, "curl"));
        assert_eq!(e.addr.owner, Owner::of(&e.detail));
        assert_eq!((e.detail.snd_cwnd, e.detail.total_retrans), (20, 4));
        assert_eq!((e.detail.seq, e.detail.cpu, e.detail.kernel_gap), (2, 1, 1));
        assert_eq!(d.decode(&lean(8, 1, 3, 1)), Err(Malformed), "another flow");
        // A close forgets the flow: its next connection is described anew.
        d.decode(&raw(4, 1, 1, 7)).unwrap();
        assert_eq!(d.decode(&lean(7, 0, 1, 3)), Err(Malformed));
    }
}
