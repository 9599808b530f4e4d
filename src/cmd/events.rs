//! `tcpcong events`: the raw transitions of recordings in time order, one
//! line each — what `perf script` is to `perf record`. It streams (rows go
//! out as they are read) and stops quietly when its reader goes away.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

use super::{open_dataset, Selection};
use crate::error::{Error, Result};
use crate::escape;
use crate::event::Boot;
use crate::event::{Change, Detail};
use crate::record::format::reader::{Columns, Item, Row};
use crate::record::format::schema::columns;
use crate::time::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per event, for people.
    Text,
    /// One JSON object per line, every column.
    Json,
    /// Every column, with a header line.
    Csv,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub inputs: Vec<String>,
    pub select: Selection,
    pub format: Format,
    /// Only rows of this `kind` (`ca_state`, `tcp_state`, `snapshot`,
    /// `retransmit`).
    pub kind: Option<&'static str>,
}

fn endpoint(addr: &std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn text(out: &mut dyn Write, r: &Row, _: &Boot) -> io::Result<()> {
    let e = &r.ev;
    let (old, new) = e.change.names();
    // A snapshot's two states hold at once, and evidence's are its state
    // or direction and why: no arrow between them.
    let between = match e.change {
        Change::Snapshot { .. }
        | Change::Retransmit { .. }
        | Change::Drop { .. }
        | Change::Reset { .. } => "  ",
        _ => "->",
    };
    write!(
        out,
        "{} {:>8} {:>21} -> {:<21} {:<9} {:>8} {between} {:<11} ",
        rfc3339(r.t_ns),
        e.flow,
        endpoint(&e.addr.saddr, e.addr.sport),
        endpoint(&e.addr.daddr, e.addr.dport),
        e.change.kind(),
        old,
        new,
    )?;
    let d = &e.detail;
    match e.change {
        // A drop is a segment's, not its socket's counters (a drop found by
        // its addresses alone has none): what went, and where.
        Change::Drop { .. } => writeln!(
            out,
            "segs={} location={}",
            d.segs,
            crate::escape::terminal(d.location.as_str())
        ),
        _ => writeln!(
            out,
            "cwnd={} ssthresh={} srtt_us={}",
            d.snd_cwnd, d.snd_ssthresh, d.srtt_us
        ),
    }
}

/// After the file's columns, what the file names of the row's cgroup: its
/// path and the container it was made for ("" where it names none).
const CGROUP_NAMES: [&str; 5] = [
    "cgroup_path",
    "container",
    "container_id",
    "pod",
    "k8s_namespace",
];

fn cgroup_names(boot: &Boot, cgroup: u64) -> [&str; 5] {
    let path = boot.cgroup_paths.get(&cgroup).map_or("", String::as_str);
    let field = |f| boot.container_field(cgroup, f);
    [
        path,
        field(|c| &c.name),
        field(|c| &c.id),
        field(|c| &c.pod),
        field(|c| &c.namespace),
    ]
}

/// Every schema v1 column, in schema order: the core ones spelled out, the
/// detail columns as the event carries them; then the cgroup's names.
#[derive(Serialize)]
struct JsonEvent<'a> {
    time: String,
    ktime_ns: u64,
    kind: &'a str,
    flow: u64,
    family: u8,
    saddr: std::net::IpAddr,
    daddr: std::net::IpAddr,
    sport: u16,
    dport: u16,
    old_state: &'a str,
    new_state: &'a str,
    #[serde(flatten)]
    detail: &'a Detail,
    host: &'a str,
    boot_id: &'a str,
    cgroup_path: &'a str,
    container: &'a str,
    container_id: &'a str,
    pod: &'a str,
    k8s_namespace: &'a str,
}

fn json_line(out: &mut dyn Write, r: &Row, boot: &Boot) -> io::Result<()> {
    let e = &r.ev;
    let (old_state, new_state) = e.change.names();
    let [cgroup_path, container, container_id, pod, k8s_namespace] =
        cgroup_names(boot, e.detail.cgroup);
    let v = JsonEvent {
        time: rfc3339(r.t_ns),
        ktime_ns: e.ktime_ns,
        kind: e.change.kind(),
        flow: e.flow,
        family: e.addr.family,
        saddr: e.addr.saddr,
        daddr: e.addr.daddr,
        sport: e.addr.sport,
        dport: e.addr.dport,
        old_state,
        new_state,
        detail: &e.detail,
        host: &boot.host,
        boot_id: &boot.boot_id,
        cgroup_path,
        container,
        container_id,
        pod,
        k8s_namespace,
    };
    serde_json::to_writer(&mut *out, &v)?;
    writeln!(out)
}

fn csv_line(out: &mut dyn Write, r: &Row, boot: &Boot) -> io::Result<()> {
    let e = &r.ev;
    let (old, new) = e.change.names();
    write!(
        out,
        "{},{},{},{},{},{},{},{},{},{old},{new}",
        rfc3339(r.t_ns),
        e.ktime_ns,
        e.change.kind(),
        e.flow,
        e.addr.family,
        e.addr.saddr,
        e.addr.daddr,
        e.addr.sport,
        e.addr.dport,
    )?;
    e.detail.write_csv(out)?;
    write!(
        out,
        ",{},{}",
        escape::csv(&boot.host),
        escape::csv(&boot.boot_id)
    )?;
    for name in cgroup_names(boot, e.detail.cgroup) {
        write!(out, ",{}", escape::csv(name))?;
    }
    writeln!(out)
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
    let span = plan.select.span(&data)?;
    super::warn_recorded_losses(&data, crate::analyze::caveats::EVENTS_MISSING);
    // Without --until the capture's tail (events drained at stop) is shown.
    let end = if span.until_ns.is_some() {
        span.end_ns
    } else {
        u64::MAX
    };
    let filter = plan.select.rows();
    let mut out = BufWriter::new(io::stdout().lock());
    let write = match plan.format {
        Format::Text => text,
        Format::Json => json_line,
        Format::Csv => {
            // Events, not the capture rows: their column is left out.
            let names: Vec<&str> = columns()
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| *n != "capture")
                .chain(CGROUP_NAMES)
                .collect();
            writeln!(out, "{}", names.join(",")).map_err(Error::Stdout)?;
            csv_line
        }
    };
    let wanted = |r: &Row| plan.kind.is_none_or(|k| k == r.ev.change.kind());
    let boots = data.boots();
    let unnamed = Boot::default();
    let boot_of = |r: &Row| boots.get(r.key.boot as usize).unwrap_or(&unnamed);
    let events: u64 = data.recordings().map(|(_, m)| m.events).sum();
    let mut listed = 0u64;
    let duplicates = data.scan(&filter, Columns::All, &mut |item| match item {
        Item::Row(r) if r.t_ns >= span.start_ns && r.t_ns < end && wanted(r) => {
            listed += 1;
            write(&mut out, r, boot_of(r)).map_err(Error::Stdout)
        }
        _ => Ok(()),
    })?;
    super::tell_duplicates(duplicates);
    out.flush().map_err(Error::Stdout)?;
    if listed == 0 && events > 0 {
        // Why nothing came, as analyze says it.
        let flags = match (plan.kind, plan.select.flags()) {
            (Some(k), f) if f == super::NO_FILTER => format!("--kind {k}"),
            (Some(k), f) => format!("--kind {k} {f}"),
            (None, f) => f,
        };
        crate::messages::say(format_args!(
            "the selection ({flags}) keeps none of the recordings' {}",
            super::plural(events, "event")
        ));
    }
    Ok(())
}
