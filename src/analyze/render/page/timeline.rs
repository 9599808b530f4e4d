//! What the page's charts draw, computed at the page's resolution: a time
//! axis cut into pixel columns, the time each state holds per column, the
//! state bands of a flow (periods shorter than a column merged into a
//! mixed column, counted), and per-column summaries of the TCP values and
//! transitions. The page's size is bounded by the columns, not by events.
//!
//! Everything is in integer nanoseconds and split exactly at column
//! boundaries, so that what is drawn adds up to the table's numbers.

use crate::event::CaState;

/// A time axis of `columns` pixel columns over `[start_ns, end_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub start_ns: u64,
    pub end_ns: u64,
    pub columns: usize,
}

impl Axis {
    /// An empty span gets one nanosecond, so that every instant has a column.
    pub fn new(start_ns: u64, end_ns: u64, columns: usize) -> Axis {
        Axis {
            start_ns,
            end_ns: end_ns.max(start_ns.saturating_add(1)),
            columns: columns.max(1),
        }
    }

    fn len(&self) -> u128 {
        u128::from(self.end_ns - self.start_ns)
    }

    /// The first instant of column `c`; `c == columns` is the end. Rounded
    /// up, so that [`Axis::column_of`] is exactly its inverse.
    pub fn column_start(&self, c: usize) -> u64 {
        let c = c.min(self.columns) as u128;
        let columns = self.columns as u128;
        self.start_ns + (self.len() * c).div_ceil(columns) as u64
    }

    /// The column holding `t`, clamped into the axis.
    pub fn column_of(&self, t: u64) -> usize {
        let t = t.clamp(self.start_ns, self.end_ns - 1);
        (u128::from(t - self.start_ns) * self.columns as u128 / self.len()) as usize
    }
}

/// Instants for the axis's labels: whole multiples of a round step (1, 2
/// or 5 times a power of ten below a second; then 1, 2, 5, 10, 15 or 30
/// seconds or minutes, 1, 2, 3, 6 or 12 hours, then days), the smallest
/// that gives at most `most` of them inside the axis; and that step.
pub fn round_ticks(axis: &Axis, most: usize) -> (u64, Vec<u64>) {
    const SEC: u64 = 1_000_000_000;
    let span = axis.end_ns - axis.start_ns;
    let most = most.max(1) as u64;
    let below_a_second = (0..9).flat_map(|k| [1, 2, 5].map(|m| m * 10u64.pow(k)));
    let clock = [1, 2, 5, 10, 15, 30]
        .into_iter()
        .map(|m| m * SEC)
        .chain([1, 2, 5, 10, 15, 30].map(|m| m * 60 * SEC))
        .chain([1, 2, 3, 6, 12].map(|m| m * 3_600 * SEC));
    // Saturating: a span of centuries ends at u64::MAX, which any span fits.
    let days = (0..).map(|k: u32| {
        (86_400 * SEC)
            .saturating_mul(10u64.saturating_pow(k / 3))
            .saturating_mul([1, 2, 5][k as usize % 3])
    });
    let step = below_a_second
        .chain(clock)
        .chain(days)
        .find(|&s| span / s < most)
        .unwrap_or(u64::MAX);
    let first = axis.start_ns.div_ceil(step).saturating_mul(step);
    let ticks = (0..)
        .map(|i: u64| first.saturating_add(i.saturating_mul(step)))
        .take_while(|&t| t < axis.end_ns)
        .take(most as usize)
        .collect();
    (step, ticks)
}

/// Time spent in each state per column, and how many stretches of time
/// (a period, or its part within the column) each column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    pub ns: Vec<[u64; 5]>,
    pub pieces: Vec<u32>,
}

impl Buckets {
    pub fn new(axis: &Axis) -> Buckets {
        Buckets {
            ns: vec![[0; 5]; axis.columns],
            pieces: vec![0; axis.columns],
        }
    }

    /// `[from, to)` in `state`, clipped to the axis, split at columns.
    pub fn add(&mut self, axis: &Axis, state: CaState, from: u64, to: u64) {
        let mut a = from.max(axis.start_ns);
        let to = to.min(axis.end_ns);
        while a < to {
            let c = axis.column_of(a);
            let b = axis.column_start(c + 1).min(to);
            let ns = &mut self.ns[c][state.index()];
            *ns = ns.saturating_add(b - a);
            self.pieces[c] += 1;
            a = b;
        }
    }

