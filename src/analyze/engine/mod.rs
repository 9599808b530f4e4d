//! The analysis engine: per-flow congestion-state transitions in, per-window
//! dwell times, change counts and log2 histograms out.
//!
//! It is pure (no I/O, no clock, no formatting) so that `analyze` replaying a
//! recording and the live tool share one arithmetic, and so that every rule
//! of the schema's semantics (schemas/events-v1.md) can be pinned by tests
//! on hand-built event sequences.
//!
//! Memory grows with the number of flows and of windows not yet handed out,
//! never with the number of events: each flow keeps only the state it is in
//! and since when, and each window only one accumulator per flow it touched.
//!
//! A socket's timeline never starts before its birth: a lifecycle event
//! that shows it being created (`syn_sent` for an active open, `syn_recv`
//! for a passive child) before its first other event bounds its head, and
//! an `established` with no birth seen bounds it there. Nothing before is
//! credited, so a client whose SYNs were retransmitted (`open -> loss` in
//! `syn_sent`) is timed from its connect, not from the capture's start.
//!
//! Rules the spec leaves open, as decided here:
//! * A `close` ends a flow's timeline; a later event of the same cookie (a
//!   socket reconnected after `close`) starts a new timeline on the same row
//!   key. That new timeline gets no head period: the socket is known to have
//!   been closed, not in some congestion state, before it.
//! * Changes, mismatches and histogram samples count only when their time is
//!   in `[start_ns, until_ns)`, in the window containing that time. A sample
//!   is the whole dwell period, even if it began before `start_ns` (its start
//!   was observed, so its length is known).
//! * A pending head is also credited at a mismatch (it is what was known
//!   before the first event, not part of the unknown span) and at a drain,
//!   so a passive child whose `established` arrives after a drain keeps the
//!   head that was credited already.
//! * Several captures (offline): a flow is timed only inside the captures it
//!   was seen in (see [`Engine::set_span`]); time between captures, when
//!   nothing was recorded, is never credited.
//! * An interval of 0 means no windowing (one window), rather than a
//!   division by zero.
//! * With an interval, a flow is timed from the window it is first seen in
//!   (its first event other than a birth), as a live run must: before
//!   that it had no row to print (an active socket's port is bound after its
//!   `syn_sent`). So a head, or the time since a birth, starts no earlier
//!   than that window's start. Without an interval this changes nothing.
//! * Interval boundaries: what is known of a period in progress when a
//!   window ends is credited up to that boundary, live (where the window is
//!   printed then) and offline alike, so that both give the same windows.
//!   "Known" is what the accounting mode credits before the period ends: in
//!   Full accounting every period (and a pending head, which is then kept
//!   even if a later `established` would have discarded it); in Between
//!   accounting a period since the clock started (the timeline's first
//!   event). So a period that
//!   ends without a change (a mismatch; in Between accounting also a close
//!   or the capture's end) keeps what it got up to the last boundary it
//!   crossed; without an interval there are no boundaries.

pub mod durations;
pub mod episodes;
pub mod sharded;

use std::collections::btree_map::Entry;
use std::collections::hash_map::Entry as HashEntry;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use crate::event::{CaState, Change, FlowAddr, FlowKey, KernelName, Owner, Span, TcpState};
use crate::time::local_offset_ns;

/// How much of a flow's life is timed (`--accounting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accounting {
    /// Also the time before the first event and after the last one.
    Full,
    /// Only time between two observed transitions (the seed's arithmetic).
    Between,
}

/// The unit histogram samples are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Millis,
    Micros,
}

impl Unit {
    /// Nanoseconds per unit.
    pub fn ns(self) -> u64 {
        match self {
            Unit::Millis => 1_000_000,
            Unit::Micros => 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    pub accounting: Accounting,
    /// Were `tcp_state` events recorded.
    pub lifecycle: bool,
    /// Capture (or `--since`) start, wall-clock ns since the epoch.
    pub start_ns: u64,
    /// `--until`: nothing is credited at or after this.
    pub until_ns: Option<u64>,
    /// Window length; `None` (or 0) is one window covering everything.
    pub interval_ns: Option<u64>,
    /// Window boundaries at whole multiples of the interval of the local
    /// clock (10:00:05, 10:00:10 for 5 s) instead of from `start_ns`: the
    /// first window is then shorter.
    pub align: bool,
    pub hist_unit: Unit,
}

/// Number of log2 slots: slot 64 holds values from 2^63 up.
const SLOTS: usize = 64;

/// A log2 histogram as BCC's `print_log2_hist` reads it: slot 1 holds 0 and
/// 1, slot i > 1 holds `[2^(i-1), 2^i - 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log2Hist {
    counts: [u64; SLOTS],
}

impl Default for Log2Hist {
    fn default() -> Self {
        Log2Hist { counts: [0; SLOTS] }
    }
}

impl Log2Hist {
    /// The slot a value belongs to, 1..=64.
    pub fn slot_of(v: u64) -> usize {
        if v <= 1 {
            1
        } else {
            (u64::BITS - v.leading_zeros()) as usize
        }
    }

    pub fn add(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(Self::slot_of(v) - 1) {
            *c = c.saturating_add(1);
        }
    }

    pub fn merge(&mut self, other: &Log2Hist) {
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c = c.saturating_add(*o);
        }
    }

