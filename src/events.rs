//! `tcpcong events`: the raw transitions of recordings in time order, one
//! line each — what `perf script` is to `perf record`. It streams (rows go
//! out as they are read) and stops quietly when its reader goes away.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

use crate::analyze::reader::{self, Columns, Dataset, Item, Row, RowFilter};
use crate::analyze::{stdout_err, time_span};
use crate::cli::{EventsArgs, EventsFormat};
use crate::error::Result;
use crate::record::host::rfc3339;

fn endpoint(addr: &std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn text(out: &mut dyn Write, r: &Row) -> io::Result<()> {
    let e = &r.ev;
    let (old, new) = e.change.names();
    writeln!(
        out,
        "{} {:>8} {:>21} -> {:<21} {:<9} {:>8} -> {:<11} cwnd={} ssthresh={} srtt_us={}",
        rfc3339(r.t_ns as i64),
        e.flow,
        endpoint(&e.addr.saddr, e.addr.sport),
        endpoint(&e.addr.daddr, e.addr.dport),
        e.change.kind(),
        old,
        new,
        e.tcp.snd_cwnd,
        e.tcp.snd_ssthresh,
        e.tcp.srtt_us,
    )
}

/// Every schema v1 column, in schema order.
#[derive(Serialize)]
struct JsonEvent<'a> {
    time: String,
    ktime_ns: u64,
    kind: &'a str,
    flow: u64,
    family: u8,
    saddr: String,
    daddr: String,
    sport: u16,
    dport: u16,
    old_state: &'a str,
    new_state: &'a str,
    cpu: u16,
    netns: u32,
    cgroup: u64,
    cong_algo: &'a str,
    snd_cwnd: u32,
    snd_ssthresh: u32,
    srtt_us: u32,
    mss: u32,
    packets_out: u32,
    retrans_out: u32,
    lost_out: u32,
    sacked_out: u32,
    total_retrans: u32,
}

fn json_line(out: &mut dyn Write, r: &Row) -> io::Result<()> {
    let e = &r.ev;
    let (old_state, new_state) = e.change.names();
    let t = &e.tcp;
    let v = JsonEvent {
        time: rfc3339(r.t_ns as i64),
        ktime_ns: e.ktime_ns,
        kind: e.change.kind(),
        flow: e.flow,
        family: e.addr.family,
        saddr: e.addr.saddr.to_string(),
        daddr: e.addr.daddr.to_string(),
        sport: e.addr.sport,
        dport: e.addr.dport,
        old_state,
        new_state,
        cpu: e.cpu,
        netns: e.netns,
        cgroup: e.cgroup,
        cong_algo: e.cong_algo.as_str(),
        snd_cwnd: t.snd_cwnd,
        snd_ssthresh: t.snd_ssthresh,
        srtt_us: t.srtt_us,
        mss: t.mss,
        packets_out: t.packets_out,
        retrans_out: t.retrans_out,
        lost_out: t.lost_out,
        sacked_out: t.sacked_out,
        total_retrans: t.total_retrans,
    };
    serde_json::to_writer(&mut *out, &v)?;
    writeln!(out)
}

pub fn run(args: &EventsArgs) -> Result<()> {
    let data = Dataset::open(&reader::discover(&args.inputs)?)?;
    let (start, end, until) = time_span(&args.select, &data)?;
    // Without --until the capture's tail (events drained at stop) is shown.
    let end = if until.is_some() { end } else { u64::MAX };
    let filter = RowFilter::from(&args.select);
    let mut out = BufWriter::new(io::stdout().lock());
    let write = match args.format {
        EventsFormat::Text => text,
        EventsFormat::Json => json_line,
    };
    data.scan(&filter, Columns::All, &mut |item| match item {
        Item::Row(r) if r.t_ns >= start && r.t_ns < end => write(&mut out, &r).map_err(stdout_err),
        _ => Ok(()),
    })?;
    out.flush().map_err(stdout_err)
}
