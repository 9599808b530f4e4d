//! Episodes as rows: one JSON object, CSV line or table line each, with the
//! same fields in every format (schemas/events-v1.md, *Episodes*).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;

use super::columns::{text, Column, Kind, Value};
use super::flows::GroupKey;
use crate::analyze::engine::episodes::{End, Episode};
use crate::escape;
use crate::event::{Boot, CaState, Container, Resend};
use crate::time::rfc3339;

/// An episode with what its row needs beside it.
pub struct EpisodeLine<'a> {
    pub ep: &'a Episode,
    pub boot: &'a Boot,
    start: String,
    end: String,
}

impl<'a> EpisodeLine<'a> {
    fn container(&self, field: fn(&Container) -> &str) -> Value<'_> {
        text(self.boot.container_field(self.ep.addr.owner.cgroup, field))
    }

    pub fn new(ep: &'a Episode, boot: &'a Boot) -> EpisodeLine<'a> {
        EpisodeLine {
            ep,
            boot,
            start: rfc3339(ep.start_ns),
            end: rfc3339(ep.end_ns),
        }
    }

    /// Its cells, in [`EPISODE`]'s order.
    pub fn cells(&self) -> impl Iterator<Item = Value<'_>> {
        EPISODE.iter().map(move |c| (c.get)(self))
    }

    /// Its named cells, as JSON writes them.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, Value<'_>)> {
        EPISODE.iter().map(move |c| (c.name, (c.get)(self)))
    }

    /// One line for people: a process name is theirs to choose, and is
    /// escaped for the terminal.
    pub fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        let e = self.ep;
        let a = &e.addr;
        let endpoint = |a: &IpAddr, p: u16| match a {
            IpAddr::V4(a) => format!("{a}:{p}"),
            IpAddr::V6(a) => format!("[{a}]:{p}"),
        };
        writeln!(
            out,
            "{:<30} {:<47} {:<16} {:>10.3} {:<28} {:>13} {:>5} {:>5} {:>4} {}",
            self.start,
            format!(
                "{} -> {}",
                endpoint(&a.saddr, a.sport),
                endpoint(&a.daddr, a.dport)
            ),
            escape::terminal(e.addr.owner.comm.as_str()),
            (e.end_ns - e.start_ns) as f64 / 1e6,
            states(e),
            format!("{}->{}", e.cwnd_before, e.lowest_cwnd),
            e.retransmits.iter().sum::<u32>(),
            e.drops.iter().map(|x| x.count).sum::<u32>(),
            e.ce_marks,
            e.cause.label()
        )
    }
}

/// What orders episodes, largest first (`--sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Duration,
    /// The share of its window an episode cut (`1 - reduction`).
    CwndCut,
    /// Its time in one state.
    State(CaState),
    /// Its time in recovery and loss together.
    Trouble,
}

/// `episodes` in `order` (ties in time order), the first `top`.
pub fn ordered(mut episodes: Vec<Episode>, order: Order, top: Option<usize>) -> Vec<Episode> {
    let key = |e: &Episode| -> u64 {
        match order {
            Order::Duration => e.end_ns - e.start_ns,
            // In millionths: exact enough to order, and an integer.
            Order::CwndCut => e
                .reduction()
                .map_or(0, |r| ((1.0 - r).max(0.0) * 1e6) as u64),
            Order::State(s) => e.state_ns[s.index()],
            Order::Trouble => {
                e.state_ns[CaState::Recovery.index()] + e.state_ns[CaState::Loss.index()]
            }
        }
    };
    // Stable: equal keys keep their start order.
    episodes.sort_by_key(|e| std::cmp::Reverse(key(e)));
    episodes.truncate(top.unwrap_or(usize::MAX));
    episodes
}

/// What episodes are grouped by (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Cause,
    /// As flows are grouped: by their process, cgroup, ports, ...
    Flow(GroupKey),
}

/// The episodes of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeGroup {
    pub by: &'static str,
    pub key: String,
    pub episodes: u64,
    pub total_ns: u64,
    /// Nearest-rank percentiles of the episodes' durations.
    pub median_ns: u64,
    pub p99_ns: u64,
    pub state_ns: [u64; 5],
    pub retransmits: u64,
    pub dropped: u64,
    pub ce_marks: u64,
}

