//! `tcpcong report`'s page: what it shows, computed from the events, and
//! its rendering as one self-contained HTML file (`html`), at pixel
//! resolution (`timeline`).
//!
//! Two passes over the same events, both through the engine, so that every
//! drawn stretch of time is one the engine credited and the page's numbers
//! are analyze's: the first ([`Overview`]) takes every selected event (the
//! per-flow table, the histograms, the transition matrix, the capture-wide
//! strip) and chooses the top flows; the second ([`Timelines`]) takes only
//! those flows' events again, with their TCP values, for their timelines.
//! Flows are independent in the engine, so the second pass credits those
//! flows exactly as the first did. The second pass also runs the episode
//! tracker `analyze --episodes` runs, on every row ([`EpisodeSection`]):
//! time per cause, the longest episodes, the top flows' episodes marked on
//! their timelines and the drops their causes count.

pub mod html;
pub mod timeline;

use rustc_hash::FxHashMap;

use self::timeline::{tick, Axis, Buckets, Steps, Tick, Transition};
use crate::analyze::engine::episodes::{Cause, Episode};
use crate::analyze::engine::{
    Accounting, Credit, Engine, EngineConfig, FlowRow, Log2Hist, Summary,
};
use crate::analyze::render::episodes::{ordered, EpisodeGroup, GroupBy, Groups, Order};
use crate::event::{Boot, CaState, Change, Event, FlowAddr, FlowKey, Span};

/// Pixel columns of every chart: the resolution of the page.
pub const COLUMNS: usize = 720;

/// What one recording file says about how it was made, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFacts {
    pub file: String,
    pub hostname: String,
    pub kernel: String,
    pub boot_id: String,
    pub start: String,
    pub end: String,
    pub attach: String,
    pub buffer: String,
    pub lifecycle: bool,
    pub events: u64,
    pub flows: u64,
    pub lost_events: u64,
    pub gaps: u64,
    pub command: String,
}

/// The page's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageConfig {
    /// Flows with the most time in loss + recovery that get a timeline.
    pub top: usize,
    pub accounting: Accounting,
    /// The selection, in the words of the command line (`-L 443`), or empty.
    pub selection: String,
}

/// The first pass: every selected event.
pub struct Overview {
    engine: Engine,
    axis: Axis,
    strip: Buckets,
    matrix: [[u64; 5]; 5],
    range: (u64, u64),
}

/// What the first pass found.
pub struct OverviewDone {
    pub summary: Summary,
    /// All flows' time per state per column.
    pub strip: Buckets,
    /// `ca_state` events per (old, new), in the selected span.
    pub matrix: [[u64; 5]; 5],
    /// The flows with the most time in loss + recovery, most first (then
    /// by changes), among those with a change or such time.
    pub top: Vec<FlowRow>,
}

/// The page's engines: one window, every stretch credited logged. Its
/// rows are as many as the flows the engine holds anyway, so no budget.
fn one_window(cfg: EngineConfig) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        interval_ns: None,
        ..cfg
    })
    .with_budget(u64::MAX);
    engine.log_credits();
    engine
}

impl Overview {
    /// `cfg` without an interval; `end_ns` the span's end.
    pub fn new(cfg: EngineConfig, end_ns: u64) -> Overview {
        let axis = Axis::new(cfg.start_ns, end_ns, COLUMNS);
        let range = (cfg.start_ns, cfg.until_ns.unwrap_or(u64::MAX));
        let engine = one_window(cfg);
        Overview {
            engine,
            axis,
            strip: Buckets::new(&axis),
            matrix: [[0; 5]; 5],
            range,
        }
    }

    pub fn set_span(&mut self, boot: u32, span: Span) {
        self.engine.set_span(boot, span);
    }

    pub fn push(&mut self, t_ns: u64, key: FlowKey, change: Change, addr: &FlowAddr) {
        self.engine.push(t_ns, key, change, || addr.clone());
        for c in self.engine.take_credits() {
            self.strip.add(&self.axis, c.state, c.from, c.to);
        }
        if let Change::Ca { old, new } = change {
            if t_ns >= self.range.0 && t_ns < self.range.1 {
                self.matrix[old.index()][new.index()] += 1;
            }
        }
    }

