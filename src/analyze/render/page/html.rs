//! The page as HTML: inline CSS, inline SVG and a few lines of inline
//! script (the table's sorting), nothing fetched from anywhere, so that the
//! file opens offline and can be attached to a ticket.
//!
//! Drawn elements carry their exact values as `data-` attributes (a band's
//! state and nanoseconds, a table cell's number) and their readable ones in
//! `<title>`s, which browsers show on hover: the numbers are checkable in
//! the DOM and readable without any script.

use std::fmt::Write;

use super::timeline::{bands, merged_periods, round_ticks, Axis, Band, Buckets, Steps};
use super::{FlowTimeline, Page};
use crate::analyze::caveats;
use crate::analyze::engine::episodes::Cause;
use crate::analyze::engine::{Accounting, FlowRow, Log2Hist};
use crate::analyze::render::episodes::states;
use crate::analyze::render::flows::container_name;
use crate::escape::html as esc;
use crate::event::CaState;
use crate::time::rfc3339;

/// Left and right margins of a chart, for the axes' labels.
const LEFT: usize = 64;
const RIGHT: usize = 64;
const BAND_H: usize = 22;
/// The episodes' marks, in the gap under the band.
const EPISODE_H: usize = 6;
/// The window pane (cwnd, ssthresh, retransmissions) and the RTT pane
/// under it, with a gap between.
const WINDOW_H: usize = 64;
const RTT_H: usize = 36;
const PANE_GAP: usize = 8;
const LINES_H: usize = WINDOW_H + PANE_GAP + RTT_H;
const STRIP_H: usize = 60;

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// A duration for people: the unit that keeps three or four digits.
pub fn human(ns: u64) -> String {
    let f = ns as f64;
    match ns {
        0 => "0".into(),
        n if n < 1_000 => format!("{n} ns"),
        n if n < 1_000_000 => format!("{:.1} µs", f / 1e3),
        n if n < 1_000_000_000 => format!("{:.1} ms", f / 1e6),
        n if n < 600_000_000_000 => format!("{:.2} s", f / 1e9),
        _ => format!("{:.1} min", f / 6e10),
    }
}

/// `part` as a percentage of `all` (0 when there is nothing).
fn percent(part: u64, all: u64) -> f64 {
    if all > 0 {
        part as f64 * 100.0 / all as f64
    } else {
        0.0
    }
}

/// Wall-clock time of day with µs, UTC (the page says so).
fn clock(t_ns: u64) -> String {
    let s = rfc3339(t_ns);
    // 2026-01-02T03:04:05.123456789Z -> 03:04:05.123456
    s.get(11..26).unwrap_or(&s).to_string()
}

/// The same to the millisecond, for axis labels.
fn clock_ms(t_ns: u64) -> String {
    let mut s = clock(t_ns);
    s.truncate(12);
    s
}

fn x_of(c: usize) -> usize {
    LEFT + c
}

pub fn render(p: &Page) -> String {
    let mut h = String::with_capacity(1 << 20);
    let hosts = {
        let mut v: Vec<&str> = p.captures.iter().map(|c| c.hostname.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v.join(", ")
    };
    let _ = writeln!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>tcpcong report: {}</title><style>{STYLE}</style></head><body>",
        esc(&hosts)
    );
    let _ = writeln!(
        h,
        "<header><h1>TCP congestion states on {}</h1><p>{} to {} (UTC), {} accounting{}.</p></header>",
        esc(&hosts),
        esc(&rfc3339(p.axis.start_ns)),
        esc(&rfc3339(p.axis.end_ns)),
        match p.config.accounting {
            Accounting::Full => "full",
            Accounting::Between => "between",
        },
        if p.config.selection.is_empty() {
            String::new()
        } else {
            format!(", selection {}", esc(&p.config.selection))
        }
    );
    facts(&mut h, p);
    where_time_went(&mut h, p);
    episodes(&mut h, p);
    timelines(&mut h, p);
    dwell(&mut h, p);
    let _ = writeln!(h, "<script>{SCRIPT}</script>\n</body></html>");
    h
}