/// Episodes summed into their groups as they come.
pub struct Groups {
    by: GroupBy,
    found: BTreeMap<String, (Vec<u64>, EpisodeGroup)>,
}

impl Groups {
    pub fn new(by: GroupBy) -> Groups {
        Groups {
            by,
            found: BTreeMap::new(),
        }
    }

    /// One episode, of a flow of `boot`.
    pub fn add(&mut self, e: &Episode, boot: &Boot) {
        let by = self.by;
        let key = match by {
            GroupBy::Cause => e.cause.label(),
            GroupBy::Flow(k) => Cow::Owned(k.of(&e.addr, boot).1),
        };
        // A group's key is made a String once, when the group is new.
        if !self.found.contains_key(key.as_ref()) {
            self.found
                .insert(key.to_string(), Self::group(by, key.to_string()));
        }
        let Some((durations, g)) = self.found.get_mut(key.as_ref()) else {
            return;
        };
        let d = e.end_ns - e.start_ns;
        durations.push(d);
        g.episodes += 1;
        g.total_ns += d;
        for (t, s) in g.state_ns.iter_mut().zip(e.state_ns) {
            *t += s;
        }
        g.retransmits += u64::from(e.retransmits.iter().sum::<u32>());
        g.dropped += u64::from(e.drops.iter().map(|x| x.count).sum::<u32>());
        g.ce_marks += u64::from(e.ce_marks);
    }

    fn group(by: GroupBy, key: String) -> (Vec<u64>, EpisodeGroup) {
        (
            Vec::new(),
            EpisodeGroup {
                by: match by {
                    GroupBy::Cause => "cause",
                    GroupBy::Flow(k) => k.name(),
                },
                key,
                episodes: 0,
                total_ns: 0,
                median_ns: 0,
                p99_ns: 0,
                state_ns: [0; 5],
                retransmits: 0,
                dropped: 0,
                ce_marks: 0,
            },
        )
    }

    /// The groups, the most time first (then by key).
    pub fn finish(self) -> Vec<EpisodeGroup> {
        let mut out: Vec<EpisodeGroup> = self
            .found
            .into_values()
            .map(|(mut durations, mut g)| {
                durations.sort_unstable();
                g.median_ns = nearest_rank(&durations, 50);
                g.p99_ns = nearest_rank(&durations, 99);
                g
            })
            .collect();
        out.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then_with(|| a.key.cmp(&b.key)));
        out
    }
}

/// The `p`th percentile of sorted values by nearest rank: the smallest
/// value at least `p` % of them do not exceed.
fn nearest_rank(sorted: &[u64], p: usize) -> u64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

pub type GroupGet = for<'x> fn(&'x EpisodeGroup) -> Value<'x>;

const fn group(name: &'static str, kind: Kind, get: GroupGet) -> Column<GroupGet> {
    Column { name, kind, get }
}

/// A group's row (`--by`), in its columns' order.
pub static EPISODE_GROUP: &[Column<GroupGet>] = &[
    group("by", Kind::Text, |g| text(g.by)),
    group("key", Kind::Text, |g| text(&g.key)),
    group("episodes", Kind::U64, |g| uint(g.episodes)),
    group("total_ns", Kind::U64, |g| uint(g.total_ns)),
    group("median_ns", Kind::U64, |g| uint(g.median_ns)),
    group("p99_ns", Kind::U64, |g| uint(g.p99_ns)),
    group("disorder_ns", Kind::U64, |g| {
        uint(g.state_ns[CaState::Disorder.index()])
    }),
    group("cwr_ns", Kind::U64, |g| {
        uint(g.state_ns[CaState::Cwr.index()])
    }),
    group("recovery_ns", Kind::U64, |g| {
        uint(g.state_ns[CaState::Recovery.index()])
    }),
    group("loss_ns", Kind::U64, |g| {
        uint(g.state_ns[CaState::Loss.index()])
    }),
    group("retransmits", Kind::U64, |g| uint(g.retransmits)),
    group("dropped", Kind::U64, |g| uint(g.dropped)),
    group("ce_marks", Kind::U64, |g| uint(g.ce_marks)),
];