    pub fn finish(mut self, end_ns: u64, top: usize) -> OverviewDone {
        let (summary, credits) = self.engine.finish_with_credits(end_ns);
        for c in credits {
            self.strip.add(&self.axis, c.state, c.from, c.to);
        }
        let mut rows: Vec<FlowRow> = summary
            .windows
            .iter()
            .flat_map(|w| w.rows.iter().cloned())
            .collect();
        let trouble = |r: &FlowRow| {
            r.ns[CaState::Loss.index()].saturating_add(r.ns[CaState::Recovery.index()])
        };
        // A flow that never changed state and never was in trouble has no
        // story to draw.
        rows.retain(|r| r.changes > 0 || trouble(r) > 0);
        rows.sort_by(|a, b| {
            (trouble(b), b.changes)
                .cmp(&(trouble(a), a.changes))
                .then(a.key.cmp(&b.key))
        });
        rows.truncate(top);
        OverviewDone {
            summary,
            strip: self.strip,
            matrix: self.matrix,
            top: rows,
        }
    }
}

/// One top flow's timeline.
#[derive(Debug, Clone)]
pub struct FlowTimeline {
    pub row: FlowRow,
    pub buckets: Buckets,
    pub cwnd: Steps,
    /// Without the kernel's "no threshold yet" value.
    pub ssthresh: Steps,
    pub srtt_us: Steps,
    pub ticks: Vec<Tick>,
    /// Per column where `total_retrans` grew: by how much.
    pub retrans: Vec<(usize, u64)>,
    last_retrans: Option<u32>,
    /// Per column, segments of the flow this host dropped (as its
    /// episodes count them: one dropped on its way in is its sender's).
    pub drops: Vec<(usize, u64)>,
    /// Its episodes, those of one cause next to each other merged.
    pub episodes: Vec<EpisodeMark>,
}

/// Episodes of one cause in a row on a flow's timeline, as one mark: from
/// the first one's start column to the last one's end column.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeMark {
    pub first: usize,
    pub last: usize,
    pub cause: Cause,
    pub episodes: u64,
    /// Their durations, summed.
    pub ns: u64,
}

/// Adds `n` at column `c` of per-column counts kept in column order.
fn count_at(counts: &mut Vec<(usize, u64)>, c: usize, n: u64) {
    match counts.last_mut() {
        Some((col, m)) if *col == c => *m += n,
        _ => counts.push((c, n)),
    }
}

impl FlowTimeline {
    fn new(row: FlowRow, axis: &Axis) -> FlowTimeline {
        FlowTimeline {
            row,
            buckets: Buckets::new(axis),
            cwnd: Steps::default(),
            ssthresh: Steps::default(),
            srtt_us: Steps::default(),
            ticks: Vec::new(),
            retrans: Vec::new(),
            last_retrans: None,
            drops: Vec::new(),
            episodes: Vec::new(),
        }
    }

    fn event(&mut self, c: usize, t_ns: u64, ev: &Event) {
        let d = &ev.detail;
        self.cwnd.add(c, u64::from(d.snd_cwnd));
        if d.snd_ssthresh < crate::event::NO_SSTHRESH {
            self.ssthresh.add(c, u64::from(d.snd_ssthresh));
        }
        self.srtt_us.add(c, u64::from(d.srtt_us));
        if let Some(last) = self.last_retrans {
            if d.total_retrans > last {
                count_at(&mut self.retrans, c, u64::from(d.total_retrans - last));
            }
        }
        self.last_retrans = Some(d.total_retrans);
        if let Change::Ca { old, new } = ev.change {
            let t = Transition {
                t_ns,
                old,
                new,
                cwnd: d.snd_cwnd,
                ssthresh: d.snd_ssthresh,
                srtt_us: d.srtt_us,
            };
            tick(&mut self.ticks, c, t);
        }
    }
}

/// The second pass: the top flows' events, with their TCP values.
pub struct Timelines {
    engine: Engine,
    axis: Axis,
    range: (u64, u64),
    flows: FxHashMap<FlowKey, FlowTimeline>,
    order: Vec<FlowKey>,
}