    /// The count in `slot` (1..=64); 0 outside that range.
    pub fn count(&self, slot: usize) -> u64 {
        slot.checked_sub(1)
            .and_then(|i| self.counts.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The highest slot with a sample, `None` when empty.
    pub fn max_slot(&self) -> Option<usize> {
        self.counts.iter().rposition(|&c| c > 0).map(|i| i + 1)
    }
}

/// One flow's totals in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub key: FlowKey,
    pub addr: FlowAddr,
    /// Nanoseconds per state, indexed by `CaState::index()`.
    pub ns: [u64; 5],
    pub changes: u64,
    /// Events whose `old` was not the state the flow was in (lost events).
    pub mismatches: u64,
    /// The first and last instants of the window the flow was in recovery
    /// or loss (credited time there), if it was.
    pub trouble: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowReport {
    pub index: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Sorted by local port, then saddr, daddr, dport, key.
    pub rows: Vec<FlowRow>,
    /// Indexed by `CaState::index()`.
    pub hist: [Log2Hist; 5],
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The windows not handed out by `drain_until`, oldest first.
    pub windows: Vec<WindowReport>,
    pub mismatches: u64,
    /// Credited time that fell in an already drained window.
    pub late_ns: u64,
    /// Changes, mismatches and histogram samples that fell in an already
    /// drained window (so are missing from its report).
    pub late_events: u64,
    /// Time credited to some state, in all windows (also those handed out
    /// by `drain_until`).
    pub credited_ns: u64,
    /// Time credited to no state: the spans before chain breaks.
    pub uncredited_ns: u64,
    /// The windows would not fit [`Engine::with_budget`]'s memory: the
    /// summary is incomplete (windows are left out) and must not be shown.
    pub over_budget: bool,
    /// Distinct flows seen (a listening socket's close, a flow's events
    /// before the span, included).
    pub flows: u64,
}

#[derive(Debug, Default)]
struct RowAcc {
    ns: [u64; 5],
    changes: u64,
    mismatches: u64,
    trouble: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct WinAcc {
    rows: HashMap<FlowKey, RowAcc>,
    hist: [Log2Hist; 5],
}

/// Time spent before a flow's first event, held back because a later
/// `established` can still show that the socket did not exist then.
#[derive(Debug, Clone, Copy)]
struct Head {
    state: CaState,
    from: u64,
    to: u64,
}

#[derive(Debug)]
struct Flow {
    addr: FlowAddr,
    /// `None` before the first timed event and again after `close`.
    cur: Option<CaState>,
    /// When the current dwell period began (the histogram sample's start).
    period_start: u64,
    /// The period began at a seen transition, so its length is a sample.
    observed: bool,
    /// The current period is credited up to here (live draining moves it).
    credited_to: u64,
    head: Option<Head>,
    /// Closed at least once: its time before a new first event is not a head.
    reused: bool,
    /// When the socket was born (`syn_sent`, `syn_recv`, or an
    /// `established` with no earlier birth), in its current capture.
    born: Option<u64>,
    /// The capture (index into the ledger's spans) of its latest event.
    span: Option<usize>,
    /// When its timeline last closed (its `close`), while it stays closed.
    closed_at: Option<u64>,
    /// When its owner became known, if after its first event: windows
    /// that end before then name no owner, live (where they are printed
    /// before it is known) and offline alike.
    owner_from: u64,
    /// Its congestion control is that of a congestion-state event (or
    /// snapshot): a program sets its own after connect or accept, so the
    /// handshake's rows can name the system's default (and a passive
    /// socket's first congestion-state event, its listener's: its close
    /// names it again).
    cc_seen: bool,
    /// The congestion controls it was labelled with before, each with when
    /// the next took over: windows that end before then keep the one they
    /// had (as a live run printed them), offline alike.
    cc_before: Vec<(u64, KernelName)>,
}

/// Whether a congestion-state row names the congestion control in charge
/// of its flow: a transition, or a snapshot (`observed`). Not a passive
/// socket's `open -> open` at its birth, which is its listener's, before
/// the program that accepts it sets its own.
fn takes_cc(change: Change, observed: bool) -> bool {
    matches!(change, Change::Ca { old, new } if old != new || observed)
}

impl Flow {
    /// An event at `t_ns` may name the owner not known before.
    fn learn_owner(&mut self, t_ns: u64, addr: impl FnOnce() -> FlowAddr) {
        self.learn(t_ns, false, addr);
    }

    /// Whether `change` names the congestion control in charge of the
    /// flow: its first congestion-state event, and its close.
    fn names_cc(&self, change: Change, observed: bool) -> bool {
        match change {
            Change::Ca { .. } => !self.cc_seen && takes_cc(change, observed),
            Change::Tcp { new, .. } => new == TcpState::CLOSE,
            _ => false,
        }
    }

    /// As [`Flow::learn_owner`], and the congestion control too if `cc`.
    fn learn(&mut self, t_ns: u64, cc: bool, addr: impl FnOnce() -> FlowAddr) {
        if self.addr.owner.pid != 0 && !cc {
            return;
        }
        let a = addr();
        if self.addr.owner.pid == 0 && a.owner.pid != 0 {
            self.addr.owner = a.owner;
            self.owner_from = t_ns;
        }
        if cc {
            self.cc_seen = true;
            if !a.cc.as_str().is_empty() && a.cc != self.addr.cc {
                self.cc_before.push((t_ns, self.addr.cc));
                self.addr.cc = a.cc;
            }
        }
    }

    fn label_until(&self, end_ns: u64) -> FlowAddr {
        let mut a = self.addr.clone();
        if self.owner_from >= end_ns {
            a.owner = Owner {
                cgroup: a.owner.cgroup,
                ..Owner::default()
            };
        }
        // The first that took over at or after the end: the one before it.
        if let Some(&(_, cc)) = self.cc_before.iter().find(|(from, _)| *from >= end_ns) {
            a.cc = cc;
        }
        a
    }

    fn new(addr: FlowAddr) -> Flow {
        Flow {
            addr,
            owner_from: 0,
            cc_seen: false,
            cc_before: Vec::new(),
            closed_at: None,
            cur: None,
            period_start: 0,
            observed: false,
            credited_to: 0,
            head: None,
            reused: false,
            born: None,
            span: None,
        }
    }

    /// Credits what the accounting mode knows of the period in progress up
    /// to the window boundary `to` (see the module doc).
    fn catch_up(&mut self, key: FlowKey, to: u64, led: &mut Ledger) {
        match led.cfg.accounting {
            Accounting::Full => self.credit_open(key, to, true, led),
            // The clock runs from a timeline's first event on.
            Accounting::Between => {
                if let Some(s) = self.cur {
                    led.credit(key, s, self.credited_to, to);
                    self.credited_to = self.credited_to.max(to);
                }
            }
        }
    }

    fn begin(&mut self, state: CaState, t: u64, observed: bool) {
        self.cur = Some(state);
        self.period_start = t;
        self.observed = observed;
        // A drain may already have credited past an event that arrived late;
        // never credit that stretch twice.
        self.credited_to = self.credited_to.max(t);
    }

    fn settle_head(&mut self, key: FlowKey, led: &mut Ledger) {
        if let Some(h) = self.head.take() {
            led.credit(key, h.state, h.from, h.to);
        }
    }

    fn on_ca(&mut self, key: FlowKey, t: u64, old: CaState, new: CaState, led: &mut Ledger) {
        let full = led.cfg.accounting == Accounting::Full;
        match self.cur {
            None => {
                // Not before the window it is first seen in (see the
                // module doc).
                let seen = led.window_start(led.index(t.max(led.cfg.start_ns)));
                match self.born {
                    // In `new` since its birth (a passive child's open ->
                    // open): one period, seen from its start.
                    Some(b) if full && new == old => self.begin(new, b.max(seen), b >= seen),
                    born => {
                        if full && !self.reused {
                            let from = born.unwrap_or_else(|| led.span_start(key.boot));
                            self.head = Some(Head {
                                state: old,
                                from: from.max(seen),
                                to: t,
                            });
                        }
                        self.begin(new, t, new != old);
                    }
                }
                // As BCC, Between accounting's first event of a timeline
                // only starts the clock.
                if new != old {
                    if let (Some(b), true) = (self.born, full) {
                        // Born in `old`: that period's start was seen (in
                        // the window it is first seen in).
                        if b >= seen {
                            led.sample(t, old, t.saturating_sub(b));
                        }
                    }
                    self.settle_head(key, led);
                    if full {
                        led.count_change(key, t);
                    }
                }
            }
            Some(s) if old != s => {
                // The path from `s` to `old` is unknown: the span since the
                // period began is credited to nobody.
                let lost = t
                    .min(led.until)
                    .saturating_sub(self.credited_to.max(led.cfg.start_ns));
                led.uncredited_ns = led.uncredited_ns.saturating_add(lost);
                led.count_mismatch(key, t);
                self.settle_head(key, led);
                self.begin(new, t, new != old);
                if new != old {
                    led.count_change(key, t);
                }
            }
            Some(s) if new == s => {}
            Some(s) => {
                self.settle_head(key, led);
                led.credit(key, s, self.credited_to, t);
                if self.observed {
                    led.sample(t, s, t.saturating_sub(self.period_start));
                }
                self.begin(new, t, true);
                led.count_change(key, t);
            }
        }
    }

    fn on_established(&mut self, t: u64, led: &Ledger) {
        match (self.cur, self.born) {
            // In Open since its birth (a new socket's state, not before the
            // window it is first seen in), or since now.
            (None, born) => {
                let seen = led.window_start(led.index(t.max(led.cfg.start_ns)));
                let from = born.map_or(t, |b| b.max(seen));
                self.begin(CaState::Open, from, born.is_none_or(|b| b >= seen));
            }
            // Born before its first event: the head was bounded already.
            (Some(_), Some(_)) => {}
            (Some(s), None) => {
                // A passive child reports `open -> open` just before it is
                // established: it did not exist before, so no head.
                if self.head.take().is_some() {
                    self.begin(s, t, true);
                }
            }
        }
        self.born.get_or_insert(t);
    }

    fn on_close(&mut self, key: FlowKey, t: u64, led: &mut Ledger) {
        if led.cfg.accounting == Accounting::Full {
            self.settle_head(key, led);
            if let Some(s) = self.cur {
                led.credit(key, s, self.credited_to, t);
            }
        }
        self.cur = None;
        self.head = None;
        self.reused = true;
        self.born = None;
        self.closed_at = Some(t);
    }

    /// The flow's events now come from another capture than its last ones.
    /// Nothing was recorded in between, so its timeline ends as at that
    /// capture's end and starts again as if first seen in the new one.
    fn enter_span(&mut self, key: FlowKey, span: usize, led: &mut Ledger) {
        if let Some(prev) = self.span {
            let (end, tail) = led.tail(Some(prev), u64::MAX);
            if let Some(b) = led.boundary_at(end) {
                self.catch_up(key, b, led);
            }
            if led.cfg.accounting == Accounting::Full {
                self.credit_open(key, end, tail, led);
            }
            self.cur = None;
            self.head = None;
            self.born = None;
            // Named again by the new capture's rows.
            self.cc_seen = false;
        }
        self.span = Some(span);
    }

    /// Credits what Full accounting knows up to `to` without ending the
    /// period: the head, and the current state if `tail`.
    fn credit_open(&mut self, key: FlowKey, to: u64, tail: bool, led: &mut Ledger) {
        self.settle_head(key, led);
        if let (true, Some(s)) = (tail, self.cur) {
            led.credit(key, s, self.credited_to, to);
            self.credited_to = self.credited_to.max(to);
        }
    }
}

/// Everything but the flows: configuration, window accumulators, totals.
#[derive(Debug)]
struct Ledger {
    cfg: EngineConfig,
    until: u64,
    interval: Option<u64>,
    /// Where window 0 would start if it were whole: `start_ns`, or the
    /// round clock time before it with `align`.
    origin: u64,
    /// Windows below this index were handed out by `drain_until`.
    first_open: u64,
    windows: BTreeMap<u64, WinAcc>,
    mismatches: u64,
    late_ns: u64,
    late_events: u64,
    /// Every capture announced by `set_span` (offline only), all boots.
    spans: Vec<Span>,
    /// Per boot, the index of the span its events come from now.
    current: HashMap<u32, usize>,
    /// Every stretch credited, when asked for (see [`Engine::log_credits`]).
    log: Option<Vec<Credit>>,
    /// Rows in `windows`, and the bytes windows and rows may take: a
    /// recording that claims a long span (or a tiny interval) would
    /// otherwise make every window of it, for every flow alive, in memory.
    held_rows: u64,
    budget: u64,
    over_budget: bool,
    /// See [`Summary::credited_ns`] and [`Summary::uncredited_ns`].
    credited_ns: u64,
    uncredited_ns: u64,
}

/// What a window and a row held cost, counted generously: the accumulator
/// and the report built from it, with their maps' and vectors' slack.
const WINDOW_BYTES: u64 = (size_of::<WinAcc>() + size_of::<WindowReport>() + 64) as u64;
const ROW_BYTES: u64 = 2 * (size_of::<(FlowKey, RowAcc)>() + size_of::<FlowRow>()) as u64;

/// What a [`Ledger`] may still hold: its rows, its budget, and whether it
/// went over.
struct Budget<'a> {
    rows: u64,
    bytes: u64,
    over: &'a mut bool,
}

/// Window `k` of `windows` (created if it fits `budget`), and how many
/// windows are held with it; `None` once drained (before `first_open`) or
/// over the budget. Apart from [`Ledger`] so that a caller may hold other
/// fields of it meanwhile.
fn window_in<'w>(
    windows: &'w mut BTreeMap<u64, WinAcc>,
    k: u64,
    first_open: u64,
    budget: Budget<'_>,
) -> Option<(&'w mut WinAcc, u64)> {
    if k < first_open || *budget.over {
        return None;
    }
    let held = windows.len() as u64;
    match windows.entry(k) {
        Entry::Occupied(w) => Some((w.into_mut(), held)),
        Entry::Vacant(_) if over(held + 1, budget.rows, budget.bytes) => {
            *budget.over = true;
            None
        }
        Entry::Vacant(w) => Some((w.insert(WinAcc::default()), held + 1)),
    }
}

/// Whether `windows` windows and `rows` rows take more than `budget`.
fn over(windows: u64, rows: u64, budget: u64) -> bool {
    let bytes = windows
        .saturating_mul(WINDOW_BYTES)
        .saturating_add(rows.saturating_mul(ROW_BYTES));
    bytes > budget
}

/// The memory an engine's windows may take unless told otherwise.
pub const WINDOWS_BUDGET: u64 = 1 << 30;

impl Ledger {
    /// Whether `windows` and `rows` more fit the budget; once one did not,
    /// nothing more is held (the summary says so).
    fn fits(&mut self, windows: u64, rows: u64) -> bool {
        let held = self.windows.len() as u64;
        self.over_budget |= over(held + windows, self.held_rows + rows, self.budget);
        !self.over_budget
    }

    fn span_start(&self, boot: u32) -> u64 {
        self.current
            .get(&boot)
            .and_then(|&i| self.spans.get(i))
            .map_or(self.cfg.start_ns, |s| s.start_ns)
    }