    /// Per state, over all columns.
    pub fn totals(&self) -> [u64; 5] {
        let mut t = [0u64; 5];
        for col in &self.ns {
            for (s, v) in t.iter_mut().zip(col) {
                *s = s.saturating_add(*v);
            }
        }
        t
    }
}

/// A piece of a flow's state band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Band {
    /// Columns `first..=last` where the flow was timed in `state` only.
    Run {
        first: usize,
        last: usize,
        state: CaState,
        ns: u64,
    },
    /// A column where the flow was in several states: `periods` stretches
    /// shorter than the column, drawn as one stacked column.
    Mixed {
        column: usize,
        ns: [u64; 5],
        periods: u32,
    },
}

/// The bands of a flow's buckets, left to right: adjacent columns in one
/// state are one run; columns without time are gaps.
pub fn bands(b: &Buckets) -> Vec<Band> {
    let mut out: Vec<Band> = Vec::new();
    for (c, ns) in b.ns.iter().enumerate() {
        let mut states = CaState::ALL.into_iter().filter(|s| ns[s.index()] > 0);
        let (Some(first), second) = (states.next(), states.next()) else {
            continue;
        };
        if second.is_some() {
            out.push(Band::Mixed {
                column: c,
                ns: *ns,
                periods: b.pieces[c],
            });
            continue;
        }
        let v = ns[first.index()];
        match out.last_mut() {
            Some(Band::Run {
                last, state, ns, ..
            }) if *last + 1 == c && *state == first => {
                *last = c;
                *ns += v;
            }
            _ => out.push(Band::Run {
                first: c,
                last: c,
                state: first,
                ns: v,
            }),
        }
    }
    out
}

/// Stretches drawn merged into mixed columns.
pub fn merged_periods(bands: &[Band]) -> u64 {
    bands
        .iter()
        .map(|b| match b {
            Band::Mixed { periods, .. } => u64::from(*periods),
            Band::Run { .. } => 0,
        })
        .sum()
}

/// A value over time at column resolution: per column with samples, the
/// first, lowest, highest and last value (enough to draw its steps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steps {
    pub columns: Vec<StepColumn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepColumn {
    pub column: usize,
    pub first: u64,
    pub min: u64,
    pub max: u64,
    pub last: u64,
}

impl Steps {
    /// A sample at column `c`; samples come in time order.
    pub fn add(&mut self, c: usize, v: u64) {
        match self.columns.last_mut() {
            Some(s) if s.column == c => {
                s.min = s.min.min(v);
                s.max = s.max.max(v);
                s.last = v;
            }
            _ => self.columns.push(StepColumn {
                column: c,
                first: v,
                min: v,
                max: v,
                last: v,
            }),
        }
    }

    pub fn max(&self) -> u64 {
        self.columns.iter().map(|s| s.max).max().unwrap_or(0)
    }
}

/// A transition as hovering shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub t_ns: u64,
    pub old: CaState,
    pub new: CaState,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub srtt_us: u32,
}

/// The transitions that fall in one column: how many, and the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub column: usize,
    pub count: u32,
    pub first: Transition,
}