fn legend(h: &mut String) {
    h.push_str("<p class=\"legend\">");
    for s in CaState::ALL {
        let _ = write!(h, "<span><i class=\"s-{0}\"></i>{0}</span>", s.name());
    }
    h.push_str("</p>\n<p class=\"legend\">Under each flow's band, its episodes by cause: ");
    for kind in Cause::KINDS {
        let _ = write!(h, "<span><i class=\"c-{kind}\"></i>{kind}</span>");
    }
    h.push_str(
        "</p>\n<p class=\"legend\">Under each flow's band: <span class=\"cwnd\">cwnd</span> and \
         <span class=\"ssthresh\">ssthresh</span> (packets) with <span class=\"retrans\">▮ \
         retransmissions</span> per pixel (taller: more, on a log scale), and under them <span class=\"srtt\">srtt</span> (ms) on its own \
         scale; <span class=\"drop\">▮ segments this host dropped</span> hang from the pane's \
         top; above the band a mark per pixel with transitions (hover for the transition).</p>\n",
    );
}

fn facts(h: &mut String, p: &Page) {
    let lost: u64 = p.captures.iter().map(|c| c.lost_events).sum();
    let gaps: u64 = p.captures.iter().map(|c| c.gaps).sum();
    let events: u64 = p.captures.iter().map(|c| c.events).sum();
    let mut boots: Vec<&str> = p.captures.iter().map(|c| c.boot_id.as_str()).collect();
    boots.sort_unstable();
    boots.dedup();
    h.push_str("<section id=\"facts\"><h2>Capture</h2>\n");
    if lost > 0 || gaps > 0 {
        // Loud where the numbers are short by something that matters: a
        // lost event (of some flow, unknown which) or a percent of the
        // time; a few breaks in a long run are a note.
        let s = &p.overview.summary;
        let class = if lost > 0 || caveats::uncounted_matters(s) {
            "loud"
        } else {
            "note"
        };
        let _ = writeln!(
            h,
            "<p class=\"{class}\" id=\"losses\" data-lost=\"{lost}\" data-gaps=\"{gaps}\" \
             data-uncounted-ns=\"{}\">\
             The capture lost {lost} events and its flows show {gaps} chain breaks \
             (transitions that arrived without the event before them): the time before each \
             break is counted for no state ({}), and the numbers below are short by it.</p>",
            s.uncredited_ns,
            caveats::uncounted(s)
        );
    } else {
        h.push_str("<p id=\"losses\" data-lost=\"0\" data-gaps=\"0\">No events lost, no chain breaks.</p>\n");
    }
    if p.duplicates > 0 {
        let _ = writeln!(
            h,
            "<p>{} events were recorded by more than one of the overlapping captures and are counted once.</p>",
            p.duplicates
        );
    }
    let _ = writeln!(
        h,
        "<p>{} recording files, {} boots, {events} events, {} flows in the selection.</p>",
        p.captures.len(),
        boots.len(),
        p.overview.summary.timed_flows()
    );
    h.push_str(
        "<table class=\"facts\"><thead><tr><th>file</th><th>host</th><th>kernel</th><th>boot</th>\
         <th>start</th><th>end</th><th>attach</th><th>buffer</th><th>lifecycle</th><th>events</th>\
         <th>flows</th><th>lost</th><th>chain breaks</th><th>command</th></tr></thead><tbody>\n",
    );
    for c in &p.captures {
        let _ =
            writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td{}>{}</td>\
             <td><code>{}</code></td></tr>",
            esc(&c.file),
            esc(&c.hostname),
            esc(&c.kernel),
            esc(&c.boot_id),
            esc(c.boot_id.get(..8).unwrap_or(&c.boot_id)),
            esc(&c.start),
            esc(&c.end),
            esc(&c.attach),
            esc(&c.buffer),
            if c.lifecycle { "yes" } else { "no" },
            c.events,
            c.flows,
            if c.lost_events > 0 { " class=\"bad\"" } else { "" },
            c.lost_events,
            if c.gaps > 0 { " class=\"bad\"" } else { "" },
            c.gaps,
            esc(&c.command)
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn where_time_went(h: &mut String, p: &Page) {
    let totals = p.totals();
    let all: u64 = totals.iter().sum();
    h.push_str("<section id=\"where\"><h2>Where the time went</h2>\n");
    h.push_str(
        "<p class=\"note\">Time in each state, summed over every flow of the selection.</p>\n",
    );
    // Each state's time and share of all, for the bar and its legend.
    let shares: Vec<(CaState, u64, f64)> = CaState::ALL
        .into_iter()
        .map(|s| {
            let v = totals[s.index()];
            (s, v, percent(v, all))
        })
        .collect();
    h.push_str("<div class=\"share\" id=\"totals\">");
    for &(s, v, pct) in &shares {
        let _ = write!(
            h,
            "<div class=\"s-{0}\" style=\"width:{pct:.3}%\" data-state=\"{0}\" data-ns=\"{v}\" \
             title=\"{0}: {1} ({pct:.1} %)\"></div>",
            s.name(),
            human(v)
        );
    }
    h.push_str("</div>\n<table class=\"totals\"><tr>");
    for &(s, v, pct) in &shares {
        let _ = write!(
            h,
            "<td><i class=\"s-{0}\"></i>{0}: {1} ({pct:.1} %)</td>",
            s.name(),
            human(v)
        );
    }
    h.push_str("</tr></table>\n");
    let _ = writeln!(
        h,
        "<h3>Top {} flows by time in loss + recovery (then by changes)</h3>\n\
         <p class=\"note\">Click a column to sort. Times in ms; the exact nanoseconds are in each \
         cell's tooltip.</p>",
        p.overview.top.len()
    );
    h.push_str("<table id=\"top\" class=\"sortable\"><thead><tr>");
    let heads = [
        "flow",
        "family",
        "saddr",
        "sport",
        "daddr",
        "dport",
        "process",
        "open",
        "disorder",
        "cwr",
        "recovery",
        "loss",
        "changes",
        "mismatches",
        "container",
    ];
    for (i, name) in heads.iter().enumerate() {
        let _ = write!(h, "<th data-col=\"{i}\">{name}</th>");
    }
    h.push_str("</tr></thead><tbody>\n");
    for r in &p.overview.top {
        let container = p
            .boots
            .get(r.key.boot as usize)
            .and_then(|b| b.containers.get(&r.addr.owner.cgroup))
            .map(container_name)
            .unwrap_or_default();
        top_row(h, r, &container);
    }
    h.push_str("</tbody></table></section>\n");
}

fn top_row(h: &mut String, r: &FlowRow, container: &str) {
    let a = &r.addr;
    let _ = write!(
        h,
        "<tr data-flow=\"{0}\"><td data-v=\"{0}\"><a href=\"#flow-{0}\">{0}</a></td>\
         <td data-v=\"{1}\">{1}</td><td data-v=\"{2}\">{2}</td><td data-v=\"{3}\">{3}</td>\
         <td data-v=\"{4}\">{4}</td><td data-v=\"{5}\">{5}</td>",
        r.key.cookie, a.family, a.saddr, a.sport, a.daddr, a.dport
    );
    let o = &a.owner;
    let process = if o.pid == 0 {
        String::new()
    } else {
        format!("{} ({})", o.comm, o.pid)
    };
    let _ = write!(
        h,
        "<td data-v=\"{0}\" data-pid=\"{1}\">{0}</td>",
        esc(&process),
        o.pid
    );
    for s in CaState::ALL {
        let v = r.ns[s.index()];
        let _ = write!(
            h,
            "<td class=\"num\" data-v=\"{v}\" data-state=\"{}\" title=\"{v} ns\">{:.3}</td>",
            s.name(),
            v as f64 / 1e6
        );
    }
    let _ = writeln!(
        h,
        "<td class=\"num\" data-v=\"{0}\">{0}</td><td class=\"num\" data-v=\"{1}\">{1}</td>\
         <td data-v=\"{2}\">{2}</td></tr>",
        r.changes,
        r.mismatches,
        esc(container)
    );
}

/// Time per cause over all flows, and the longest episodes, each as
/// `analyze --episodes` has it (`--by cause`; `--sort duration --top`).
fn episodes(h: &mut String, p: &Page) {
    let done = &p.episodes;
    let count: u64 = done.causes.iter().map(|g| g.episodes).sum();
    let all: u64 = done.causes.iter().map(|g| g.total_ns).sum();
    h.push_str("<section id=\"episodes\"><h2>Episodes and causes</h2>\n");
    h.push_str(
        "<p class=\"note\">An episode is a flow's trip out of open, to its return (or its close, \
         or the capture's end). Its cause is the first rule its evidence earns, the \
         label analyze's episodes carry (<code>tcpcong man analyze</code> has the \
         rules).</p>\n",
    );
    let _ = writeln!(
        h,
        "<p id=\"episode-total\" data-episodes=\"{count}\" data-ns=\"{all}\">{count} episodes, {} in all.</p>",
        human(all)
    );
    if count == 0 {
        h.push_str("<p>No flow left the open state.</p></section>\n");
        return;
    }
    h.push_str(
        "<table id=\"causes\"><thead><tr><th>cause</th><th>episodes</th><th>time</th>\
         <th colspan=\"2\">share of the episodes' time</th><th>median</th><th>p99</th><th>retransmitted</th>\
         <th>dropped</th><th>CE marks</th></tr></thead><tbody>\n",
    );
    for g in &done.causes {
        let pct = percent(g.total_ns, all);
        let kind = g.key.split(':').next().unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr data-cause=\"{0}\"><td><i class=\"c-{1}\"></i>{0}</td>\
             <td class=\"num\" data-v=\"{2}\">{2}</td><td class=\"num\" data-v=\"{3}\">{4}</td>\
             <td class=\"bar\"><div class=\"c-{1}\" style=\"width:{pct:.1}%\"></div></td><td class=\"num\">{pct:.1} %</td>\
             <td class=\"num\" data-v=\"{5}\">{6}</td><td class=\"num\" data-v=\"{7}\">{8}</td>\
             <td class=\"num\" data-v=\"{9}\">{9}</td><td class=\"num\" data-v=\"{10}\">{10}</td>\
             <td class=\"num\" data-v=\"{11}\">{11}</td></tr>",
            esc(&g.key),
            esc(kind),
            g.episodes,
            g.total_ns,
            human(g.total_ns),
            g.median_ns,
            human(g.median_ns),
            g.p99_ns,
            human(g.p99_ns),
            g.retransmits,
            g.dropped,
            g.ce_marks
        );
    }
    h.push_str("</tbody></table>\n");
    let _ = writeln!(
        h,
        "<h3>The {} longest episodes</h3>\n<table id=\"longest\"><thead><tr><th>start</th>\
         <th>flow</th><th>process</th><th>duration</th><th>states</th><th>cwnd → lowest</th>\
         <th>retransmitted</th><th>dropped</th><th>CE marks</th><th>cause</th></tr></thead><tbody>",
        done.longest.len()
    );
    let drawn: std::collections::BTreeSet<_> = p.timelines.iter().map(|f| f.row.key).collect();
    for e in &done.longest {
        let flow = if drawn.contains(&e.key) {
            format!("<a href=\"#flow-{0}\">{0}</a>", e.key.cookie)
        } else {
            e.key.cookie.to_string()
        };
        let o = &e.addr.owner;
        let process = if o.pid == 0 {
            String::new()
        } else {
            format!("{} ({})", o.comm, o.pid)
        };
        let ns = e.end_ns - e.start_ns;
        let _ = writeln!(
            h,
            "<tr data-flow=\"{0}\" data-start-ktime-ns=\"{1}\" data-cause=\"{2}\"><td>{3}</td>\
             <td>{4}</td><td>{5}</td><td class=\"num\" data-v=\"{6}\">{7}</td><td>{8}</td>\
             <td>{9} → {10}</td><td class=\"num\">{11}</td><td class=\"num\">{12}</td>\
             <td class=\"num\">{13}</td><td><i class=\"c-{14}\"></i>{2}</td></tr>",
            e.key.cookie,
            e.start_ktime_ns,
            esc(&e.cause.label()),
            clock(e.start_ns),
            flow,
            esc(&process),
            ns,
            human(ns),
            esc(&states(e)),
            e.cwnd_before,
            e.lowest_cwnd,
            e.retransmits.iter().sum::<u32>(),
            e.drops.iter().map(|d| d.count).sum::<u32>(),
            e.ce_marks,
            e.cause.kind()
        );
    }
    h.push_str("</tbody></table></section>\n");
}

/// Labels of the shared time axis, under a chart: at round instants (see
/// [`round_ticks`]), to the second or the millisecond as the step needs.
fn time_axis(h: &mut String, axis: &Axis, y: usize) {
    let (step, ticks) = round_ticks(axis, 8);
    for t in ticks {
        let label = if step % 1_000_000_000 == 0 {
            clock(t)[..8].to_string()
        } else {
            clock_ms(t)
        };
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{0}\" x2=\"{0}\" y1=\"0\" y2=\"{y}\"/>\
             <text class=\"t\" x=\"{0}\" y=\"{1}\" text-anchor=\"middle\">{label}</text>",
            x_of(axis.column_of(t)),
            y + 12,
        );
    }
}

