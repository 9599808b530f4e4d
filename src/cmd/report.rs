//! `tcpcong report`: recordings to one self-contained HTML page. Two scans
//! of the recordings (see `analyze::render::page` for why), the page rendered in
//! memory and written under a temporary name, renamed into place only when
//! complete: a failed run leaves no half-written page.

use std::io::Write;
use std::path::PathBuf;

use super::{find_recordings, warn_losses, warn_without_lifecycle, Selection};
use crate::analyze::engine::durations::EpisodeScan;
use crate::analyze::engine::episodes::Episode;
use crate::analyze::engine::{EngineConfig, Unit};
use crate::analyze::render::page::{
    html, CaptureFacts, EpisodeSection, Overview, Page, PageConfig, Timelines,
};
use crate::error::{Error, Result};
use crate::event::{Boot, Change};
use crate::messages;
use crate::record::format::reader::{Columns, Dataset, Item};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Files, folders and globs.
    pub inputs: Vec<String>,
    pub output: super::NewFile,
    pub select: Selection,
    pub page: PageConfig,
}

pub fn run(plan: &Plan) -> Result<()> {
    let files = find_recordings(&plan.inputs)?;
    plan.output.check(files.iter().map(PathBuf::as_path))?;
    let data = super::open_files(&files)?;
    let span = plan.select.span(&data)?;
    let captures: Vec<CaptureFacts> = data
        .recordings()
        .map(|(path, m)| CaptureFacts {
            file: path.display().to_string(),
            hostname: m.hostname.clone(),
            kernel: m.kernel.clone(),
            boot_id: m.boot_id.clone(),
            start: m.start.clone(),
            end: m.end.clone(),
            attach: m.attach.clone(),
            buffer: m.buffer.clone(),
            lifecycle: m.lifecycle,
            events: m.events,
            flows: m.flows,
            lost_events: m.lost_events,
            gaps: m.gaps,
            command: m.command.clone(),
        })
        .collect();
    let (lost_events, gaps, lifecycle) = (data.lost_events, data.gaps, data.lifecycle);
    let boots = data.boots();
    let cfg = EngineConfig {
        accounting: plan.page.accounting,
        lifecycle,
        start_ns: span.start_ns,
        until_ns: span.until_ns,
        interval_ns: None,
        align: false,
        hist_unit: Unit::Millis,
    };
    let filter = plan.select.rows();

    let mut overview = Overview::new(cfg.clone(), span.end_ns);
    let duplicates = data.scan(&filter, Columns::Analysis, &mut |item| {
        match item {
            Item::Span(boot, s) => overview.set_span(boot, s),
            Item::Row(r) => overview.push(r.t_ns, r.key, r.ev.change, &r.ev.addr),
        }
        Ok(())
    })?;
    super::tell_duplicates(duplicates);
    let overview = overview.finish(span.end_ns, plan.page.top);
    let flows = overview.summary.timed_flows();
    if flows == 0 {
        super::tell_no_flow(&plan.inputs.join(" "), &plan.select);
    }

    // The second pass: the top flows' timelines, and every flow's episodes
    // (as analyze --episodes finds them in the same selection).
    let mut timelines = Timelines::new(cfg, span.end_ns, &overview.top);
    let mut scan = EpisodeScan::new((span.start_ns, span.end_ns));
    let mut episodes = EpisodeSection::new();
    let unnamed = Boot::default();
    let mut done = Vec::new();
    let mut take = |done: &mut Vec<Episode>, timelines: &mut Timelines| {
        for e in done.drain(..) {
            timelines.episode(&e);
            let boot = boots.get(e.key.boot as usize).unwrap_or(&unnamed);
            episodes.add(e, boot);
        }
    };
    Dataset::open(&files)?.scan(&filter, Columns::All, &mut |item| {
        match item {
            Item::Span(boot, s) => timelines.set_span(boot, s),
            Item::Row(r) => {
                if let Change::Drop { .. } = r.ev.change {
                    timelines.dropped(r.t_ns, scan.credited(r.key, &r.ev), &r.ev);
                }
                if timelines.wants(r.key) {
                    timelines.push(r.t_ns, r.key, &r.ev);
                }
            }
        }
        scan.item(&item, &mut |e| {
            done.push(e);
            Ok(())
        })?;
        take(&mut done, &mut timelines);
        Ok(())
    })?;
    scan.finish(&mut |e| {
        done.push(e);
        Ok(())
    })?;
    take(&mut done, &mut timelines);
    let timelines = timelines.finish(span.end_ns);

    let drawn = timelines.len();
    let page = Page::new(
        plan.page.clone(),
        captures,
        (span.start_ns, span.end_ns),
        overview,
        timelines,
        episodes.finish(),
        (duplicates, boots),
    );
    let text = html::render(&page);
    plan.output.write(|mut f| {
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(&plan.output.path, e))
    })?;
    messages::say(format_args!(
        "wrote {} ({} KiB): {}, {}",
        plan.output.path.display(),
        text.len().div_ceil(1024),
        super::plural(flows, "flow"),
        super::plural(drawn as u64, "timeline")
    ));
    warn_losses(lost_events, Some(gaps), &page.overview.summary);
    warn_without_lifecycle(plan.page.accounting, lifecycle);
    Ok(())
}