    /// Where a flow's tail ends and whether it has one: its own capture's
    /// end and lifecycle (live mode has no spans: the engine's).
    fn tail(&self, span: Option<usize>, end_ns: u64) -> (u64, bool) {
        span.and_then(|i| self.spans.get(i))
            .map_or((end_ns, self.cfg.lifecycle), |s| {
                (s.end_ns.min(end_ns), s.lifecycle)
            })
    }

    fn in_range(&self, t: u64) -> bool {
        t >= self.cfg.start_ns && t < self.until
    }

    /// The window holding `t`; `t` must not be before `start_ns`.
    fn index(&self, t: u64) -> u64 {
        match self.interval {
            Some(iv) => t.saturating_sub(self.origin) / iv,
            None => 0,
        }
    }

    /// The last window boundary at or before `t`, if there is one after
    /// the start (with an interval).
    fn boundary_at(&self, t: u64) -> Option<u64> {
        self.interval?;
        let k = self.index(t.max(self.cfg.start_ns));
        (k > 0).then(|| self.window_start(k))
    }

    fn window_start(&self, k: u64) -> u64 {
        match self.interval {
            Some(iv) => self
                .origin
                .saturating_add(k.saturating_mul(iv))
                .max(self.cfg.start_ns),
            None => self.cfg.start_ns,
        }
    }

    fn nominal_end(&self, k: u64) -> u64 {
        match self.interval {
            Some(_) => self.window_start(k.saturating_add(1)),
            None => u64::MAX,
        }
    }

    /// The accumulator of window `k`, or `None` once it has been drained
    /// (or past the budget).
    fn window(&mut self, k: u64) -> Option<&mut WinAcc> {
        let budget = Budget {
            rows: self.held_rows,
            bytes: self.budget,
            over: &mut self.over_budget,
        };
        window_in(&mut self.windows, k, self.first_open, budget).map(|(w, _)| w)
    }

    /// The row of `key` in window `k`, as [`Ledger::window`]. Every credit
    /// comes here: one lookup in each map.
    fn row_in(&mut self, k: u64, key: FlowKey) -> Option<&mut RowAcc> {
        let (rows, bytes) = (self.held_rows, self.budget);
        let budget = Budget {
            rows,
            bytes,
            over: &mut self.over_budget,
        };
        let (w, held) = window_in(&mut self.windows, k, self.first_open, budget)?;
        match w.rows.entry(key) {
            HashEntry::Occupied(r) => Some(r.into_mut()),
            HashEntry::Vacant(_) if over(held, rows + 1, bytes) => {
                self.over_budget = true;
                None
            }
            HashEntry::Vacant(r) => {
                self.held_rows += 1;
                Some(r.insert(RowAcc::default()))
            }
        }
    }

    fn row(&mut self, key: FlowKey, t: u64) -> Option<&mut RowAcc> {
        self.row_in(self.index(t), key)
    }

    /// Credits `[from, to)` in `state`, clipped to the analysed range and
    /// split at window boundaries.
    fn credit(&mut self, key: FlowKey, state: CaState, from: u64, to: u64) {
        let mut a = from.max(self.cfg.start_ns);
        let to = to.min(self.until);
        while a < to {
            let k = self.index(a);
            let b = self.nominal_end(k).min(to);
            let part = b - a;
            match self.row_in(k, key) {
                Some(r) => {
                    let ns = &mut r.ns[state.index()];
                    *ns = ns.saturating_add(part);
                    if matches!(state, CaState::Recovery | CaState::Loss) {
                        let (first, last) = r.trouble.get_or_insert((a, b));
                        *first = (*first).min(a);
                        *last = (*last).max(b);
                    }
                    self.credited_ns = self.credited_ns.saturating_add(part);
                    if let Some(log) = &mut self.log {
                        log.push(Credit {
                            key,
                            state,
                            from: a,
                            to: b,
                        });
                    }
                }
                None => self.late_ns = self.late_ns.saturating_add(part),
            }
            a = b;
        }
    }

    fn count_change(&mut self, key: FlowKey, t: u64) {
        if !self.in_range(t) {
            return;
        }
        match self.row(key, t) {
            Some(r) => r.changes += 1,
            None => self.late_events += 1,
        }
    }

    fn count_mismatch(&mut self, key: FlowKey, t: u64) {
        if !self.in_range(t) {
            return;
        }
        self.mismatches += 1;
        match self.row(key, t) {
            Some(r) => r.mismatches += 1,
            None => self.late_events += 1,
        }
    }

    fn sample(&mut self, t: u64, state: CaState, ns: u64) {
        if !self.in_range(t) {
            return;
        }
        let v = ns / self.cfg.hist_unit.ns();
        let k = self.index(t);
        match self.window(k) {
            Some(w) => w.hist[state.index()].add(v),
            None => self.late_events += 1,
        }
    }
}

/// A stretch of a flow's time credited to a state: the pieces of a
/// window's row, for drawing it. A flow's credits in a window add up to
/// its row there, state by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    pub key: FlowKey,
    pub state: CaState,
    pub from: u64,
    pub to: u64,
}