impl Timelines {
    pub fn new(cfg: EngineConfig, end_ns: u64, top: &[FlowRow]) -> Timelines {
        let axis = Axis::new(cfg.start_ns, end_ns, COLUMNS);
        let range = (cfg.start_ns, cfg.until_ns.unwrap_or(u64::MAX).min(end_ns));
        let engine = one_window(cfg);
        Timelines {
            engine,
            axis,
            range,
            flows: top
                .iter()
                .map(|r| (r.key, FlowTimeline::new(r.clone(), &axis)))
                .collect(),
            order: top.iter().map(|r| r.key).collect(),
        }
    }

    /// Whether `key` is one of the top flows (the others are not pushed).
    pub fn wants(&self, key: FlowKey) -> bool {
        self.flows.contains_key(&key)
    }

    pub fn set_span(&mut self, boot: u32, span: Span) {
        self.engine.set_span(boot, span);
    }

    pub fn push(&mut self, t_ns: u64, key: FlowKey, ev: &Event) {
        self.engine.push(t_ns, key, ev.change, || ev.addr.clone());
        credit(&mut self.flows, &self.axis, self.engine.take_credits());
        if t_ns >= self.range.0 && t_ns < self.range.1 {
            let c = self.axis.column_of(t_ns);
            if let Some(f) = self.flows.get_mut(&key) {
                f.event(c, t_ns, ev);
            }
        }
    }

    /// A drop row whose segments are evidence of flow `whose` (see
    /// `Episodes::credited`), if that is a top flow.
    pub fn dropped(&mut self, t_ns: u64, whose: FlowKey, ev: &Event) {
        if t_ns < self.range.0 || t_ns >= self.range.1 {
            return;
        }
        if let (Some(f), Change::Drop { .. }) = (self.flows.get_mut(&whose), ev.change) {
            count_at(
                &mut f.drops,
                self.axis.column_of(t_ns),
                u64::from(ev.detail.segs.max(1)),
            );
        }
    }

    /// An episode, marked on its flow's timeline if that is a top flow's.
    pub fn episode(&mut self, e: &Episode) {
        let Some(f) = self.flows.get_mut(&e.key) else {
            return;
        };
        let (first, last) = (
            self.axis.column_of(e.start_ns),
            self.axis.column_of(e.end_ns),
        );
        let ns = e.end_ns - e.start_ns;
        match f.episodes.last_mut() {
            Some(m) if m.cause == e.cause && first <= m.last + 1 => {
                m.last = m.last.max(last);
                m.episodes += 1;
                m.ns += ns;
            }
            _ => f.episodes.push(EpisodeMark {
                first,
                last,
                cause: e.cause,
                episodes: 1,
                ns,
            }),
        }
    }

    /// The timelines, in the top flows' order.
    pub fn finish(self, end_ns: u64) -> Vec<FlowTimeline> {
        let Timelines {
            engine,
            axis,
            mut flows,
            order,
            ..
        } = self;
        let (_, credits) = engine.finish_with_credits(end_ns);
        credit(&mut flows, &axis, credits);
        order.iter().filter_map(|k| flows.remove(k)).collect()
    }
}

fn credit(flows: &mut FxHashMap<FlowKey, FlowTimeline>, axis: &Axis, credits: Vec<Credit>) {
    for c in credits {
        if let Some(f) = flows.get_mut(&c.key) {
            f.buckets.add(axis, c.state, c.from, c.to);
        }
    }
}

/// How many of the longest episodes the page lists.
pub const LONGEST_EPISODES: usize = 10;

/// The episodes over all flows, as they complete: per cause, and the
/// longest ones.
pub struct EpisodeSection {
    causes: Groups,
    longest: Vec<Episode>,
}

/// What the page says of the episodes.
pub struct EpisodesDone {
    /// Per cause, the most time first (as `analyze --episodes --by cause`).
    pub causes: Vec<EpisodeGroup>,
    /// The [`LONGEST_EPISODES`] longest (as `--sort duration --top`).
    pub longest: Vec<Episode>,
}

impl EpisodeSection {
    pub fn new() -> EpisodeSection {
        EpisodeSection {
            causes: Groups::new(GroupBy::Cause),
            longest: Vec::new(),
        }
    }

