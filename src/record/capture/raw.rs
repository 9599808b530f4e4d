//! Decoding of the records the BPF programs emit (`struct event` in
//! bpf/event.h) into [`Event`]s, through the skeleton's generated copy of
//! that struct: the layout is never written down twice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::skel::types::event as RawEvent;
use crate::event::{detail_columns, CaState, Change, Detail, Event, FlowAddr, TcpState};

pub const RAW_EVENT_SIZE: usize = std::mem::size_of::<RawEvent>();

const KIND_CA_STATE: u8 = 0;
const KIND_TCP_STATE: u8 = 1;

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

pub fn decode(bytes: &[u8]) -> Result<Event, Malformed> {
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
        _ => return Err(Malformed),
    };
    Ok(Event {
        ktime_ns: r.ktime_ns,
        flow: r.cookie,
        addr: FlowAddr {
            family: r.family,
            saddr,
            sport: r.sport,
            daddr,
            dport: r.dport,
        },
        change,
        detail: detail(&r),
    })
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
            ..Default::default()
        };
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
        let e = decode(&raw(4, 0, 1, 3)).unwrap();
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
}