/// Turns events into window reports; see the module doc for the rules.
#[derive(Debug)]
pub struct Engine {
    flows: HashMap<FlowKey, Flow>,
    /// Births of sockets not seen otherwise yet (their label, port
    /// included, comes from their first other event), with the capture
    /// they were seen in.
    births: HashMap<FlowKey, (u64, Option<usize>)>,
    /// Flows ever seen, including those forgotten since.
    seen: u64,
    led: Ledger,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let until = cfg.until_ns.unwrap_or(u64::MAX);
        let interval = cfg.interval_ns.filter(|&iv| iv > 0);
        let origin = match interval {
            Some(iv) if cfg.align => {
                let local = i128::from(cfg.start_ns) + i128::from(local_offset_ns(cfg.start_ns));
                let into = u64::try_from(local.rem_euclid(i128::from(iv))).unwrap_or(0);
                cfg.start_ns - into.min(cfg.start_ns)
            }
            _ => cfg.start_ns,
        };
        Engine {
            flows: HashMap::default(),
            births: HashMap::default(),
            seen: 0,
            led: Ledger {
                cfg,
                until,
                interval,
                origin,
                first_open: 0,
                windows: BTreeMap::new(),
                mismatches: 0,
                late_ns: 0,
                late_events: 0,
                spans: Vec::new(),
                current: HashMap::default(),
                log: None,
                held_rows: 0,
                budget: WINDOWS_BUDGET,
                over_budget: false,
                credited_ns: 0,
                uncredited_ns: 0,
            },
        }
    }

    /// An engine whose windows may take `bytes` of memory (an estimate).
    pub fn with_budget(mut self, bytes: u64) -> Engine {
        self.led.budget = bytes;
        self
    }

    /// One event. `t_ns` is wall-clock ns. Events of one flow arrive in time
    /// order (ties keep arrival order); different flows may interleave
    /// arbitrarily. `addr` is called the first time a flow is seen, and
    /// again while its owner is not known.
    pub fn push(
        &mut self,
        t_ns: u64,
        key: FlowKey,
        change: Change,
        addr: impl FnOnce() -> FlowAddr,
    ) {
        // A snapshot is what Full accounting knows of a flow at an instant:
        // it reads as a self-transition into the state it found (which
        // starts a timeline where it is the flow's first row, and is a
        // mismatch where the flow was thought in another state), and the
        // flow is known to have been in that state up to it, even where
        // no tail follows its last event. Between accounting, as the seed,
        // times from events only, but a snapshot still names the owner
        // user space found for a flow (as it does in Full accounting).
        let (change, observed) = match change {
            Change::Snapshot { ca, .. } if self.led.cfg.accounting == Accounting::Full => {
                (Change::Ca { old: ca, new: ca }, true)
            }
            // Evidence moves no state: it only names the owner, as above.
            Change::Snapshot { .. }
            | Change::Retransmit { .. }
            | Change::Drop { .. }
            | Change::Reset { .. } => {
                if let Some(f) = self.flows.get_mut(&key) {
                    f.learn_owner(t_ns, addr);
                }
                return;
            }
            c => (c, false),
        };
        // Other TCP states do not move the arithmetic, and must not label a
        // flow: an active socket's `syn_sent` comes before its port is bound.
        // A birth is noted for the flow's first other event.
        if let Change::Tcp { new, .. } = change {
            if new == TcpState::SYN_SENT || new == TcpState::SYN_RECV {
                if !self.flows.contains_key(&key) {
                    let span = self.led.current.get(&key.boot).copied();
                    self.births.entry(key).or_insert((t_ns, span));
                }
                return;
            }
            if new != TcpState::ESTABLISHED && new != TcpState::CLOSE {
                // Still a sign of whose socket it is (a close that the
                // capture's end cut off leaves only fin_wait1).
                if let Some(f) = self.flows.get_mut(&key) {
                    f.learn_owner(t_ns, addr);
                }
                return;
            }
        }
        let now_span = self.led.current.get(&key.boot).copied();
        let flow = match self.flows.entry(key) {
            // An owner learnt later (an accept after the flow's first
            // events) labels the flow from then on.
            std::collections::hash_map::Entry::Occupied(o) => {
                let f = o.into_mut();
                let cc = f.names_cc(change, observed);
                f.learn(t_ns, cc, addr);
                f
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                self.seen += 1;
                let mut f = Flow::new(addr());
                f.cc_seen = takes_cc(change, observed);
                // Only a birth in the capture the flow is first timed in.
                f.born = self
                    .births
                    .remove(&key)
                    .filter(|&(_, span)| span == now_span)
                    .map(|(t, _)| t);
                v.insert(f)
            }
        };
        let led = &mut self.led;
        let full = led.cfg.accounting == Accounting::Full;
        if let Some(&now) = led.current.get(&key.boot) {
            if flow.span != Some(now) {
                flow.enter_span(key, now, led);
            }
        }
        // Window boundaries passed since the flow's last event get what a
        // live run credits when it prints those windows.
        if let Some(b) = led.boundary_at(t_ns.min(led.until)) {
            if flow.credited_to < b {
                flow.catch_up(key, b, led);
            }
        }
        // Any other event reopens it.
        flow.closed_at = None;
        match change {
            Change::Ca { old, new } => flow.on_ca(key, t_ns, old, new, led),
            Change::Tcp { new, .. } if new == TcpState::ESTABLISHED && full => {
                flow.on_established(t_ns, led)
            }
            Change::Tcp { new, .. } if new == TcpState::CLOSE => flow.on_close(key, t_ns, led),
            Change::Tcp { .. }
            | Change::Snapshot { .. }
            | Change::Retransmit { .. }
            | Change::Drop { .. }
            | Change::Reset { .. } => {}
        }
        if observed {
            flow.credit_open(key, t_ns.min(led.until), true, led);
        }
    }

    /// From now on, keep every stretch credited, for [`Engine::take_credits`]
    /// and [`Engine::finish_with_credits`] to hand out.
    pub fn log_credits(&mut self) {
        self.led.log.get_or_insert_with(Vec::new);
    }

    /// The stretches credited since the last call, in the order credited.
    pub fn take_credits(&mut self) -> Vec<Credit> {
        self.led
            .log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Offline, several captures: the events of `boot` pushed from now on
    /// come from `span`. A flow's timeline is bounded by the
    /// capture it was seen in: its head starts at that capture's start, its
    /// tail ends at the end of its last event's capture (and only if that
    /// capture recorded lifecycle events); a flow seen again in a later
    /// capture starts afresh there, so a gap between captures, when
    /// nothing was recorded, counts for nothing.
    pub fn set_span(&mut self, boot: u32, span: Span) {
        self.led.spans.push(span);
        self.led.current.insert(boot, self.led.spans.len() - 1);
    }

    /// Flows seen so far (forgotten ones included).
    pub fn flows_seen(&self) -> u64 {
        self.seen
    }

    /// For runs that never end (`serve`): forgets the flows that closed
    /// before `before_ns` and whose windows were all handed out, and
    /// births older than it that no other event followed, so that memory
    /// follows the flows alive, not every flow ever seen. Returns how many
    /// flows were forgotten. The only difference it can make: a socket
    /// that connects again after such a close (same cookie) is timed as a
    /// new flow, from its new birth, instead of without a head.
    pub fn forget_closed(&mut self, before_ns: u64) -> usize {
        // Rows of windows still open refer to their flows.
        let before = before_ns.min(self.led.window_start(self.led.first_open));
        let n = self.flows.len();
        self.flows
            .retain(|_, f| !(f.cur.is_none() && f.closed_at.is_some_and(|t| t < before)));
        self.births.retain(|_, (t, _)| *t >= before);
        n - self.flows.len()
    }

    /// Each flow whose timeline is open, with its labels and the state it
    /// is in.
    pub fn open_flows(&self) -> impl Iterator<Item = (&FlowAddr, CaState)> + '_ {
        self.flows
            .values()
            .filter_map(|f| f.cur.map(|state| (&f.addr, state)))
    }

    /// Live mode: closes every window whose end is <= `now_ns` and returns
    /// them, oldest first. Without an interval there is nothing to close.
    pub fn drain_until(&mut self, now_ns: u64) -> Vec<WindowReport> {
        let Some(iv) = self.led.interval else {
            return Vec::new();
        };
        let closed = now_ns.saturating_sub(self.led.origin) / iv;
        if closed <= self.led.first_open {
            return Vec::new();
        }
        let boundary = self.led.window_start(closed);
        for (key, flow) in &mut self.flows {
            flow.catch_up(*key, boundary, &mut self.led);
        }
        let out = (self.led.first_open..closed)
            .map(|k| {
                let end = self.led.nominal_end(k);
                self.take_window(k, end, end)
            })
            .collect();
        self.led.first_open = closed;
        out
    }

    /// End of capture at `end_ns` (already clamped to `--until`): credits
    /// what the accounting mode says and returns the remaining windows.
    pub fn finish(self, end_ns: u64) -> Summary {
        self.finish_with_credits(end_ns).0
    }

    /// [`Engine::finish`], and the stretches credited since the last
    /// [`Engine::take_credits`] (the flows' last periods among them).
    pub fn finish_with_credits(mut self, end_ns: u64) -> (Summary, Vec<Credit>) {
        for (key, flow) in &mut self.flows {
            let (end, tail) = self.led.tail(flow.span, end_ns);
            if let Some(b) = self.led.boundary_at(end) {
                flow.catch_up(*key, b, &mut self.led);
            }
            if self.led.cfg.accounting == Accounting::Full {
                flow.credit_open(*key, end, tail, &mut self.led);
            }
        }
        let start = self.led.cfg.start_ns;
        let last_by_end = if end_ns > start {
            self.led.index(end_ns - 1)
        } else {
            0
        };
        // Events past `end_ns` break the caller's contract, but their windows
        // still get reported rather than vanish.
        let last = self
            .led
            .windows
            .keys()
            .next_back()
            .map_or(last_by_end, |&k| k.max(last_by_end));
        let empty = (last.saturating_sub(self.led.first_open).saturating_add(1))
            .saturating_sub(self.led.windows.len() as u64);
        // Nothing is shown of a summary past its budget.
        let shown = self.led.fits(empty, 0);
        let windows = (self.led.first_open..=last)
            .take(if shown { usize::MAX } else { 0 })
            .map(|k| {
                let w_start = self.led.window_start(k);
                let end = self.led.nominal_end(k).min(end_ns).max(w_start);
                // The capture's last instant is inside it (its last event
                // can be at its end): an owner learnt then counts.
                let learnt_by = if end == end_ns {
                    end.saturating_add(1)
                } else {
                    end
                };
                self.take_window(k, end, learnt_by)
            })
            .collect();
        let summary = Summary {
            windows,
            mismatches: self.led.mismatches,
            late_ns: self.led.late_ns,
            late_events: self.led.late_events,
            credited_ns: self.led.credited_ns,
            uncredited_ns: self.led.uncredited_ns,
            over_budget: self.led.over_budget,
            flows: self.flows.len() as u64,
        };
        (summary, self.take_credits())
    }

    /// Window `k`, ending at `end_ns`; its flows are labelled with the
    /// owners learnt before `learnt_by`.
    fn take_window(&mut self, k: u64, end_ns: u64, learnt_by: u64) -> WindowReport {
        let acc = self.led.windows.remove(&k).unwrap_or_default();
        self.led.held_rows -= acc.rows.len() as u64;
        let mut rows: Vec<FlowRow> = acc
            .rows
            .into_iter()
            .filter_map(|(key, r)| {
                self.flows.get(&key).map(|f| FlowRow {
                    key,
                    addr: f.label_until(learnt_by),
                    ns: r.ns,
                    changes: r.changes,
                    mismatches: r.mismatches,
                    trouble: r.trouble,
                })
            })
            .collect();
        sort_rows(&mut rows);
        WindowReport {
            index: k,
            start_ns: self.led.window_start(k),
            end_ns,
            rows,
            hist: acc.hist,
        }
    }
}

/// The report order: local port, then saddr, daddr, dport, key.
fn sort_rows(rows: &mut [FlowRow]) {
    rows.sort_by(|a, b| {
        let key = |r: &FlowRow| {
            (
                r.addr.sport,
                r.addr.saddr,
                r.addr.daddr,
                r.addr.dport,
                r.key,
            )
        };
        key(a).cmp(&key(b))
    });
}

/// Distinct flows with a row in `windows` (see [`Summary::timed_flows`]).
pub fn timed_flows<'a>(windows: impl IntoIterator<Item = &'a WindowReport>) -> u64 {
    let keys: std::collections::HashSet<FlowKey> = windows
        .into_iter()
        .flat_map(|w| w.rows.iter().map(|r| r.key))
        .collect();
    keys.len() as u64
}

impl Summary {
    /// Distinct flows with a row in some window: time in the span, or a
    /// change. What a page or a comparison counts as its flows, as
    /// analyze's `--all` table lists them.
    pub fn timed_flows(&self) -> u64 {
        timed_flows(&self.windows)
    }