fn svg_open(h: &mut String, class: &str, height: usize) {
    let width = LEFT + super::COLUMNS + RIGHT;
    let _ = write!(
        h,
        "<svg class=\"{class}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
}

fn timelines(h: &mut String, p: &Page) {
    h.push_str("<section id=\"timelines\"><h2>Timelines</h2>\n");
    legend(h);
    h.push_str(
        "<p class=\"note\">All flows: the share of flow time in each state, per pixel column of \
         the capture. Times are UTC.</p>\n",
    );
    strip(h, &p.overview.strip, &p.axis);
    for f in &p.timelines {
        flow(h, f, &p.axis);
    }
    if p.timelines.is_empty() {
        h.push_str("<p>No flow changed state or spent time in loss or recovery.</p>\n");
    }
    h.push_str("</section>\n");
}

fn strip(h: &mut String, b: &Buckets, axis: &Axis) {
    svg_open(h, "strip", STRIP_H + 18);
    h.push_str("<g id=\"strip\">");
    let columns =
        b.ns.iter()
            .enumerate()
            .filter(|(_, ns)| ns.iter().any(|&v| v > 0));
    stacked(
        h,
        columns.map(|(c, ns)| (c, ns, String::new())),
        axis,
        (0, STRIP_H),
    );
    h.push_str("</g>");
    time_axis(h, axis, STRIP_H);
    h.push_str("</svg>\n");
}

/// Columns of several states, each stacked over `(top, height)` in state
/// order: drawn as one path per state (what keeps a page of many such
/// columns small), under one transparent hover target per column that
/// holds the column's exact nanoseconds per state (`data-ns`, in state
/// order) and says them in its title, after `note`.
fn stacked<'a>(
    h: &mut String,
    columns: impl Iterator<Item = (usize, &'a [u64; 5], String)>,
    axis: &Axis,
    (top, height): (usize, usize),
) {
    let mut paths: [String; 5] = Default::default();
    let mut hits = String::new();
    for (c, ns, note) in columns {
        let all: u64 = ns.iter().sum();
        let mut y = top as f64;
        let _ = write!(
            hits,
            "<rect class=\"hit\" x=\"{}\" y=\"{top}\" width=\"1\" height=\"{height}\" data-ns=\"",
            x_of(c)
        );
        for (i, s) in CaState::ALL.into_iter().enumerate() {
            let v = ns[s.index()];
            let _ = write!(hits, "{}{v}", if i > 0 { "," } else { "" });
            if v == 0 {
                continue;
            }
            let part = v as f64 * height as f64 / all as f64;
            let _ = write!(paths[s.index()], "M{} {y:.1}h1v{part:.1}h-1z", x_of(c));
            y += part;
        }
        let _ = write!(hits, "\"><title>{}", clock(axis.column_start(c)));
        for s in CaState::ALL.into_iter().filter(|s| ns[s.index()] > 0) {
            let _ = write!(
                hits,
                ", {} {} ({:.0} %)",
                s.name(),
                human(ns[s.index()]),
                percent(ns[s.index()], all)
            );
        }
        let _ = write!(hits, "{note}</title></rect>");
    }
    for s in CaState::ALL {
        if !paths[s.index()].is_empty() {
            let _ = write!(
                h,
                "<path class=\"s-{}\" d=\"{}\"/>",
                s.name(),
                paths[s.index()]
            );
        }
    }
    h.push_str(&hits);
}

/// A hover target over a transition mark, saying the transition.
fn mark_title(h: &mut String, c: usize, t: &super::timeline::Tick) {
    let _ = write!(
        h,
        "<rect class=\"hit\" x=\"{}\" y=\"0\" width=\"1\" height=\"8\"><title>{}</title></rect>",
        x_of(c),
        transition(t)
    );
}

/// A transition as its title says it.
fn transition(t: &super::timeline::Tick) -> String {
    let k = &t.first;
    let ssthresh = if k.ssthresh >= crate::event::NO_SSTHRESH {
        "none".to_string()
    } else {
        k.ssthresh.to_string()
    };
    let more = if t.count > 1 {
        format!(" (the first of {} transitions here)", t.count)
    } else {
        String::new()
    };
    format!(
        "{} {} -> {}, cwnd {}, ssthresh {ssthresh}, srtt {:.3} ms{more}",
        clock(k.t_ns),
        k.old.name(),
        k.new.name(),
        k.cwnd,
        f64::from(k.srtt_us) / 1e3
    )
}

fn flow(h: &mut String, f: &FlowTimeline, axis: &Axis) {
    let r = &f.row;
    let a = &r.addr;
    let bands = bands(&f.buckets);
    let merged = merged_periods(&bands);
    let _ = write!(
        h,
        "<figure class=\"flow\" id=\"flow-{0}\" data-flow=\"{0}\" data-merged=\"{merged}\">\
         <figcaption><b>flow {0}</b> {1}:{2} → {3}:{4} · loss {5} · recovery {6} · {7} changes",
        r.key.cookie,
        esc(&a.saddr.to_string()),
        a.sport,
        esc(&a.daddr.to_string()),
        a.dport,
        human(r.ns[CaState::Loss.index()]),
        human(r.ns[CaState::Recovery.index()]),
        r.changes
    );
    if merged > 0 {
        let _ = write!(
            h,
            " · <span class=\"merged note\">{merged} periods shorter than a pixel are drawn as stacked columns</span>"
        );
    }
    h.push_str("</figcaption>\n");
    let height = 8 + BAND_H + 10 + LINES_H + 18;
    svg_open(h, "timeline", height);
    // A mark above the band per column with transitions; the first of
    // them is told by the column's hover target (a mixed column's, or the
    // mark's own where the column is in one state).
    let mut marks = String::new();
    let mut told = std::collections::BTreeMap::new();
    for t in &f.ticks {
        let _ = write!(marks, "M{} 0v7", x_of(t.column));
        told.insert(t.column, t);
    }
    let _ = write!(
        h,
        "<path class=\"ticks\" d=\"{marks}\"/><g class=\"bands\">"
    );
    let mut mixed = Vec::new();
    for b in &bands {
        match b {
            Band::Run {
                first,
                last,
                state,
                ns,
            } => {
                let _ = write!(
                    h,
                    "<rect class=\"s-{0}\" x=\"{1}\" y=\"8\" width=\"{2}\" height=\"{BAND_H}\" data-state=\"{0}\" data-ns=\"{ns}\"><title>{0}: {3}, {4} to {5}</title></rect>",
                    state.name(),
                    x_of(*first),
                    last - first + 1,
                    human(*ns),
                    clock(axis.column_start(*first)),
                    clock(axis.column_start(last + 1))
                );
                for c in *first..=*last {
                    if let Some(t) = told.remove(&c) {
                        mark_title(h, c, t);
                    }
                }
            }
            Band::Mixed {
                column,
                ns,
                periods,
            } => {
                let note = match told.remove(column) {
                    Some(t) => format!("; {periods} periods; {}", transition(t)),
                    None => format!("; {periods} periods"),
                };
                mixed.push((*column, ns, note));
            }
        }
    }
    stacked(h, mixed.into_iter(), axis, (8, BAND_H));
    // Transitions where the flow was not timed (before its clock started).
    for (c, t) in told {
        mark_title(h, c, t);
    }
    h.push_str("</g><g class=\"episodes\">");
    for m in &f.episodes {
        let label = m.cause.label();
        let _ = write!(
            h,
            "<rect class=\"c-{0}\" x=\"{1}\" y=\"{2}\" width=\"{3}\" height=\"{EPISODE_H}\" \
             data-cause=\"{4}\" data-episodes=\"{5}\" data-ns=\"{6}\"><title>{4}: {5} episode{7}, {8}, \
             {9} to {10}</title></rect>",
            m.cause.kind(),
            x_of(m.first),
            8 + BAND_H + 2,
            m.last - m.first + 1,
            esc(&label),
            m.episodes,
            m.ns,
            if m.episodes == 1 { "" } else { "s" },
            human(m.ns),
            clock(axis.column_start(m.first)),
            clock(axis.column_start(m.last + 1))
        );
    }
    h.push_str("</g>");
    lines(h, f, 8 + BAND_H + 10);
    time_axis(h, axis, 8 + BAND_H + 10 + LINES_H);
    h.push_str("</svg></figure>\n");
}

/// cwnd and ssthresh (packets) with the retransmission marks in one pane
/// whose top is at `top`, and srtt (ms) in its own pane under it: the
/// window and the round trip each get their own scale.
fn lines(h: &mut String, f: &FlowTimeline, top: usize) {
    let packets = f.cwnd.max().max(f.ssthresh.max()).max(1);
    let srtt = f.srtt_us.max().max(1);
    let window_bottom = (top + WINDOW_H) as f64;
    let rtt_top = top + WINDOW_H + PANE_GAP;
    let rtt_bottom = (rtt_top + RTT_H) as f64;
    let y = |v: u64, max: u64, bottom: f64, height: usize| {
        bottom - v as f64 * height as f64 / max as f64
    };
    let _ = write!(
        h,
        "<text class=\"axis\" x=\"{0}\" y=\"{1}\" text-anchor=\"end\">{packets} pk</text>\
         <text class=\"axis\" x=\"{0}\" y=\"{2}\" text-anchor=\"end\">0</text>\
         <text class=\"axis srtt\" x=\"{0}\" y=\"{3}\" text-anchor=\"end\">{4:.1} ms</text>\
         <text class=\"axis srtt\" x=\"{0}\" y=\"{5}\" text-anchor=\"end\">0</text>\
         <line class=\"grid\" x1=\"{6}\" x2=\"{7}\" y1=\"{5}\" y2=\"{5}\"/>",
        LEFT - 4,
        top + 9,
        window_bottom,
        rtt_top + 9,
        srtt as f64 / 1e3,
        rtt_bottom,
        LEFT,
        LEFT + super::COLUMNS,
    );
    for (steps, class) in [(&f.cwnd, "cwnd"), (&f.ssthresh, "ssthresh")] {
        step_path(h, steps, class, |v| y(v, packets, window_bottom, WINDOW_H));
    }
    step_path(h, &f.srtt_us, "srtt", |v| y(v, srtt, rtt_bottom, RTT_H));
    // Retransmissions as a bar per column along the pane's foot, its
    // height growing with the log of the count: at high loss nearly every
    // column has some, and marks of one size would merge into a band.
    let most = f.retrans.iter().map(|&(_, n)| n).max().unwrap_or(1);
    let scale =
        |n: u64| 2.0 + 10.0 * (n as f64).ln_1p() / (most as f64).ln_1p().max(f64::MIN_POSITIVE);
    for (c, n) in &f.retrans {
        let tall = scale(*n);
        let _ = write!(
            h,
            "<rect class=\"retrans\" x=\"{0}\" y=\"{1:.1}\" width=\"1\" height=\"{tall:.1}\"><title>{n} retransmitted</title></rect>",
            x_of(*c),
            window_bottom - tall
        );
    }
    // This host's drops of the flow's segments hang from the pane's top,
    // on their own log scale.
    let most = f.drops.iter().map(|&(_, n)| n).max().unwrap_or(1);
    let scale =
        |n: u64| 2.0 + 10.0 * (n as f64).ln_1p() / (most as f64).ln_1p().max(f64::MIN_POSITIVE);
    for (c, n) in &f.drops {
        let _ = write!(
            h,
            "<rect class=\"drop\" x=\"{0}\" y=\"{top}\" width=\"1\" height=\"{1:.1}\" data-v=\"{n}\"><title>{n} dropped by this host</title></rect>",
            x_of(*c),
            scale(*n)
        );
    }
}

fn step_path(h: &mut String, steps: &Steps, class: &str, y: impl Fn(u64) -> f64) {
    let Some(first) = steps.columns.first() else {
        return;
    };
    let _ = write!(
        h,
        "<path class=\"line {class}\" d=\"M{} {:.1}",
        x_of(first.column),
        y(first.first)
    );
    let mut at = first.first;
    for s in &steps.columns {
        let _ = write!(h, "H{}", x_of(s.column));
        for v in [s.first, s.min, s.max, s.last] {
            if v != at {
                let _ = write!(h, "V{:.1}", y(v));
                at = v;
            }
        }
    }
    h.push_str("\"/>");
}

fn dwell(h: &mut String, p: &Page) {
    h.push_str("<section id=\"dwell\"><h2>How long each stay lasted</h2>\n");
    h.push_str(
        "<p class=\"note\">Dwell times (a stay whose start and end were both seen), log2 buckets \
         in ms, as <code>tcpcong analyze</code> prints its histograms.</p><div class=\"hists\">\n",
    );
    for s in CaState::ALL {
        hist(h, s, &p.hist[s.index()]);
    }
    h.push_str("</div>\n<h3>Transitions</h3>\n<table id=\"matrix\" class=\"matrix\"><thead><tr><th>from \\ to</th>");
    for s in CaState::ALL {
        let _ = write!(h, "<th>{}</th>", s.name());
    }
    h.push_str("</tr></thead><tbody>\n");
    let max = p
        .overview
        .matrix
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    for from in CaState::ALL {
        let _ = write!(h, "<tr><th>{}</th>", from.name());
        for to in CaState::ALL {
            let n = p.overview.matrix[from.index()][to.index()];
            let alpha = (n as f64 / max as f64).sqrt() * 0.8;
            let _ = write!(
                h,
                "<td data-from=\"{}\" data-to=\"{}\" data-v=\"{n}\" style=\"background:rgba(211,47,47,{alpha:.2})\">{n}</td>",
                from.name(),
                to.name()
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn hist(h: &mut String, s: CaState, hist: &Log2Hist) {
    let _ = write!(
        h,
        "<table class=\"hist\" data-state=\"{0}\"><caption><i class=\"s-{0}\"></i>{0}</caption>",
        s.name()
    );
    let Some(top) = hist.max_slot() else {
        h.push_str("<tr><td>no stays</td></tr></table>\n");
        return;
    };
    let max = (1..=top).map(|i| hist.count(i)).max().unwrap_or(1).max(1);
    for slot in 1..=top {
        let n = hist.count(slot);
        let (lo, hi) = if slot == 1 {
            (0, 1)
        } else {
            (
                1u64 << (slot - 1),
                (1u64 << (slot - 1)).saturating_mul(2) - 1,
            )
        };
        let _ = write!(
            h,
            "<tr><td class=\"num\">{lo} - {hi}</td><td class=\"bar\"><div class=\"s-{}\" style=\"width:{:.1}%\"></div></td><td class=\"num\" data-slot=\"{slot}\" data-v=\"{n}\">{n}</td></tr>",
            s.name(),
            n as f64 * 100.0 / max as f64
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(0), "0");
        assert_eq!(human(999), "999 ns");
        assert_eq!(human(1_500), "1.5 µs");
        assert_eq!(human(12_340_000), "12.3 ms");
        assert_eq!(human(3_210_000_000), "3.21 s");
        assert_eq!(human(3_600_000_000_000), "60.0 min");
    }
}