impl EpisodeGroup {
    /// One line for people; a key may be a process's name, escaped.
    pub fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<32} {:>8} {:>12.3} {:>12.3} {:>12.3} {:>7} {:>7} {:>7}",
            escape::terminal(&self.key),
            self.episodes,
            self.total_ns as f64 / 1e6,
            self.median_ns as f64 / 1e6,
            self.p99_ns as f64 / 1e6,
            self.retransmits,
            self.dropped,
            self.ce_marks
        )
    }

    pub fn table_header(by: &str, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<32} {:>8} {:>12} {:>12} {:>12} {:>7} {:>7} {:>7}",
            by.to_uppercase(),
            "EPISODES",
            "TOTAL_MS",
            "MEDIAN_MS",
            "P99_MS",
            "RTX",
            "DROP",
            "CE"
        )
    }
}

pub fn table_header(out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<30} {:<47} {:<16} {:>10} {:<28} {:>13} {:>5} {:>5} {:>4} CAUSE",
        "START", "FLOW", "COMM", "MS", "STATES", "CWND->LOW", "RTX", "DROP", "CE"
    )
}

/// The states in order, and `open` if it came back: `disorder>recovery>open`.
pub fn states(e: &Episode) -> String {
    let mut names: Vec<&str> = e.states.iter().map(|s| s.name()).collect();
    if e.end == End::Open {
        names.push(CaState::Open.name());
    }
    names.join(">")
}

pub type EpisodeGet = for<'x, 'y> fn(&'x EpisodeLine<'y>) -> Value<'x>;

const fn col(name: &'static str, kind: Kind, get: EpisodeGet) -> Column<EpisodeGet> {
    Column { name, kind, get }
}

fn uint(n: impl Into<u64>) -> Value<'static> {
    Value::Uint(n.into())
}

