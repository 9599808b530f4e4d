//! Decoding of the records the BPF programs emit (`struct event` in
//! bpf/event.h) into [`Event`]s, through the skeleton's generated copy of
//! that struct: the layout is never written down twice.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxHashMap;

use super::names::{Names, Process};
use super::skel::types::{event as RawEvent, lean_event as LeanEvent};
use super::skel::{
    DIRECTION_RX, DIRECTION_TX, KIND_CA_STATE, KIND_DROP, KIND_RESET, KIND_RETRANSMIT,
    KIND_SNAPSHOT, KIND_TCP_STATE,
};
use crate::event::{
    detail_columns, CaState, Change, Detail, Event, FlowAddr, KernelName, Owner, Resend,
    SymbolName, TcpState,
};

pub const RAW_EVENT_SIZE: usize = std::mem::size_of::<RawEvent>();
const LEAN_EVENT_SIZE: usize = std::mem::size_of::<LeanEvent>();
/// What a lean ring hands over to wake user space (`struct lean_doorbell`,
/// zero): 8 bytes from the ring buffer, 12 as a perf sample (padded so that
/// with its 4-byte size it fills 16).
fn is_doorbell(bytes: &[u8]) -> bool {
    matches!(bytes.len(), 8 | 12) && bytes[..8] == [0; 8]
}

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

/// The kernel's names of the reasons drops and sent resets carry, by value
/// up to the programs' `REASON_OTHER`, lower case without their enum's
/// prefix (`netfilter_drop`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reasons {
    /// `enum skb_drop_reason`: empty before 5.17, whose kernels do not say
    /// (drops are then not recorded).
    pub drop: Vec<SymbolName>,
    /// `enum sk_rst_reason`: before 6.10, whose kernels do not say, its
    /// first value alone (`not_specified`).
    pub reset: Vec<SymbolName>,
}

/// What a received reset's reason is: the peer's, which the segment does
/// not carry.
const PEER: &str = "peer";

/// Whether an evidence record's direction is `rx`.
fn received(direction: u8) -> Result<bool, Malformed> {
    match direction {
        DIRECTION_RX => Ok(true),
        DIRECTION_TX => Ok(false),
        _ => Err(Malformed),
    }
}

/// A full record's event, its socket's inode where the programs did not
/// know the socket's owner (else 0), and a drop's kernel address.
fn decode(bytes: &[u8], reasons: &Reasons) -> Result<(Event, u64, u64), Malformed> {
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
        KIND_RETRANSMIT => Change::Retransmit {
            ca: CaState::from_kernel(r.old_state).ok_or(Malformed)?,
            why: Resend::from_kernel(r.new_state).ok_or(Malformed)?,
        },
        KIND_DROP => Change::Drop {
            rx: received(r.old_state)?,
            reason: *reasons
                .drop
                .get(usize::from(r.new_state))
                .ok_or(Malformed)?,
        },
        KIND_RESET => {
            let rx = received(r.old_state)?;
            Change::Reset {
                rx,
                reason: if rx {
                    SymbolName::from_str_lossy(PEER)
                } else {
                    *reasons
                        .reset
                        .get(usize::from(r.new_state))
                        .ok_or(Malformed)?
                },
            }
        }
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
            netns: detail.netns,
            cc: detail.cong_algo,
        },
        change,
        detail,
    };
    Ok((event, r.sock_ino, r.drop_ip))
}

/// Decodes both records the programs hand over: a full one, which also
/// describes its flow, and a lean one (`struct lean_event`), which takes
/// what is fixed about its flow from the full record it names. Lean records
/// come by their own rings, so one can be read before the full record it
/// names (it waits, parked, until that comes) or after a newer one (kept
/// while a lean record can name it). A full record without an owner gets one
/// from user space where it can be found, and so do its flow's lean
/// records.
#[derive(Default)]
pub struct Decoder {
    /// Per flow, its full records of a transition that a lean record can
    /// still name, newest last (see [`Decoder::describe`]), each with the
    /// round a newer one came in.
    described: FxHashMap<u64, Kept>,
    /// Rounds of reads so far (see [`Decoder::retry`]).
    round: u64,
    /// Flows whose owner user space found, until they close: their later
    /// records (after the process closed its descriptor) keep it.
    found: FxHashMap<u64, Process>,
    /// Per flow, whose it is, its congestion control and its local port,
    /// as its last full record of a socket said.
    identities: FxHashMap<u64, (Owner, KernelName, u16)>,
    /// Lean records whose full record has not been read yet.
    parked: Vec<LeanEvent>,
    /// The capture hands over no lean records (the programs do not number
    /// sockets' events, or have no lean rings): no full record is kept for
    /// them.
    pub full_records_only: bool,
    /// The kernel's reasons by value.
    pub reasons: Reasons,
    /// Flows closed in this round and in the last, with their close's
    /// event number: their lean records, all finished before the close, can
    /// still be in a ring this round.
    closing: Vec<(u64, u32)>,
    closed: Vec<(u64, u32)>,
    pub names: Names,
}

