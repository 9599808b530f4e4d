//! `tcpcong report`: recordings to one self-contained HTML page. Two scans
//! of the recordings (see `analyze::page` for why), the page rendered in
//! memory and written under a temporary name, renamed into place only when
//! complete: a failed run leaves no half-written page.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{open_dataset, warn_losses, warn_without_lifecycle, Selection};
use crate::analyze::engine::{EngineConfig, Unit};
use crate::analyze::page::{html, CaptureFacts, Overview, Page, PageConfig, Timelines};
use crate::error::{Error, Result};
use crate::messages;
use crate::record::format::reader::{Columns, Item};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Files, folders and globs.
    pub inputs: Vec<String>,
    pub output: PathBuf,
    pub select: Selection,
    pub page: PageConfig,
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
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
    let cfg = EngineConfig {
        accounting: plan.page.accounting,
        lifecycle,
        start_ns: span.start_ns,
        until_ns: span.until_ns,
        interval_ns: None,
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

    let mut timelines = Timelines::new(cfg, span.end_ns, &overview.top);
    open_dataset(&plan.inputs)?.scan(&filter, Columns::All, &mut |item| {
        match item {
            Item::Span(boot, s) => timelines.set_span(boot, s),
            Item::Row(r) if timelines.wants(r.key) => timelines.push(r.t_ns, r.key, &r.ev),
            Item::Row(_) => {}
        }
        Ok(())
    })?;
    let timelines = timelines.finish(span.end_ns);

    let drawn = timelines.len();
    let page = Page::new(
        plan.page.clone(),
        captures,
        (span.start_ns, span.end_ns),
        overview,
        timelines,
        duplicates,
    );
    let text = html::render(&page);
    write_whole(&plan.output, text.as_bytes())?;
    messages::say(format_args!(
        "wrote {} ({} KiB): {} flows, {drawn} timelines",
        plan.output.display(),
        text.len().div_ceil(1024),
        page.overview.summary.flows
    ));
    warn_losses(lost_events, Some(gaps), &page.overview.summary);
    warn_without_lifecycle(plan.page.accounting, lifecycle);
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// so that `path` is either the old file or the whole new one.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("-o {}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
