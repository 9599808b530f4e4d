//! Before and after: two sets of recordings (a run at 1 % loss and one at
//! 5 %, a host before and after a kernel upgrade) reduced to what a reader
//! compares: the share of the flows' time in each state, how often flows
//! changed state, how long a typical stay in each state lasted, and the
//! flows most in trouble, with the differences that matter called out.
//! Pure arithmetic over two engine summaries; `render::compare` words it.

use super::engine::{FlowRow, Log2Hist, Summary};
use crate::event::CaState;

/// One side: every window of a summary added up.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub flows: u64,
    /// Nanoseconds per state, over every flow.
    pub ns: [u64; 5],
    pub changes: u64,
    pub mismatches: u64,
    /// Dwell times per state, in the summary's histogram unit.
    pub hist: [Log2Hist; 5],
    /// The flows with the most time in loss and recovery, most first.
    pub worst: Vec<FlowRow>,
}

impl Side {
    /// The summary's windows added up, with its `top` flows most in
    /// trouble (a flow's windows summed first).
    pub fn of(s: &Summary, top: usize) -> Side {
        let mut side = Side {
            flows: s.timed_flows(),
            ns: [0; 5],
            changes: 0,
            mismatches: 0,
            hist: Default::default(),
            worst: Vec::new(),
        };
        let mut per_flow: std::collections::BTreeMap<_, FlowRow> = Default::default();
        for w in &s.windows {
            for (h, o) in side.hist.iter_mut().zip(&w.hist) {
                h.merge(o);
            }
            for r in &w.rows {
                for (t, n) in side.ns.iter_mut().zip(r.ns) {
                    *t = t.saturating_add(n);
                }
                side.changes = side.changes.saturating_add(r.changes);
                side.mismatches = side.mismatches.saturating_add(r.mismatches);
                per_flow
                    .entry(r.key)
                    .and_modify(|f: &mut FlowRow| {
                        for (t, n) in f.ns.iter_mut().zip(r.ns) {
                            *t = t.saturating_add(n);
                        }
                        f.changes = f.changes.saturating_add(r.changes);
                        f.mismatches = f.mismatches.saturating_add(r.mismatches);
                    })
                    .or_insert_with(|| r.clone());
            }
        }
        let mut worst: Vec<FlowRow> = per_flow
            .into_values()
            .filter(|r| trouble(&r.ns) > 0)
            .collect();
        // Stable: ties keep the flows' key order.
        worst.sort_by_key(|r| std::cmp::Reverse(trouble(&r.ns)));
        worst.truncate(top);
        side.worst = worst;
        side
    }

    /// All flows' time, in every state.
    pub fn total_ns(&self) -> u64 {
        self.ns.iter().fold(0u64, |a, &n| a.saturating_add(n))
    }

    /// The share of the flows' time in `state`, in percent (0 without time).
    pub fn share(&self, state: CaState) -> f64 {
        percent(self.ns[state.index()], self.total_ns())
    }

    /// State changes per second of flow time (0 without time).
    pub fn changes_per_flow_second(&self) -> f64 {
        match self.total_ns() {
            0 => 0.0,
            t => self.changes as f64 * 1e9 / t as f64,
        }
    }

    /// The histogram slot that holds the median stay in `state`.
    pub fn median_slot(&self, state: CaState) -> Option<usize> {
        median_slot(&self.hist[state.index()])
    }
}