/// A flow's full records of a transition that a lean record can still
/// name. Each event's work is a step or two: with every event a full
/// record (a capture that hands over no lean ones), scanning all of a
/// round's records at each made the drain's work grow with the square of
/// the round's size, and a capture that fell behind at 1,000,000 events/s
/// never caught up (measured: it wrote 250,000 a second).
#[derive(Default)]
struct Kept {
    /// Not replaced yet: the newest. (An older one that comes after it,
    /// from another CPU's buffer, was replaced already.)
    current: Option<Event>,
    /// Replaced, each with the round it was, in that order: kept until
    /// the end of the round after.
    replaced: VecDeque<(u64, Event)>,
}

/// Flows whose identity is kept for their drops (the BPF object's
/// `flow_tuples` holds as many).
const IDENTITIES_KEPT: usize = 65_536;
/// The event number bits a lean record names its full record by.
const FACTS_MASK: u32 = 0xff_ffff;

impl Decoder {
    /// Appends the record's event to `out`; nothing for a lean record
    /// parked until its full record comes (see [`Decoder::retry`]) and for
    /// a lean ring's doorbell. Into `out`, so that a lean record's event is
    /// made where it stays (an event is ~310 bytes: returning it copied it
    /// once more).
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), Malformed> {
        // Ring records have their exact size; perf samples (full records
        // and doorbells) are padded to 8 bytes.
        if is_doorbell(bytes) {
            return Ok(());
        }
        if bytes.len() == LEAN_EVENT_SIZE {
            // SAFETY: the length is the struct's, the generated struct is
            // plain old data for which every bit pattern is valid, and
            // read_unaligned needs no alignment.
            let r: LeanEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            if !self.lean(&r, out)? {
                self.parked.push(r);
            }
            return Ok(());
        }
        let (mut e, sock_ino, drop_ip) = decode(bytes, &self.reasons)?;
        if matches!(e.change, Change::Drop { .. }) {
            e.detail.location = self.names.kernel_symbol(drop_ip);
        }
        // A drop the programs matched by its segment's addresses names its
        // flow only (no congestion control, as every socket's record has),
        // and evidence of a socket's last moments comes after its close has
        // retired its owner in the kernel: whose it is comes from the flow's
        // last record that said. A closing socket has released its local
        // port before its last records (its close, a reset sent as it
        // closes): they keep the one its flow had. (A socket about to
        // connect has none yet, and may have had another before.)
        let evidence = matches!(
            e.change,
            Change::Drop { .. } | Change::Retransmit { .. } | Change::Reset { .. }
        );
        let last =
            evidence || matches!(e.change, Change::Tcp { new, .. } if new == TcpState::CLOSE);
        if e.addr.cc.as_str().is_empty()
            || evidence && e.detail.pid == 0
            || last && e.addr.sport == 0
        {
            if let Some(&(owner, cc, sport)) = self.identities.get(&e.flow) {
                if last && e.addr.sport == 0 {
                    e.addr.sport = sport;
                }
                if e.addr.cc.as_str().is_empty() {
                    e.addr.cc = cc;
                    e.detail.cong_algo = cc;
                    e.detail.cgroup = owner.cgroup;
                }
                if e.detail.pid == 0 && (evidence || e.addr.cc.as_str().is_empty()) {
                    e.detail.pid = owner.pid;
                    e.detail.comm = owner.comm;
                    e.addr.owner = Owner::of(&e.detail);
                }
            }
        }
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
        self.names.cgroup(e.detail.cgroup, e.detail.pid);
        if !e.addr.cc.as_str().is_empty() {
            // As many as the programs keep flows by their addresses: a drop
            // after its flow's close still finds the flow (there, and here).
            if self.identities.len() >= IDENTITIES_KEPT && !self.identities.contains_key(&e.flow) {
                self.identities.clear();
            }
            let identity = self
                .identities
                .entry(e.flow)
                .or_insert((e.addr.owner, e.addr.cc, 0));
            // An owner once known stays (a socket's last records may come
            // after the kernel retired it).
            if e.addr.owner.pid != 0 {
                identity.0 = e.addr.owner;
            }
            identity.1 = e.addr.cc;
            identity.2 = e.addr.sport;
        }
        match e.change {
            Change::Tcp { new, .. } if new == TcpState::CLOSE => {
                self.closing.push((e.flow, e.detail.seq));
                self.found.remove(&e.flow);
            }
            // A snapshot's fields are the socket's now, but its flow's lean
            // records follow the flow's last full record of an event.
            Change::Tcp { .. }
            | Change::Snapshot { .. }
            | Change::Retransmit { .. }
            | Change::Drop { .. }
            | Change::Reset { .. } => {}
            Change::Ca { .. } => self.describe(&e),
        }
        out.push(e);
        Ok(())
    }

    /// Keeps a flow's full record of a transition for its lean records. A
    /// lean record names the full record its flow had when it was written
    /// (the programs write a flow's records one at a time), so it was
    /// committed before the newer one that replaced it, and read by the end
    /// of the round after the one that read that: a replaced record goes
    /// then. A flow can have many in a round (every CE mark, DSACK or
    /// reordering it counts calls for one). The perf buffer delivers per
    /// CPU, so a flow's full records can come out of their order: the one
    /// numbered last is the flow's current one, whenever it came, and one
    /// that comes after a newer one was replaced already.
    ///
    /// A lean record names its full record by number, and is numbered after
    /// it and before the full record that replaced it: one replaced by the
    /// next number has no lean record to wait for, and a capture without
    /// lean records keeps none. With every event a full record, keeping
    /// each replaced one for a round took a fifth of the drain's CPU (at
    /// 1,000,000 events/s, moved into memory that a round's many records
    /// had left the cache).
    fn describe(&mut self, e: &Event) {
        if self.full_records_only {
            return;
        }
        let round = self.round;
        let seq = e.detail.seq;
        let newer = |k: &Event| k.detail.seq.wrapping_sub(seq) as i32 > 0;
        let kept = self.described.entry(e.flow).or_default();
        // The newest record is never replaced: a later one than this is
        // the current one if there is any.
        if kept.current.as_ref().is_some_and(newer) {
            if kept.current.as_ref().map(|k| k.detail.seq) != Some(seq.wrapping_add(1)) {
                kept.replaced.push_back((round, e.clone()));
            }
        } else if let Some(k) = kept.current.replace(e.clone()) {
            if k.detail.seq.wrapping_add(1) != seq {
                kept.replaced.push_back((round, k));
            }
        }
        while kept.replaced.front().is_some_and(|(r, _)| r + 1 < round) {
            kept.replaced.pop_front();
        }
    }

    /// Decodes the parked lean records whose full records have come, into
    /// `out`, and returns how many could not be: malformed ones, and those
    /// parked since before `give_up` (ktime), whose full record is not
    /// coming. Called after each round's reads. What flows closed two
    /// rounds ago were before their close is forgotten here (a socket that
    /// connects again keeps its cookie, and its new facts).
    pub fn retry(&mut self, out: &mut Vec<Event>, give_up: u64) -> u64 {
        let mut failed = 0;
        self.round += 1;
        for r in std::mem::take(&mut self.parked) {
            match self.lean(&r, out) {
                Ok(true) => {}
                Ok(false) if r.ktime_ns >= give_up => self.parked.push(r),
                Ok(false) | Err(Malformed) => failed += 1,
            }
        }
        for (flow, closed_at) in
            std::mem::replace(&mut self.closed, std::mem::take(&mut self.closing))
        {
            if let Some(kept) = self.described.get_mut(&flow) {
                kept.current = kept.current.take().filter(|e| e.detail.seq > closed_at);
                kept.replaced.retain(|(_, e)| e.detail.seq > closed_at);
                if kept.current.is_none() && kept.replaced.is_empty() {
                    self.described.remove(&flow);
                }
            }
        }
        failed
    }

    /// The oldest parked record's time: the stream is not complete past it.
    pub fn parked_since(&self) -> Option<u64> {
        self.parked.iter().map(|r| r.ktime_ns).min()
    }

    /// Parked records whose full record never came (counted as malformed
    /// at the end of a capture).
    pub fn abandon_parked(&mut self) -> u64 {
        std::mem::take(&mut self.parked).len() as u64
    }

    /// Appends a lean record's event to `out`, made from the full record
    /// it names; false when that has not come yet.
    fn lean(&self, r: &LeanEvent, out: &mut Vec<Event>) -> Result<bool, Malformed> {
        let facts = u32::from_le_bytes([r.facts_seq[0], r.facts_seq[1], r.facts_seq[2], 0]);
        let Some(full) = self.described.get(&r.cookie).and_then(|kept| {
            let replaced = kept.replaced.iter().map(|(_, e)| e);
            kept.current
                .iter()
                .chain(replaced.rev())
                .find(|e| e.detail.seq & FACTS_MASK == facts)
        }) else {
            return Ok(false);
        };
        let change = Change::Ca {
            old: CaState::from_kernel(r.old_state).ok_or(Malformed)?,
            new: CaState::from_kernel(r.new_state).ok_or(Malformed)?,
        };
        // Made in its place at the end of `out`, then given its own fields.
        out.push(full.clone());
        if let Some(e) = out.last_mut() {
            e.ktime_ns = r.ktime_ns;
            e.change = change;
            // What a lean record carries, by the names both sides share.
            macro_rules! per_event {
                ($($f:ident),*) => { $(e.detail.$f = r.$f;)* };
            }
            per_event!(
                snd_cwnd,
                snd_ssthresh,
                srtt_us,
                rto_us,
                packets_out,
                retrans_out,
                lost_out,
                sacked_out,
                total_retrans,
                seq,
                cpu,
                kernel_gap
            );
            // A transition that undid a reduction is never a lean record.
            e.detail.undo = 0;
        }
        Ok(true)
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
        let (e, _, _) = decode(&raw(4, 0, 1, 3), &Reasons::default()).unwrap();
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
        assert_eq!(
            decode(&raw(5, 0, 0, 0), &Reasons::default()),
            Err(Malformed)
        );
        assert_eq!(
            decode(&raw(4, 9, 0, 0), &Reasons::default()),
            Err(Malformed)
        );
        assert_eq!(
            decode(&raw(4, 0, 0, 5), &Reasons::default()),
            Err(Malformed)
        );
        assert_eq!(
            decode(&raw(4, 0, 0, 0)[..100], &Reasons::default()),
            Err(Malformed)
        );
    }

    /// A reset sent as its socket closes: the kernel has released the local
    /// port by then, and the flow's earlier record gives it back.
    #[test]
    fn a_reset_names_its_reason_and_keeps_its_flow_after_the_close() {
        let mut d = Decoder {
            reasons: Reasons {
                drop: Vec::new(),
                reset: ["not_specified", "no_socket"]
                    .map(SymbolName::from_str_lossy)
                    .to_vec(),
            },
            ..Decoder::default()
        };
        d.decoded_now(&full(1, KIND_TCP_STATE, 1, 7)).unwrap();
        let mut sent = full(1, KIND_RESET, DIRECTION_TX, 1);
        sent[std::mem::offset_of!(RawEvent, sport)..][..2].copy_from_slice(&0u16.to_ne_bytes());
        let e = decoded(&mut d, &sent);
        assert_eq!(e.addr.sport, 5201);
        assert_eq!(e.change.names(), ("tx", "no_socket"));
        let got = decoded(&mut d, &full(1, KIND_RESET, DIRECTION_RX, 0));
        assert_eq!(
            (got.change.kind(), got.change.names()),
            ("reset", ("rx", "peer"))
        );
        assert_eq!(
            d.decoded_now(&full(1, KIND_RESET, DIRECTION_TX, 2)),
            Err(Malformed),
            "a reason beyond the kernel's"
        );
        assert_eq!(d.decoded_now(&full(1, KIND_RESET, 2, 0)), Err(Malformed));
    }

    fn lean(cookie: u64, old: u8, new: u8, seq: u32, facts: u32) -> Vec<u8> {
        let b = facts.to_le_bytes();
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
            facts_seq: [b[0], b[1], b[2]],
            ..Default::default()
        };
        // SAFETY: LeanEvent is plain old data; the slice covers exactly it.
        unsafe {
            std::slice::from_raw_parts((&r as *const LeanEvent).cast::<u8>(), LEAN_EVENT_SIZE)
        }
        .to_vec()
    }

    fn full(seq: u32, kind: u8, old: u8, new: u8) -> Vec<u8> {
        let mut r = raw(4, kind, old, new);
        r[std::mem::offset_of!(RawEvent, seq)..][..4].copy_from_slice(&seq.to_ne_bytes());
        r
    }

    impl Decoder {
        /// The record's event, if it gives one now.
        fn decoded_now(&mut self, bytes: &[u8]) -> Result<Option<Event>, Malformed> {
            let mut out = Vec::new();
            self.decode(bytes, &mut out)?;
            Ok(out.pop())
        }
    }

    fn decoded(d: &mut Decoder, bytes: &[u8]) -> Event {
        d.decoded_now(bytes).unwrap().expect("decoded at once")
    }

    #[test]
    fn a_lean_record_takes_its_flow_from_the_full_record_it_names() {
        let mut d = Decoder::default();
        d.decoded_now(&full(1, 0, 0, 1)).unwrap();
        let e = decoded(&mut d, &lean(7, 1, 3, 2, 1));
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
    }

    #[test]
    fn a_doorbell_is_skipped_and_nothing_else_that_short() {
        let mut d = Decoder::default();
        // From the ring buffer, and as a padded perf sample.
        assert_eq!(d.decoded_now(&[0; 8]), Ok(None));
        assert_eq!(d.decoded_now(&[0; 12]), Ok(None));
        assert_eq!(d.parked_since(), None, "nothing parked");
        assert_eq!(d.decoded_now(&[1; 8]), Err(Malformed));
        assert_eq!(d.decoded_now(&[0; 16]), Err(Malformed));
    }

    #[test]
    fn a_lean_record_read_early_waits_for_its_full_record() {
        let mut d = Decoder::default();
        assert_eq!(d.decoded_now(&lean(7, 1, 3, 2, 1)), Ok(None));
        assert_eq!(d.parked_since(), Some(99));
        let mut out = Vec::new();
        assert_eq!(d.retry(&mut out, 0), 0);
        assert!(out.is_empty(), "another flow's full record does not do");
        d.decoded_now(&full(1, 0, 0, 1)).unwrap();
        assert_eq!(d.retry(&mut out, 0), 0);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].detail.seq, out[0].addr.sport), (2, 5201));
        assert_eq!(d.parked_since(), None);
        // Never matched: abandoned (and counted) at the end.
        assert_eq!(d.decoded_now(&lean(8, 1, 3, 1, 9)), Ok(None));
        assert_eq!(d.abandon_parked(), 1);
    }

    #[test]
    fn a_lean_record_read_late_takes_the_facts_it_names() {
        let mut d = Decoder::default();
        d.decoded_now(&full(1, 0, 0, 1)).unwrap();
        let mut newer = full(5, 0, 1, 0);
        // The newer full record knows another owner (pid 41).
        newer[std::mem::offset_of!(RawEvent, pid)..][..4].copy_from_slice(&41u32.to_ne_bytes());
        d.decoded_now(&newer).unwrap();
        assert_eq!(decoded(&mut d, &lean(7, 1, 3, 3, 1)).detail.pid, 31);
        assert_eq!(decoded(&mut d, &lean(7, 1, 3, 6, 5)).detail.pid, 41);
    }

    /// A flow can have many full records in a round (a CE mark or a DSACK
    /// each): a lean record read a round late still finds the one it
    /// names, which goes a round after that.
    #[test]
    fn a_replaced_full_record_is_kept_until_the_round_after_next() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        // Each replaced two numbers on: a lean record between may name it.
        for seq in (1..=19).step_by(2) {
            d.decoded_now(&full(seq, 0, 0, 1)).unwrap();
        }
        assert_eq!(d.retry(&mut out, 0), 0);
        assert_eq!(decoded(&mut d, &lean(7, 1, 0, 2, 1)).detail.seq, 2);
        assert_eq!(decoded(&mut d, &lean(7, 1, 0, 12, 11)).detail.seq, 12);
        d.decoded_now(&full(21, 0, 1, 0)).unwrap();
        assert_eq!(d.retry(&mut out, 0), 0);
        d.decoded_now(&full(23, 0, 0, 1)).unwrap();
        assert_eq!(
            d.decoded_now(&lean(7, 1, 0, 4, 3)),
            Ok(None),
            "replaced two rounds ago"
        );
        assert_eq!(decoded(&mut d, &lean(7, 1, 0, 22, 21)).detail.seq, 22);
        assert_eq!(decoded(&mut d, &lean(7, 0, 1, 24, 23)).detail.seq, 24);
    }

    /// No lean record can name a full record that the next number
    /// replaced, nor any of a capture without lean records: neither is
    /// kept.
    #[test]
    fn only_full_records_a_lean_record_can_name_are_kept() {
        let mut d = Decoder::default();
        for seq in 1..=3 {
            d.decoded_now(&full(seq, 0, 0, 1)).unwrap();
        }
        let kept = |d: &Decoder| {
            d.described.get(&7).map(|k| {
                k.replaced
                    .iter()
                    .map(|(_, e)| e.detail.seq)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(kept(&d), Some(vec![]));
        // 3 is kept while 4 is not read (another CPU's buffer), and 4,
        // read after its successor, is not.
        d.decoded_now(&full(5, 0, 1, 0)).unwrap();
        d.decoded_now(&full(4, 0, 0, 1)).unwrap();
        assert_eq!(kept(&d), Some(vec![3]));
        d.decoded_now(&full(7, 0, 1, 0)).unwrap();
        assert_eq!(kept(&d), Some(vec![3, 5]));
        assert_eq!(decoded(&mut d, &lean(7, 1, 0, 6, 5)).detail.seq, 6);
        let mut full_only = Decoder {
            full_records_only: true,
            ..Default::default()
        };
        full_only.decoded_now(&full(1, 0, 0, 1)).unwrap();
        full_only.decoded_now(&full(3, 0, 0, 1)).unwrap();
        assert!(full_only.described.is_empty());
    }

    /// Perf buffers deliver per CPU: a flow's older full record can come
    /// after its newer one, which stays the current one.
    #[test]
    fn full_records_out_of_order_keep_the_newest_current() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.decoded_now(&full(3, 0, 0, 1)).unwrap();
        d.decoded_now(&full(2, 0, 1, 0)).unwrap();
        assert_eq!(d.retry(&mut out, 0), 0);
        assert_eq!(d.retry(&mut out, 0), 0);
        // The next full record comes before a lean record written ahead of
        // it (the round's poll reads before the lean rings are drained).
        d.decoded_now(&full(5, 0, 1, 0)).unwrap();
        assert_eq!(decoded(&mut d, &lean(7, 1, 0, 4, 3)).detail.seq, 4);
    }

    #[test]
    fn a_closed_flow_is_forgotten_two_rounds_after_its_close() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.decoded_now(&full(1, 0, 0, 1)).unwrap();
        d.decoded_now(&full(2, 1, 1, 7)).unwrap();
        assert_eq!(d.retry(&mut out, 0), 0);
        // A lean record finished before the close, read in the next round.
        decoded(&mut d, &lean(7, 1, 3, 2, 1));
        assert_eq!(d.retry(&mut out, 0), 0);
        assert_eq!(d.decoded_now(&lean(7, 0, 1, 3, 1)), Ok(None));
        // Never coming: given up once parked since before the bound.
        assert_eq!(d.retry(&mut out, 100), 1);
        assert_eq!(d.parked_since(), None);
    }

    #[test]
    fn a_socket_that_connects_again_keeps_its_new_facts() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.decoded_now(&full(1, 0, 0, 1)).unwrap();
        d.decoded_now(&full(2, 1, 1, 7)).unwrap();
        // The same socket (and cookie) connects again before the expiry.
        d.decoded_now(&full(4, 0, 0, 1)).unwrap();
        for _ in 0..3 {
            assert_eq!(d.retry(&mut out, 0), 0);
        }
        assert_eq!(decoded(&mut d, &lean(7, 1, 3, 5, 4)).detail.seq, 5);
        assert_eq!(
            d.decoded_now(&lean(7, 1, 3, 2, 1)),
            Ok(None),
            "the old facts are gone"
        );
    }
}
