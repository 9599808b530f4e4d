//! Rendering of engine windows: the seed's duration tables, BCC's log2
//! histograms, JSON lines and CSV, behind one [`Printer`] that live mode
//! and `analyze` share.
//!
//! The text formats reproduce the seed's output byte for byte where the spec
//! asks for it (so scripts written against BCC `tcpcong` keep working),
//! except the two header misalignments the spec asks to fix. Lines have
//! their trailing spaces trimmed. Only formatting lives here: which rows
//! exist and what they hold is the engine's business.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use super::columns::{
    csv_header, csv_line, json_line, Column, FlowLine, Get, GroupLine, Window, FLOW, GROUP,
};
use super::flows::{rows, visible, Group, GroupKey, HostRow};
use crate::analyze::engine::{FlowRow, Log2Hist, WindowReport};
use crate::escape;
use crate::event::CaState;
use crate::event::{Boot, CgroupNames};
use crate::time::{local_hms, local_hms_ms, rfc3339};

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// For people: BCC's tables and histograms.
    Table,
    /// One JSON object per line.
    Json,
    /// The same fields as CSV, with a header line.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportConfig {
    pub style: Style,
    /// Dwell-time histograms (`-d`) instead of per-flow durations: BCC's
    /// log2 histograms as text, their buckets in JSON and CSV.
    pub histogram: bool,
    /// Microseconds instead of milliseconds (`-u`).
    pub micros: bool,
    /// A `HH:MM:SS` line per window (`-T`, text styles).
    pub timestamp: bool,
    /// Also rows only in open, without changes.
    pub all: bool,
    /// Order of each window's rows (default: the engine's, by local port).
    pub sort: Option<SortKey>,
    /// Only the first rows of each window.
    pub top: Option<usize>,
    /// Rows summed by this key instead of one per flow (`--by`).
    pub by: Option<GroupKey>,
    /// Tables also name each flow's id, owner, namespace, congestion
    /// control and when it was in trouble (text style).
    pub wide: bool,
    /// Windows on round clock times: `-T` names each by its round end,
    /// the last, cut short by the capture's end, too (its own end would
    /// read as the second before).
    pub align: bool,
}

/// What `--sort` orders rows by, largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    State(CaState),
    /// Loss and recovery together: where a flow was in trouble.
    Trouble,
    Changes,
    Mismatches,
}

impl SortKey {
    fn of(self, r: &FlowRow) -> u64 {
        self.of_sums(&r.ns, r.changes, r.mismatches)
    }

    fn of_sums(self, ns: &[u64; 5], changes: u64, mismatches: u64) -> u64 {
        match self {
            SortKey::State(s) => ns[s.index()],
            SortKey::Trouble => {
                ns[CaState::Loss.index()].saturating_add(ns[CaState::Recovery.index()])
            }
            SortKey::Changes => changes,
            SortKey::Mismatches => mismatches,
        }
    }
}

/// The window's visible rows in the order and number asked for.
pub(crate) fn chosen(w: &WindowReport, c: &ReportConfig) -> Option<WindowReport> {
    if c.sort.is_none() && c.top.is_none() {
        return None;
    }
    let mut rows: Vec<FlowRow> = w
        .rows
        .iter()
        .filter(|r| visible(r, c.all))
        .cloned()
        .collect();
    if let Some(k) = c.sort {
        // Stable: ties keep the engine's order.
        rows.sort_by_key(|r| std::cmp::Reverse(k.of(r)));
    }
    rows.truncate(c.top.unwrap_or(usize::MAX));
    Some(WindowReport {
        rows,
        hist: w.hist.clone(),
        ..*w
    })
}

