//! `tcpcong analyze --episodes`: every trip of a flow out of open, one row
//! each, with what it cost and its cause. The reader streams the recordings,
//! the engine's episode tracker does the work, the renderer writes the rows.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};

use super::events::Format;
use super::{open_dataset, Selection};
use crate::analyze::engine::episodes::Episodes;
use crate::analyze::render::episodes::EpisodeRow;
use crate::error::{Error, Result};
use crate::event::Boot;
use crate::messages;
use crate::record::format::reader::{Columns, Item};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub inputs: Vec<String>,
    pub select: Selection,
    /// As `events` writes its rows (text: a table).
    pub format: Format,
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
    let span = plan.select.span(&data)?;
    let filter = plan.select.rows();
    let boots = data.boots();
    let mut tracker = Episodes::default();
    // Per boot, where its recordings end: an episode still in progress is
    // censored there.
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    let duplicates = data.scan(&filter, Columns::All, &mut |item| {
        match item {
            Item::Span(boot, s) => {
                let end = ends.entry(boot).or_default();
                *end = (*end).max(s.end_ns.min(span.end_ns));
            }
            Item::Row(r) if r.t_ns >= span.start_ns && r.t_ns < span.end_ns => {
                tracker.push(r.t_ns, r.key, &r.ev);
            }
            Item::Row(_) => {}
        }
        Ok(())
    })?;
    super::tell_duplicates(duplicates);
    let episodes = tracker.finish(&|boot| ends.get(&boot).copied().unwrap_or(span.end_ns));

    let unnamed = Boot::default();
    let mut out = BufWriter::new(io::stdout().lock());
    let write = |out: &mut dyn Write| -> io::Result<()> {
        match plan.format {
            Format::Text => EpisodeRow::table_header(out)?,
            Format::Csv => EpisodeRow::csv_header(out)?,
            Format::Json => {}
        }
        for e in &episodes {
            let row = EpisodeRow::new(e, boots.get(e.key.boot as usize).unwrap_or(&unnamed));
            match plan.format {
                Format::Text => row.table(out)?,
                Format::Json => row.json(out)?,
                Format::Csv => row.csv(out)?,
            }
        }
        out.flush()
    };
    write(&mut out).map_err(Error::Stdout)?;
    if episodes.is_empty() {
        messages::say(format_args!(
            "no flow left the open state in the selected data"
        ));
    }
    Ok(())
}
