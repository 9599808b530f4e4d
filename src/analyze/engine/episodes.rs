//! Episodes: every trip of a flow out of `open`, from its transition out of
//! open to its next transition into open (or its close, or the end of what
//! was recorded: then it is censored, and says so), with what it cost, the
//! evidence of its span, and one cause by the rules schemas/events-v1.md
//! (*Episodes*) writes down.
//!
//! Pure, as the rest of the engine: rows in (a boot's rows in time order,
//! as a dataset's scan hands them out), episodes out. A flow keeps only its
//! state, its episode in progress and the evidence since its last one.

use std::borrow::Cow;
use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::event::{CaState, Change, Event, FlowAddr, FlowKey, Resend, SymbolName};

/// Why a flow left open, by the first rule that holds (see [`Cause::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The kernel undid the reduction: its retransmissions were spurious.
    Spurious,
    /// This host dropped the flow's segments, for the most frequent reason.
    LocalDrop(SymbolName),
    /// Its peer echoed CE marks, and nothing was resent.
    Ecn,
    /// The retransmission timer fired.
    Timeout,
    /// A tail loss probe resent the flow's last segment.
    TailLoss,
    /// Segments were resent, and this host dropped none: the network lost them.
    RemoteLoss,
    /// Disorder only, back to open without a retransmission.
    Reordering,
    Unknown,
}

impl Cause {
    /// Every cause's kind, as [`Cause::kind`] names it.
    pub const KINDS: [&'static str; 8] = [
        "spurious",
        "local-drop",
        "ecn",
        "timeout",
        "tail-loss",
        "remote-loss",
        "reordering",
        "unknown",
    ];

    /// The label without a drop's reason: one of [`Cause::KINDS`].
    pub fn kind(&self) -> &'static str {
        Self::KINDS[match self {
            Cause::Spurious => 0,
            Cause::LocalDrop(_) => 1,
            Cause::Ecn => 2,
            Cause::Timeout => 3,
            Cause::TailLoss => 4,
            Cause::RemoteLoss => 5,
            Cause::Reordering => 6,
            Cause::Unknown => 7,
        }]
    }

    /// The label, as every output writes it.
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Cause::LocalDrop(r) => Cow::Owned(format!("{}:{}", self.kind(), r.as_str())),
            _ => Cow::Borrowed(self.kind()),
        }
    }

    /// The first rule that the episode's evidence earns.
    fn of(e: &Episode) -> Cause {
        let resent = |k: Resend| e.retransmits[k as usize];
        let any_resent = e.retransmits.iter().any(|&n| n > 0);
        // Per reason, both directions: the most, a named one before the
        // kernel's `not_specified` (a queue that splits a packet frees the
        // original so), the first name on a tie. Copies of what the
        // receiver already had lose nothing.
        let mut local: Vec<(SymbolName, u32)> = Vec::new();
        for d in e
            .drops
            .iter()
            .filter(|d| !d.reason.as_str().starts_with("tcp_old_"))
        {
            match local.iter_mut().find(|(r, _)| *r == d.reason) {
                Some((_, n)) => *n += d.count,
                None => local.push((d.reason, d.count)),
            }
        }
        let vague = |r: &SymbolName| r.as_str() == "not_specified";
        local.sort_by(|a, b| {
            (vague(&a.0), b.1, a.0.as_str()).cmp(&(vague(&b.0), a.1, b.0.as_str()))
        });
        if e.undone {
            Cause::Spurious
        } else if let Some(&(reason, _)) = local.first() {
            Cause::LocalDrop(reason)
        } else if e.ce_marks > 0 && !any_resent {
            Cause::Ecn
        } else if resent(Resend::Rto) > 0 {
            Cause::Timeout
        } else if resent(Resend::Tlp) > 0 {
            Cause::TailLoss
        } else if any_resent {
            Cause::RemoteLoss
        } else if e.states == [CaState::Disorder] {
            Cause::Reordering
        } else {
            Cause::Unknown
        }
    }
}

/// How an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Back in open.
    Open,
    /// The flow closed first (censored).
    Close,
    /// The recording ended first (censored).
    Capture,
}