/// Adds a transition at column `c` (in time order).
pub fn tick(ticks: &mut Vec<Tick>, c: usize, t: Transition) {
    match ticks.last_mut() {
        Some(k) if k.column == c => k.count += 1,
        _ => ticks.push(Tick {
            column: c,
            count: 1,
            first: t,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaState::*;

    #[test]
    fn columns_split_the_axis_exactly() {
        // 10 ns over 3 columns: [0,4) [4,7) [7,10).
        let a = Axis::new(100, 110, 3);
        let starts: Vec<u64> = (0..=3).map(|c| a.column_start(c)).collect();
        assert_eq!(starts, vec![100, 104, 107, 110]);
        let cols: Vec<usize> = (100..110).map(|t| a.column_of(t)).collect();
        assert_eq!(cols, vec![0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
        assert_eq!(a.column_of(5), 0);
        assert_eq!(a.column_of(500), 2);
    }

    #[test]
    fn buckets_split_periods_at_columns_and_keep_every_nanosecond() {
        let a = Axis::new(0, 1000, 10);
        let mut b = Buckets::new(&a);
        b.add(&a, Open, 0, 250);
        b.add(&a, Recovery, 250, 260);
        b.add(&a, Open, 260, 270);
        b.add(&a, Loss, 270, 1200);
        assert_eq!(b.ns[0], [100, 0, 0, 0, 0]);
        assert_eq!(b.ns[2], [60, 0, 0, 10, 30]);
        assert_eq!(b.pieces[2], 4);
        assert_eq!(b.totals(), [260, 0, 0, 10, 730]);
        let bands = bands(&b);
        assert_eq!(
            bands,
            vec![
                Band::Run {
                    first: 0,
                    last: 1,
                    state: Open,
                    ns: 200
                },
                Band::Mixed {
                    column: 2,
                    ns: [60, 0, 0, 10, 30],
                    periods: 4
                },
                Band::Run {
                    first: 3,
                    last: 9,
                    state: Loss,
                    ns: 700
                },
            ]
        );
        assert_eq!(merged_periods(&bands), 4);
    }

    #[test]
    fn a_gap_or_another_state_ends_a_run() {
        let a = Axis::new(0, 100, 10);
        let mut b = Buckets::new(&a);
        b.add(&a, Open, 0, 20);
        b.add(&a, Open, 40, 50);
        b.add(&a, Cwr, 50, 60);
        let runs: Vec<(usize, usize)> = bands(&b)
            .iter()
            .map(|x| match x {
                Band::Run { first, last, .. } => (*first, *last),
                Band::Mixed { column, .. } => (*column, *column),
            })
            .collect();
        assert_eq!(runs, vec![(0, 1), (4, 4), (5, 5)]);
    }

    #[test]
    fn steps_keep_first_lowest_highest_last_per_column() {
        let mut s = Steps::default();
        for (c, v) in [(0, 10), (0, 4), (0, 12), (0, 8), (3, 20)] {
            s.add(c, v);
        }
        assert_eq!(
            s.columns,
            vec![
                StepColumn {
                    column: 0,
                    first: 10,
                    min: 4,
                    max: 12,
                    last: 8
                },
                StepColumn {
                    column: 3,
                    first: 20,
                    min: 20,
                    max: 20,
                    last: 20
                }
            ]
        );
        assert_eq!(s.max(), 20);
        let mut ticks = Vec::new();
        let t = |t_ns| Transition {
            t_ns,
            old: Open,
            new: Disorder,
            cwnd: 1,
            ssthresh: 2,
            srtt_us: 3,
        };
        for (c, at) in [(1, 5), (1, 6), (2, 9)] {
            tick(&mut ticks, c, t(at));
        }
        assert_eq!(ticks.len(), 2);
        assert_eq!((ticks[0].count, ticks[0].first.t_ns), (2, 5));
    }

    /// Labels fall on round instants: 200 ms apart over 1.3 s, whole
    /// seconds over 7 s, never more than asked for.
    #[test]
    fn ticks_fall_on_round_instants() {
        const MS: u64 = 1_000_000;
        let t0 = 1_700_000_000_000 * MS + 26 * MS;
        let (step, ticks) = round_ticks(&Axis::new(t0, t0 + 1_300 * MS, 720), 8);
        assert_eq!(step, 200 * MS);
        let offsets: Vec<u64> = ticks.iter().map(|t| (t - t0) / 1_000).collect();
        assert_eq!(
            offsets,
            [174_000, 374_000, 574_000, 774_000, 974_000, 1_174_000]
        );
        let (step, ticks) = round_ticks(&Axis::new(t0, t0 + 7_000 * MS, 720), 8);
        assert_eq!((step, ticks.len()), (1_000 * MS, 7));
        assert!(ticks.iter().all(|t| t % (1_000 * MS) == 0));
        let (_, few) = round_ticks(&Axis::new(t0, t0 + 1, 720), 8);
        assert!(few.len() <= 1);
        // An hour: every ten minutes, on the clock's minutes.
        let (step, ticks) = round_ticks(&Axis::new(t0, t0 + 3_600_000 * MS, 720), 8);
        assert_eq!((step, ticks.len()), (600_000 * MS, 6));
        assert!(ticks.iter().all(|t| t % (600_000 * MS) == 0));
        // The widest axis there is: one label, no overflow.
        let (_, ticks) = round_ticks(&Axis::new(0, u64::MAX, 720), 8);
        assert!(ticks.len() <= 8);
    }
}