    /// The summary of engines that each saw a disjoint set of flows (every
    /// event of a flow in one of them), as one engine that saw them all
    /// would give it: rows united, histograms and counts added.
    pub fn merge(parts: Vec<Summary>) -> Summary {
        let mut all = Summary::default();
        // Each part reports the same windows, save ones only some had
        // events in past the capture's end: windows are matched by index.
        let mut windows: BTreeMap<u64, WindowReport> = BTreeMap::new();
        for part in parts {
            all.mismatches += part.mismatches;
            all.late_ns = all.late_ns.saturating_add(part.late_ns);
            all.late_events += part.late_events;
            all.over_budget |= part.over_budget;
            all.credited_ns = all.credited_ns.saturating_add(part.credited_ns);
            all.uncredited_ns = all.uncredited_ns.saturating_add(part.uncredited_ns);
            all.flows += part.flows;
            for w in part.windows {
                match windows.entry(w.index) {
                    Entry::Occupied(mut a) => {
                        let a = a.get_mut();
                        a.rows.extend(w.rows);
                        for (h, other) in a.hist.iter_mut().zip(&w.hist) {
                            h.merge(other);
                        }
                    }
                    Entry::Vacant(v) => {
                        v.insert(w);
                    }
                }
            }
        }
        all.windows = windows.into_values().collect();
        for w in &mut all.windows {
            sort_rows(&mut w.rows);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CaState::{Cwr, Disorder, Loss, Open, Recovery};
    use std::net::{IpAddr, Ipv4Addr};

    const S: u64 = 1_700_000_000_000_000_000;
    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    fn key(cookie: u64) -> FlowKey {
        FlowKey { boot: 1, cookie }
    }

    fn addr(sport: u16) -> FlowAddr {
        FlowAddr {
            family: 4,
            saddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            sport,
            daddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            dport: 5201,
            owner: Default::default(),
            netns: 0,
            cc: Default::default(),
        }
    }

    fn cfg(accounting: Accounting, lifecycle: bool, interval_ns: Option<u64>) -> EngineConfig {
        EngineConfig {
            accounting,
            lifecycle,
            start_ns: S,
            until_ns: None,
            interval_ns,
            align: false,
            hist_unit: Unit::Millis,
        }
    }

    fn ca(old: CaState, new: CaState) -> Change {
        Change::Ca { old, new }
    }

    fn est() -> Change {
        Change::Tcp {
            old: TcpState(3),
            new: TcpState::ESTABLISHED,
        }
    }

    fn close() -> Change {
        Change::Tcp {
            old: TcpState(9),
            new: TcpState::CLOSE,
        }
    }

    /// Events as (ms after S, cookie, change).
    fn run(c: EngineConfig, events: &[(u64, u64, Change)], end_ms: u64) -> Summary {
        let mut e = Engine::new(c);
        for &(t, cookie, ch) in events {
            e.push(S + t * MS, key(cookie), ch, || addr(40000 + cookie as u16));
        }
        e.finish(S + end_ms * MS)
    }

    /// The same events as a live run feeds them: a drain before each one,
    /// as the capture loop does; nothing may fall in drained windows.
    fn run_live(c: EngineConfig, events: &[(u64, u64, Change)], end_ms: u64) -> Vec<WindowReport> {
        let mut e = Engine::new(c);
        let mut live = Vec::new();
        for &(t, cookie, ch) in events {
            let now = S + t * MS;
            live.extend(e.drain_until(now));
            e.push(now, key(cookie), ch, || addr(40000 + cookie as u16));
        }
        let rest = e.finish(S + end_ms * MS);
        assert_eq!((rest.late_ns, rest.late_events), (0, 0));
        live.extend(rest.windows);
        live
    }

    /// Per-state ms of one flow's row in one window, and its changes.
    fn ms(w: &WindowReport, cookie: u64) -> Option<([u64; 5], u64)> {
        w.rows.iter().find(|r| r.key == key(cookie)).map(|r| {
            let mut out = [0; 5];
            for (o, ns) in out.iter_mut().zip(r.ns) {
                *o = ns / MS;
            }
            (out, r.changes)
        })
    }

    fn hist(w: &WindowReport, s: CaState) -> Vec<(usize, u64)> {
        let h = &w.hist[s.index()];
        (1..=SLOTS)
            .filter(|&i| h.count(i) > 0)
            .map(|i| (i, h.count(i)))
            .collect()
    }

    /// Two captures of one boot with a gap: a flow is timed only inside
    /// the captures it was seen in, each with its own head and tail.
    #[test]
    fn captures_bound_each_flow_and_gaps_are_not_counted() {
        let span = |a: u64, b: u64, lifecycle| Span {
            start_ns: S + a * SEC,
            end_ns: S + b * SEC,
            lifecycle,
        };
        let go = |accounting, second_lifecycle| {
            let mut e = Engine::new(cfg(accounting, true, None));
            e.set_span(1, span(0, 10, true));
            for (t, c, ch) in [
                (2000, 1, ca(Open, Disorder)),
                (3000, 1, ca(Disorder, Open)),
                (1000, 2, ca(Open, Cwr)),
                (1500, 2, ca(Cwr, Open)),
            ] {
                e.push(S + t * MS, key(c), ch, || addr(40000 + c as u16));
            }
            e.set_span(1, span(20, 30, second_lifecycle));
            for (t, c, ch) in [
                (25000, 1, ca(Open, Recovery)),
                (26000, 1, ca(Recovery, Open)),
            ] {
                e.push(S + t * MS, key(c), ch, || addr(40000 + c as u16));
            }
            e.finish(S + 30 * SEC)
        };
        let s = go(Accounting::Full, true);
        let w = &s.windows[0];
        // Flow 1: head 2 s + tail 7 s in the first capture, head 5 s + tail
        // 4 s in the second; the 10 s gap counts for nothing.
        assert_eq!(ms(w, 1), Some(([18000, 1000, 0, 1000, 0], 4)));
        // Flow 2 was only in the first capture: its tail ends there.
        assert_eq!(ms(w, 2), Some(([9500, 0, 500, 0, 0], 2)));

        // The second capture without lifecycle: flow 1 has no tail there;
        // flow 2's tail still follows its own capture's lifecycle.
        let s = go(Accounting::Full, false);
        assert_eq!(ms(&s.windows[0], 1), Some(([14000, 1000, 0, 1000, 0], 4)));
        assert_eq!(ms(&s.windows[0], 2), Some(([9500, 0, 500, 0, 0], 2)));

        // Between: the period that spans the gap is not a period at all,
        // and each capture's first change only starts its clock.
        let s = go(Accounting::Between, true);
        assert_eq!(ms(&s.windows[0], 1), Some(([0, 1000, 0, 1000, 0], 2)));
    }

    fn snap(ca: CaState) -> Change {
        Change::Snapshot {
            tcp: TcpState::ESTABLISHED,
            ca,
        }
    }

    /// Snapshots are observations: a flow seen only in snapshots is timed
    /// in Full accounting (to its last snapshot without lifecycle events,
    /// to the capture's end with them), and not at all in Between; one
    /// that agrees with the flow's state changes nothing.
    #[test]
    fn snapshots_time_flows_that_never_change() {
        let idle = [(5, 1, snap(Open)), (990, 1, snap(Open))];
        let w = |s: &Summary| ms(&s.windows[0], 1);
        let lc = run(cfg(Accounting::Full, true, None), &idle, 1000);
        assert_eq!(w(&lc), Some(([1000, 0, 0, 0, 0], 0)));
        assert_eq!(lc.mismatches, 0);
        let no_lc = run(cfg(Accounting::Full, false, None), &idle, 1000);
        assert_eq!(w(&no_lc), Some(([990, 0, 0, 0, 0], 0)));
        let between = run(cfg(Accounting::Between, true, None), &idle, 1000);
        assert_eq!(w(&between), None);

        // A snapshot in Recovery between the two changes that bound it:
        // the same table as without it, histogram included.
        let changes = [(100, 1, ca(Open, Recovery)), (400, 1, ca(Recovery, Open))];
        let mut with_snap = changes.to_vec();
        with_snap.insert(1, (250, 1, snap(Recovery)));
        with_snap.insert(0, (5, 1, snap(Open)));
        for accounting in [Accounting::Full, Accounting::Between] {
            let plain = run(cfg(accounting, true, None), &changes, 1000);
            let seen = run(cfg(accounting, true, None), &with_snap, 1000);
            assert_eq!(w(&plain), w(&seen));
            assert_eq!(
                hist(&plain.windows[0], Recovery),
                hist(&seen.windows[0], Recovery)
            );
            assert_eq!(hist(&seen.windows[0], Recovery), vec![(9, 1)]);
        }
    }

    /// An owner that only a snapshot names (found by user space at a
    /// file's end) labels the flow in both accounting modes.
    #[test]
    fn a_snapshot_names_the_owner_in_both_modes() {
        let owned = || FlowAddr {
            owner: Owner {
                pid: 7,
                ..Default::default()
            },
            ..addr(1)
        };
        for accounting in [Accounting::Full, Accounting::Between] {
            let mut e = Engine::new(cfg(accounting, true, None));
            e.push(S, key(1), ca(Open, Recovery), || addr(1));
            e.push(S + 100 * MS, key(1), ca(Recovery, Open), || addr(1));
            e.push(S + 200 * MS, key(1), snap(Open), owned);
            let s = e.finish(S + SEC);
            assert_eq!(s.windows[0].rows[0].addr.owner.pid, 7, "{accounting:?}");
        }
    }

    /// A snapshot that finds the flow in another state than its events
    /// left it is a mismatch: the time since the last change is credited
    /// to nobody, and the flow is in the snapshot's state from then on.
    #[test]
    fn a_snapshot_that_disagrees_is_a_mismatch() {
        let ev = [
            (100, 1, ca(Open, Recovery)),
            (300, 1, snap(Loss)),
            (500, 1, ca(Loss, Open)),
        ];
        let s = run(cfg(Accounting::Full, true, None), &ev, 1000);
        // Open [0,100) and [500,1000); recovery unknown after 100; loss
        // [300,500), its start not seen, so no loss sample.
        assert_eq!(ms(&s.windows[0], 1), Some(([600, 0, 0, 0, 200], 2)));
        assert_eq!(s.mismatches, 1);
        assert_eq!(hist(&s.windows[0], Loss), vec![]);
    }

    #[test]
    fn head_period_full_vs_between() {
        let ev = [(100, 1, ca(Open, Disorder)), (150, 1, ca(Disorder, Open))];
        let full = run(cfg(Accounting::Full, false, None), &ev, 1000);
        assert_eq!(full.windows.len(), 1);
        let w = &full.windows[0];
        assert_eq!((w.start_ns, w.end_ns), (S, S + 1000 * MS));
        // Head [0,100) open, no tail: lifecycle off.
        assert_eq!(ms(w, 1), Some(([100, 50, 0, 0, 0], 2)));
        // The head's start is the capture start, not a transition.
        assert_eq!(hist(w, Open), vec![]);
        assert_eq!(hist(w, Disorder), vec![(6, 1)]);

        let between = run(cfg(Accounting::Between, false, None), &ev, 1000);
        let w = &between.windows[0];
        assert_eq!(ms(w, 1), Some(([0, 50, 0, 0, 0], 1)));
        assert_eq!(hist(w, Disorder), vec![(6, 1)]);

        let full_lc = run(cfg(Accounting::Full, true, None), &ev, 1000);
        assert_eq!(ms(&full_lc.windows[0], 1), Some(([950, 50, 0, 0, 0], 2)));
    }

    #[test]
    fn established_changes_close() {
        let ev = [
            (10, 1, est()),
            (30, 1, ca(Open, Recovery)),
            (80, 1, ca(Recovery, Open)),
            (200, 1, close()),
        ];
        let full = run(cfg(Accounting::Full, true, None), &ev, 1000);
        let w = &full.windows[0];
        assert_eq!(ms(w, 1), Some(([140, 0, 0, 50, 0], 2)));
        assert_eq!(hist(w, Open), vec![(5, 1)]);
        assert_eq!(hist(w, Recovery), vec![(6, 1)]);
        assert_eq!(full.flows, 1);

        let between = run(cfg(Accounting::Between, true, None), &ev, 1000);
        let w = &between.windows[0];
        assert_eq!(ms(w, 1), Some(([0, 0, 0, 50, 0], 1)));
        assert_eq!(hist(w, Open), vec![]);
        assert_eq!(hist(w, Recovery), vec![(6, 1)]);
    }

    #[test]
    fn passive_child_discards_head() {
        let ev = [
            (500, 1, ca(Open, Open)),
            (501, 1, est()),
            (600, 1, ca(Open, Disorder)),
        ];
        let full = run(cfg(Accounting::Full, true, None), &ev, 1000);
        let w = &full.windows[0];
        assert_eq!(ms(w, 1), Some(([99, 400, 0, 0, 0], 1)));
        assert_eq!(hist(w, Open), vec![(7, 1)]);

        let between = run(cfg(Accounting::Between, true, None), &ev, 1000);
        let w = &between.windows[0];
        // The clock starts at the first event; a self-transition does not
        // start a period, so no sample.
        assert_eq!(ms(w, 1), Some(([100, 0, 0, 0, 0], 1)));
        assert_eq!(hist(w, Open), vec![]);
    }

    #[test]
    fn self_transitions_neither_end_nor_count() {
        let ev = [
            (0, 1, est()),
            (100, 1, ca(Open, Loss)),
            (300, 1, ca(Loss, Loss)),
            (700, 1, ca(Loss, Loss)),
            (1000, 1, ca(Loss, Open)),
        ];
        let full = run(cfg(Accounting::Full, true, None), &ev, 1500);
        let w = &full.windows[0];
        assert_eq!(ms(w, 1), Some(([600, 0, 0, 0, 900], 2)));
        assert_eq!(hist(w, Loss), vec![(10, 1)]);
        assert_eq!(hist(w, Open), vec![(7, 1)]);

        // Between: the first change only starts the clock, as in BCC.
        let between = run(cfg(Accounting::Between, true, None), &ev, 1500);
        let w = &between.windows[0];
        assert_eq!(ms(w, 1), Some(([0, 0, 0, 0, 900], 1)));
        assert_eq!(hist(w, Loss), vec![(10, 1)]);
    }

    #[test]
    fn mismatch_counted_unknown_span_not_credited() {
        let ev = [
            (0, 1, est()),
            (100, 1, ca(Open, Disorder)),
            (300, 1, ca(Recovery, Open)),
            (400, 1, ca(Open, Cwr)),
        ];
        let full = run(cfg(Accounting::Full, true, None), &ev, 500);
        assert_eq!(full.mismatches, 1);
        let w = &full.windows[0];
        assert_eq!(ms(w, 1), Some(([200, 0, 100, 0, 0], 3)));
        assert_eq!(w.rows[0].mismatches, 1);
        // [0,100) from established and [300,400) from the mismatch's change.
        assert_eq!(hist(w, Open), vec![(7, 2)]);
        assert_eq!(hist(w, Disorder), vec![]);
        // The disorder period [100, 300) the break hides is counted apart.
        assert_eq!((full.credited_ns, full.uncredited_ns), (300 * MS, 200 * MS));

        let between = run(cfg(Accounting::Between, true, None), &ev, 500);
        assert_eq!(between.mismatches, 1);
        let w = &between.windows[0];
        assert_eq!(ms(w, 1), Some(([100, 0, 0, 0, 0], 2)));
        assert_eq!(hist(w, Open), vec![(7, 1)]);
        assert_eq!(
            (between.credited_ns, between.uncredited_ns),
            (100 * MS, 200 * MS)
        );
    }

    /// Aligned windows fall on whole seconds after a start that does not;
    /// live draining gives the same windows; each row says when its flow
    /// was in trouble inside the window.
    #[test]
    fn aligned_windows_start_on_whole_multiples_of_the_interval() {
        let c = EngineConfig {
            start_ns: S + 300 * MS,
            align: true,
            ..cfg(Accounting::Full, true, Some(SEC))
        };
        let ev = [
            (300, 1, est()),
            (900, 1, ca(Open, Recovery)),
            (1500, 1, ca(Recovery, Open)),
        ];
        let s = run(c.clone(), &ev, 2400);
        let spans: Vec<(u64, u64)> = s
            .windows
            .iter()
            .map(|w| ((w.start_ns - S) / MS, (w.end_ns - S) / MS))
            .collect();
        assert_eq!(spans, [(300, 1000), (1000, 2000), (2000, 2400)]);
        let w = &s.windows;
        assert_eq!(ms(&w[0], 1), Some(([600, 0, 0, 100, 0], 1)));
        assert_eq!(ms(&w[1], 1), Some(([500, 0, 0, 500, 0], 1)));
        assert_eq!(ms(&w[2], 1), Some(([400, 0, 0, 0, 0], 0)));
        let trouble: Vec<Option<(u64, u64)>> = w
            .iter()
            .map(|w| w.rows[0].trouble.map(|(a, b)| ((a - S) / MS, (b - S) / MS)))
            .collect();
        assert_eq!(trouble, [Some((900, 1000)), Some((1000, 1500)), None]);
        let live = run_live(c.clone(), &ev, 2400);
        assert_eq!(live, s.windows);

        let unaligned = run(EngineConfig { align: false, ..c }, &ev, 2400);
        let spans: Vec<(u64, u64)> = unaligned
            .windows
            .iter()
            .map(|w| ((w.start_ns - S) / MS, (w.end_ns - S) / MS))
            .collect();
        assert_eq!(spans, [(300, 1300), (1300, 2300), (2300, 2400)]);
    }

    #[test]
    fn mismatch_into_self_transition_is_not_a_change() {
        let ev = [
            (0, 1, est()),
            (100, 1, ca(Loss, Loss)),
            (300, 1, ca(Loss, Open)),
        ];
        let full = run(cfg(Accounting::Full, true, None), &ev, 400);
        assert_eq!(full.mismatches, 1);
        let w = &full.windows[0];
        assert_eq!(ms(w, 1), Some(([100, 0, 0, 0, 200], 1)));
        // Loss began at an unknown time before 100: no sample.
        assert_eq!(hist(w, Loss), vec![]);
    }

    #[test]
    fn lifecycle_off_has_no_tail() {
        let ev = [(0, 1, est()), (100, 1, ca(Open, Cwr))];
        let off = run(cfg(Accounting::Full, false, None), &ev, 1000);
        assert_eq!(ms(&off.windows[0], 1), Some(([100, 0, 0, 0, 0], 1)));
        let on = run(cfg(Accounting::Full, true, None), &ev, 1000);
        assert_eq!(ms(&on.windows[0], 1), Some(([100, 0, 900, 0, 0], 1)));
    }

    #[test]
    fn period_split_across_three_windows() {
        let ev = [(500, 1, est()), (2500, 1, ca(Open, Loss))];
        let full = run(cfg(Accounting::Full, true, Some(SEC)), &ev, 3200);
        let w = &full.windows;
        assert_eq!(w.len(), 4);
        let bounds: Vec<(u64, u64, u64)> = w
            .iter()
            .map(|w| (w.index, (w.start_ns - S) / MS, (w.end_ns - S) / MS))
            .collect();
        assert_eq!(
            bounds,
            vec![
                (0, 0, 1000),
                (1, 1000, 2000),
                (2, 2000, 3000),
                (3, 3000, 3200)
            ]
        );
        assert_eq!(ms(&w[0], 1), Some(([500, 0, 0, 0, 0], 0)));
        assert_eq!(ms(&w[1], 1), Some(([1000, 0, 0, 0, 0], 0)));
        assert_eq!(ms(&w[2], 1), Some(([500, 0, 0, 0, 500], 1)));
        assert_eq!(ms(&w[3], 1), Some(([0, 0, 0, 0, 200], 0)));
        // The sample is the whole period, in the window where it ends.
        assert_eq!(hist(&w[2], Open), vec![(11, 1)]);
        assert_eq!(hist(&w[0], Open), vec![]);

        let between = run(cfg(Accounting::Between, true, Some(SEC)), &ev, 3200);
        let w = &between.windows;
        assert_eq!(w.len(), 4);
        assert!(w[0].rows.is_empty() && w[1].rows.is_empty() && w[3].rows.is_empty());
        // The first event starts the clock (no change); the loss period it
        // began is credited up to the boundary it crossed, not beyond.
        assert_eq!(ms(&w[2], 1), Some(([0, 0, 0, 0, 500], 0)));
    }

    #[test]
    fn change_counted_in_its_window() {
        let ev = [
            (0, 1, est()),
            (999, 1, ca(Open, Disorder)),
            (1000, 1, ca(Disorder, Open)),
            (2000, 1, ca(Open, Cwr)),
            (2001, 1, ca(Cwr, Open)),
        ];
        let s = run(cfg(Accounting::Full, true, Some(SEC)), &ev, 3000);
        let w = &s.windows;
        assert_eq!(w.len(), 3);
        assert_eq!(ms(&w[0], 1), Some(([999, 1, 0, 0, 0], 1)));
        assert_eq!(ms(&w[1], 1), Some(([1000, 0, 0, 0, 0], 1)));
        assert_eq!(ms(&w[2], 1), Some(([999, 0, 1, 0, 0], 2)));
    }

    #[test]
    fn until_clips_credit_and_changes() {
        let mut c = cfg(Accounting::Full, true, None);
        c.until_ns = Some(S + 2 * SEC);
        let ev = [
            (500, 1, est()),
            (1500, 1, ca(Open, Loss)),
            (3000, 1, ca(Loss, Open)),
        ];
        let s = run(c, &ev, 2000);
        let w = &s.windows[0];
        assert_eq!(w.end_ns, S + 2 * SEC);
        assert_eq!(ms(w, 1), Some(([1000, 0, 0, 0, 500], 1)));
        assert_eq!(hist(w, Open), vec![(10, 1)]);
        assert_eq!(hist(w, Loss), vec![]);
    }

    #[test]
    fn events_before_start_set_state_only() {
        let mut e = Engine::new(cfg(Accounting::Full, true, None));
        let k = key(1);
        e.push(S - SEC, k, est(), || addr(1));
        e.push(S - 500 * MS, k, ca(Open, Disorder), || addr(1));
        e.push(S + 200 * MS, k, ca(Disorder, Open), || addr(1));
        let s = e.finish(S + 300 * MS);
        let w = &s.windows[0];
        assert_eq!(ms(w, 1), Some(([100, 200, 0, 0, 0], 1)));
        // The period's start was seen, so the sample is its full 700 ms.
        assert_eq!(hist(w, Disorder), vec![(10, 1)]);
    }

    #[test]
    fn close_ends_timeline_and_reuse_starts_a_new_one() {
        let ev = [
            (0, 1, est()),
            (100, 1, close()),
            (400, 1, ca(Open, Disorder)),
            (450, 1, ca(Disorder, Open)),
            (500, 1, close()),
        ];
        let s = run(cfg(Accounting::Full, true, None), &ev, 1000);
        // No head for [100,400): the socket was closed then.
        assert_eq!(ms(&s.windows[0], 1), Some(([150, 50, 0, 0, 0], 2)));
    }

    #[test]
    fn other_tcp_states_are_ignored() {
        let fin_wait1 = Change::Tcp {
            old: TcpState::ESTABLISHED,
            new: TcpState(4),
        };
        let ev = [(50, 1, fin_wait1), (100, 1, ca(Open, Cwr))];
        let s = run(cfg(Accounting::Full, false, None), &ev, 1000);
        assert_eq!(ms(&s.windows[0], 1), Some(([100, 0, 0, 0, 0], 1)));
    }

    fn tcp(old: u8, new: u8) -> Change {
        Change::Tcp {
            old: TcpState(old),
            new: TcpState(new),
        }
    }

    /// An active open whose SYN was retransmitted: `open -> loss` while in
    /// syn_sent. Its timeline starts at its connect, not at the capture's
    /// start.
    #[test]
    fn a_connection_is_timed_from_its_birth() {
        let ev = [
            (2000, 1, tcp(7, 2)),
            (3000, 1, ca(Open, Loss)),
            (4000, 1, tcp(2, 1)),
            (4100, 1, ca(Loss, Open)),
            (6000, 1, close()),
        ];
        let full = run(cfg(Accounting::Full, true, None), &ev, 10_000);
        let w = &full.windows[0];
        assert_eq!(ms(w, 1), Some(([1000 + 1900, 0, 0, 0, 1100], 2)));
        // Born in open: that first period is a sample (1000 ms, slot 10);
        // the one a close ends is not.
        assert_eq!(hist(w, Open), vec![(10, 1)]);
        assert_eq!(hist(w, Loss), vec![(11, 1)]);
        // Without the birth event, the old rule: from the capture's start.
        let ev2: Vec<_> = ev[1..].to_vec();
        let w2 = run(cfg(Accounting::Full, true, None), &ev2, 10_000);
        assert_eq!(
            ms(&w2.windows[0], 1),
            Some(([3000 + 1900, 0, 0, 0, 1100], 2))
        );
        // Between: births change nothing.
        let b = run(cfg(Accounting::Between, true, None), &ev, 10_000);
        assert_eq!(ms(&b.windows[0], 1), Some(([0, 0, 0, 0, 1100], 1)));

        // A passive child: born in syn_recv, its open -> open and its
        // established later; one open period from its birth.
        let child = [
            (1000, 2, tcp(10, 3)),
            (1001, 2, ca(Open, Open)),
            (1100, 2, tcp(3, 1)),
            (2000, 2, ca(Open, Disorder)),
            (2500, 2, ca(Disorder, Open)),
        ];
        let full = run(cfg(Accounting::Full, true, None), &child, 3000);
        let w = &full.windows[0];
        assert_eq!(ms(w, 2), Some(([1000 + 500, 500, 0, 0, 0], 2)));
        assert_eq!(hist(w, Open), vec![(10, 1)]);
        // The label is the first event's that is not a birth (its port).
        assert_eq!(w.rows[0].addr.sport, 40002);
        // A reused socket (closed before) gets no head even when reborn.
        let reborn = [
            (100, 3, est()),
            (200, 3, close()),
            (300, 3, tcp(7, 2)),
            (400, 3, ca(Open, Cwr)),
        ];
        let s = run(cfg(Accounting::Full, true, None), &reborn, 1000);
        assert_eq!(ms(&s.windows[0], 3), Some(([100, 0, 600, 0, 0], 1)));
    }

    #[test]
    fn log2_slots() {
        let cases = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 2),
            (4, 3),
            (1023, 10),
            (1024, 11),
        ];
        for (v, slot) in cases {
            assert_eq!(Log2Hist::slot_of(v), slot, "value {v}");
        }
        assert_eq!(Log2Hist::slot_of(u64::MAX), 64);
        let mut h = Log2Hist::default();
        assert_eq!(h.max_slot(), None);
        h.add(u64::MAX);
        assert_eq!(
            (h.max_slot(), h.count(64), h.count(0), h.count(65)),
            (Some(64), 1, 0, 0)
        );
    }