/// This host's drops of the flow, by direction and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub rx: bool,
    pub reason: SymbolName,
    pub count: u32,
}

/// One trip out of open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub key: FlowKey,
    /// The flow and its owner, as its row out of open named them.
    pub addr: FlowAddr,
    /// Wall-clock ns of its start and end, and the same on the kernel's
    /// clock (`ktime_ns`, as the rows have it).
    pub start_ns: u64,
    pub end_ns: u64,
    pub start_ktime_ns: u64,
    pub end_ktime_ns: u64,
    pub end: End,
    /// A transition without an event inside it (a chain break): its times
    /// are what the events say.
    pub broken: bool,
    /// The states it went through, in order, without repeats in a row.
    pub states: Vec<CaState>,
    /// Time in each state (indexed by [`CaState::index`]).
    pub state_ns: [u64; 5],
    pub cwnd_before: u32,
    /// The threshold its first reduction set (0 if none did: disorder only).
    pub ssthresh: u32,
    pub lowest_cwnd: u32,
    pub cwnd_end: u32,
    /// After its end, until the flow's window was back at `cwnd_before`, as
    /// its later rows show; None if it never was.
    pub regained_ns: Option<u64>,
    pub srtt_entry_us: u32,
    pub srtt_max_us: u32,
    /// The retransmission timer's highest backoff in it.
    pub backoff: u8,
    /// Segments resent since the flow's previous episode, by kind
    /// (indexed by [`Resend`]).
    pub retransmits: [u32; 6],
    pub drops: Vec<Dropped>,
    /// CE marks echoed, DSACKs received: since the flow's row before it.
    pub ce_marks: u32,
    pub dsacks: u32,
    pub undone: bool,
    pub cause: Cause,
}

impl Episode {
    /// The worst state it reached (open < disorder < cwr < recovery < loss).
    pub fn worst(&self) -> CaState {
        self.states.iter().copied().max().unwrap_or(CaState::Open)
    }

    /// `ssthresh / cwnd_before`: the share of its window the flow kept.
    pub fn reduction(&self) -> Option<f64> {
        // No threshold: disorder only, or the kernel's "infinite" one still
        // (BBR's until it leaves startup).
        let set = self.ssthresh > 0 && self.ssthresh != crate::event::NO_SSTHRESH;
        (set && self.cwnd_before > 0)
            .then(|| f64::from(self.ssthresh) / f64::from(self.cwnd_before))
    }
}

/// What a flow keeps between its rows.
#[derive(Default)]
struct Flow {
    state: Option<CaState>,
    /// When it entered `state`.
    since_ns: u64,
    last_ce: u32,
    last_dsack: u32,
    // Boxed: an episode moves from state to state, and out, by its pointer.
    current: Option<Box<Episode>>,
    /// Evidence since its previous episode ended.
    retransmits: [u32; 6],
    drops: Vec<Dropped>,
    /// Its last ended episode, while its window is not back.
    regaining: Option<Box<Episode>>,
    /// The local port its ends are known by (see `Episodes::ends`).
    sport: u16,
    /// Its last row's time: when a closed flow may be forgotten.
    last_ns: u64,
}

/// A flow's end as its rows name it: boot, namespace, local and remote
/// address and port.
type Tuple = (u32, u32, IpAddr, u16, IpAddr, u16);

/// Turns rows into episodes.
#[derive(Default)]
pub struct Episodes {
    flows: FxHashMap<FlowKey, Flow>,
    /// The flows by their ends, to find who sent a segment this host
    /// dropped on its way in.
    ends: FxHashMap<Tuple, FlowKey>,
    // Boxed, as a flow's are: they come and go by their pointers (an
    // episode is some 300 bytes, and a recording can have millions).
    #[allow(clippy::vec_box)]
    done: Vec<Box<Episode>>,
}