/// Renders windows in the configured style.
pub struct Printer<W: Write> {
    out: W,
    cfg: ReportConfig,
    lost_events: u64,
    /// By the engine's boot index (`FlowKey::boot`).
    boots: Vec<Boot>,
    header_done: bool,
    /// Rows printed: an empty report says so instead of printing nothing.
    pub visible_rows: u64,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, cfg: ReportConfig) -> Printer<W> {
        Printer {
            out,
            cfg,
            lost_events: 0,
            boots: Vec::new(),
            header_done: false,
            visible_rows: 0,
        }
    }

    /// The hosts and boots that JSON and CSV rows name, by boot index.
    pub fn set_boots(&mut self, boots: Vec<Boot>) {
        self.boots = boots;
    }

    /// Names of cgroups of boot index `boot` learnt while running.
    pub fn name_cgroups(&mut self, boot: usize, names: &CgroupNames) {
        if let Some(b) = self.boots.get_mut(boot) {
            b.learn(names);
        }
    }

    /// The events lost so far, which JSON and CSV rows carry.
    pub fn set_lost_events(&mut self, n: u64) {
        self.lost_events = n;
    }

    pub fn window(&mut self, w: &WindowReport) -> io::Result<()> {
        let c = self.cfg;
        let picked = chosen(w, &c);
        let w = picked.as_ref().unwrap_or(w);
        self.visible_rows += w.rows.iter().filter(|r| visible(r, c.all)).count() as u64;
        let out: &mut dyn Write = &mut self.out;
        let rows = Context {
            all: c.all,
            lost_events: self.lost_events,
            boots: &self.boots,
        };
        if let (Some(by), false) = (c.by, c.histogram) {
            let first = !std::mem::replace(&mut self.header_done, true);
            return write_groups(out, &groups(w, by, &c, &self.boots), w, by, &c, rows, first);
        }
        match (c.style, c.histogram) {
            (Style::Table, true) => write_hist(out, w, &c),
            (Style::Table, false) => write_table(out, w, &c),
            (Style::Json, false) => write_flows(out, w, rows, Style::Json),
            (Style::Json, true) => write_hist_json(out, w, c.micros, self.lost_events),
            (Style::Csv, hist) => {
                if !self.header_done {
                    if hist {
                        writeln!(out, "{HIST_CSV_HEADER}")?;
                    } else {
                        writeln!(out, "{}", csv_header(FLOW))?;
                    }
                    self.header_done = true;
                }
                if hist {
                    write_hist_csv(out, w, c.micros, self.lost_events)
                } else {
                    write_flows(out, w, rows, Style::Csv)
                }
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn per_unit(micros: bool) -> u64 {
    if micros {
        1_000
    } else {
        1_000_000
    }
}

fn line(out: &mut dyn Write, s: &str) -> io::Result<()> {
    writeln!(out, "{}", s.trim_end())
}

/// The leading empty line and, with `-T`, the window end's local time
/// (an empty window prints it alone, as BCC does: scripts count windows
/// by it). Aligned windows end on whole seconds, except the last, which
/// the capture's end cuts: its time is rounded up, or it would read as
/// the window before.
fn window_head(out: &mut dyn Write, w: &WindowReport, o: &ReportConfig) -> io::Result<()> {
    writeln!(out)?;
    if o.timestamp {
        let end = if o.align {
            w.end_ns.div_ceil(SEC).saturating_mul(SEC)
        } else {
            w.end_ns
        };
        line(out, &local_hms(end))?;
    }
    Ok(())
}

const SEC: u64 = 1_000_000_000;

/// One window as the seed prints it: IPv4 table, then IPv6 table.
fn write_table(out: &mut dyn Write, w: &WindowReport, o: &ReportConfig) -> io::Result<()> {
    window_head(out, w, o)?;
    write_family(out, w, o, false)?;
    write_family(out, w, o, true)
}

fn write_family(
    out: &mut dyn Write,
    w: &WindowReport,
    o: &ReportConfig,
    v6: bool,
) -> io::Result<()> {
    let rows: Vec<&FlowRow> = w
        .rows
        .iter()
        .filter(|r| (r.addr.family == 6) == v6 && visible(r, o.all))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let (aw, laddr, raddr) = if v6 {
        (32, "LAddrPort6", "RAddrPort6")
    } else {
        (21, "LAddrPort", "RAddrPort")
    };
    let wide = o.wide.then(|| Wide::of(&rows));
    line(
        out,
        &format!(
            "{laddr:<aw$} {raddr:<aw$} {}{}",
            state_heads(o.micros),
            wide.as_ref().map_or(String::new(), Wide::heads)
        ),
    )?;
    for r in rows {
        line(
            out,
            &format!(
                "{:<aw$} {:<aw$} {}{}",
                endpoint(r.addr.saddr, r.addr.sport),
                endpoint(r.addr.daddr, r.addr.dport),
                state_cells(&r.ns, r.changes, o.micros),
                wide.as_ref().map_or(String::new(), |w| w.cells(r))
            ),
        )?;
    }
    Ok(())
}

/// The columns `--wide` adds after BCC's: what `--flow` takes, whose the
/// flow is, and when it was in trouble. The command name, anyone's to
/// choose, comes last and escaped, so that the columns before it stay
/// where they are.
struct Wide {
    flow: usize,
    pid: usize,
    netns: usize,
    cc: usize,
}

impl Wide {
    fn of(rows: &[&FlowRow]) -> Wide {
        let width = |f: &dyn Fn(&FlowRow) -> usize, head: &str| {
            rows.iter().map(|r| f(r)).max().unwrap_or(0).max(head.len())
        };
        Wide {
            flow: width(&|r| r.key.cookie.to_string().len(), "Flow"),
            pid: width(&|r| r.addr.owner.pid.to_string().len(), "PID"),
            netns: width(&|r| r.addr.netns.to_string().len(), "Netns"),
            cc: width(
                &|r| escape::terminal(r.addr.cc.as_str()).chars().count(),
                "CC",
            ),
        }
    }

    /// The added columns' cells, each padded to its column.
    fn line(
        &self,
        flow: &str,
        pid: &str,
        netns: &str,
        cc: &str,
        trouble: &str,
        comm: &str,
    ) -> String {
        format!(
            " {flow:<0$} {pid:<1$} {netns:<2$} {cc:<3$} {trouble:<25} {comm}",
            self.flow, self.pid, self.netns, self.cc
        )
    }

    fn heads(&self) -> String {
        self.line("Flow", "PID", "Netns", "CC", "Trouble", "Comm")
    }

    fn cells(&self, r: &FlowRow) -> String {
        let trouble = r.trouble.map_or("-".to_string(), |(a, b)| {
            format!("{}-{}", local_hms_ms(a), local_hms_ms(b))
        });
        let o = &r.addr.owner;
        self.line(
            &r.key.cookie.to_string(),
            &o.pid.to_string(),
            &r.addr.netns.to_string(),
            &escape::terminal(r.addr.cc.as_str()),
            &trouble,
            &escape::terminal(o.comm.as_str()),
        )
    }
}

/// The heads of a table's state columns, in BCC's order and widths.
fn state_heads(micros: bool) -> String {
    let u = if micros { "us" } else { "ms" };
    format!(
        "{:<7} {:<6} {:<7} {:<7} {:<6} {:<5}",
        format!("Open_{u}"),
        format!("Dod_{u}"),
        format!("Rcov_{u}"),
        format!("Cwr_{u}"),
        format!("Los_{u}"),
        "Chgs"
    )
}

/// A row's state columns under [`state_heads`].
fn state_cells(ns: &[u64; 5], changes: u64, micros: bool) -> String {
    let v = |s: CaState| ns[s.index()] / per_unit(micros);
    format!(
        "{:<7} {:<6} {:<7} {:<7} {:<6} {:<5}",
        v(CaState::Open),
        v(CaState::Disorder),
        v(CaState::Recovery),
        v(CaState::Cwr),
        v(CaState::Loss),
        changes
    )
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    format!("{ip}/{port}")
}

/// One window's histograms: a section per state with samples, state order.
fn write_hist(out: &mut dyn Write, w: &WindowReport, o: &ReportConfig) -> io::Result<()> {
    window_head(out, w, o)?;
    let label = unit_name(o.micros);
    for s in CaState::ALL {
        let h = &w.hist[s.index()];
        if let Some(top) = h.max_slot() {
            writeln!(out)?;
            line(out, &format!("tcp_congest_state = {}", s.name()))?;
            write_log2(out, h, top, label)?;
        }
    }
    Ok(())
}

/// One bucket of a dwell-time histogram, as JSON and CSV give it: dwell
/// periods of `low..=high` units (the text histogram's slot).
#[derive(Serialize)]
struct Bucket {
    low: u64,
    high: u64,
    count: u64,
}

#[derive(Serialize)]
struct HistRecord<'a> {
    window_start: &'a str,
    window_end: &'a str,
    state: &'static str,
    unit: &'static str,
    buckets: Vec<Bucket>,
    lost_events: u64,
}

/// The buckets of a histogram with samples, from slot 1 to its highest
/// (leading empty slots included, as the text prints them).
fn buckets(h: &Log2Hist) -> Option<Vec<Bucket>> {
    let top = h.max_slot()?;
    Some(
        (1..=top)
            .map(|i| {
                let (low, high) = slot_range(i);
                Bucket {
                    low,
                    high,
                    count: h.count(i),
                }
            })
            .collect(),
    )
}

/// `low -> high` of slot i as BCC prints it (slot 1 reads `0 -> 1`).
pub(crate) fn slot_range(i: usize) -> (u64, u64) {
    let high = u64::try_from((1u128 << i) - 1).unwrap_or(u64::MAX);
    let low = u64::try_from((1u128 << i) >> 1).unwrap_or(u64::MAX);
    (if low == high { low - 1 } else { low }, high)
}

fn unit_name(micros: bool) -> &'static str {
    if micros {
        "usecs"
    } else {
        "msecs"
    }
}

/// One JSON object per window and state with samples.
fn write_hist_json(
    out: &mut dyn Write,
    w: &WindowReport,
    micros: bool,
    lost_events: u64,
) -> io::Result<()> {
    let (start, end) = (rfc3339(w.start_ns), rfc3339(w.end_ns));
    for s in CaState::ALL {
        if let Some(buckets) = buckets(&w.hist[s.index()]) {
            let rec = HistRecord {
                window_start: &start,
                window_end: &end,
                state: s.name(),
                unit: unit_name(micros),
                buckets,
                lost_events,
            };
            serde_json::to_writer(&mut *out, &rec)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

const HIST_CSV_HEADER: &str = "window_start,window_end,state,unit,low,high,count,lost_events";

/// One CSV line per bucket.
fn write_hist_csv(
    out: &mut dyn Write,
    w: &WindowReport,
    micros: bool,
    lost_events: u64,
) -> io::Result<()> {
    let (start, end) = (rfc3339(w.start_ns), rfc3339(w.end_ns));
    for s in CaState::ALL {
        for b in buckets(&w.hist[s.index()]).unwrap_or_default() {
            writeln!(
                out,
                "{start},{end},{},{},{},{},{},{lost_events}",
                s.name(),
                unit_name(micros),
                b.low,
                b.high,
                b.count
            )?;
        }
    }
    Ok(())
}

/// BCC's `_print_log2_hist`, including its wider layout (and halved bar)
/// once a slot above 32 is in use.
fn write_log2(out: &mut dyn Write, h: &Log2Hist, top: usize, label: &str) -> io::Result<()> {
    let max = (1..=top).map(|i| h.count(i)).max().unwrap_or(0);
    let (nw, bar) = if top <= 32 {
        line(out, &format!("     {label:<19} : count     distribution"))?;
        (10, 40)
    } else {
        line(
            out,
            &format!("               {label:<29} : count     distribution"),
        )?;
        (20, 20)
    };
    for i in 1..=top {
        let (low, high) = slot_range(i);
        let count = h.count(i);
        line(
            out,
            &format!(
                "{low:>nw$} -> {high:<nw$} : {count:<8} |{:<bar$}|",
                "*".repeat(stars(count, max, bar))
            ),
        )?;
    }
    Ok(())
}

/// BCC's `_stars` loop prints a star for each i with i <= width·val/max − 1,
/// i.e. ⌊width·val/max⌋ of them, at most `width`.
fn stars(val: u64, max: u64, width: usize) -> usize {
    if max == 0 {
        return 0;
    }
    let n = u128::from(val) * width as u128 / u128::from(max);
    n.min(width as u128) as usize
}

/// The window's visible rows summed by `by`, in key order, or by `--sort`
/// and cut at `--top`.
pub fn groups(w: &WindowReport, by: GroupKey, c: &ReportConfig, boots: &[Boot]) -> Vec<Group> {
    let mut out: BTreeMap<(u64, String), Group> = BTreeMap::new();
    for HostRow { boot, row } in rows(w, c.all, boots) {
        let (order, key) = by.of(&row.addr, boot);
        let g = out.entry((order, key.clone())).or_insert_with(|| Group {
            key,
            order,
            flows: 0,
            ns: [0; 5],
            changes: 0,
            mismatches: 0,
        });
        g.flows += 1;
        for (sum, v) in g.ns.iter_mut().zip(row.ns) {
            *sum += v;
        }
        g.changes += row.changes;
        g.mismatches += row.mismatches;
    }
    let mut out: Vec<Group> = out.into_values().collect();
    if let Some(k) = c.sort {
        out.sort_by_key(|g| std::cmp::Reverse(k.of_sums(&g.ns, g.changes, g.mismatches)));
    }
    if let Some(n) = c.top {
        out.truncate(n);
    }
    out
}

fn write_groups(
    out: &mut dyn Write,
    groups: &[Group],
    w: &WindowReport,
    by: GroupKey,
    o: &ReportConfig,
    c: Context<'_>,
    first: bool,
) -> io::Result<()> {
    let window = Window::new(w.start_ns, w.end_ns, c.lost_events);
    match o.style {
        Style::Json | Style::Csv => {
            if first && o.style == Style::Csv {
                writeln!(out, "{}", csv_header(GROUP))?;
            }
            for group in groups {
                let line = GroupLine {
                    window: &window,
                    by,
                    group,
                };
                write_line(out, GROUP, &line, o.style)?;
            }
        }
        Style::Table => {
            window_head(out, w, o)?;
            if groups.is_empty() {
                return Ok(());
            }
            // Names (a process's, a cgroup's) are anyone's to choose.
            let keys: Vec<_> = groups.iter().map(|g| escape::terminal(&g.key)).collect();
            let kw = keys
                .iter()
                .map(|k| k.chars().count())
                .max()
                .unwrap_or(0)
                .max(by.name().len());
            let name = by.name().to_uppercase();
            line(
                out,
                &format!("{name:<kw$} {:<5} {}", "Flows", state_heads(o.micros)),
            )?;
            for (g, key) in groups.iter().zip(&keys) {
                let cells = state_cells(&g.ns, g.changes, o.micros);
                line(out, &format!("{key:<kw$} {:<5} {cells}", g.flows))?;
            }
        }
    }
    Ok(())
}

/// What every row of a window shares besides the window.
#[derive(Clone, Copy)]
struct Context<'a> {
    all: bool,
    lost_events: u64,
    boots: &'a [Boot],
}

/// One line per visible row, as JSON or CSV ([`columns::FLOW`]).
fn write_flows(
    out: &mut dyn Write,
    w: &WindowReport,
    c: Context<'_>,
    style: Style,
) -> io::Result<()> {
    let window = Window::new(w.start_ns, w.end_ns, c.lost_events);
    for HostRow { boot, row } in rows(w, c.all, c.boots) {
        write_line(
            out,
            FLOW,
            &FlowLine {
                window: &window,
                boot,
                row,
            },
            style,
        )?;
    }
    Ok(())
}

/// One line of `columns` for `line`, as JSON or CSV.
fn write_line<L>(
    out: &mut dyn Write,
    columns: &[Column<Get<L>>],
    line: &L,
    style: Style,
) -> io::Result<()> {
    match style {
        Style::Json => json_line(out, columns.iter().map(|c| (c.name, (c.get)(line)))),
        _ => csv_line(out, columns.iter().map(|c| (c.get)(line))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Container, FlowAddr, FlowKey, KernelName, Owner};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MS: u64 = 1_000_000;
    // 2026-11-26T08:03:58.123456789Z
    const T0: u64 = 1_795_680_238_123_456_789;

    /// BCC's table: milliseconds, no timestamps, rows with changes.
    fn plain() -> ReportConfig {
        ReportConfig {
            style: Style::Table,
            histogram: false,
            micros: false,
            timestamp: false,
            all: false,
            sort: None,
            top: None,
            by: None,
            wide: false,
            align: false,
        }
    }

    fn row(cookie: u64, saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16) -> FlowRow {
        FlowRow {
            key: FlowKey { boot: 1, cookie },
            addr: FlowAddr {
                family: if saddr.is_ipv4() { 4 } else { 6 },
                saddr,
                sport,
                daddr,
                dport,
                owner: Default::default(),
                netns: 0,
                cc: Default::default(),
            },
            ns: [0; 5],
            changes: 0,
            mismatches: 0,
            trouble: None,
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn window(rows: Vec<FlowRow>) -> WindowReport {
        WindowReport {
            index: 0,
            start_ns: T0,
            end_ns: T0 + 1_000 * MS,
            rows,
            hist: Default::default(),
        }
    }

    fn sample() -> WindowReport {
        let mut a = row(7, v4(192, 168, 219, 3), 34968, v4(192, 168, 219, 4), 5201);
        // Ordered open, disorder, cwr, recovery, loss in the engine.
        a.ns = [2_857_400_000, 5_999_999, 1_000, 108_000_001, 0];
        a.changes = 19;
        let hidden = row(8, v4(10, 0, 0, 1), 40000, v4(10, 0, 0, 2), 80);
        let mut b = row(
            9,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            22,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            51000,
        );
        b.ns = [1_500_000, 0, 0, 0, 2_000_000];
        b.changes = 2;
        let mut c = row(
            10,
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
            8080,
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            443,
        );
        c.ns = [0, 0, 0, 3_000_000, 0];
        c.changes = 1;
        c.addr.netns = 4_026_531_840;
        c.addr.cc = KernelName::from_str_lossy("cubic");
        c.trouble = Some((T0 + 100 * MS, T0 + 103 * MS));
        c.addr.owner = Owner {
            pid: 77,
            comm: KernelName::from_str_lossy("web, \"v2\""),
            cgroup: 5,
        };
        b.addr.owner = Owner {
            pid: 78,
            comm: KernelName::from_str_lossy("sshd"),
            cgroup: 6,
        };
        window(vec![a, hidden, b, c])
    }

    fn text(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).expect("writing to a Vec cannot fail");
        String::from_utf8(buf).expect("reports are UTF-8")
    }

    #[test]
    fn table_ms() {
        let o = plain();
        let got = text(|out| write_table(out, &sample(), &o));
        let want = "\n\
LAddrPort             RAddrPort             Open_ms Dod_ms Rcov_ms Cwr_ms  Los_ms Chgs
192.168.219.3/34968   192.168.219.4/5201    2857    5      108     0       0      19
LAddrPort6                       RAddrPort6                       Open_ms Dod_ms Rcov_ms Cwr_ms  Los_ms Chgs
::1/22                           ::1/51000                        1       0      0       0       2      2
::ffff:127.0.0.1/8080            2001:db8::1/443                  0       0      3       0       0      1
";
        assert_eq!(got, want);
    }

    #[test]
    fn table_us_all_shows_quiet_rows() {
        let o = ReportConfig {
            micros: true,
            all: true,
            ..plain()
        };
        let mut w = sample();
        w.rows.truncate(2);
        let got = text(|out| write_table(out, &w, &o));
        let want = "\n\
LAddrPort             RAddrPort             Open_us Dod_us Rcov_us Cwr_us  Los_us Chgs
192.168.219.3/34968   192.168.219.4/5201    2857400 5999   108000  1       0      19
10.0.0.1/40000        10.0.0.2/80           0       0      0       0       0      0
";
        assert_eq!(got, want);
    }

    #[test]
    fn table_without_visible_rows_is_a_blank_line() {
        let o = plain();
        let mut w = sample();
        w.rows.retain(|r| r.changes == 0);
        assert_eq!(text(|out| write_table(out, &w, &o)), "\n");
    }

    /// Without --all a flow is shown if it changed state or spent time out
    /// of open: one in loss for the whole window, without a change, too.
    #[test]
    fn a_flow_stuck_out_of_open_is_shown() {
        let o = plain();
        let mut stuck = row(9, v4(10, 0, 0, 3), 40001, v4(10, 0, 0, 4), 80);
        stuck.ns = [0, 0, 0, 0, 1_000 * MS];
        let mut idle = row(10, v4(10, 0, 0, 3), 40002, v4(10, 0, 0, 4), 80);
        idle.ns = [1_000 * MS, 0, 0, 0, 0];
        let got = text(|out| write_table(out, &window(vec![stuck, idle]), &o));
        assert!(got.contains("10.0.0.3/40001"), "{got}");
        assert!(!got.contains("10.0.0.3/40002"), "{got}");
    }

    #[test]
    fn clock_is_hh_mm_ss() {
        let o = ReportConfig {
            timestamp: true,
            ..plain()
        };
        let got = text(|out| write_table(out, &window(vec![]), &o));
        let want = format!("\n{}\n", local_hms(T0 + 1_000 * MS));
        assert_eq!(got, want);
    }

    #[test]
    fn star_scaling() {
        assert_eq!(stars(12, 12, 40), 40);
        assert_eq!(stars(3, 12, 40), 10);
        // BCC's loop truncates: 40·1/3 = 13.3 gives 13 stars.
        assert_eq!(stars(1, 3, 40), 13);
        assert_eq!(stars(1, 100, 40), 0);
        assert_eq!(stars(u64::MAX, u64::MAX, 40), 40);
        assert_eq!(stars(0, 0, 40), 0);
    }

    #[test]
    fn histogram_sections() {
        let mut w = window(vec![]);
        for v in [0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 3] {
            w.hist[CaState::Open.index()].add(v);
        }
        w.hist[CaState::Loss.index()].add(5);
        let got = text(|out| write_hist(out, &w, &plain()));
        let want = "

tcp_congest_state = open
     msecs               : count     distribution
         0 -> 1          : 12       |****************************************|
         2 -> 3          : 3        |**********                              |

tcp_congest_state = loss
     msecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 1        |****************************************|
";
        assert_eq!(got, want);
    }

    #[test]
    fn histogram_wide_layout_above_slot_32() {
        let mut w = window(vec![]);
        w.hist[CaState::Cwr.index()].add(1 << 32);
        let got = text(|out| {
            write_hist(
                out,
                &w,
                &ReportConfig {
                    micros: true,
                    ..plain()
                },
            )
        });
        let lines: Vec<&str> = got.lines().collect();
        // Two blank lines, title, header, slots 1..=33.
        assert_eq!(lines.len(), 4 + 33);
        assert_eq!(lines[2], "tcp_congest_state = cwr");
        assert_eq!(
            lines[3],
            "               usecs                         : count     distribution"
        );
        assert_eq!(
            lines[4],
            "                   0 -> 1                    : 0        |                    |"
        );
        assert_eq!(
            lines[36],
            "          4294967296 -> 8589934591           : 1        |********************|"
        );
    }

    #[test]
    fn histogram_buckets_for_programs() {
        let mut w = window(vec![]);
        for v in [0, 1, 3] {
            w.hist[CaState::Open.index()].add(v);
        }
        w.hist[CaState::Loss.index()].add(4);
        let json = text(|out| write_hist_json(out, &w, false, 2));
        let want = concat!(
            r#"{"window_start":"2026-11-26T08:03:58.123456789Z","window_end":"2026-11-26T08:03:59.123456789Z","state":"open","unit":"msecs","#,
            r#""buckets":[{"low":0,"high":1,"count":2},{"low":2,"high":3,"count":1}],"lost_events":2}"#,
            "\n",
            r#"{"window_start":"2026-11-26T08:03:58.123456789Z","window_end":"2026-11-26T08:03:59.123456789Z","state":"loss","unit":"msecs","#,
            r#""buckets":[{"low":0,"high":1,"count":0},{"low":2,"high":3,"count":0},{"low":4,"high":7,"count":1}],"lost_events":2}"#,
            "\n"
        );
        assert_eq!(json, want);
        let csv = text(|out| write_hist_csv(out, &w, true, 0));
        assert_eq!(csv.lines().count(), 5);
        assert_eq!(
            csv.lines().next().unwrap(),
            "2026-11-26T08:03:58.123456789Z,2026-11-26T08:03:59.123456789Z,open,usecs,0,1,2,0"
        );
        assert_eq!(slot_range(64), (1 << 63, u64::MAX));
    }

    #[test]
    fn empty_histogram_is_a_blank_line() {
        assert_eq!(text(|out| write_hist(out, &window(vec![]), &plain())), "\n");
    }

    /// The samples' flows are of boot 1: "h" has two boots.
    fn ctx(all: bool, lost_events: u64) -> Context<'static> {
        static BOOTS: std::sync::LazyLock<Vec<Boot>> = std::sync::LazyLock::new(|| {
            ["b0", "b1"]
                .map(|b| Boot {
                    host: "h".into(),
                    boot_id: b.into(),
                    cgroup_paths: BTreeMap::from([(5, "/system.slice/web.service".into())]),
                    // Names are anyone's: CSV quotes this one.
                    containers: BTreeMap::from([(
                        5,
                        Container {
                            runtime: "docker".into(),
                            id: "0a1b".repeat(16),
                            name: "web,1".into(),
                            pod: String::new(),
                            namespace: String::new(),
                        },
                    )]),
                })
                .to_vec()
        });
        Context {
            all,
            lost_events,
            boots: &BOOTS,
        }
    }

    #[test]
    fn json_lines() {
        let got = text(|out| write_flows(out, &sample(), ctx(false, 3), Style::Json));
        let want = concat!(
            r#"{"window_start":"2026-11-26T08:03:58.123456789Z","window_end":"2026-11-26T08:03:59.123456789Z","#,
            r#""host":"h","boot_id":"b1","flow":10,"family":6,"saddr":"::ffff:127.0.0.1","sport":8080,"daddr":"2001:db8::1","dport":443,"#,
            r#""pid":77,"comm":"web, \"v2\"","cgroup":5,"cgroup_path":"/system.slice/web.service","#,
            r#""container":"web,1","container_id":"0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b","pod":"","k8s_namespace":"","netns":4026531840,"cong_algo":"cubic","#,
            r#""open_ns":0,"disorder_ns":0,"cwr_ns":0,"recovery_ns":3000000,"loss_ns":0,"changes":1,"mismatches":0,"lost_events":3}"#,
            "\n"
        );
        let mut w = sample();
        w.rows.retain(|r| r.key.cookie == 10);
        assert_eq!(
            text(|out| write_flows(out, &w, ctx(false, 3), Style::Json)),
            want
        );
        assert_eq!(got.lines().count(), 3);
        assert_eq!(
            text(|out| write_flows(out, &sample(), ctx(true, 0), Style::Json))
                .lines()
                .count(),
            4
        );
    }

    #[test]
    fn csv_lines() {
        let got = text(|out| {
            writeln!(out, "{}", csv_header(FLOW))?;
            write_flows(out, &sample(), ctx(false, 0), Style::Csv)
        });
        let want = "\
window_start,window_end,host,boot_id,flow,family,saddr,sport,daddr,dport,pid,comm,cgroup,cgroup_path,container,container_id,pod,k8s_namespace,netns,cong_algo,open_ns,disorder_ns,cwr_ns,recovery_ns,loss_ns,changes,mismatches,lost_events
2026-11-26T08:03:58.123456789Z,2026-11-26T08:03:59.123456789Z,h,b1,7,4,192.168.219.3,34968,192.168.219.4,5201,0,,0,,,,,,0,,2857400000,5999999,1000,108000001,0,19,0,0
2026-11-26T08:03:58.123456789Z,2026-11-26T08:03:59.123456789Z,h,b1,9,6,::1,22,::1,51000,78,sshd,6,,,,,,0,,1500000,0,0,0,2000000,2,0,0
2026-11-26T08:03:58.123456789Z,2026-11-26T08:03:59.123456789Z,h,b1,10,6,::ffff:127.0.0.1,8080,2001:db8::1,443,77,\"web, \"\"v2\"\"\",5,/system.slice/web.service,\"web,1\",0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b0a1b,,,4026531840,cubic,0,0,0,3000000,0,1,0,0
";
        assert_eq!(got, want);
    }

    /// A process names itself what it likes: --wide's columns stay put and
    /// the terminal gets no control character, whatever comm and the
    /// congestion control's name hold.
    #[test]
    fn wide_rows_escape_names() {
        let mut w = sample();
        w.rows.retain(|r| r.key.cookie == 10);
        w.rows[0].addr.owner.comm = KernelName::from_str_lossy("\x1b[2J\nx\ty\"z");
        w.rows[0].addr.cc = KernelName::from_str_lossy("cu\rbic");
        let o = ReportConfig {
            wide: true,
            ..plain()
        };
        let got = text(|out| write_table(out, &w, &o));
        assert!(!got.contains(['\x1b', '\r', '\t']), "{got:?}");
        // The blank line, the head and one row: no newline slipped in.
        assert_eq!(got.lines().count(), 3, "{got:?}");
        let row = got.lines().nth(2).unwrap();
        assert!(row.ends_with(r#"\x1b[2J\x0ax\x09y"z"#), "{row}");
        assert!(row.contains(r"cu\x0dbic"), "{row}");
    }

    fn by(key: GroupKey, sort: Option<SortKey>, all: bool) -> ReportConfig {
        ReportConfig {
            all,
            sort,
            by: Some(key),
            ..plain()
        }
    }

    #[test]
    fn groups_sum_the_visible_flows_of_each_key() {
        let boots = ctx(false, 0).boots;
        let mut w = sample();
        // A second flow of the web process, IPv4.
        let mut d = row(11, v4(10, 0, 0, 9), 8080, v4(10, 0, 0, 8), 443);
        d.ns = [5, 0, 0, 7, 11];
        d.changes = 4;
        d.mismatches = 1;
        d.addr.owner = w.rows[3].addr.owner;
        w.rows.push(d);
        let g = groups(
            &w,
            GroupKey::Process,
            &by(GroupKey::Process, None, false),
            boots,
        );
        let got: Vec<(&str, u64, [u64; 5], u64, u64)> = g
            .iter()
            .map(|g| (g.key.as_str(), g.flows, g.ns, g.changes, g.mismatches))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "(owner not known)",
                    1,
                    [2_857_400_000, 5_999_999, 1_000, 108_000_001, 0],
                    19,
                    0
                ),
                ("sshd", 1, [1_500_000, 0, 0, 0, 2_000_000], 2, 0),
                ("web, \"v2\"", 2, [5, 0, 0, 3_000_007, 11], 5, 1),
            ]
        );
        // The hidden flow (no changes) counts only with --all.
        let all = groups(
            &w,
            GroupKey::Process,
            &by(GroupKey::Process, None, true),
            boots,
        );
        assert_eq!(all[0].flows, 2);

        let cg = groups(
            &w,
            GroupKey::Cgroup,
            &by(GroupKey::Cgroup, None, false),
            boots,
        );
        let keys: Vec<&str> = cg.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(
            keys,
            ["(owner not known)", "/system.slice/web.service", "6"]
        );

        // Ports in numeric order; --sort orders groups, largest first.
        let lp = groups(
            &w,
            GroupKey::Lport,
            &by(GroupKey::Lport, None, false),
            boots,
        );
        let keys: Vec<&str> = lp.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["22", "8080", "34968"]);
        let sorted = groups(
            &w,
            GroupKey::Raddr,
            &by(GroupKey::Raddr, Some(SortKey::State(CaState::Loss)), false),
            boots,
        );
        assert_eq!(sorted[0].key, "::1");
        assert_eq!(sorted[1].key, "10.0.0.8");
    }

    #[test]
    fn grouped_reports_in_every_style() {
        let c = ctx(false, 2);
        let w = sample();
        let mut o = by(GroupKey::Process, None, false);
        let g = groups(&w, GroupKey::Process, &o, c.boots);
        let table = text(|out| write_groups(out, &g, &w, GroupKey::Process, &o, c, true));
        assert_eq!(
            table,
            "\nPROCESS           Flows Open_ms Dod_ms Rcov_ms Cwr_ms  Los_ms Chgs\n\
             (owner not known) 1     2857    5      108     0       0      19\n\
             sshd              1     1       0      0       0       2      2\n\
             web, \"v2\"         1     0       0      3       0       0      1\n"
        );
        o.style = Style::Csv;
        let csv = text(|out| write_groups(out, &g, &w, GroupKey::Process, &o, c, true));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "window_start,window_end,by,key,flows,open_ns,disorder_ns,cwr_ns,recovery_ns,loss_ns,changes,mismatches,lost_events");
        assert_eq!(lines[3], "2026-11-26T08:03:58.123456789Z,2026-11-26T08:03:59.123456789Z,process,\"web, \"\"v2\"\"\",1,0,0,0,3000000,0,1,0,2");
        o.style = Style::Json;
        let json = text(|out| write_groups(out, &g, &w, GroupKey::Process, &o, c, false));
        let v: serde_json::Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
        assert_eq!(v["by"], "process");
        assert_eq!(v["key"], "sshd");
        assert_eq!(v["loss_ns"], 2_000_000);
        assert_eq!(v["lost_events"], 2);
    }
}
