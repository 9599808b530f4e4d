//! Episodes as rows: one JSON object, CSV line or table line each, with the
//! same fields in every format (schemas/events-v1.md, *Episodes*).

use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use crate::analyze::engine::episodes::{End, Episode};
use crate::escape;
use crate::event::{Boot, CaState, Resend};
use crate::time::rfc3339;

/// An episode as every output writes it.
#[derive(Debug, Serialize)]
pub struct EpisodeRow<'a> {
    host: &'a str,
    boot_id: &'a str,
    flow: u64,
    family: u8,
    saddr: IpAddr,
    sport: u16,
    daddr: IpAddr,
    dport: u16,
    pid: u32,
    comm: &'a str,
    cgroup_path: String,
    cong_algo: &'a str,
    start: String,
    end: String,
    start_ktime_ns: u64,
    end_ktime_ns: u64,
    duration_ns: u64,
    /// The states in order, and how it ended: `disorder>recovery>open`.
    states: String,
    worst: &'static str,
    /// `open`, or how it was censored: `close`, `capture`.
    ended: End,
    broken: bool,
    disorder_ns: u64,
    cwr_ns: u64,
    recovery_ns: u64,
    loss_ns: u64,
    cwnd_before: u32,
    ssthresh: u32,
    reduction: Option<f64>,
    lowest_cwnd: u32,
    cwnd_end: u32,
    regained_ns: Option<u64>,
    srtt_entry_us: u32,
    srtt_max_us: u32,
    backoff: u8,
    retransmits: u32,
    fast: u32,
    loss: u32,
    rto: u32,
    tlp: u32,
    syn: u32,
    other: u32,
    /// `rx:netfilter_drop=3 tx:qdisc_drop=1`.
    drops: String,
    dropped: u32,
    ce_marks: u32,
    dsacks: u32,
    undone: bool,
    cause: String,
}

/// The fields in order: the CSV header, and each line's order.
pub const FIELDS: [&str; 47] = [
    "host",
    "boot_id",
    "flow",
    "family",
    "saddr",
    "sport",
    "daddr",
    "dport",
    "pid",
    "comm",
    "cgroup_path",
    "cong_algo",
    "start",
    "end",
    "start_ktime_ns",
    "end_ktime_ns",
    "duration_ns",
    "states",
    "worst",
    "ended",
    "broken",
    "disorder_ns",
    "cwr_ns",
    "recovery_ns",
    "loss_ns",
    "cwnd_before",
    "ssthresh",
    "reduction",
    "lowest_cwnd",
    "cwnd_end",
    "regained_ns",
    "srtt_entry_us",
    "srtt_max_us",
    "backoff",
    "retransmits",
    "fast",
    "loss",
    "rto",
    "tlp",
    "syn",
    "other",
    "drops",
    "dropped",
    "ce_marks",
    "dsacks",
    "undone",
    "cause",
];

impl<'a> EpisodeRow<'a> {
    pub fn new(e: &'a Episode, boot: &'a Boot) -> EpisodeRow<'a> {
        let d = &e.first.detail;
        let a = &e.first.addr;
        let mut states: Vec<&str> = e.states.iter().map(|s| s.name()).collect();
        if e.end == End::Open {
            states.push(CaState::Open.name());
        }
        let resent = |k: Resend| e.retransmits[k as usize];
        EpisodeRow {
            host: &boot.host,
            boot_id: &boot.boot_id,
            flow: e.key.cookie,
            family: a.family,
            saddr: a.saddr,
            sport: a.sport,
            daddr: a.daddr,
            dport: a.dport,
            pid: d.pid,
            comm: d.comm.as_str(),
            cgroup_path: boot.cgroup_path(d.cgroup),
            cong_algo: d.cong_algo.as_str(),
            start: rfc3339(e.start_ns),
            end: rfc3339(e.end_ns),
            start_ktime_ns: e.start_ktime_ns,
            end_ktime_ns: e.end_ktime_ns,
            duration_ns: e.end_ns - e.start_ns,
            states: states.join(">"),
            worst: e.worst().name(),
            ended: e.end,
            broken: e.broken,
            disorder_ns: e.state_ns[CaState::Disorder.index()],
            cwr_ns: e.state_ns[CaState::Cwr.index()],
            recovery_ns: e.state_ns[CaState::Recovery.index()],
            loss_ns: e.state_ns[CaState::Loss.index()],
            cwnd_before: e.cwnd_before,
            ssthresh: e.ssthresh,
            reduction: e.reduction(),
            lowest_cwnd: e.lowest_cwnd,
            cwnd_end: e.cwnd_end,
            regained_ns: e.regained_ns,
            srtt_entry_us: e.srtt_entry_us,
            srtt_max_us: e.srtt_max_us,
            backoff: e.backoff,
            retransmits: e.retransmits.iter().sum(),
            fast: resent(Resend::Fast),
            loss: resent(Resend::Loss),
            rto: resent(Resend::Rto),
            tlp: resent(Resend::Tlp),
            syn: resent(Resend::Syn),
            other: resent(Resend::Other),
            drops: e
                .drops
                .iter()
                .map(|x| {
                    format!(
                        "{}:{}={}",
                        if x.rx { "rx" } else { "tx" },
                        x.reason,
                        x.count
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            dropped: e.drops.iter().map(|x| x.count).sum(),
            ce_marks: e.ce_marks,
            dsacks: e.dsacks,
            undone: e.undone,
            cause: e.cause.label(),
        }
    }

    pub fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    pub fn csv_header(out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", FIELDS.join(","))
    }

    /// The fields in [`FIELDS`] order, strings quoted where they need it,
    /// an absent value empty.
    pub fn csv(&self, out: &mut dyn Write) -> io::Result<()> {
        let v = serde_json::to_value(self)?;
        let line: Vec<String> = FIELDS
            .iter()
            .map(|k| match &v[*k] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => escape::csv(s).into_owned(),
                x => x.to_string(),
            })
            .collect();
        writeln!(out, "{}", line.join(","))
    }

    pub fn table_header(out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<30} {:<47} {:<16} {:>10} {:<28} {:>13} {:>5} {:>5} {:>4} CAUSE",
            "START", "FLOW", "COMM", "MS", "STATES", "CWND", "RTX", "DROP", "CE"
        )
    }

    /// One line for people; a process name is theirs to choose, and is
    /// escaped for the terminal.
    pub fn table(&self, out: &mut dyn Write) -> io::Result<()> {
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
                endpoint(&self.saddr, self.sport),
                endpoint(&self.daddr, self.dport)
            ),
            escape::terminal(self.comm),
            self.duration_ns as f64 / 1e6,
            self.states,
            format!("{}->{}", self.cwnd_before, self.cwnd_end),
            self.retransmits,
            self.dropped,
            self.ce_marks,
            self.cause
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSV's fields are the JSON object's keys, in the struct's order.
    #[test]
    fn every_field_is_written_in_every_format() {
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
            state_ns: [0; 5],
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
        let row = EpisodeRow::new(&e, &boot);
        let v = serde_json::to_value(&row).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut fields = FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields, "serde_json sorts its keys");
        let mut csv = Vec::new();
        row.csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.trim_end().split(',').count(), FIELDS.len());
        assert!(csv.contains(",cwr>open,cwr,open,false,"), "{csv}");
        assert!(csv.trim_end().ends_with(",2,0,false,ecn"), "{csv}");
    }
}