impl Episodes {
    /// One row, in time order per flow.
    pub fn push(&mut self, t_ns: u64, key: FlowKey, ev: &Event) {
        let a = &ev.addr;
        let d = &ev.detail;
        if let Change::Drop { rx, reason } = ev.change {
            let whose = self.credited(key, ev);
            let sender = self.flows.entry(whose).or_default();
            sender.last_ns = sender.last_ns.max(t_ns);
            let drops = &mut sender.drops;
            match drops.iter_mut().find(|x| x.rx == rx && x.reason == reason) {
                Some(x) => x.count += d.segs.max(1),
                None => drops.push(Dropped {
                    rx,
                    reason,
                    count: d.segs.max(1),
                }),
            }
            return;
        }
        let flow = self.flows.entry(key).or_default();
        flow.last_ns = flow.last_ns.max(t_ns);
        // Once per flow (a socket that connects again, once per port).
        if a.sport != 0 && flow.sport != a.sport {
            flow.sport = a.sport;
            self.ends
                .insert((key.boot, a.netns, a.saddr, a.sport, a.daddr, a.dport), key);
        }
        // Evidence of a socket (every row but a drop matched by its
        // addresses carries the socket's counters).
        let counted = d.snd_cwnd > 0;
        if let (Some(ep), true) = (flow.regaining.as_mut(), counted) {
            if d.snd_cwnd >= ep.cwnd_before {
                ep.regained_ns = Some(t_ns.saturating_sub(ep.end_ns));
                self.done.extend(flow.regaining.take());
            }
        }
        // What the socket counted since the row before the episode.
        if let (Some(ep), true) = (flow.current.as_mut(), counted) {
            ep.cwnd_end = d.snd_cwnd;
            ep.ce_marks = d.delivered_ce.saturating_sub(flow.last_ce);
            ep.dsacks = d.dsack_dups.saturating_sub(flow.last_dsack);
        }
        match ev.change {
            Change::Retransmit { why, .. } => {
                flow.retransmits[why as usize] += d.segs.max(1);
            }
            Change::Ca { old, new } => {
                // A break: the kernel found the flow in another state than
                // its events left it in, changed at some unknown time since.
                // That span is credited to no state (as analyze's table
                // does); one that found it back in open ended its episode
                // there.
                let broken = flow.state.is_some_and(|s| s != old) || d.kernel_gap != 0;
                if broken {
                    if let Some(ep) = flow.current.as_mut() {
                        ep.broken = true;
                    }
                    if old == CaState::Open {
                        end(flow, &mut self.done, t_ns, End::Open);
                    }
                } else if let Some(ep) = flow.current.as_mut() {
                    let was = flow.state.unwrap_or(old);
                    ep.state_ns[was.index()] += t_ns.saturating_sub(flow.since_ns);
                }
                if let Some(ep) = flow.current.as_mut() {
                    ep.lowest_cwnd = ep.lowest_cwnd.min(d.snd_cwnd);
                    ep.srtt_max_us = ep.srtt_max_us.max(d.srtt_us);
                    ep.backoff = ep.backoff.max(d.backoff);
                    if ep.ssthresh == 0 && new >= CaState::Cwr {
                        ep.ssthresh = d.snd_ssthresh;
                    }
                    ep.undone |= d.undo != 0;
                    ep.cwnd_end = d.snd_cwnd;
                    if new == CaState::Open {
                        end(flow, &mut self.done, t_ns, End::Open);
                    } else if ep.states.last() != Some(&new) {
                        ep.states.push(new);
                    }
                } else if new != CaState::Open || old != CaState::Open {
                    // Out of open here, or found out of it (a flow first
                    // seen, or a break): what it was found in comes first.
                    let mut states = vec![old, new];
                    states.retain(|&s| s != CaState::Open);
                    states.dedup();
                    flow.current = Some(Box::new(Episode {
                        key,
                        addr: ev.addr.clone(),
                        start_ns: t_ns,
                        end_ns: t_ns,
                        start_ktime_ns: ev.ktime_ns,
                        end_ktime_ns: ev.ktime_ns,
                        end: End::Capture,
                        // Found out of open: it began before, unseen.
                        broken: old != CaState::Open,
                        states,
                        state_ns: [0; 5],
                        cwnd_before: d.snd_cwnd,
                        ssthresh: if new >= CaState::Cwr {
                            d.snd_ssthresh
                        } else {
                            0
                        },
                        lowest_cwnd: d.snd_cwnd,
                        cwnd_end: d.snd_cwnd,
                        regained_ns: None,
                        srtt_entry_us: d.srtt_us,
                        srtt_max_us: d.srtt_us,
                        backoff: d.backoff,
                        retransmits: [0; 6],
                        drops: Vec::new(),
                        ce_marks: d.delivered_ce.saturating_sub(flow.last_ce),
                        dsacks: d.dsack_dups.saturating_sub(flow.last_dsack),
                        undone: d.undo != 0,
                        cause: Cause::Unknown,
                    }));
                    // Its window was not back before it left open again.
                    self.done.extend(flow.regaining.take());
                    if new == CaState::Open {
                        end(flow, &mut self.done, t_ns, End::Open);
                    }
                }
                flow.state = Some(new);
                flow.since_ns = t_ns;
            }
            Change::Tcp { new, .. } if new == crate::event::TcpState::CLOSE => {
                end(flow, &mut self.done, t_ns, End::Close);
                flow.state = None;
                self.done.extend(flow.regaining.take());
            }
            Change::Tcp { .. }
            | Change::Snapshot { .. }
            | Change::Reset { .. }
            | Change::Drop { .. } => {}
        }
        if counted && flow.current.is_none() {
            flow.last_ce = d.delivered_ce;
            flow.last_dsack = d.dsack_dups;
        }
    }