    pub fn add(&mut self, e: Episode, boot: &Boot) {
        self.causes.add(&e, boot);
        self.longest.push(e);
        // Bounded: the longest so far, now and then.
        if self.longest.len() >= 64 * LONGEST_EPISODES {
            self.longest = ordered(
                std::mem::take(&mut self.longest),
                Order::Duration,
                Some(LONGEST_EPISODES),
            );
        }
    }

    pub fn finish(self) -> EpisodesDone {
        EpisodesDone {
            causes: self.causes.finish(),
            longest: ordered(self.longest, Order::Duration, Some(LONGEST_EPISODES)),
        }
    }
}

impl Default for EpisodeSection {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything the page shows.
pub struct Page {
    pub config: PageConfig,
    pub captures: Vec<CaptureFacts>,
    pub axis: Axis,
    pub overview: OverviewDone,
    pub timelines: Vec<FlowTimeline>,
    pub episodes: EpisodesDone,
    /// Dwell-time histograms over the whole selection, in ms.
    pub hist: [Log2Hist; 5],
    /// Events two overlapping captures both recorded, counted once.
    pub duplicates: u64,
    /// What the recordings name of each boot's cgroups (by `FlowKey::boot`).
    pub boots: Vec<Boot>,
}

impl Page {
    pub fn new(
        config: PageConfig,
        captures: Vec<CaptureFacts>,
        (start_ns, end_ns): (u64, u64),
        overview: OverviewDone,
        timelines: Vec<FlowTimeline>,
        episodes: EpisodesDone,
        (duplicates, boots): (u64, Vec<Boot>),
    ) -> Page {
        let hist = overview
            .summary
            .windows
            .first()
            .map(|w| w.hist.clone())
            .unwrap_or_default();
        Page {
            config,
            captures,
            axis: Axis::new(start_ns, end_ns, COLUMNS),
            overview,
            timelines,
            episodes,
            hist,
            duplicates,
            boots,
        }
    }