/// Loss and recovery together: where a flow was in trouble.
pub fn trouble(ns: &[u64; 5]) -> u64 {
    ns[CaState::Loss.index()].saturating_add(ns[CaState::Recovery.index()])
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The slot of the sample in the middle (the lower middle of an even
/// count), `None` for an empty histogram.
pub fn median_slot(h: &Log2Hist) -> Option<usize> {
    let top = h.max_slot()?;
    let n: u64 = (1..=top).map(|i| h.count(i)).sum();
    let mut seen = 0;
    (1..=top).find(|&i| {
        seen += h.count(i);
        seen * 2 >= n
    })
}

/// A difference worth a reader's attention.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A state's share of the flows' time moved by this many points.
    Share(CaState, f64),
    /// State changes per flow-second went from `before` to `after`.
    Rate { before: f64, after: f64 },
    /// The median stay in a state moved from one log2 slot to another,
    /// two or more apart (a factor of four or more).
    Dwell {
        state: CaState,
        before: usize,
        after: usize,
    },
}

/// Shares that moved by at least this many points are called out.
pub const SHARE_POINTS: f64 = 1.0;
/// A change rate that grew or shrank by at least this factor is.
pub const RATE_FACTOR: f64 = 1.25;
/// A typical stay whose log2 slot moved by at least this many is: one
/// slot apart can be 1023 us against 1024 us.
pub const DWELL_SLOTS: usize = 2;

/// What changed from `before` to `after` enough to say: shares by a point
/// or more, the change rate by a quarter or more (or to or from none), a
/// median stay by two log2 slots or more; biggest share moves first.
/// Nothing is called out where a side has no flow time to compare.
pub fn called_out(before: &Side, after: &Side) -> Vec<Change> {
    if before.total_ns() == 0 || after.total_ns() == 0 {
        return Vec::new();
    }
    let mut shares: Vec<Change> = CaState::ALL
        .iter()
        // To the tenth of a point shown, so that what is called out and
        // what the table prints agree.
        .map(|&s| (s, tenths(after.share(s) - before.share(s))))
        .filter(|(_, d)| d.abs() >= SHARE_POINTS)
        .map(|(s, d)| Change::Share(s, d))
        .collect();
    shares.sort_by(|a, b| {
        let size = |c: &Change| match c {
            Change::Share(_, d) => d.abs(),
            _ => 0.0,
        };
        size(b).total_cmp(&size(a))
    });
    let (rb, ra) = (
        before.changes_per_flow_second(),
        after.changes_per_flow_second(),
    );
    // The ratio as the table prints it, to two decimals.
    let ratio = |x: f64, y: f64| (y / x * 100.0).round() / 100.0;
    let moved = match (rb > 0.0, ra > 0.0) {
        (true, true) => ratio(rb, ra) >= RATE_FACTOR || ratio(ra, rb) >= RATE_FACTOR,
        (false, false) => false,
        _ => true,
    };
    if moved {
        shares.push(Change::Rate {
            before: rb,
            after: ra,
        });
    }
    for state in CaState::ALL {
        if let (Some(b), Some(a)) = (before.median_slot(state), after.median_slot(state)) {
            if a.abs_diff(b) >= DWELL_SLOTS {
                shares.push(Change::Dwell {
                    state,
                    before: b,
                    after: a,
                });
            }
        }
    }
    shares
}

/// `v` to the tenth shown.
fn tenths(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::engine::WindowReport;
    use crate::event::{FlowAddr, FlowKey};
    use std::net::{IpAddr, Ipv4Addr};

    const MS: u64 = 1_000_000;

    fn row(cookie: u64, ns: [u64; 5], changes: u64) -> FlowRow {
        FlowRow {
            key: FlowKey { boot: 0, cookie },
            addr: FlowAddr {
                family: 4,
                saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                sport: 40000 + cookie as u16,
                daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                dport: 5201,
                owner: Default::default(),
                netns: 0,
                cc: Default::default(),
            },
            ns,
            changes,
            mismatches: 0,
            trouble: None,
        }
    }

    fn summary(windows: Vec<Vec<FlowRow>>, stays: &[(CaState, u64)]) -> Summary {
        let mut windows: Vec<WindowReport> = windows
            .into_iter()
            .enumerate()
            .map(|(i, rows)| WindowReport {
                index: i as u64,
                start_ns: 0,
                end_ns: 0,
                rows,
                hist: Default::default(),
            })
            .collect();
        for &(s, v) in stays {
            windows[0].hist[s.index()].add(v);
        }
        Summary {
            windows,
            flows: 2,
            ..Summary::default()
        }
    }

    /// Windows add up per flow; shares, the change rate and the worst
    /// flows come out exact.
    #[test]
    fn a_side_adds_its_windows_up() {
        use CaState::*;
        let s = summary(
            vec![
                vec![
                    row(1, [600 * MS, 0, 0, 300 * MS, 100 * MS], 4),
                    row(2, [1000 * MS, 0, 0, 0, 0], 0),
                ],
                vec![row(1, [0, 0, 0, 0, 1000 * MS], 2)],
            ],
            &[(Recovery, 3), (Recovery, 5), (Recovery, 700), (Loss, 1)],
        );
        let side = Side::of(&s, 5);
        assert_eq!(side.ns, [1600 * MS, 0, 0, 300 * MS, 1100 * MS]);
        assert_eq!(side.total_ns(), 3000 * MS);
        assert_eq!(side.share(Open), 1600.0 / 30.0);
        assert_eq!(side.share(Loss), 1100.0 / 30.0);
        assert_eq!(side.changes_per_flow_second(), 2.0);
        // Flow 1 summed over its windows; flow 2 never in trouble.
        assert_eq!(side.worst.len(), 1);
        assert_eq!(side.worst[0].ns, [600 * MS, 0, 0, 300 * MS, 1100 * MS]);
        assert_eq!(side.worst[0].changes, 6);
        // 3 and 5 are slots 2 and 3, 700 slot 10: the middle is slot 3.
        assert_eq!(side.median_slot(Recovery), Some(3));
        assert_eq!(side.median_slot(Loss), Some(1));
        assert_eq!(side.median_slot(Cwr), None);
    }

    /// Shares that moved a point or more, the rate when it moved a
    /// quarter, medians that moved a slot; in that order, biggest first.
    #[test]
    fn the_differences_that_matter_are_called_out() {
        use CaState::*;
        let before = Side::of(
            &summary(
                vec![vec![row(1, [900 * MS, 5 * MS, 0, 95 * MS, 0], 10)]],
                &[(Recovery, 4)],
            ),
            3,
        );
        let after = Side::of(
            &summary(
                vec![vec![row(1, [700 * MS, 9 * MS, 0, 191 * MS, 100 * MS], 10)]],
                &[(Recovery, 20)],
            ),
            3,
        );
        let out = called_out(&before, &after);
        // Open -20 points, recovery +9.6, loss +10; disorder +0.4 is not
        // enough; the rate is the same (10 per second of 1 s of time).
        let rounded: Vec<String> = out
            .iter()
            .map(|c| match c {
                Change::Share(s, d) => format!("{} {d:+.1}", s.name()),
                Change::Rate { before, after } => format!("rate {before}->{after}"),
                Change::Dwell {
                    state,
                    before,
                    after,
                } => format!("{} {before}->{after}", state.name()),
            })
            .collect();
        assert_eq!(
            rounded,
            ["open -20.0", "loss +10.0", "recovery +9.6", "recovery 3->5"]
        );
        // A side without flow time has nothing to compare.
        let none = Side::of(&summary(vec![vec![]], &[]), 3);
        assert_eq!(called_out(&before, &none), vec![]);
    }

    /// The change rate is called out as the table rounds it, and when it
    /// goes to or from none.
    #[test]
    fn the_rate_is_called_out_as_shown_and_from_none() {
        let side = |changes| {
            Side::of(
                &summary(vec![vec![row(1, [1000 * MS, 0, 0, 0, 0], changes)]], &[]),
                1,
            )
        };
        let rate = |b: &Side, a: &Side| {
            called_out(b, a)
                .into_iter()
                .filter(|c| matches!(c, Change::Rate { .. }))
                .count()
        };
        // 4 -> 5 per second is x1.25 exactly; 100 -> 124 is x1.24.
        assert_eq!(rate(&side(4), &side(5)), 1);
        assert_eq!(rate(&side(100), &side(124)), 0);
        assert_eq!(rate(&side(0), &side(3)), 1);
        assert_eq!(rate(&side(0), &side(0)), 0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle() {
        let mut h = Log2Hist::default();
        assert_eq!(median_slot(&h), None);
        h.add(1);
        h.add(100);
        assert_eq!(median_slot(&h), Some(1));
        h.add(100);
        assert_eq!(median_slot(&h), Some(7));
    }
}
