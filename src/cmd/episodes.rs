//! `tcpcong analyze --episodes`: every trip of a flow out of open, one row
//! each, with what it cost and its cause. The reader streams the recordings,
//! the engine's episode tracker does the work, the renderer writes the rows.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::events::Format;
use super::{open_dataset, Selection};
use crate::analyze::engine::episodes::Episodes;
use crate::analyze::render::arrow::{write_parquet, Rows};
use crate::analyze::render::columns::{csv_header, csv_line, json_line};
use crate::analyze::render::episodes::{table_header, EpisodeLine, EPISODE};
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
    /// `--format parquet -o FILE`: the rows go to this file instead.
    pub parquet: Option<PathBuf>,
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
    let lines = episodes
        .iter()
        .map(|e| EpisodeLine::new(e, boots.get(e.key.boot as usize).unwrap_or(&unnamed)));

    match &plan.parquet {
        Some(path) => super::write_replacing(path, |file| {
            let bad = |e: &dyn std::fmt::Display| Error::Parquet {
                path: path.clone(),
                source: parquet::errors::ParquetError::General(e.to_string()),
            };
            let mut rows = Rows::new(EPISODE);
            for l in lines {
                rows.push(l.cells()).map_err(|e| bad(&e))?;
            }
            let batch = rows.batch().map_err(|e| bad(&e))?;
            write_parquet(BufWriter::new(file), &batch).map_err(|e| bad(&e))
        })?,
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            let write = |out: &mut dyn Write| -> io::Result<()> {
                match plan.format {
                    Format::Text => table_header(out)?,
                    Format::Csv => writeln!(out, "{}", csv_header(EPISODE))?,
                    Format::Json => {}
                }
                for l in lines {
                    match plan.format {
                        Format::Text => l.table(out)?,
                        Format::Json => json_line(out, l.named())?,
                        Format::Csv => csv_line(out, l.cells())?,
                    }
                }
                out.flush()
            };
            write(&mut out).map_err(Error::Stdout)?;
        }
    }
    if episodes.is_empty() {
        messages::say(format_args!(
            "no flow left the open state in the selected data"
        ));
    }
    Ok(())
}
