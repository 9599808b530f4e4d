//! Episodes as rows: one JSON object, CSV line or table line each, with the
//! same fields in every format (schemas/events-v1.md, *Episodes*).

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::IpAddr;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

use super::arrow::Rows;
use super::columns::{text, Column, Kind, Value};
use crate::analyze::engine::episodes::{End, Episode};
use crate::escape;
use crate::event::{Boot, CaState, Resend};
use crate::time::rfc3339;

/// An episode with what its row needs beside it.
pub struct EpisodeLine<'a> {
    pub ep: &'a Episode,
    pub boot: &'a Boot,
    start: String,
    end: String,
}

impl<'a> EpisodeLine<'a> {
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
        let a = &e.first.addr;
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
            escape::terminal(e.first.detail.comm.as_str()),
            (e.end_ns - e.start_ns) as f64 / 1e6,
            states(e),
            format!("{}->{}", e.cwnd_before, e.cwnd_end),
            e.retransmits.iter().sum::<u32>(),
            e.drops.iter().map(|x| x.count).sum::<u32>(),
            e.ce_marks,
            e.cause.label()
        )
    }
}

/// Episodes as one Arrow batch of [`EPISODE`]'s columns (what `--format
/// parquet` writes, and the Python package returns); `boots` by index.
pub fn batch(episodes: &[Episode], boots: &[Boot]) -> Result<RecordBatch, ArrowError> {
    let unnamed = Boot::default();
    let mut rows = Rows::new(EPISODE);
    for e in episodes {
        let boot = boots.get(e.key.boot as usize).unwrap_or(&unnamed);
        rows.push(EpisodeLine::new(e, boot).cells())?;
    }
    rows.batch()
}

pub fn table_header(out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<30} {:<47} {:<16} {:>10} {:<28} {:>13} {:>5} {:>5} {:>4} CAUSE",
        "START", "FLOW", "COMM", "MS", "STATES", "CWND", "RTX", "DROP", "CE"
    )
}

/// The states in order, and `open` if it came back: `disorder>recovery>open`.
fn states(e: &Episode) -> String {
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
    col("family", Kind::U8, |l| uint(l.ep.first.addr.family)),
    col("saddr", Kind::Text, |l| {
        Value::Text(l.ep.first.addr.saddr.to_string().into())
    }),
    col("sport", Kind::U16, |l| uint(l.ep.first.addr.sport)),
    col("daddr", Kind::Text, |l| {
        Value::Text(l.ep.first.addr.daddr.to_string().into())
    }),
    col("dport", Kind::U16, |l| uint(l.ep.first.addr.dport)),
    col("pid", Kind::U32, |l| uint(l.ep.first.detail.pid)),
    col("comm", Kind::Text, |l| {
        text(l.ep.first.detail.comm.as_str())
    }),
    col("cgroup_path", Kind::Text, |l| {
        Value::Text(l.boot.cgroup_path(l.ep.first.detail.cgroup).into())
    }),
    col("cong_algo", Kind::Text, |l| {
        text(l.ep.first.detail.cong_algo.as_str())
    }),
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
    // ssthresh / cwnd_before; 0 without a reduction.
    col("reduction", Kind::F64, |l| {
        Value::Float(l.ep.reduction().unwrap_or(0.0))
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
    col("cause", Kind::Text, |l| {
        Value::Text(l.ep.cause.label().into())
    }),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::render::columns::{csv_header, csv_line, json_line};

    /// One row in every format, with the same values.
    #[test]
    fn every_column_is_written_in_every_format() {
        let boot = Boot::default();
        let e = Episode {
            key: crate::event::FlowKey { boot: 0, cookie: 1 },
            first: crate::event::Event {
                ktime_ns: 0,
                flow: 1,
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
                change: crate::event::Change::Ca {
                    old: CaState::Open,
                    new: CaState::Cwr,
                },
                detail: Default::default(),
            },
            start_ns: 0,
            end_ns: 5,
            start_ktime_ns: 0,
            end_ktime_ns: 5,
            end: End::Open,
            broken: false,
            states: vec![CaState::Cwr],
            state_ns: [0, 0, 5, 0, 0],
            cwnd_before: 10,
            ssthresh: 7,
            lowest_cwnd: 7,
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
            cause: crate::analyze::engine::episodes::Cause::Ecn,
        };
        let line = EpisodeLine::new(&e, &boot);
        let mut csv = Vec::new();
        csv_line(&mut csv, line.cells()).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.trim_end().split(',').count(), EPISODE.len());
        assert_eq!(csv_header(EPISODE).split(',').count(), EPISODE.len());
        assert!(
            csv.contains(",cwr>open,cwr,open,0,0,5,0,0,10,7,0.7,7,7,,1,1,0,"),
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
    }
}