    #[test]
    fn histogram_slots_through_the_engine() {
        let durations = [0, 1, 2, 3, 4, 1023, 1024];
        let mut ev = vec![(0, 1, est())];
        let mut t = 0;
        for d in durations {
            // Each open period lasts `d` ms, then 1 ms of disorder.
            t += d;
            ev.push((t, 1, ca(Open, Disorder)));
            t += 1;
            ev.push((t, 1, ca(Disorder, Open)));
        }
        let s = run(cfg(Accounting::Full, true, None), &ev, t + 1);
        let w = &s.windows[0];
        assert_eq!(
            hist(w, Open),
            vec![(1, 2), (2, 2), (3, 1), (10, 1), (11, 1)]
        );
        assert_eq!(hist(w, Disorder), vec![(1, 7)]);

        let mut c = cfg(Accounting::Full, true, None);
        c.hist_unit = Unit::Micros;
        let s = run(c, &[(0, 1, est()), (2, 1, ca(Open, Cwr))], 5);
        // 2 ms = 2000 us: slot 11 (1024..2047).
        assert_eq!(hist(&s.windows[0], Open), vec![(11, 1)]);
    }

    #[test]
    fn rows_sorted_by_local_port_then_key() {
        let mut e = Engine::new(cfg(Accounting::Full, false, None));
        for (cookie, port) in [(1, 9000), (2, 80), (3, 9000), (4, 443)] {
            let k = key(cookie);
            e.push(S, k, ca(Open, Loss), || addr(port));
        }
        let s = e.finish(S + SEC);
        let order: Vec<u64> = s.windows[0].rows.iter().map(|r| r.key.cookie).collect();
        assert_eq!(order, vec![2, 4, 1, 3]);
        assert_eq!(s.flows, 4);
    }