fn resent(l: &EpisodeLine<'_>, k: Resend) -> Value<'static> {
    uint(l.ep.retransmits[k as usize])
}

fn time_in(l: &EpisodeLine<'_>, s: CaState) -> Value<'static> {
    uint(l.ep.state_ns[s.index()])
}

/// The episode's row, in its columns' order: JSON, CSV and Parquet alike
/// (schemas/events-v1.md, *Episodes*, says what each holds).
pub static EPISODE: &[Column<EpisodeGet>] = &[
    col("host", Kind::Text, |l| text(&l.boot.host)),
    col("boot_id", Kind::Text, |l| text(&l.boot.boot_id)),
    col("flow", Kind::U64, |l| uint(l.ep.key.cookie)),
    col("family", Kind::U8, |l| uint(l.ep.addr.family)),
    col("saddr", Kind::Text, |l| {
        Value::Text(l.ep.addr.saddr.to_string().into())
    }),
    col("sport", Kind::U16, |l| uint(l.ep.addr.sport)),
    col("daddr", Kind::Text, |l| {
        Value::Text(l.ep.addr.daddr.to_string().into())
    }),
    col("dport", Kind::U16, |l| uint(l.ep.addr.dport)),
    col("pid", Kind::U32, |l| uint(l.ep.addr.owner.pid)),
    col("comm", Kind::Text, |l| text(l.ep.addr.owner.comm.as_str())),
    col("cgroup_path", Kind::Text, |l| {
        Value::Text(l.boot.cgroup_path(l.ep.addr.owner.cgroup).into())
    }),
    col("container", Kind::Text, |l| l.container(|c| &c.name)),
    col("container_id", Kind::Text, |l| l.container(|c| &c.id)),
    col("pod", Kind::Text, |l| l.container(|c| &c.pod)),
    col("k8s_namespace", Kind::Text, |l| {
        l.container(|c| &c.namespace)
    }),
    col("cong_algo", Kind::Text, |l| text(l.ep.addr.cc.as_str())),
    col("start", Kind::Time, |l| {
        Value::Time(l.ep.start_ns, &l.start)
    }),
    col("end", Kind::Time, |l| Value::Time(l.ep.end_ns, &l.end)),
    col("start_ktime_ns", Kind::U64, |l| uint(l.ep.start_ktime_ns)),
    col("end_ktime_ns", Kind::U64, |l| uint(l.ep.end_ktime_ns)),
    col("duration_ns", Kind::U64, |l| {
        uint(l.ep.end_ns - l.ep.start_ns)
    }),
    col("states", Kind::Text, |l| Value::Text(states(l.ep).into())),
    col("worst", Kind::Text, |l| text(l.ep.worst().name())),
    // `open`, or how it was censored: `close`, `capture`.
    col("ended", Kind::Text, |l| {
        text(match l.ep.end {
            End::Open => "open",
            End::Close => "close",
            End::Capture => "capture",
        })
    }),
    col("broken", Kind::U8, |l| uint(l.ep.broken)),
    col("disorder_ns", Kind::U64, |l| time_in(l, CaState::Disorder)),
    col("cwr_ns", Kind::U64, |l| time_in(l, CaState::Cwr)),
    col("recovery_ns", Kind::U64, |l| time_in(l, CaState::Recovery)),
    col("loss_ns", Kind::U64, |l| time_in(l, CaState::Loss)),
    col("cwnd_before", Kind::U32, |l| uint(l.ep.cwnd_before)),
    col("ssthresh", Kind::U32, |l| uint(l.ep.ssthresh)),
    // ssthresh / cwnd_before; null without a threshold set.
    col("reduction", Kind::OptF64, |l| {
        l.ep.reduction().map_or(Value::Null, Value::Float)
    }),
    col("lowest_cwnd", Kind::U32, |l| uint(l.ep.lowest_cwnd)),
    col("cwnd_end", Kind::U32, |l| uint(l.ep.cwnd_end)),
    col("regained_ns", Kind::OptU64, |l| {
        l.ep.regained_ns.map_or(Value::Null, Value::Uint)
    }),
    col("srtt_entry_us", Kind::U32, |l| uint(l.ep.srtt_entry_us)),
    col("srtt_max_us", Kind::U32, |l| uint(l.ep.srtt_max_us)),
    col("backoff", Kind::U8, |l| uint(l.ep.backoff)),
    col("retransmits", Kind::U32, |l| {
        uint(l.ep.retransmits.iter().sum::<u32>())
    }),
    col("fast", Kind::U32, |l| resent(l, Resend::Fast)),
    col("loss", Kind::U32, |l| resent(l, Resend::Loss)),
    col("rto", Kind::U32, |l| resent(l, Resend::Rto)),
    col("tlp", Kind::U32, |l| resent(l, Resend::Tlp)),
    col("syn", Kind::U32, |l| resent(l, Resend::Syn)),
    col("other", Kind::U32, |l| resent(l, Resend::Other)),
    // `rx:netfilter_drop=3 tx:qdisc_drop=1`.
    col("drops", Kind::Text, |l| {
        let d: Vec<String> =
            l.ep.drops
                .iter()
                .map(|x| {
                    format!(
                        "{}:{}={}",
                        if x.rx { "rx" } else { "tx" },
                        x.reason,
                        x.count
                    )
                })
                .collect();
        Value::Text(Cow::Owned(d.join(" ")))
    }),
    col("dropped", Kind::U32, |l| {
        uint(l.ep.drops.iter().map(|x| x.count).sum::<u32>())
    }),
    col("ce_marks", Kind::U32, |l| uint(l.ep.ce_marks)),
    col("dsacks", Kind::U32, |l| uint(l.ep.dsacks)),
    col("undone", Kind::U8, |l| uint(l.ep.undone)),
    col("cause", Kind::Text, |l| Value::Text(l.ep.cause.label())),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::engine::episodes::Cause;
    use crate::analyze::render::arrow::Rows;
    use crate::analyze::render::columns::{csv_header, csv_line, json_line};

    /// An episode of flow `cookie` over `[start_ms, end_ms)` (in cwr, 10 ->
    /// 7), for `cause`.
    fn episode(cookie: u64, start_ms: u64, end_ms: u64, cause: Cause) -> Episode {
        Episode {
            key: crate::event::FlowKey { boot: 0, cookie },
            addr: crate::event::FlowAddr {
                family: 4,
                saddr: IpAddr::from([127, 0, 0, 1]),
                sport: 1,
                daddr: IpAddr::from([127, 0, 0, 1]),
                dport: 2,
                owner: Default::default(),
                netns: 0,
                cc: Default::default(),
            },
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            start_ktime_ns: 0,
            end_ktime_ns: 5,
            end: End::Open,
            broken: false,
            states: vec![CaState::Cwr],
            state_ns: [0, 0, (end_ms - start_ms) * 1_000_000, 0, 0],
            cwnd_before: 10,
            ssthresh: 7,
            lowest_cwnd: 5,
            cwnd_end: 7,
            regained_ns: None,
            srtt_entry_us: 1,
            srtt_max_us: 1,
            backoff: 0,
            retransmits: [0; 6],
            drops: Vec::new(),
            ce_marks: 2,
            dsacks: 0,
            undone: false,
            cause,
        }
    }

    /// One row in every format, with the same values.
    #[test]
    fn every_column_is_written_in_every_format() {
        let boot = Boot::default();
        let e = episode(1, 0, 5, Cause::Ecn);
        let line = EpisodeLine::new(&e, &boot);
        let mut csv = Vec::new();
        csv_line(&mut csv, line.cells()).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.trim_end().split(',').count(), EPISODE.len());
        assert_eq!(csv_header(EPISODE).split(',').count(), EPISODE.len());
        assert!(
            csv.contains(",cwr>open,cwr,open,0,0,5000000,0,0,10,7,0.7,5,7,,1,1,0,"),
            "{csv}"
        );
        assert!(csv.trim_end().ends_with(",,0,2,0,0,ecn"), "{csv}");
        let mut json = Vec::new();
        json_line(&mut json, line.named()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["regained_ns"], serde_json::Value::Null);
        assert_eq!(
            (v["reduction"].as_f64(), v["cause"].as_str()),
            (Some(0.7), Some("ecn"))
        );
        let mut rows = Rows::new(EPISODE);
        rows.push(line.cells()).unwrap();
        let batch = rows.batch().unwrap();
        assert_eq!((batch.num_rows(), batch.num_columns()), (1, EPISODE.len()));
        assert_eq!(batch.column_by_name("regained_ns").unwrap().null_count(), 1);
        // The table's window: before, then the lowest (not the last).
        let mut table = Vec::new();
        line.table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains(" 10->5 "), "{table}");
        // Without a threshold, no reduction: null, not 0.
        let mut disorder = episode(1, 0, 5, Cause::Reordering);
        disorder.ssthresh = 0;
        let line = EpisodeLine::new(&disorder, &boot);
        let mut json = Vec::new();
        json_line(&mut json, line.named()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["reduction"], serde_json::Value::Null);
    }

    #[test]
    fn groups_count_time_and_nearest_rank_percentiles() {
        let mut eps: Vec<Episode> = (1..=100).map(|i| episode(i, 0, i, Cause::Ecn)).collect();
        eps.push(episode(200, 0, 1000, Cause::Timeout));
        let mut groups = Groups::new(GroupBy::Cause);
        for e in &eps {
            groups.add(e, &Boot::default());
        }
        let g = groups.finish();
        assert_eq!(g.len(), 2);
        // The most time first: 5050 ms of ecn, 1000 of timeout.
        assert_eq!((g[0].key.as_str(), g[0].episodes), ("ecn", 100));
        assert_eq!(g[0].total_ns, 5050 * 1_000_000);
        assert_eq!((g[0].median_ns, g[0].p99_ns), (50_000_000, 99_000_000));
        assert_eq!(
            (g[1].median_ns, g[1].p99_ns),
            (1_000_000_000, 1_000_000_000)
        );
        assert_eq!(g[0].ce_marks, 200);
    }

    #[test]
    fn episodes_are_ordered_largest_first_then_by_start() {
        let mut cut = episode(3, 5, 6, Cause::Ecn);
        cut.ssthresh = 2;
        let eps = vec![
            episode(1, 0, 10, Cause::Ecn),
            episode(2, 1, 31, Cause::Ecn),
            cut,
        ];
        let flows = |v: Vec<Episode>| v.iter().map(|e| e.key.cookie).collect::<Vec<_>>();
        assert_eq!(
            flows(ordered(eps.clone(), Order::Duration, None)),
            [2, 1, 3]
        );
        assert_eq!(flows(ordered(eps.clone(), Order::CwndCut, Some(1))), [3]);
        assert_eq!(flows(ordered(eps, Order::Trouble, None)), [1, 2, 3]);
    }
}