    /// The flow a row of flow `key` is evidence of: a segment dropped on
    /// its way in is its sender's, the flow's peer, where that is a flow
    /// of this host too (a lab on the loopback); every other row is its
    /// own flow's.
    pub fn credited(&self, key: FlowKey, ev: &Event) -> FlowKey {
        let a = &ev.addr;
        let peer = (key.boot, a.netns, a.daddr, a.dport, a.saddr, a.sport);
        match (ev.change, self.ends.get(&peer)) {
            (Change::Drop { rx: true, .. }, Some(&sender)) => sender,
            _ => key,
        }
    }

    /// A capture's events, as they come (this boot's, on the kernel's
    /// clock: `offset_ns` turns it into the wall's): live mode's and
    /// serve's. The episodes they complete are [`Episodes::take`]n.
    pub fn push_live(&mut self, events: &[Event], offset_ns: i128) {
        for e in events {
            let wall = (i128::from(e.ktime_ns) + offset_ns).clamp(0, i128::from(u64::MAX));
            let key = FlowKey {
                boot: 0,
                cookie: e.flow,
            };
            self.push(wall as u64, key, e);
        }
    }

    /// Forgets flows closed, their episodes handed out, with no row since
    /// before `before_ns` (and flows known only by drops of theirs since
    /// then), so that a capture that runs for days keeps the flows alive,
    /// not every flow it saw. Returns how many it forgot. A drop of a
    /// forgotten flow that still comes starts its evidence anew.
    pub fn forget_closed(&mut self, before_ns: u64) -> usize {
        let n = self.flows.len();
        self.flows.retain(|_, f| {
            f.state.is_some()
                || f.current.is_some()
                || f.regaining.is_some()
                || f.last_ns >= before_ns
        });
        if self.flows.len() < n {
            let flows = &self.flows;
            self.ends.retain(|_, key| flows.contains_key(key));
        }
        n - self.flows.len()
    }

    /// The episodes complete so far (ended, and their window back or no
    /// longer awaited), in the order they completed: a caller that takes
    /// them as it goes keeps memory to its flows'.
    pub fn take(&mut self) -> impl Iterator<Item = Episode> + '_ {
        self.done.drain(..).map(|e| *e)
    }

    /// The rest: those still in progress ended (censored) where their
    /// boot's recordings end (`end_of`), and those awaiting their window,
    /// in order of their start.
    pub fn finish(mut self, end_of: &dyn Fn(u32) -> u64) -> Vec<Episode> {
        let mut rest = std::mem::take(&mut self.done);
        for (key, flow) in self.flows.iter_mut() {
            end(flow, &mut rest, end_of(key.boot), End::Capture);
            rest.extend(flow.regaining.take());
        }
        rest.sort_by_key(|e| (e.start_ns, e.key));
        rest.into_iter().map(|e| *e).collect()
    }
}