    #[test]
    fn closed_flows_are_forgotten_once_their_windows_are_out() {
        let mut e = Engine::new(cfg(Accounting::Full, true, Some(SEC)));
        let close = Change::Tcp {
            old: TcpState::ESTABLISHED,
            new: TcpState::CLOSE,
        };
        e.push(S + 100 * MS, key(1), ca(Open, Loss), || addr(1));
        e.push(S + 200 * MS, key(1), close, || addr(1));
        e.push(S + 300 * MS, key(2), ca(Open, Loss), || addr(2));
        // Closed, but its window is still open: kept.
        assert_eq!(e.forget_closed(S + 10 * SEC), 0);
        let w = e.drain_until(S + SEC);
        assert_eq!(w[0].rows.len(), 2);
        // Closed before the cut, windows out: forgotten; the open one stays.
        assert_eq!(e.forget_closed(S + 150 * MS), 0, "closed after the cut");
        assert_eq!(e.forget_closed(S + SEC), 1);
        assert_eq!((e.flows_seen(), e.open_flows().count()), (2, 1));
        // It is timed as a new flow if it comes back.
        e.push(S + 1_500 * MS, key(1), ca(Loss, Open), || addr(1));
        assert_eq!(e.flows_seen(), 3);
        let s = e.finish(S + 2 * SEC);
        let row = s.windows[0].rows.iter().find(|r| r.key == key(1)).unwrap();
        assert_eq!(row.ns[Open.index()], 500 * MS);
    }

    #[test]
    fn addr_built_once_per_flow_whose_owner_is_known() {
        let owned = || FlowAddr {
            owner: Owner {
                pid: 9,
                ..Default::default()
            },
            ..addr(1)
        };
        let mut e = Engine::new(cfg(Accounting::Full, true, None));
        let mut calls = 0;
        for t in [0, 10, 20] {
            e.push(S + t * MS, key(1), ca(Open, Open), || {
                calls += 1;
                owned()
            });
        }
        assert_eq!(calls, 1);
    }

    /// An accepted socket's first events can come before its accept: the
    /// owner its later events name labels the flow.
    #[test]
    fn an_owner_learnt_later_labels_the_flow() {
        let mut e = Engine::new(cfg(Accounting::Full, true, None));
        let web = Owner {
            pid: 42,
            comm: crate::event::KernelName::from_str_lossy("web"),
            cgroup: 3,
        };
        let with = |o: Owner| FlowAddr {
            owner: o,
            ..addr(1)
        };
        e.push(S, key(1), ca(Open, Disorder), || with(Owner::default()));
        e.push(S + MS, key(1), ca(Disorder, Open), || with(web));
        // A later record without it (a lost owner entry) does not unlabel.
        e.push(S + 2 * MS, key(1), ca(Open, Disorder), || {
            with(Owner::default())
        });
        let s = e.finish(S + SEC);
        assert_eq!(s.windows[0].rows[0].addr.owner, web);

        // In windows, only those that end after it was learnt name it (as
        // a live run, which prints a window before later events arrive).
        let mut e = Engine::new(cfg(Accounting::Full, true, Some(MS)));
        e.push(S, key(1), ca(Open, Disorder), || with(Owner::default()));
        e.push(S + MS, key(1), ca(Disorder, Open), || with(web));
        e.push(S + 2 * MS, key(1), ca(Open, Disorder), || {
            with(Owner::default())
        });
        let s = e.finish(S + 3 * MS);
        let owners: Vec<u32> = s.windows.iter().map(|w| w.rows[0].addr.owner.pid).collect();
        assert_eq!(owners, [0, 42, 42]);

        // Named by a TCP state change that moves no arithmetic.
        let mut e = Engine::new(cfg(Accounting::Full, true, None));
        e.push(S, key(1), ca(Open, Disorder), || with(Owner::default()));
        let fin = Change::Tcp {
            old: TcpState::ESTABLISHED,
            new: TcpState(4),
        };
        e.push(S + MS, key(1), fin, || with(web));
        let s = e.finish(S + SEC);
        assert_eq!(s.windows[0].rows[0].addr.owner, web);

        // Learnt at the capture's very end (a close there): it counts.
        let mut e = Engine::new(cfg(Accounting::Full, true, None));
        e.push(S, key(1), ca(Open, Disorder), || with(Owner::default()));
        e.push(S + SEC, key(1), ca(Disorder, Open), || with(web));
        let s = e.finish(S + SEC);
        assert_eq!(s.windows[0].rows[0].addr.owner, web);
        // A socket's cgroup does not change: it labels every window.
        assert_eq!(s.windows[0].rows[0].addr.owner.cgroup, 3);
    }

