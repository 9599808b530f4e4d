//! Decoding of the fixed-size records the BPF programs emit
//! (`struct event` in bpf/tcpcong.bpf.c) into [`Event`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::{AlgoName, CaState, Change, Event, FlowAddr, TcpInfo, TcpState};

/// Byte-for-byte the C `struct event`; both sides check the size.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawEvent {
    ktime_ns: u64,
    cookie: u64,
    cgroup: u64,
    saddr: [u8; 16],
    daddr: [u8; 16],
    netns: u32,
    snd_cwnd: u32,
    snd_ssthresh: u32,
    srtt_us: u32,
    mss: u32,
    packets_out: u32,
    retrans_out: u32,
    lost_out: u32,
    sacked_out: u32,
    total_retrans: u32,
    cong_algo: [u8; 16],
    sport: u16,
    dport: u16,
    cpu: u16,
    family: u8,
    kind: u8,
    old_state: u8,
    new_state: u8,
    _pad: [u8; 6],
}

pub const RAW_EVENT_SIZE: usize = 128;
const _: () = assert!(std::mem::size_of::<RawEvent>() == RAW_EVENT_SIZE);

const KIND_CA_STATE: u8 = 0;
const KIND_TCP_STATE: u8 = 1;

/// A record that does not decode: counted by the caller, never dropped silently.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

pub fn decode(bytes: &[u8]) -> Result<Event, Malformed> {
    // The perf buffer pads samples to 8 bytes, so only a short record is wrong.
    if bytes.len() < RAW_EVENT_SIZE {
        return Err(Malformed);
    }
    // SAFETY: the length is checked above, RawEvent is plain old data for
    // which every bit pattern is valid, and read_unaligned needs no alignment.
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
        cpu: r.cpu,
        netns: r.netns,
        cgroup: r.cgroup,
        cong_algo: AlgoName(r.cong_algo),
        tcp: TcpInfo {
            snd_cwnd: r.snd_cwnd,
            snd_ssthresh: r.snd_ssthresh,
            srtt_us: r.srtt_us,
            mss: r.mss,
            packets_out: r.packets_out,
            retrans_out: r.retrans_out,
            lost_out: r.lost_out,
            sacked_out: r.sacked_out,
            total_retrans: r.total_retrans,
        },
    })
}

fn v4(b: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(family: u8, kind: u8, old: u8, new: u8) -> Vec<u8> {
        let mut b = vec![0u8; RAW_EVENT_SIZE];
        b[0..8].copy_from_slice(&42u64.to_ne_bytes());
        b[8..16].copy_from_slice(&7u64.to_ne_bytes());
        b[24..28].copy_from_slice(&[127, 0, 0, 1]);
        b[40..44].copy_from_slice(&[10, 0, 0, 2]);
        b[96..101].copy_from_slice(b"cubic");
        b[112..114].copy_from_slice(&5201u16.to_ne_bytes());
        b[114..116].copy_from_slice(&80u16.to_ne_bytes());
        b[118] = family;
        b[119] = kind;
        b[120] = old;
        b[121] = new;
        b
    }

    #[test]
    fn decodes_a_congestion_event() {
        let e = decode(&raw(4, 0, 1, 3)).unwrap();
        assert_eq!(e.ktime_ns, 42);
        assert_eq!(e.flow, 7);
        assert_eq!(e.addr.saddr.to_string(), "127.0.0.1");
        assert_eq!(e.addr.daddr.to_string(), "10.0.0.2");
        assert_eq!((e.addr.sport, e.addr.dport), (5201, 80));
        assert_eq!(e.cong_algo.as_str(), "cubic");
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