/// Ends `flow`'s episode (if it is in one) at `t_ns`, into `done`.
#[allow(clippy::vec_box)]
fn end(flow: &mut Flow, done: &mut Vec<Box<Episode>>, t_ns: u64, how: End) {
    let Some(mut ep) = flow.current.take() else {
        return;
    };
    // A close or the recording's end: the state it was in lasted until then.
    if how != End::Open {
        let last = flow.state.unwrap_or(CaState::Open);
        ep.state_ns[last.index()] += t_ns.saturating_sub(flow.since_ns);
    }
    ep.end_ktime_ns = (t_ns + ep.start_ktime_ns).saturating_sub(ep.start_ns);
    ep.end_ns = t_ns;
    ep.end = how;
    ep.retransmits = std::mem::take(&mut flow.retransmits);
    ep.drops = std::mem::take(&mut flow.drops);
    ep.cause = Cause::of(&ep);
    flow.last_ce = flow.last_ce.saturating_add(ep.ce_marks);
    flow.last_dsack = flow.last_dsack.saturating_add(ep.dsacks);
    if how == End::Open && ep.cwnd_end < ep.cwnd_before {
        done.extend(flow.regaining.replace(ep));
    } else {
        if how == End::Open {
            ep.regained_ns = Some(0);
        }
        done.push(ep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Detail, FlowAddr, TcpState, NO_SSTHRESH};
    use std::net::{IpAddr, Ipv4Addr};

    const MS: u64 = 1_000_000;

    fn row(cookie: u64, change: Change, set: impl FnOnce(&mut Detail)) -> Event {
        let mut detail = Detail {
            snd_cwnd: 20,
            snd_ssthresh: u32::MAX,
            srtt_us: 100,
            ..Detail::default()
        };
        set(&mut detail);
        Event {
            ktime_ns: 0,
            flow: cookie,
            addr: FlowAddr {
                family: 4,
                saddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                sport: 40000,
                daddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                dport: 5201,
                owner: Default::default(),
                netns: 0,
                cc: Default::default(),
            },
            change,
            detail,
        }
    }

    fn ca(old: CaState, new: CaState) -> Change {
        Change::Ca { old, new }
    }

    fn resent(why: Resend) -> Change {
        Change::Retransmit {
            ca: CaState::Open,
            why,
        }
    }

    /// Rows as (ms, event) of flow 1, then the capture's end.
    fn run(rows: Vec<(u64, Event)>, end_ms: u64) -> Vec<Episode> {
        let mut e = Episodes::default();
        for (t, ev) in rows {
            e.push(
                t * MS,
                FlowKey {
                    boot: 0,
                    cookie: ev.flow,
                },
                &ev,
            );
        }
        e.finish(&|_| end_ms * MS)
    }

    use CaState::{Cwr, Disorder, Loss, Open, Recovery};

    /// A capture that runs for days keeps the flows alive, not every flow
    /// it saw, and an episode in progress is never forgotten.
    #[test]
    fn closed_flows_are_forgotten_once_their_episodes_are_out() {
        let key = |cookie| FlowKey { boot: 0, cookie };
        let close = Change::Tcp {
            old: TcpState(1),
            new: TcpState::CLOSE,
        };
        let drop = Change::Drop {
            rx: false,
            reason: SymbolName::from_str_lossy("tcp_old_data"),
        };
        let mut e = Episodes::default();
        let mut push = |ms, cookie, change| {
            let mut r = row(cookie, change, |_| {});
            r.addr.sport = 40000 + cookie as u16;
            e.push(ms * MS, key(cookie), &r);
        };
        push(10, 1, ca(Open, Recovery));
        push(20, 1, close);
        push(30, 2, ca(Open, Loss));
        push(40, 3, drop);
        push(50, 4, ca(Open, Disorder));
        push(60, 4, ca(Disorder, Open));
        assert_eq!(e.forget_closed(40 * MS), 1, "flow 1 only");
        assert_eq!(e.forget_closed(100 * MS), 1, "flow 3's drop");
        assert_eq!(e.take().count(), 2);
        assert_eq!(e.flows.len(), 2, "flow 2 in loss, flow 4 in open");
        assert_eq!(e.ends.len(), 2);
    }

    #[test]
    fn a_recovery_after_a_local_drop_costs_and_is_regained() {
        let eps = run(
            vec![
                (
                    5,
                    row(
                        1,
                        Change::Drop {
                            rx: true,
                            reason: SymbolName::from_str_lossy("netfilter_drop"),
                        },
                        |d| d.snd_cwnd = 0,
                    ),
                ),
                (10, row(1, ca(Open, Disorder), |_| {})),
                (12, row(1, ca(Disorder, Recovery), |d| d.snd_ssthresh = 14)),
                (20, row(1, resent(Resend::Fast), |d| d.segs = 2)),
                (
                    30,
                    row(1, ca(Recovery, Open), |d| {
                        d.snd_cwnd = 14;
                        d.snd_ssthresh = 14;
                        d.srtt_us = 300;
                    }),
                ),
                (50, row(1, ca(Open, Disorder), |_| {})),
                (51, row(1, ca(Disorder, Open), |_| {})),
            ],
            100,
        );
        assert_eq!(eps.len(), 2);
        let e = &eps[0];
        assert_eq!((e.start_ns, e.end_ns, e.end), (10 * MS, 30 * MS, End::Open));
        assert_eq!(e.states, [Disorder, Recovery]);
        assert_eq!(e.state_ns, [0, 2 * MS, 0, 18 * MS, 0]);
        assert_eq!((e.cwnd_before, e.ssthresh, e.cwnd_end), (20, 14, 14));
        assert_eq!(e.reduction(), Some(0.7));
        assert_eq!(e.regained_ns, Some(20 * MS));
        assert_eq!((e.srtt_entry_us, e.srtt_max_us), (100, 300));
        assert_eq!(e.retransmits[Resend::Fast as usize], 2);
        assert_eq!(e.drops.len(), 1);
        assert_eq!((e.drops[0].rx, e.drops[0].count), (true, 1));
        assert_eq!(e.cause.label(), "local-drop:netfilter_drop");
        assert_eq!(e.worst(), Recovery);
        assert!(!e.broken);
        // The evidence was the first's: the second is reordering alone.
        assert_eq!(eps[1].cause, Cause::Reordering);
        assert_eq!(eps[1].regained_ns, Some(0));
        // Disorder only sets no threshold: no reduction, not one to zero.
        assert_eq!((eps[1].ssthresh, eps[1].reduction()), (0, None));
        // Nor does a threshold still the kernel's infinite one (BBR's in
        // startup): not a window 100 million times larger.
        let bbr = run(
            vec![
                (
                    1,
                    row(1, ca(Open, Recovery), |d| d.snd_ssthresh = NO_SSTHRESH),
                ),
                (2, row(1, ca(Recovery, Open), |_| {})),
            ],
            100,
        );
        assert_eq!((bbr[0].ssthresh, bbr[0].reduction()), (NO_SSTHRESH, None));
    }

    #[test]
    fn causes_follow_the_first_rule_their_evidence_earns() {
        let cause = |rows: Vec<(u64, Event)>| run(rows, 100)[0].cause.label();
        // CE marks counted by the transition into cwr, nothing resent.
        assert_eq!(
            cause(vec![
                (1, row(1, ca(Open, Open), |d| d.delivered_ce = 4)),
                (2, row(1, ca(Open, Cwr), |d| d.delivered_ce = 7)),
                (3, row(1, ca(Cwr, Open), |d| d.delivered_ce = 7)),
            ]),
            "ecn"
        );
        // Undone: spurious, whatever was resent.
        assert_eq!(
            cause(vec![
                (1, row(1, ca(Open, Recovery), |_| {})),
                (2, row(1, resent(Resend::Fast), |_| {})),
                (3, row(1, ca(Recovery, Open), |d| d.undo = 1)),
            ]),
            "spurious"
        );
        assert_eq!(
            cause(vec![
                (1, row(1, ca(Open, Loss), |_| {})),
                (1, row(1, resent(Resend::Rto), |_| {})),
                (2, row(1, resent(Resend::Tlp), |_| {})),
                (3, row(1, ca(Loss, Open), |_| {})),
            ]),
            "timeout"
        );
        // A probe sent in open, which the window's cut follows.
        assert_eq!(
            cause(vec![
                (1, row(1, resent(Resend::Tlp), |_| {})),
                (2, row(1, ca(Open, Cwr), |_| {})),
                (3, row(1, ca(Cwr, Open), |_| {})),
            ]),
            "tail-loss"
        );
        assert_eq!(
            cause(vec![
                (1, row(1, ca(Open, Recovery), |_| {})),
                (2, row(1, resent(Resend::Fast), |_| {})),
                (3, row(1, ca(Recovery, Open), |_| {})),
            ]),
            "remote-loss"
        );
        assert_eq!(
            cause(vec![
                (1, row(1, ca(Open, Cwr), |_| {})),
                (3, row(1, ca(Cwr, Open), |_| {})),
            ]),
            "unknown"
        );
        // A named reason before the kernel's vague one, however many; and
        // copies of what the receiver had lose nothing.
        let dropped = |reason: &str, segs: u32| {
            row(
                1,
                Change::Drop {
                    rx: false,
                    reason: SymbolName::from_str_lossy(reason),
                },
                |d| {
                    d.snd_cwnd = 0;
                    d.segs = segs;
                },
            )
        };
        assert_eq!(
            cause(vec![
                (1, dropped("not_specified", 3)),
                (1, dropped("qdisc_drop", 1)),
                (2, row(1, ca(Open, Recovery), |_| {})),
                (3, row(1, ca(Recovery, Open), |_| {})),
            ]),
            "local-drop:qdisc_drop"
        );
        assert_eq!(
            cause(vec![
                (1, dropped("tcp_old_data", 1)),
                (2, row(1, ca(Open, Recovery), |_| {})),
                (2, row(1, resent(Resend::Fast), |_| {})),
                (3, row(1, ca(Recovery, Open), |_| {})),
            ]),
            "remote-loss"
        );
    }

    /// A break that found the flow back in open ended its episode, at an
    /// unknown time: the next starts there.
    #[test]
    fn a_break_back_in_open_ends_the_episode() {
        let eps = run(
            vec![
                (1, row(1, ca(Open, Recovery), |_| {})),
                (4, row(1, ca(Open, Recovery), |d| d.kernel_gap = 1)),
                (6, row(1, ca(Recovery, Open), |_| {})),
            ],
            10,
        );
        assert_eq!(eps.len(), 2);
        assert!(eps[0].broken && eps[0].end == End::Open);
        assert_eq!(eps[0].state_ns, [0; 5]);
        assert_eq!(
            (eps[1].start_ns, eps[1].state_ns[Recovery.index()]),
            (4 * MS, 2 * MS)
        );
        assert!(!eps[1].broken);
    }

    #[test]
    fn an_episode_that_does_not_come_back_is_censored() {
        let close = Change::Tcp {
            old: TcpState::ESTABLISHED,
            new: TcpState::CLOSE,
        };
        let eps = run(
            vec![
                (1, row(1, ca(Open, Loss), |_| {})),
                (4, row(1, close, |_| {})),
                (5, row(2, ca(Open, Recovery), |d| d.snd_cwnd = 30)),
                // A transition the kernel made without an event.
                (7, row(2, ca(Disorder, Recovery), |d| d.kernel_gap = 1)),
            ],
            10,
        );
        assert_eq!((eps[0].end, eps[0].end_ns), (End::Close, 4 * MS));
        assert_eq!(eps[0].state_ns[Loss.index()], 3 * MS);
        assert!(!eps[0].broken);
        assert_eq!((eps[1].end, eps[1].end_ns), (End::Capture, 10 * MS));
        // The span before the break is no state's.
        assert_eq!(eps[1].state_ns[Recovery.index()], 3 * MS);
        assert!(eps[1].broken);
        assert_eq!(eps[1].regained_ns, None);
    }
}