    /// A program sets its congestion control after connect or accept: the
    /// flow is labelled by its first congestion-state event's, and by its
    /// close's (a passive socket's first is its listener's).
    #[test]
    fn a_flow_is_labelled_by_the_congestion_control_of_its_states() {
        let algo = |name: &str| FlowAddr {
            cc: crate::event::KernelName::from_str_lossy(name),
            ..addr(1)
        };
        let label = |events: &[(u64, Change, &str)]| {
            let mut e = Engine::new(cfg(Accounting::Full, true, None));
            for (t, change, cc) in events {
                e.push(S + t * MS, key(1), *change, || algo(cc));
            }
            let s = e.finish(S + SEC);
            s.windows[0].rows[0].addr.cc.as_str().to_string()
        };
        // Connected under the default, then cubic: cubic, whatever follows.
        assert_eq!(
            label(&[
                (0, est(), "bbr"),
                (1, ca(Open, Disorder), "cubic"),
                (2, ca(Disorder, Open), "reno")
            ]),
            "cubic"
        );
        // Accepted under the listener's, then set: its close says.
        assert_eq!(
            label(&[
                (0, ca(Open, Open), "bbr"),
                (1, est(), "bbr"),
                (5, close(), "cubic")
            ]),
            "cubic"
        );
        // Accepted, then set: its first transition names it, not the
        // listener's open -> open at its birth.
        assert_eq!(
            label(&[
                (0, ca(Open, Open), "bbr"),
                (1, est(), "bbr"),
                (2, ca(Open, Disorder), "cubic"),
                (3, ca(Disorder, Open), "cubic")
            ]),
            "cubic"
        );
        // Nothing but the handshake: what it named.
        assert_eq!(label(&[(0, est(), "bbr")]), "bbr");
        // In windows, those that end before it took over keep the one
        // they had (as a live run printed them).
        let mut e = Engine::new(cfg(Accounting::Full, true, Some(MS)));
        e.push(S, key(1), ca(Open, Open), || algo("bbr"));
        e.push(S + 2 * MS + 1, key(1), close(), || algo("cubic"));
        let s = e.finish(S + 3 * MS);
        let labels: Vec<&str> = s
            .windows
            .iter()
            .map(|w| w.rows[0].addr.cc.as_str())
            .collect();
        assert_eq!(labels, ["bbr", "bbr", "cubic"]);
    }

    #[test]
    fn zero_interval_and_empty_capture_do_not_panic() {
        let s = run(cfg(Accounting::Full, true, Some(0)), &[(5, 1, est())], 10);
        assert_eq!(s.windows.len(), 1);
        assert_eq!(ms(&s.windows[0], 1), Some(([5, 0, 0, 0, 0], 0)));

        let e = Engine::new(cfg(Accounting::Full, true, Some(SEC)));
        let s = e.finish(S - SEC);
        assert_eq!(s.windows.len(), 1);
        assert_eq!((s.windows[0].start_ns, s.windows[0].end_ns), (S, S));
    }

    /// The same events, pushed with drains at the boundaries as the live
    /// tool does, give the windows an offline run gives.
    #[test]
    fn drain_then_finish_matches_offline() {
        let ev = [
            (100, 1, ca(Open, Disorder)),
            (300, 2, est()),
            (700, 1, ca(Disorder, Open)),
            (1500, 2, ca(Open, Recovery)),
            (1600, 3, ca(Open, Open)),
            (1601, 3, est()),
            (2400, 1, ca(Open, Loss)),
            (2450, 2, ca(Recovery, Open)),
            (2460, 1, ca(Loss, Loss)),
            (3100, 3, close()),
            (3200, 1, ca(Loss, Open)),
        ];
        let c = cfg(Accounting::Full, true, Some(SEC));
        let offline = run(c.clone(), &ev, 3500);

        let mut e = Engine::new(c);
        let mut live = Vec::new();
        for &(t, cookie, ch) in &ev {
            let now = S + t * MS;
            live.extend(e.drain_until(now));
            e.push(now, key(cookie), ch, || addr(40000 + cookie as u16));
        }
        assert_eq!(live.len(), 3);
        assert!(e.drain_until(S + 3400 * MS).is_empty());
        let rest = e.finish(S + 3500 * MS);
        assert_eq!((rest.late_ns, rest.late_events), (0, 0));
        live.extend(rest.windows);
        assert_eq!(live, offline.windows);
        assert_eq!(ms(&live[1], 2), Some(([500, 0, 0, 500, 0], 1)));
        assert_eq!(ms(&live[2], 1), Some(([400, 0, 0, 0, 600], 1)));
    }

    /// Between accounting with an interval: a live run credits at each
    /// boundary what is known (a period begun at an observed change), and
    /// the offline run of the same events gives the same windows.
    #[test]
    fn between_drain_credits_what_is_known_as_offline_does() {
        let ev = [
            (100, 1, ca(Open, Disorder)),
            (1300, 1, ca(Disorder, Open)),
            (1400, 2, ca(Open, Recovery)),
            (2500, 2, ca(Cwr, Open)),
            (2600, 1, close()),
        ];
        let c = cfg(Accounting::Between, true, Some(SEC));
        let offline = run(c.clone(), &ev, 3200);
        assert_eq!(run_live(c, &ev, 3200), offline.windows);
        let w = &offline.windows;
        assert_eq!(ms(&w[0], 1), Some(([0, 900, 0, 0, 0], 0)));
        assert_eq!(ms(&w[1], 1), Some(([700, 300, 0, 0, 0], 1)));
        // Flow 2's recovery period ends in a mismatch: it keeps what it got
        // up to the boundary it crossed, nothing after.
        assert_eq!(ms(&w[1], 2), Some(([0, 0, 0, 600, 0], 0)));
        // The mismatch's own change (cwr -> open) starts a period seen from
        // its start: credited up to the next boundary.
        assert_eq!(ms(&w[2], 2), Some(([500, 0, 0, 0, 0], 1)));
        assert_eq!(offline.mismatches, 1);
        // Flow 1's open period ended by a close: up to the boundary only.
        assert_eq!(ms(&w[2], 1), None);
    }

    /// With an interval, flows first seen in a later window (a long-lived
    /// one with a head, a socket whose SYN was retransmitted across a
    /// boundary) are timed from that window: live and offline agree.
    #[test]
    fn flows_are_timed_from_the_window_they_are_first_seen_in() {
        let ev = [
            (450, 1, tcp(7, 2)),
            (1450, 1, ca(Open, Loss)),
            (1470, 1, tcp(2, 1)),
            (1480, 1, ca(Loss, Open)),
            (2500, 2, ca(Open, Disorder)),
            (2600, 2, ca(Disorder, Open)),
        ];
        let c = cfg(Accounting::Full, true, Some(SEC));
        let offline = run(c.clone(), &ev, 3000);
        assert_eq!(run_live(c, &ev, 3000), offline.windows);
        let w = &offline.windows;
        assert_eq!(ms(&w[0], 1), None);
        assert_eq!(ms(&w[1], 1), Some(([450 + 520, 0, 0, 0, 30], 2)));
        assert_eq!(ms(&w[2], 2), Some(([500 + 400, 100, 0, 0, 0], 2)));
        assert_eq!(ms(&w[1], 2), None);
        // Without an interval, the whole life from the birth, and the head
        // from the capture's start.
        let whole = run(cfg(Accounting::Full, true, None), &ev, 3000);
        assert_eq!(
            ms(&whole.windows[0], 1),
            Some(([1000 + 1520, 0, 0, 0, 30], 2))
        );
        assert_eq!(
            ms(&whole.windows[0], 2),
            Some(([2500 + 400, 100, 0, 0, 0], 2))
        );
    }

    /// A connection reset while in recovery: its recovery runs to the close
    /// (full), and nothing after; between credits nothing unfinished.
    #[test]
    fn a_close_in_recovery_ends_the_recovery() {
        let ev = [
            (100, 1, tcp(7, 2)),
            (101, 1, tcp(2, 1)),
            (500, 1, ca(Open, Disorder)),
            (510, 1, ca(Disorder, Recovery)),
            (800, 1, close()),
        ];
        let full = run(cfg(Accounting::Full, true, None), &ev, 1000);
        assert_eq!(ms(&full.windows[0], 1), Some(([400, 10, 0, 290, 0], 2)));
        let between = run(cfg(Accounting::Between, true, None), &ev, 1000);
        assert_eq!(ms(&between.windows[0], 1), Some(([0, 10, 0, 0, 0], 1)));
    }

    #[test]
    fn no_interval_never_drains() {
        let mut e = Engine::new(cfg(Accounting::Full, true, None));
        e.push(S, key(1), est(), || addr(1));
        assert!(e.drain_until(S + 100 * SEC).is_empty());
        let s = e.finish(S + SEC);
        assert_eq!(ms(&s.windows[0], 1), Some(([1000, 0, 0, 0, 0], 0)));
    }

    #[test]
    fn windows_past_the_budget_leave_the_summary_marked() {
        // Two flows alive for 100 windows: 100 windows and 200 rows.
        let run = |budget: u64| {
            let mut e = Engine::new(cfg(Accounting::Full, true, Some(SEC))).with_budget(budget);
            e.push(S, key(1), est(), || addr(1));
            e.push(S, key(2), est(), || addr(2));
            e.finish(S + 100 * SEC)
        };
        let need = 100 * WINDOW_BYTES + 200 * ROW_BYTES;
        let fits = run(need);
        assert!(!fits.over_budget);
        assert_eq!(fits.windows.len(), 100);
        assert!(fits.windows.iter().all(|w| w.rows.len() == 2));
        let over = run(need - 1);
        assert!(over.over_budget);
        assert!(over.windows.is_empty(), "nothing shown of it");
        // Live mode hands windows out as they close: what it holds stays small.
        let mut e = Engine::new(cfg(Accounting::Full, true, Some(SEC))).with_budget(need / 10);
        e.push(S, key(1), est(), || addr(1));
        e.push(S, key(2), est(), || addr(2));
        for t in 1..=100 {
            assert_eq!(e.drain_until(S + t * SEC).len(), 1);
        }
        assert!(!e.finish(S + 100 * SEC).over_budget);
    }
}