    /// Per state, over every flow of the selection.
    pub fn totals(&self) -> [u64; 5] {
        let mut t = [0u64; 5];
        for w in &self.overview.summary.windows {
            for r in &w.rows {
                for (s, v) in t.iter_mut().zip(r.ns) {
                    *s = s.saturating_add(v);
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::timeline::{bands, Band};
    use super::*;
    use crate::analyze::engine::Unit;
    use crate::event::{Detail, TcpState};
    use std::net::{IpAddr, Ipv4Addr};
    use CaState::*;

    const S: u64 = 1_700_000_000_000_000_000;
    const MS: u64 = 1_000_000;

    fn ev(cookie: u64, change: Change, cwnd: u32) -> Event {
        Event {
            ktime_ns: 0,
            flow: cookie,
            addr: FlowAddr {
                family: 4,
                saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                sport: 40000 + cookie as u16,
                daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                dport: 443,
                owner: Default::default(),
                netns: 0,
                cc: Default::default(),
            },
            change,
            detail: Detail {
                snd_cwnd: cwnd,
                snd_ssthresh: 0x7fff_ffff,
                srtt_us: 1000,
                total_retrans: cwnd / 10,
                ..Detail::default()
            },
        }
    }

    fn tcp(new: TcpState) -> Change {
        Change::Tcp {
            old: TcpState(7),
            new,
        }
    }

    fn ca(old: CaState, new: CaState) -> Change {
        Change::Ca { old, new }
    }

    /// Three flows over 10 s: a connection born at 1 s that goes through
    /// disorder and recovery and closes; one in loss for a while from
    /// before the capture to its end; one that never changes.
    fn events() -> Vec<(u64, Event)> {
        let mut v = vec![
            (1000, ev(1, tcp(TcpState::SYN_SENT), 0)),
            (1100, ev(1, tcp(TcpState::ESTABLISHED), 10)),
            (2000, ev(1, ca(Open, Disorder), 10)),
            (2500, ev(1, ca(Disorder, Recovery), 20)),
            (4000, ev(1, ca(Recovery, Open), 30)),
            (6000, ev(1, tcp(TcpState::CLOSE), 30)),
            (3000, ev(2, ca(Open, Loss), 5)),
            (3500, ev(2, ca(Loss, Open), 5)),
            (500, ev(3, tcp(TcpState::ESTABLISHED), 5)),
        ];
        v.sort_by_key(|e| e.0);
        v.into_iter().map(|(ms, e)| (S + ms * MS, e)).collect()
    }

    fn cfg() -> EngineConfig {
        EngineConfig {
            accounting: Accounting::Full,
            lifecycle: true,
            start_ns: S,
            until_ns: None,
            interval_ns: None,
            align: false,
            hist_unit: Unit::Millis,
        }
    }

    fn key(cookie: u64) -> FlowKey {
        FlowKey { boot: 0, cookie }
    }

    #[test]
    fn two_passes_draw_what_the_table_says() {
        let end = S + 10_000 * MS;
        let span = Span {
            start_ns: S,
            end_ns: end,
            lifecycle: true,
        };
        let mut o = Overview::new(cfg(), end);
        o.set_span(0, span);
        for (t, e) in events() {
            o.push(t, key(e.flow), e.change, &e.addr);
        }
        let done = o.finish(end, 5);
        // The flow that never changed has no story; trouble orders the rest.
        let top: Vec<(u64, [u64; 5], u64)> = done
            .top
            .iter()
            .map(|r| (r.key.cookie, r.ns.map(|n| n / MS), r.changes))
            .collect();
        assert_eq!(
            top,
            vec![
                (1, [3000, 500, 0, 1500, 0], 3),
                (2, [9500, 0, 0, 0, 500], 2)
            ]
        );
        let mut m = [[0u64; 5]; 5];
        for (a, b) in [
            (Open, Disorder),
            (Disorder, Recovery),
            (Recovery, Open),
            (Open, Loss),
            (Loss, Open),
        ] {
            m[a.index()][b.index()] = 1;
        }
        assert_eq!(done.matrix, m);
        // The strip holds every flow's time, the one without changes too.
        let strip = done.strip.totals().map(|n| n / MS);
        assert_eq!(strip, [3000 + 9500 + 9500, 500, 0, 1500, 500]);

        let mut t = Timelines::new(cfg(), end, &done.top);
        t.set_span(0, span);
        for (at, e) in events() {
            if t.wants(key(e.flow)) {
                t.push(at, key(e.flow), &e);
            }
        }
        assert!(!t.wants(key(3)));
        let lines = t.finish(end);
        assert_eq!(lines.len(), 2);
        for (l, row) in lines.iter().zip(&done.top) {
            assert_eq!(l.buckets.totals(), row.ns, "flow {}", row.key.cookie);
            let mut drawn = [0u64; 5];
            for b in bands(&l.buckets) {
                match b {
                    Band::Run { state, ns, .. } => drawn[state.index()] += ns,
                    Band::Mixed { ns, .. } => {
                        for (d, v) in drawn.iter_mut().zip(ns) {
                            *d += v;
                        }
                    }
                }
            }
            assert_eq!(drawn, row.ns);
        }
        let first = &lines[0];
        // Open from its birth, disorder, recovery, open to its close: four
        // runs, each at least one column wide at 13.9 ms per column.
        let runs: Vec<CaState> = bands(&first.buckets)
            .iter()
            .filter_map(|b| match b {
                Band::Run { state, .. } => Some(*state),
                Band::Mixed { .. } => None,
            })
            .collect();
        assert_eq!(runs, vec![Open, Disorder, Recovery, Open]);
        let ticks: Vec<(CaState, CaState, u32)> = first
            .ticks
            .iter()
            .map(|k| (k.first.old, k.first.new, k.first.cwnd))
            .collect();
        assert_eq!(
            ticks,
            vec![
                (Open, Disorder, 10),
                (Disorder, Recovery, 20),
                (Recovery, Open, 30)
            ]
        );
        // total_retrans went 0 -> 1 -> 2 -> 3; no ssthresh was set yet.
        assert_eq!(first.retrans.iter().map(|r| r.1).sum::<u64>(), 3);
        assert!(first.ssthresh.columns.is_empty());
        assert_eq!(first.cwnd.max(), 30);
    }
}
